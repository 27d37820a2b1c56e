"""The ``runtime`` section: the garbage-collector policy."""

from __future__ import annotations

import textwrap

import pytest

from saynad.config import load_config_text, summarize
from saynad.errors import ConfigError


def test_gc_is_tuned_unless_the_file_says_stock() -> None:
    assert load_config_text("{}", source_name="t.yaml").runtime.gc == "tuned"
    config = load_config_text("runtime: {gc: stock}\n", source_name="t.yaml")
    assert config.runtime.gc == "stock"
    assert "runtime:   gc stock" in summarize(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runtime:\n  gc: never\n", "t.yaml:2: runtime.gc: expected one of: tuned, stock"),
        # YAML reads a bare off as false: the message shows what the loader saw.
        ("runtime:\n  gc: off\n", "t.yaml:2: runtime.gc: expected one of: tuned, stock, got false"),
        ("runtime:\n  gcc: stock\n", "t.yaml:2: runtime.gcc: unknown key 'gcc' (did you mean 'gc'"),
        ("runtime: [gc]\n", "t.yaml:1: runtime: expected a mapping"),
    ],
)
def test_bad_runtime_settings_are_problems(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), source_name="t.yaml")
    [problem] = info.value.problems
    assert problem.startswith(expected), problem


def test_runtime_is_a_known_section() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("runtim: {gc: stock}\n", source_name="t.yaml")
    [problem] = info.value.problems
    assert "unknown key 'runtim'" in problem
    assert "runtime" in problem

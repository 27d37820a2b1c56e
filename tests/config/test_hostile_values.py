"""Values that ``saynad check`` used to accept or explain in Python's words: an address
``saynad run`` cannot bind, integers too large for anything, answered in saynad's own
words (through ``saynad check`` as a subprocess, the way an operator meets them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from saynad.config import load_config_text
from saynad.errors import ConfigError


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "saynad.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "saynad", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config(http: str = '"127.0.0.1:9464"', restarts: str = "5") -> str:
    return (
        "sayna: {emulator: {}}\n"
        f"http: {{listen: {http}}}\n"
        f"defaults: {{intensity: {{max_restarts: {restarts}}}}}\n"
        "templates: {t: {audio: false}}\n"
        "sessions: [{name: s, template: t}]\n"
    )


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("999.1.1.1:9464", "'999.1.1.1' is not an IPv4 address"),
        ("1.2.3:9464", "'1.2.3' is not an IPv4 address"),
        ("a..b:9464", "'a..b' is not a host name"),
    ],
)
def test_check_refuses_a_listen_address_run_could_not_bind(
    tmp_path: Path, listen: str, problem: str
) -> None:
    result = check(tmp_path, config(http=f'"{listen}"'))
    assert result.returncode == 1
    assert f"http.listen: {problem}" in result.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("9" * 5000, "the integer has 5000 digits; saynad takes integers of at most 19 digits"),
        ("9" * 23, "the integer has 23 digits; saynad takes integers of at most 19 digits"),
        ("9223372036854775808", "the integer 9223372036854775808 is too large"),
    ],
)
def test_huge_integers_are_refused_in_saynads_words(
    tmp_path: Path, value: str, problem: str
) -> None:
    result = check(tmp_path, config(restarts=value))
    assert result.returncode == 1
    assert f"defaults.intensity.max_restarts: {problem}" in result.stderr
    assert "sys.set_int_max_str_digits" not in result.stderr


def test_ordinary_values_still_load() -> None:
    loaded = load_config_text(config(http='"localhost:9464"', restarts="1_000"), env={})
    assert loaded.defaults.intensity.max_restarts == 1000
    with pytest.raises(ConfigError):
        load_config_text(config(http='"0.0.0.256:1"'), env={})

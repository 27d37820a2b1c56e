"""Every shipped example configuration loads, and the broken-file corpus fails as expected.

The corpus lives in ``tests/corpus/configs/``. Each file starts with comment lines:
``# expect: LINE: PATH: MESSAGE`` (one per problem the file must produce; the problem
must start with ``FILE:LINE: PATH: MESSAGE``) and optionally ``# env: NAME=value`` (the
environment the file is loaded with; ``{here}`` is the corpus directory).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from saynad.app import emulator_options
from saynad.config import Config, load_config, summarize
from saynad.errors import ConfigError
from saynad.shipped import DEMO_CONFIG, example_file, shipped_path
from tests.deploy._files import loadable_examples

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = ROOT / "tests" / "corpus" / "configs"

EXAMPLES = {name: shipped_path(example_file(name)) for name in loadable_examples()}
CORPUS_FILES = sorted(CORPUS_DIR.glob("*.yaml"))

# Every ${credential:…} of the examples (the unit loads the same names, see
# tests/deploy/test_credentials.py); no example reads its secrets from ${env:…}.
EXAMPLE_CREDENTIALS = {
    "sayna-api-key": "sayna-credential-value",
    "control-token": "control-token-value",
    "sip-webhook-secret": "sip-webhook-secret-0123456789",
    "elevenlabs-api-key": "elevenlabs-credential-value",
    "openai-api-key": "sk-test-openai-credential",
    "transcripts-token": "Bearer transcripts-token-value",
    "agent-token": "Bearer agent-test-token",
    "api-campaigns": "api-campaigns-token-0123456789",
    "api-operator": "api-operator-token-0123456789",
    "api-dashboard": "api-dashboard-token-0123456789",
}


def test_the_package_ships_the_demo_and_the_examples() -> None:
    assert {"call-center", "demo", "livekit-phone-agent", "websocket-only"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_loads(name: str, tmp_path: Path) -> None:
    path = EXAMPLES[name]
    for credential, value in EXAMPLE_CREDENTIALS.items():
        (tmp_path / credential).write_text(value + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    config = load_config(path, env=env)
    assert isinstance(config, Config)
    assert config.sessions, "every shipped configuration runs at least one session"
    text = summarize(config) + repr(config)
    for secret in EXAMPLE_CREDENTIALS.values():
        assert secret not in text
    for spec in config.sessions:
        frame = spec.config_frame()  # every spec converts into the wire types
        assert frame.audio == spec.audio


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_an_example_copied_anywhere_still_loads(name: str, tmp_path: Path) -> None:
    # Shipped audio is named builtin:NAME, not by a path relative to the package.
    copy = tmp_path / "elsewhere" / "saynad.yaml"
    copy.parent.mkdir()
    copy.write_bytes(EXAMPLES[name].read_bytes())
    for credential, value in EXAMPLE_CREDENTIALS.items():
        (tmp_path / credential).write_text(value + "\n")
    load_config(copy, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_builtin_names_a_shipped_file_and_an_unknown_one_is_a_located_problem(
    tmp_path: Path,
) -> None:
    text = EXAMPLES["demo"].read_text()
    assert "builtin:demo-caller.wav" in text
    broken = tmp_path / "saynad.yaml"
    broken.write_text(text.replace("builtin:demo-caller.wav", "builtin:no-such.wav", 1))
    with pytest.raises(ConfigError) as info:
        load_config(broken, env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{broken}:")
    assert "behaviours.audio.source.path: file builtin:no-such.wav does not exist" in problem


def test_default_config_is_the_embedded_demo() -> None:
    config = load_config(shipped_path(DEMO_CONFIG), env={})
    assert config.sayna.embedded
    assert [spec.name for spec in config.sessions] == ["lobby", "reception", "kiosk"]
    for spec in config.sessions:
        behaviours = spec.behaviours
        assert behaviours.greeting is not None
        assert behaviours.agent is not None
        assert behaviours.audio is not None
        assert behaviours.audio.source is not None
        assert Path(behaviours.audio.source.path).is_file()
        assert behaviours.transcripts
    options = emulator_options(config.sayna)
    assert options.script[0] == "hello, is anyone there?"
    assert not options.auth_required


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS_FILES) >= 22


def _header(path: Path) -> tuple[list[str], dict[str, str]]:
    expects: list[str] = []
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# expect: "):
            expects.append(line.removeprefix("# expect: "))
        elif line.startswith("# env: "):
            name, _, value = line.removeprefix("# env: ").partition("=")
            env[name] = value.replace("{here}", str(CORPUS_DIR))
    return expects, env


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_file_fails_with_its_expected_problems(path: Path) -> None:
    expects, env = _header(path)
    assert expects, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env)
    problems = info.value.problems
    for expect in expects:
        wanted = f"{path}:{expect}"
        assert any(problem.startswith(wanted) for problem in problems), (
            f"no problem starts with {wanted!r}; got:\n" + "\n".join(problems)
        )
    # Exactly the expected problems: a mistake must not cascade into noise.
    assert len(problems) == len(expects), "\n".join(problems)

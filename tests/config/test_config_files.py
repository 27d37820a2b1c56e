"""Every YAML file under ``config/`` loads, and the broken-file corpus fails as expected.

The corpus lives in ``tests/corpus/configs/``. Each file starts with comment lines:
``# expect: LINE: PATH: MESSAGE`` (one per problem the file must produce; the problem
must start with ``FILE:LINE: PATH: MESSAGE``) and optionally ``# env: NAME=value`` (the
environment the file is loaded with; ``{here}`` is the corpus directory).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from saynad.config import Config, load_config, summarize
from saynad.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
CORPUS_DIR = ROOT / "tests" / "corpus" / "configs"

CONFIG_FILES = sorted(CONFIG_DIR.rglob("*.yaml"))
CORPUS_FILES = sorted(CORPUS_DIR.glob("*.yaml"))

# What the examples need from their environment: every ${env:…} and ${credential:…}.
EXAMPLE_ENV = {
    "OPENAI_API_KEY": "sk-test-openai",
    "SAYNA_API_KEY": "sayna-test-key",
    "AGENT_TOKEN": "Bearer agent-test-token",
}
EXAMPLE_CREDENTIALS = {
    "sayna-api-key": "sayna-credential-value",
    "control-token": "control-token-value",
    "sip-webhook-secret": "sip-webhook-secret-0123456789",
    "elevenlabs-api-key": "elevenlabs-credential-value",
    "transcripts-token": "Bearer transcripts-token-value",
}


def test_config_directory_has_the_default_and_examples() -> None:
    names = {path.relative_to(CONFIG_DIR).as_posix() for path in CONFIG_FILES}
    assert {
        "saynad.yaml",
        "examples/livekit-phone-agent.yaml",
        "examples/websocket-only.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_every_config_file_loads(path: Path, tmp_path: Path) -> None:
    for name, value in EXAMPLE_CREDENTIALS.items():
        (tmp_path / name).write_text(value + "\n")
    env = {**EXAMPLE_ENV, "CREDENTIALS_DIRECTORY": str(tmp_path)}
    config = load_config(path, env=env)
    assert isinstance(config, Config)
    assert config.sessions, "every shipped configuration runs at least one session"
    text = summarize(config) + repr(config)
    for secret in [*EXAMPLE_ENV.values(), *EXAMPLE_CREDENTIALS.values()]:
        assert secret not in text
    for spec in config.sessions:
        frame = spec.config_frame()  # every spec converts into the wire types
        assert frame.audio == spec.audio


def test_default_config_is_the_embedded_demo() -> None:
    config = load_config(CONFIG_DIR / "saynad.yaml", env={})
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
    options = config.sayna.emulator_options()
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

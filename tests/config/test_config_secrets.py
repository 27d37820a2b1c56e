"""Secret references: ``${env:…}``, ``${file:…}``, ``${credential:…}``, and redaction."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from saynad.config import Config, HttpSinkSettings, Secret, load_config_text, summarize
from saynad.errors import ConfigError

SECRET = "s3cr3t-value-that-must-never-print"


def load(text: str, **kwargs: Any) -> Config:
    return load_config_text(textwrap.dedent(text), source_name="test.yaml", **kwargs)


def problems(text: str, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text, **kwargs)
    return info.value.problems


SECRETS_DOC = """\
sayna:
  url: https://sayna.example.com
  api_key: ${env:SAYNA_API_KEY}
http:
  control_token: ${file:FILE}
inbound:
  sip_webhook:
    secrets: ["${credential:sip-secret}"]
    template: calls
templates:
  calls:
    audio: false
    livekit: {}
    behaviours:
      transcripts:
        - kind: http
          url: https://crm.example.com/hook
          headers:
            Authorization: ${env:HOOK_TOKEN}
            Content-Type: application/json
"""


def test_all_three_reference_kinds_resolve(tmp_path: Path) -> None:
    token_file = tmp_path / "control-token"
    token_file.write_text("control-token-value\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sip-secret").write_text("sip-secret-0123456789abcdef")
    config = load(
        SECRETS_DOC.replace("FILE", str(token_file)),
        env={"SAYNA_API_KEY": SECRET, "HOOK_TOKEN": "Bearer hook"},
        credentials_dir=creds,
    )
    assert config.sayna.api_key == Secret(SECRET)
    assert config.sayna.api_key is not None
    assert config.sayna.api_key.reveal() == SECRET
    assert config.http.control_token is not None
    # One trailing newline (the one `echo` writes) is not part of the secret.
    assert config.http.control_token.reveal() == "control-token-value"
    hook = config.inbound.sip_webhook
    assert hook is not None
    assert [s.reveal() for s in hook.secrets] == ["sip-secret-0123456789abcdef"]
    sink = config.templates["calls"].behaviours.transcripts[0]
    assert isinstance(sink, HttpSinkSettings)
    headers = {name: value.reveal() for name, value in sink.headers.items()}
    assert headers == {"Authorization": "Bearer hook", "Content-Type": "application/json"}


def test_secrets_never_appear_in_repr_str_or_summary(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "-file")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sip-secret").write_text(SECRET + "-credential")
    config = load(
        SECRETS_DOC.replace("FILE", str(token_file)),
        env={"SAYNA_API_KEY": SECRET, "HOOK_TOKEN": SECRET + "-header"},
        credentials_dir=creds,
    )
    for text in (repr(config), str(config), summarize(config), repr(config.templates)):
        assert SECRET not in text
    assert "***" in repr(config)


def test_secret_type_redacts_and_compares_by_value() -> None:
    secret = Secret(SECRET)
    assert repr(secret) == "***"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    assert secret != SECRET
    assert hash(secret) == hash(Secret(SECRET))


def test_file_reference_strips_exactly_one_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"line one\nline two\n\n")
    config = load(f"sayna:\n  url: http://h\n  api_key: ${{file:{path}}}\n")
    assert config.sayna.api_key is not None
    assert config.sayna.api_key.reveal() == "line one\nline two\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_unusable_secret_files_are_problems(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    [problem] = problems(f"sayna:\n  url: http://h\n  api_key: ${{file:{path}}}\n")
    assert problem.startswith(f"test.yaml:3: sayna.api_key: ${{file:{path}}}: file {path}")
    assert problem.endswith(message)


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    [problem] = problems(f"sayna:\n  url: http://h\n  api_key: ${{file:{tmp_path}}}\n")
    assert "is a directory" in problem


def test_credentials_come_from_the_env_mapping_in_load_config(tmp_path: Path) -> None:
    from saynad.config import load_config

    (tmp_path / "api").write_text("from-credentials")
    path = tmp_path / "saynad.yaml"
    path.write_text("sayna:\n  url: http://h\n  api_key: ${credential:api}\n")
    config = load_config(path, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.sayna.api_key == Secret("from-credentials")
    with pytest.raises(ConfigError, match=r"CREDENTIALS_DIRECTORY is not set"):
        load_config(path, env={})


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", ""])
def test_credential_names_cannot_escape_the_directory(tmp_path: Path, name: str) -> None:
    [problem] = problems(
        f"sayna:\n  url: http://h\n  api_key: ${{credential:{name}}}\n", credentials_dir=tmp_path
    )
    assert "is not a credential name" in problem


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${env:1BAD}", "is not an environment variable name"),
        ("${env:}", "is not an environment variable name"),
        ("${HOME}", "unknown reference ${HOME}"),
        ("${vault:x}", "unknown reference ${vault:x}"),
        ("prefix-${env:X}", "must be the whole value"),
        ("${env:X}-suffix", "must be the whole value"),
    ],
)
def test_malformed_references(value: str, message: str) -> None:
    [problem] = problems(f'sayna:\n  url: http://h\n  api_key: "{value}"\n', env={"X": "x"})
    assert problem.startswith("test.yaml:3: sayna.api_key: ")
    assert message in problem


def test_secret_fields_refuse_literals_and_non_strings() -> None:
    found = problems(
        """\
        sayna:
          url: http://h
          api_key: literal-key
        http:
          control_token: 12345
        """
    )
    assert found == [
        "test.yaml:3: sayna.api_key: secrets must not be written in the file: use "
        "${env:NAME}, ${file:/absolute/path} or ${credential:NAME}",
        "test.yaml:5: http.control_token: expected a secret reference such as ${env:NAME}, "
        "got a number",
    ]
    assert not any("literal-key" in p or "12345" in p for p in found)


def test_references_in_ordinary_fields_become_plain_strings() -> None:
    config = load("sayna:\n  url: ${env:SAYNA_URL}\n", env={"SAYNA_URL": "https://s.example.com"})
    assert config.sayna.url == "https://s.example.com"
    assert type(config.sayna.url) is str


def test_problems_show_references_not_resolved_values() -> None:
    found = problems(
        """\
        sayna:
          url: ${env:SAYNA_URL}
        defaults:
          ready_timeout_s: ${env:TIMEOUT}
        """,
        env={"SAYNA_URL": f"ftp://{SECRET}", "TIMEOUT": SECRET},
    )
    assert len(found) == 2
    assert "${env:SAYNA_URL}" in found[0]
    assert "a string (from ${env:TIMEOUT})" in found[1]
    assert not any(SECRET in p for p in found)


def test_every_unresolvable_secret_is_reported_at_once() -> None:
    found = problems(
        """\
        sayna:
          url: http://h
          api_key: ${env:MISSING_ONE}
        http:
          control_token: ${credential:token}
        templates:
          t:
            audio: false
            behaviours:
              agent:
                kind: openai
                model: m
                api_key: ${file:/nonexistent/openai}
        """
    )
    assert [p.split(":")[1] for p in found] == ["3", "5", "13"]

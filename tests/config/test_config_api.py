"""The configuration of the call control API: tokens, admission, outbound templates."""

from __future__ import annotations

import pytest

from saynad.config import load_config_text
from saynad.errors import ConfigError

TEMPLATES = """\
templates:
  caller:
    audio: false
    livekit: {}
    outbound: true
  web:
    audio: false
    livekit: {}
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env=env or {})
    return caught.value.problems


def test_an_outbound_template_needs_a_livekit_room() -> None:
    found = problems("templates:\n  dialler:\n    audio: false\n    outbound: true\n")
    assert len(found) == 1
    assert "templates.dialler.outbound" in found[0]
    assert "livekit" in found[0]


def test_tokens_scopes_and_outbound_settings_load() -> None:
    config = load_config_text(
        "http:\n"
        "  tokens:\n"
        "    - {name: ops, token: '${env:OPS}', scopes: [read, calls, control]}\n"
        "    - {name: dash, token: '${env:DASH}', scopes: [read]}\n"
        "  control_token: '${env:LEGACY}'\n"
        "admission: {max_sessions: 3, idempotency_ttl_s: 60}\n"
        "outbound: {from_phone_number: '+15550001000', answer_timeout_s: 20}\n" + TEMPLATES,
        env={
            "OPS": "ops-token-0123456789",
            "DASH": "dash-token-0123456789",
            "LEGACY": "legacy-token-0123456789",
        },
    )
    tokens = {t.name: t.scopes for t in config.http.api_tokens()}
    assert tokens == {
        "ops": ("read", "calls", "control"),
        "dash": ("read",),
        "control_token": ("control",),
    }
    assert config.http.reads_need_token
    assert config.max_sessions == 3
    assert config.outbound.from_phone_number == "+15550001000"
    assert config.templates["caller"].outbound
    assert not config.templates["web"].outbound


def test_token_mistakes_are_reported() -> None:
    env = {"SHORT": "short", "SAME": "the-same-token-0123456789", "SPACE": "has a space 0123456789"}
    found = problems(
        "http:\n"
        "  tokens:\n"
        "    - {name: a, token: '${env:SHORT}', scopes: [read]}\n"
        "    - {name: b, token: '${env:SAME}', scopes: [read, read]}\n"
        "    - {name: c, token: '${env:SAME}', scopes: []}\n"
        "    - {name: d, token: '${env:SPACE}', scopes: [admin]}\n",
        env,
    )
    text = "\n".join(found)
    assert "http.tokens[0].token" in text  # too short
    assert "http.tokens[1].scopes" in text  # listed twice
    assert "http.tokens[2].scopes" in text  # none
    assert "http.tokens[3].token" in text  # a space
    assert "http.tokens[3].scopes" in text  # unknown scope
    # Across the entries (once each entry is valid): names and tokens are unique.
    found = problems(
        "http:\n"
        "  tokens:\n"
        "    - {name: b, token: '${env:SAME}', scopes: [read]}\n"
        "    - {name: b, token: '${env:SAME}', scopes: [calls]}\n"
        "  control_token: '${env:SAME}'\n",
        env,
    )
    text = "\n".join(found)
    assert "http.tokens[1].name" in text
    assert "http.tokens[1].token" in text
    assert "http.control_token" in text
    assert not any("the-same-token" in line for line in found)  # secrets never shown


def test_max_sessions_is_set_in_one_place() -> None:
    found = problems(
        "admission: {max_sessions: 4}\n"
        "inbound:\n"
        "  sip_webhook:\n"
        "    template: caller\n"
        "    secrets: ['${env:S}']\n"
        "    max_sessions: 5\n" + TEMPLATES,
        {"S": "a-webhook-secret-0123456789"},
    )
    assert len(found) == 1
    assert "inbound.sip_webhook.max_sessions" in found[0]


@pytest.mark.parametrize("number", ["555-1234", "+1 555", "", "++1555", "+"])
def test_the_outbound_caller_id_is_a_number_sayna_accepts(number: str) -> None:
    found = problems(f"outbound: {{from_phone_number: '{number}'}}\n" + TEMPLATES)
    assert len(found) == 1
    assert "outbound.from_phone_number" in found[0]

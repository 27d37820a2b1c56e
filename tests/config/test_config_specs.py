"""SessionSpec equality: what a reload compares to restart only the changed sessions
(the supervisor plans it on the sessions' child specs, built from the SessionSpecs)."""

from __future__ import annotations

import textwrap

import msgspec
import pytest

from saynad.actors.plan import child_for
from saynad.actors.supervisor import ReloadPlan, plan_reload
from saynad.config import Config, SessionSpec, load_config_text

BASE = """\
defaults:
  ready_timeout_s: 30
templates:
  voice:
    stt: {provider: deepgram, language: en-US, sample_rate: 16000, channels: 1,
          punctuation: true, encoding: linear16, model: nova-3}
    tts: {provider: deepgram, model: aura-2, voice_id: aura-asteria-en,
          auth: {api_key: "${env:TTS_KEY}"}}
    behaviours:
      greeting: {text: Hello}
      agent: {kind: echo}
  room:
    audio: false
    livekit: {room_name: "room-{session}"}
sessions:
  - {name: a, template: voice}
  - {name: b, template: voice, behaviours: {greeting: {text: Hi from b}}}
  - {name: c, template: room}
"""


def diff_sessions(before: tuple[SessionSpec, ...], after: tuple[SessionSpec, ...]) -> ReloadPlan:
    """What a reload from ``before`` to ``after`` does, as the supervisor plans it."""
    return plan_reload(
        {spec.name: child_for(spec) for spec in before},
        {spec.name: child_for(spec) for spec in after},
    )


def load(text: str = BASE, **env: str) -> Config:
    return load_config_text(
        textwrap.dedent(text), source_name="test.yaml", env={"TTS_KEY": "key-1", **env}
    )


def test_loading_the_same_file_twice_gives_equal_hashable_specs() -> None:
    first, second = load(), load()
    assert first.sessions == second.sessions
    assert [hash(s) for s in first.sessions] == [hash(s) for s in second.sessions]
    assert first == second
    diff = diff_sessions(first.sessions, second.sessions)
    assert (diff.added, diff.removed, diff.changed) == ((), (), ())
    assert diff.unchanged == ("a", "b", "c")


def test_specs_are_frozen() -> None:
    spec = load().sessions[0]
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_changing_one_sessions_override_changes_only_that_spec() -> None:
    before = load()
    after = load(BASE.replace("Hi from b", "Hello from b"))
    diff = diff_sessions(before.sessions, after.sessions)
    assert list(diff.changed) == ["b"]
    assert diff.unchanged == ("a", "c")


def test_changing_a_template_changes_every_session_using_it() -> None:
    after = load(BASE.replace("aura-asteria-en", "aura-luna-en"))
    diff = diff_sessions(load().sessions, after.sessions)
    assert list(diff.changed) == ["a", "b"]
    assert diff.unchanged == ("c",)


def test_changing_defaults_changes_every_session() -> None:
    after = load(BASE.replace("ready_timeout_s: 30", "ready_timeout_s: 31"))
    diff = diff_sessions(load().sessions, after.sessions)
    assert list(diff.changed) == ["a", "b", "c"]


def test_a_rotated_secret_changes_the_spec_without_showing_it() -> None:
    before, after = load(), load(TTS_KEY="key-2")
    diff = diff_sessions(before.sessions, after.sessions)
    assert list(diff.changed) == ["a", "b"]
    assert "key-2" not in repr(after.sessions)


def test_added_removed_and_renamed_sessions() -> None:
    after = load(
        BASE.replace("{name: a, template: voice}", "{name: a2, template: voice}")
        + "  - {name: d, template: room}\n"
    )
    diff = diff_sessions(load().sessions, after.sessions)
    assert list(diff.added) == ["a2", "d"]
    assert diff.removed == ("a",)
    assert diff.changed == ()
    assert diff.unchanged == ("b", "c")


def test_disabling_a_session_removes_it_from_the_running_set() -> None:
    after = load(
        BASE.replace("{name: c, template: room}", "{name: c, template: room, enabled: false}")
    )
    diff = diff_sessions(load().sessions, after.sessions)
    assert diff.removed == ("c",)
    assert after.disabled_sessions == ("c",)


def test_a_spec_is_the_same_value_as_its_msgspec_round_trip() -> None:
    # Specs are plain data: every field is a frozen Struct, a tuple, a scalar, a
    # FrozenMap or a Secret, so copying field by field yields an equal value.
    spec = load().sessions[1]
    copy = msgspec.structs.replace(spec)
    assert copy == spec
    assert copy is not spec
    assert isinstance(copy, SessionSpec)


def test_config_lookup_helpers() -> None:
    config = load()
    assert config.session("b").name == "b"
    with pytest.raises(KeyError):
        config.session("nope")
    with pytest.raises(ValueError, match="sip_webhook"):
        config.inbound_session("x", room_name="r")

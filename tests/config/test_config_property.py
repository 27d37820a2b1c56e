"""Property: loading any document returns a Config or raises a located ConfigError.

Documents are built from the schema's own keys, a little junk and values chosen to hit
every check (bad durations, references, placeholders, URLs…), dumped as YAML and
sometimes mutated as text so the parser's errors are exercised too.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saynad.config import (
    Config,
    Defaults,
    HttpSettings,
    InboundSettings,
    LoggingSettings,
    SaynaSettings,
    Secret,
    Template,
    _SessionEntry,
    load_config_text,
)
from saynad.errors import ConfigError

SECRET = "s3cr3t-env-value-0123456789"
DATA_WAV = str(Path(__file__).resolve().parents[2] / "saynad" / "data" / "demo-caller.wav")
ENV = {"SET": SECRET, "EMPTY": ""}

SECTION_KEYS = ["sayna", "http", "logging", "defaults", "inbound", "templates", "sessions"]
KEYS = [
    *SECTION_KEYS,
    "url",
    "api_key",
    "emulator",
    "script",
    "numbered",
    "utterance_ms",
    "listen",
    "control_token",
    "level",
    "format",
    "restart",
    "backoff",
    "initial_s",
    "max_s",
    "multiplier",
    "intensity",
    "max_restarts",
    "window_s",
    "ready_timeout_s",
    "drain_timeout_s",
    "keepalive",
    "interval_s",
    "sip_webhook",
    "path",
    "secrets",
    "template",
    "max_sessions",
    "max_duration_s",
    "stt",
    "tts",
    "audio",
    "livekit",
    "loading_audio",
    "stream_id",
    "behaviours",
    "provider",
    "language",
    "sample_rate",
    "channels",
    "punctuation",
    "encoding",
    "model",
    "voice_id",
    "auth",
    "region",
    "credentials",
    "pronunciations",
    "word",
    "pronunciation",
    "room_name",
    "enable_recording",
    "listen_participants",
    "greeting",
    "text",
    "when",
    "agent",
    "kind",
    "function",
    "base_url",
    "headers",
    "transcripts",
    "fsync",
    "source",
    "sink",
    "dir",
    "loop",
    "end",
    "goodbye_text",
    "name",
    "enabled",
    "voice",
    "lobby",
    "<<",
    "junk",
    "",
]
STRINGS = [
    "",
    "x",
    "voice",
    "lobby",
    "deepgram",
    "azure",
    "google",
    "en-US",
    "linear16",
    "nova-3",
    "10s",
    "1e3",
    "${env:SET}",
    "${env:UNSET}",
    "${env:EMPTY}",
    "${file:/nonexistent/key}",
    "${credential:key}",
    "Bearer ${env:SET}",
    "${nope}",
    "${env:}",
    "127.0.0.1:9464",
    "[::1]:1",
    "::1:2",
    "localhost",
    "host:0",
    "http://h",
    "https://h:99999",
    "ftp://h",
    "ws://h/ws",
    "not a url",
    "http://[::1",
    "{session}",
    "{bad}",
    "{",
    "a/b",
    "..",
    "x" * 200,
    "json:dumps",
    "asyncio:sleep",
    "saynad_no_such_module:f",
    "os:",
    "echo",
    "openai",
    "http",
    "python",
    "jsonl",
    "permanent",
    "temporary",
    "first_participant",
    "wav",
    "pcm",
    "interval",
    "/nonexistent/file.wav",
    "saynad/data/demo-caller.wav",
    "\x00",
    "é",
    "2001-01-01",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-1, 0, 1, 2, 8000, 16000, 65536, 70000, 2**70]),
    st.sampled_from([-0.5, 0.0, 0.5, 1e308, float("inf"), float("nan")]),
    st.sampled_from(STRINGS),
)
KEY = st.sampled_from(KEYS)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEY, children, max_size=6),
    max_leaves=40,
)


def _shaped(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped like the schema type ``tp`` (so deep paths are reached), with a
    chance at every node of something else entirely."""
    exact = _exact(tp, depth)
    # Mostly the right shape; one node in six is replaced by an arbitrary scalar.
    return st.one_of(exact, exact, exact, exact, exact, SCALARS) if depth else exact


def _exact(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        inner, *_ = get_args(tp)
        if inner is Secret:
            return st.sampled_from(["${env:SET}", "${env:UNSET}", "literal", "${file:/nope}"])
        return _exact(inner, depth)
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        options = [_shaped(m, depth + 1) for m in members]
        return (
            st.one_of(st.none(), *options)
            if len(members) < len(get_args(tp))
            else st.one_of(*options)
        )
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin is tuple:
        return st.lists(_shaped(get_args(tp)[0], depth + 1), max_size=3)
    if origin in (Mapping, dict):
        return st.dictionaries(
            st.sampled_from(["X-A", "b"]), _shaped(get_args(tp)[1], depth + 1), max_size=2
        )
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if depth > 6:
            return st.just({})
        fields = {f.name: _shaped(f.type, depth + 1) for f in msgspec.structs.fields(tp)}
        if tp.__struct_config__.tag_field:
            fields[tp.__struct_config__.tag_field] = st.just(tp.__struct_config__.tag)
            required = {tp.__struct_config__.tag_field: fields.pop(tp.__struct_config__.tag_field)}
        else:
            required = {}
        return st.fixed_dictionaries(required, optional=fields)
    if tp is Secret:
        return _exact(Annotated[Secret, None], depth)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.sampled_from([1, 2, 16000, 24000, 0, -1])
    if tp is float:
        return st.sampled_from([0.5, 1.0, 30.0, 0.0, -1.0])
    return st.sampled_from([*STRINGS, DATA_WAV, "voice", "lobby"])


NAMES = st.sampled_from(["voice", "lobby", "a.b", "bad name"])
SHAPED_DOCUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "sayna": _shaped(SaynaSettings),
        "http": _shaped(HttpSettings),
        "logging": _shaped(LoggingSettings),
        "defaults": _shaped(Defaults),
        "inbound": _shaped(InboundSettings),
        "templates": st.dictionaries(NAMES, _shaped(Template), max_size=3),
        "sessions": st.lists(_shaped(_SessionEntry), max_size=4),
    },
)
DOCUMENTS = st.one_of(
    SHAPED_DOCUMENTS,
    SHAPED_DOCUMENTS,
    st.dictionaries(st.sampled_from(SECTION_KEYS), VALUES, max_size=7),
    VALUES,
)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """A YAML text: a dumped document, sometimes damaged line by line."""
    text = yaml.safe_dump(draw(DOCUMENTS), allow_unicode=True, sort_keys=False)
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["duplicate", "delete", "indent", "dedent", "inject"]))
        if action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "delete":
            del lines[index]
        elif action == "indent":
            lines[index] = "  " + lines[index]
        elif action == "dedent":
            lines[index] = lines[index][1:]
        else:
            lines[index] += draw(
                st.sampled_from([": x", " &a", " *a", " !!set", " [", "\t", " # c", " !tag"])
            )
    return "\n".join(lines) + "\n"


LOCATED = re.compile(r"^doc\.yaml:\d+: \S")


@settings(
    derandomize=True,
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(texts())
def test_loading_returns_a_config_or_a_located_config_error(text: str) -> None:
    problems: list[str] | None = None
    try:
        config = load_config_text(text, source_name="doc.yaml", env=ENV, credentials_dir=None)
    except ConfigError as exc:
        problems = exc.problems
    if problems is None:
        assert isinstance(config, Config)
        assert SECRET not in repr(config.sayna) + repr(config.http) + repr(config.inbound)
        return
    assert problems, "a ConfigError always lists its problems"
    for problem in problems:
        assert LOCATED.match(problem), problem
        assert SECRET not in problem

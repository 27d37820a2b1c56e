"""Properties: every decoder of peer input raises its documented error and nothing else.

- :func:`saynad.protocol.messages.decode_server_event` (what a Sayna server sends) raises
  only :class:`~saynad.errors.FrameDecodeError`, with a documented ``kind``;
- :func:`saynad.emulator.wire.decode_client_frame` (what the emulator accepts) likewise;
- :meth:`saynad.client.session.Session._decode` never raises: every frame is either an
  event or counted in exactly one of ``malformed``/``unknown_types``.

Inputs: arbitrary bytes, arbitrary text (lone surrogates included), JSON documents built
from the frames' own tags and field names plus junk (NaN, huge integers, wrong types),
and deep nesting well past msgspec's recursion limit. Derandomized, so CI runs the same
examples every time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from saynad.client import session as session_module
from saynad.client.session import Session
from saynad.emulator import wire
from saynad.errors import FrameDecodeError
from saynad.protocol import messages
from saynad.protocol.messages import SERVER_EVENT_TYPES, TTSAudio, decode_server_event

T = TypeVar("T")

_HUGE = "\x00huge\x00"
_HUGE_PLACEHOLDER = re.compile(r'"\\u0000huge\\u0000(\d+)\\u0000huge\\u0000"')

KINDS = {"not_json", "not_object", "unknown_type", "invalid", "too_large"}
CLIENT_TYPES = sorted(
    cls.__struct_config__.tag  # type: ignore[attr-defined]
    for cls in wire.IncomingFrame.__args__  # type: ignore[attr-defined]
)
SERVER_TYPES = sorted(SERVER_EVENT_TYPES)

# Field names of every frame and nested object, so documents often get past the tag.
FIELD_NAMES = sorted(
    {
        name
        for module_types in (
            [getattr(messages, n) for n in messages.__all__],
            [getattr(wire, n) for n in wire.__all__],
        )
        for cls in module_types
        if isinstance(cls, type) and issubclass(cls, msgspec.Struct)
        for name in cls.__struct_fields__
    }
)

SETTINGS = settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- strategies

# Every code point, lone surrogates included (st.text() leaves them out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=24)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    # Integers of thousands of digits (around Python's and msgspec's 4300-digit limit),
    # spliced into the text by _dumps: Python cannot even build them as ints.
    st.integers(min_value=4290, max_value=4310).map(lambda n: f"{_HUGE}{n}{_HUGE}"),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), any_text)
# Two levels of containers, drawn flat: st.recursive costs several times more per example,
# and deeper nesting is what deep_frames() is for.
json_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(keys, scalars, max_size=3),
    st.lists(st.dictionaries(keys, scalars, max_size=2), max_size=2),
    st.dictionaries(keys, st.lists(scalars, max_size=2), max_size=2),
)
type_tags = st.one_of(
    st.sampled_from(SERVER_TYPES + CLIENT_TYPES),
    any_text,
    st.sampled_from(["", "READY", "stt_result ", "error\x00"]),
    scalars,  # a non-string tag
)


@st.composite
def tagged_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object with a ``type`` from the known sets (or junk) and plausible fields."""
    doc = draw(st.dictionaries(keys, json_values, max_size=4))
    if draw(st.booleans()) or "type" not in doc:
        doc["type"] = draw(type_tags)
    return doc


def _dumps(value: Any) -> str:
    # json.dumps writes NaN/Infinity literals (not JSON) and escapes lone surrogates as
    # "\ud800" (JSON text msgspec refuses): both are things a hostile peer can send.
    text = json.dumps(value, allow_nan=True, ensure_ascii=False)
    return _HUGE_PLACEHOLDER.sub(lambda m: "9" * int(m.group(1)), text)


@st.composite
def deep_frames(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=1, max_value=20_000))
    opener, closer = draw(
        st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"type":"zzz","x":[', "]}")])
    )
    prefix = draw(st.sampled_from(["", '{"type":"stt_result","x":', '{"type":"ready","x":']))
    suffix = "}" if prefix else ""
    inner = draw(st.sampled_from(["1", '"x"', ""]))
    return prefix + opener * depth + inner + closer * depth + suffix


# Always run, whatever the random examples turn out to be.
HOSTILE = [
    "[" * 10_000 + "]" * 10_000,
    '{"type":"stt_result","x":' + "[" * 10_000 + "]" * 10_000 + "}",
    '{"type":"zzz","x":' + "[" * 10_000 + "]" * 10_000 + "}",
    '{"type":"stt_result","transcript":"x","is_final":true,"is_speech_final":true,'
    '"confidence":NaN}',
    '{"type":"tts_playback_complete","timestamp":' + "9" * 4301 + "}",
    '{"type":"zzz","x":' + "9" * 5000 + "}",
    '{"type":"stt_result","transcript":"\\ud800","is_final":true}',
    '{"type":"\ud800"}',  # a lone surrogate in a str: not encodable as UTF-8
    b'{"type":"error","message":"\xed\xa0\x80"}',  # the same, as CESU-8 bytes
    b'"\x80"',
    "",
]


def hostile_examples(test: Any) -> Any:
    for value in HOSTILE:
        test = example(value)(test)
    return test


frames = st.one_of(
    st.binary(max_size=200),
    any_text,
    tagged_documents().map(_dumps),
    tagged_documents().map(lambda d: _dumps(d).encode("utf-8", "surrogatepass")),
    json_values.map(_dumps),
    deep_frames(),
)

# --------------------------------------------------------------------------- server frames


def _outcome(decode: Callable[[Any], T], data: Any) -> T | FrameDecodeError:
    """The decoded value, or the FrameDecodeError; any other exception propagates."""
    try:
        return decode(data)
    except FrameDecodeError as exc:
        return exc


def _tag(frame: object) -> str:
    tag = type(frame).__struct_config__.tag  # type: ignore[attr-defined]
    assert isinstance(tag, str)
    return tag


@SETTINGS
@given(frames)
@hostile_examples
def test_decode_server_event_raises_only_frame_decode_errors(data: str | bytes) -> None:
    outcome = _outcome(decode_server_event, data)  # anything else propagates and fails
    if isinstance(outcome, FrameDecodeError):
        assert outcome.kind in KINDS
        assert isinstance(outcome.detail, str)
        assert outcome.frame_type is None or isinstance(outcome.frame_type, str)
    else:
        assert _tag(outcome) in SERVER_EVENT_TYPES


safe_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
safe_values = st.one_of(
    safe_scalars,
    st.lists(safe_scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), safe_scalars, max_size=3),
)


@SETTINGS
@given(
    st.text(max_size=100).filter(lambda t: t not in SERVER_EVENT_TYPES),
    st.dictionaries(st.sampled_from(FIELD_NAMES), safe_values, max_size=4),
)
def test_an_unknown_type_is_always_classified_as_such(tag: str, fields: dict[str, Any]) -> None:
    """Whatever else the frame holds, a readable unknown tag is ``unknown_type``, so the
    session counts it in ``unknown_types`` and not as malformed."""
    outcome = _outcome(decode_server_event, _dumps({**fields, "type": tag}))
    assert isinstance(outcome, FrameDecodeError), "an unknown type decoded"
    assert outcome.kind == "unknown_type"
    assert outcome.frame_type == tag[:64]


@SETTINGS
@given(
    st.sampled_from(SERVER_TYPES),
    st.dictionaries(st.sampled_from(FIELD_NAMES), safe_values, max_size=6),
)
def test_a_known_type_either_decodes_or_is_invalid(tag: str, fields: dict[str, Any]) -> None:
    outcome = _outcome(decode_server_event, _dumps({**fields, "type": tag}))
    if isinstance(outcome, FrameDecodeError):
        assert outcome.kind == "invalid"
        assert outcome.frame_type == tag
    else:
        assert _tag(outcome) == tag


# --------------------------------------------------------------------------- emulator


@SETTINGS
@given(frames)
@hostile_examples
def test_emulator_decode_client_frame_raises_only_frame_decode_errors(data: str | bytes) -> None:
    outcome = _outcome(wire.decode_client_frame, data)
    if isinstance(outcome, FrameDecodeError):
        assert outcome.kind in ("not_json", "invalid")
        # The emulator sends "Invalid message format: {detail}" back over the socket.
        assert isinstance(outcome.detail, str)
    else:
        assert _tag(outcome) in CLIENT_TYPES


# --------------------------------------------------------------------------- session


class _NoTransport:
    """Session._decode never touches the transport."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"_decode used the transport ({name})")


@SETTINGS
@given(st.lists(frames, min_size=1, max_size=3))
@example(HOSTILE)
@example(['{"type":"error","message":"caf\u00e9 \U0001f600"}'])  # 2- and 4-byte UTF-8
def test_session_decode_never_raises_and_counts_every_frame(batch: list[str | bytes]) -> None:
    session = Session(_NoTransport(), url="ws://127.0.0.1:1/ws")  # type: ignore[arg-type]
    delivered = 0
    with capture_logs() as logs:
        for raw in batch:
            event = session._decode(raw)
            if event is not None:
                delivered += 1
                if isinstance(raw, bytes):
                    assert event == TTSAudio(raw)
    stats = session.stats
    assert stats.frames_in == len(batch)
    assert delivered + stats.malformed + stats.unknown_types == len(batch)
    # Bytes as on the wire: a text frame counts its UTF-8 length, not its characters.
    assert stats.bytes_in == sum(
        len(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass"))
        for raw in batch
    )
    # One warning per bad frame, up to the burst limit (the rest are counted, not logged).
    assert len(logs) == min(stats.malformed + stats.unknown_types, session_module._LOG_BURST)
    assert all(entry["event"] == "ignored undecodable frame" for entry in logs)

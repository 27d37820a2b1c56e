"""What the emulated server accepts on its WebSocket: the server's serde structs, mirrored.

The Structs below decode client text frames the way the real server's serde structs do
(§3.1 of the protocol reference):

- ``Option`` fields accept ``null`` as "absent" (``T | None = None``);
- fields with a server default that are *not* ``Option`` (``enable_recording``,
  ``listen_participants``, ``pronunciations``) may be absent but reject ``null``;
- unknown keys are ignored everywhere, unit commands included;
- integers must be JSON integers within the Rust width (``u16``/``u32``/``u64``).

Decoding failures become serde_json-like texts (``missing field `text` at line 1 column
15``, ``unknown variant `foo`, expected one of …``); the session prefixes them with
``Invalid message format: ``. Duplicate keys, which serde rejects, are accepted here
(last one wins).

Also here: the ``loading_audio`` checks of §5.4 and Rust's ``f32`` ``Display``, both
pure functions.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from decimal import Decimal
from typing import Annotated, Any, Final

import msgspec

from saynad.errors import FrameDecodeError

__all__ = [
    "Clear",
    "Config",
    "IncomingFrame",
    "LiveKit",
    "LoadingAudio",
    "LoadingStart",
    "LoadingStop",
    "Pronunciation",
    "SendMessage",
    "SipTransfer",
    "Speak",
    "SttConfig",
    "TtsConfig",
    "TurnDetect",
    "UpdateConfig",
    "Vad",
    "decode_client_frame",
    "loading_audio_problem",
    "rust_f32_display",
]

U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF_FFFF)]
# msgspec bounds stop at int64; u64 values above 2**63-1 never occur in practice.
U64 = Annotated[int, msgspec.Meta(ge=0, le=0x7FFF_FFFF_FFFF_FFFF)]

# --------------------------------------------------------------------------- config objects


class SttConfig(msgspec.Struct, frozen=True):
    """``stt_config`` (§5.1): all seven non-auth fields required."""

    provider: str
    language: str
    sample_rate: U32
    channels: U16
    punctuation: bool
    encoding: str
    model: str
    auth: Any = None


class Pronunciation(msgspec.Struct, frozen=True):
    """One ``tts_config.pronunciations`` entry."""

    word: str
    pronunciation: str


class TtsConfig(msgspec.Struct, frozen=True):
    """``tts_config`` (§5.2): ``provider`` and ``model`` required."""

    provider: str
    model: str
    voice_id: str | None = None
    speaking_rate: float | None = None
    audio_format: str | None = None
    sample_rate: U32 | None = None
    connection_timeout: U64 | None = None
    request_timeout: U64 | None = None
    pronunciations: list[Pronunciation] = []
    auth: Any = None


class LiveKit(msgspec.Struct, frozen=True):
    """``livekit`` (§5.3)."""

    room_name: str
    enable_recording: bool = False
    sayna_participant_identity: str | None = None
    sayna_participant_name: str | None = None
    listen_participants: list[str] = []


class LoadingAudio(msgspec.Struct, frozen=True):
    """``loading_audio`` (§5.4)."""

    data: str
    format: str | None = None
    sample_rate: U32 | None = None
    channels: U16 | None = None
    volume: float | None = None


class Vad(msgspec.Struct, frozen=True):
    """``update_config.vad``."""

    silence_duration_ms: U64 | None = None


class TurnDetect(msgspec.Struct, frozen=True):
    """``update_config.turn_detect``."""

    threshold: float | None = None


# --------------------------------------------------------------------------- frames


class _Incoming(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of the client frames."""


class Config(_Incoming, frozen=True, tag="config"):
    """``config`` (§3.3)."""

    stream_id: str | None = None
    audio: bool | None = None
    stt_config: SttConfig | None = None
    tts_config: TtsConfig | None = None
    livekit: LiveKit | None = None
    loading_audio: LoadingAudio | None = None


class Speak(_Incoming, frozen=True, tag="speak"):
    """``speak`` (§3.4)."""

    text: str
    flush: bool | None = None
    allow_interruption: bool | None = None


class Clear(_Incoming, frozen=True, tag="clear"):
    """``clear`` (§3.5)."""


class SendMessage(_Incoming, frozen=True, tag="send_message"):
    """``send_message`` (§3.6)."""

    message: str
    role: str
    topic: str | None = None
    debug: Any = None


class SipTransfer(_Incoming, frozen=True, tag="sip_transfer"):
    """``sip_transfer`` (§3.7)."""

    transfer_to: str


class UpdateConfig(_Incoming, frozen=True, tag="update_config"):
    """``update_config`` (§3.8)."""

    vad: Vad | None = None
    turn_detect: TurnDetect | None = None


class LoadingStart(_Incoming, frozen=True, tag="loading_start"):
    """``loading_start`` (§3.9)."""


class LoadingStop(_Incoming, frozen=True, tag="loading_stop"):
    """``loading_stop`` (§3.9)."""


IncomingFrame = (
    Config | Speak | Clear | SendMessage | SipTransfer | UpdateConfig | LoadingStart | LoadingStop
)
"""Every JSON frame the server accepts."""

_VARIANTS: Final = (
    "config",
    "speak",
    "clear",
    "send_message",
    "sip_transfer",
    "update_config",
    "loading_start",
    "loading_stop",
)
_decoder: Final[msgspec.json.Decoder[IncomingFrame]] = msgspec.json.Decoder(IncomingFrame)


def decode_client_frame(text: str | bytes) -> IncomingFrame:
    """Decode one client text frame, or raise :class:`~saynad.errors.FrameDecodeError`
    (and nothing else) whose ``detail`` is the serde_json-like explanation."""
    try:
        return _decode_client_frame(text)
    # msgspec raises these outside its own hierarchy, from the decoder or while the
    # error text is built. serde_json stops at depth 128 with "recursion limit
    # exceeded"; msgspec goes deeper, but past its own limit says the same.
    except RecursionError as exc:
        raise FrameDecodeError("not_json", "recursion limit exceeded") from exc
    except UnicodeError as exc:
        # Only reachable from Python callers: the WebSocket layer has validated UTF-8.
        raise FrameDecodeError("not_json", f"invalid unicode: {exc}") from exc


def _decode_client_frame(text: str | bytes) -> IncomingFrame:
    try:
        return _decoder.decode(text)
    except msgspec.ValidationError as exc:
        raw = text.encode() if isinstance(text, str) else text
        raise FrameDecodeError("invalid", _serde_data_error(str(exc), raw)) from exc
    except msgspec.DecodeError as exc:
        raw = text.encode() if isinstance(text, str) else text
        raise FrameDecodeError("not_json", _serde_syntax_error(str(exc), raw)) from exc


# --------------------------------------------------------------------------- serde texts

_AT = re.compile(r"^(?P<core>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`$")
_EXPECTED_NO_GOT = re.compile(r"^Expected `(?P<want>[^`]*)`$")
_RANGE = re.compile(r"^Expected `int` [<>]= -?\d+$")
_INVALID_VALUE = re.compile(r"^Invalid value '(?P<value>.*)'$", re.DOTALL)
_BYTE = re.compile(r"\(byte (?P<byte>\d+)\)")
_PATH_PART = re.compile(r"\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>\d+)\]")

# Rust integer widths by field name (the only integer fields of the protocol).
_INT_WIDTH: Final = {
    "sample_rate": "u32",
    "channels": "u16",
    "connection_timeout": "u64",
    "request_timeout": "u64",
    "silence_duration_ms": "u64",
}
_WANT: Final = {
    "str": "a string",
    "bool": "a boolean",
    "float": "f32",
    "array": "a sequence",
    "object": "a map",
}


def _position(raw: bytes, offset: int) -> str:
    """serde_json's `` at line L column C`` for a byte offset."""
    head = raw[:offset]
    line = head.count(b"\n") + 1
    column = offset - (head.rfind(b"\n") + 1)
    return f" at line {line} column {column}"


def _end(raw: bytes) -> str:
    # Tagged enums are buffered whole before their fields are checked, so serde reports
    # data errors at the end of the object.
    return _position(raw, len(raw.rstrip()))


def _value_at(raw: bytes, path: str) -> Any:
    try:
        value: Any = msgspec.json.decode(raw)
        for part in _PATH_PART.finditer(path):
            key, index = part.group("key"), part.group("index")
            value = value[key] if key is not None else value[int(index)]
    except (msgspec.DecodeError, KeyError, IndexError, TypeError):
        return msgspec.UNSET
    return value


def _unexpected(value: Any) -> str:
    """serde's ``Unexpected`` rendering of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {msgspec.json.encode(value).decode()}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _serde_data_error(message: str, raw: bytes) -> str:
    match = _AT.match(message)
    core = match.group("core") if match else message
    path = (match.group("path") or "") if match else ""
    field = path.rsplit(".", 1)[-1] if path else ""
    if missing := _MISSING.match(core):
        text = f"missing field `{missing.group('field')}`"
    elif path == ".type" and (invalid := _INVALID_VALUE.match(core)):
        variants = ", ".join(f"`{v}`" for v in _VARIANTS)
        text = f"unknown variant `{invalid.group('value')}`, expected one of {variants}"
    elif path == ".type":
        text = f"invalid type: {_unexpected(_value_at(raw, path))}, expected variant identifier"
    elif not path and core.startswith("Expected `object`"):
        text = (
            f"invalid type: {_unexpected(_value_at(raw, ''))}, "
            "expected internally tagged enum IncomingMessage"
        )
    elif _RANGE.match(core):
        text = (
            f"invalid value: {_unexpected(_value_at(raw, path))}, "
            f"expected {_INT_WIDTH.get(field, 'an integer')}"
        )
    elif (expected := _EXPECTED.match(core)) or (expected := _EXPECTED_NO_GOT.match(core)):
        want = expected.group("want")
        wanted = _INT_WIDTH.get(field, "an integer") if want == "int" else _WANT.get(want, want)
        text = f"invalid type: {_unexpected(_value_at(raw, path))}, expected {wanted}"
    else:
        text = core
    return text + _end(raw)


def _serde_syntax_error(message: str, raw: bytes) -> str:
    if "truncated" in message:
        return "EOF while parsing a value" + _position(raw, len(raw))
    byte = _BYTE.search(message)
    offset = min(int(byte.group("byte")) + 1, len(raw)) if byte else len(raw)
    if "trailing" in message:
        return "trailing characters" + _position(raw, offset)
    return "expected value" + _position(raw, offset)


# --------------------------------------------------------------------------- f32 display


def _f32(value: float) -> float:
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def rust_f32_display(value: float) -> str:
    """``format!("{}", value as f32)``: the shortest round-trip digits, never an
    exponent (``1.5`` → ``1.5``, ``2.0`` → ``2``, ``1e10`` → ``10000000000``)."""
    try:
        single = _f32(value)
    except OverflowError:
        return "-inf" if value < 0 else "inf"
    if single != single:
        return "NaN"
    if single in (float("inf"), float("-inf")):
        return "inf" if single > 0 else "-inf"
    for digits in range(1, 18):
        shortest = f"{single:.{digits}g}"
        if _f32(float(shortest)) == single:
            break
    text = format(Decimal(shortest), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


# --------------------------------------------------------------------------- loading audio

MAX_LOADING_PAYLOAD_BYTES: Final = 1_924_096
MAX_LOADING_AUDIO_BYTES: Final = 1_920_000


def _wav_fields(data: bytes) -> tuple[int, int, int, int, int] | str:
    """(format tag, channels, sample rate, bits per sample, data length) or a reason."""
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(data):
                return "fmt chunk is too short"
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == 0xFFFE and size >= 40 and body + 40 <= len(data):
                # WAVE_FORMAT_EXTENSIBLE: the real format is the sub-format GUID's tag.
                (tag,) = struct.unpack_from("<H", data, body + 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                return "data chunk before fmt chunk"
            length = min(size, len(data) - body)
            return (*fmt, length)
        offset = body + size + (size & 1)
    return "no fmt chunk found" if fmt is None else "no data chunk found"


def loading_audio_problem(clip: LoadingAudio) -> str | None:
    """The server's verdict on a ``loading_audio`` clip (§5.4): an error text or ``None``.

    Checks run in the server's order, so the first applicable text is the one returned.
    """
    encoded = clip.data
    if (len(encoded) + 3) // 4 * 3 > MAX_LOADING_PAYLOAD_BYTES:
        return (
            "loading_audio.data decoded audio would exceed the maximum size of "
            f"{MAX_LOADING_PAYLOAD_BYTES} bytes"
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "loading_audio.data is not valid base64"
    if len(data) > MAX_LOADING_PAYLOAD_BYTES:
        return (
            "loading_audio.data decoded audio exceeds the maximum size of "
            f"{MAX_LOADING_PAYLOAD_BYTES} bytes"
        )
    if clip.format is not None:
        fmt = clip.format.strip().lower()
        if fmt not in ("wav", "pcm"):
            return 'loading_audio.format must be "wav" or "pcm"'
        is_wav = fmt == "wav"
    else:
        is_wav = data[0:4] == b"RIFF" and data[8:12] == b"WAVE"
    if is_wav:
        if data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
            return "loading_audio is not a valid WAV file: not a RIFF/WAVE file"
        fields = _wav_fields(data)
        if isinstance(fields, str):
            return f"loading_audio is not a valid WAV file: {fields}"
        tag, channels, rate, bits, length = fields
        if tag != 1 or bits != 16:
            return "loading_audio: only 16-bit PCM is supported; please provide 16-bit PCM audio"
        if length > MAX_LOADING_AUDIO_BYTES:
            return (
                "loading_audio.data decoded audio exceeds the maximum size of "
                f"{MAX_LOADING_AUDIO_BYTES} bytes"
            )
        if channels and length % (2 * channels):
            return "loading_audio WAV data is not a whole number of audio frames"
    else:
        if clip.sample_rate is None:
            return "sample_rate is required for raw PCM loading_audio"
        rate = clip.sample_rate
        channels = 1 if clip.channels is None else clip.channels
        length = len(data)
        if channels and length % (2 * channels):
            return "loading_audio raw PCM length is not frame-aligned"
    if channels not in (1, 2):
        return "loading_audio supports mono or stereo only"
    if not 8000 <= rate <= 48000:
        return "loading_audio sample rate must be between 8000 Hz and 48000 Hz"
    duration_ms = (length // (2 * channels)) * 1000 // rate
    if duration_ms < 250:
        return "loading_audio is too short; the minimum duration is 250 ms"
    if duration_ms > 10_000:
        return "loading_audio is too long; the maximum duration is 10000 ms"
    return None

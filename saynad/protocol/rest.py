"""Sayna REST request and response bodies (§6), as frozen msgspec Structs.

Encoding rule for what saynad sends: optional fields default to :data:`msgspec.UNSET`
and are omitted, never sent as ``null``; field order is the order of the protocol's
tables. Decoding rule for what the server sends: unknown keys are ignored, so a newer
server that adds fields does not break an older client.

The module also holds the pure helpers the REST client needs: the endpoint paths (with
the percent-encoding rules of §6.7 and §6.10), the error-body decoder and the
``Retry-After`` parser (time passed in). It is sans-IO: it imports neither trio nor
httpx.
"""

from __future__ import annotations

import datetime
import email.utils
from typing import Final, Literal
from urllib.parse import quote

import msgspec
from msgspec import UNSET, UnsetType

from saynad.protocol.messages import TTSConfig
from saynad.protocol.phone import normalize_phone_number, phone_number_problem

__all__ = [
    "DeleteSipHooksRequest",
    "ErrorBody",
    "HealthResponse",
    "LiveKitParticipantInfo",
    "LiveKitRoomDetails",
    "LiveKitRoomSummary",
    "LiveKitRoomsResponse",
    "LiveKitTokenRequest",
    "LiveKitTokenResponse",
    "MuteParticipantRequest",
    "MuteParticipantResponse",
    "RemoveParticipantRequest",
    "RemoveParticipantResponse",
    "SetSipHooksRequest",
    "SipCallRequest",
    "SipCallResponse",
    "SipCallSipConfig",
    "SipHook",
    "SipHooksResponse",
    "SipTransferRequest",
    "SipTransferResponse",
    "SpeakRequest",
    "VoiceDescriptor",
    "Voices",
    "decode_error_body",
    "normalize_phone_number",
    "parse_retry_after",
    "phone_number_problem",
    "recording_path",
    "room_path",
]

# --------------------------------------------------------------------------- health, voices, speak


class HealthResponse(msgspec.Struct, frozen=True):
    """``GET /``: ``{"status": "OK"}``."""

    status: str


class VoiceDescriptor(msgspec.Struct, frozen=True):
    """One TTS voice of ``GET /voices``. ``sample`` (a preview URL) may be ``""``.

    The server always sends all six fields; the defaults only make decoding as tolerant
    as the official client's.
    """

    id: str
    name: str
    sample: str = ""
    accent: str = "Unknown"
    gender: str = "Unknown"
    language: str = "Unknown"


Voices = dict[str, list[VoiceDescriptor]]
"""``GET /voices``: voices keyed by provider (``elevenlabs``, ``deepgram``, ``google``,
``azure``); a provider without server credentials is absent, so ``{}`` is possible."""


class SpeakRequest(msgspec.Struct, frozen=True):
    """``POST /speak`` body: one-shot synthesis of ``text`` with ``tts_config``."""

    text: str
    tts_config: TTSConfig


# --------------------------------------------------------------------------- LiveKit


class LiveKitTokenRequest(msgspec.Struct, frozen=True):
    """``POST /livekit/token`` body. With a tenant, the server creates/claims the room."""

    room_name: str
    participant_name: str
    participant_identity: str


class LiveKitTokenResponse(msgspec.Struct, frozen=True):
    """``POST /livekit/token`` answer: a LiveKit JWT and where to use it."""

    token: str
    room_name: str
    participant_identity: str
    livekit_url: str


class LiveKitRoomSummary(msgspec.Struct, frozen=True):
    """A room of ``GET /livekit/rooms``. ``creation_time`` is Unix seconds."""

    name: str
    num_participants: int
    creation_time: int


class LiveKitRoomsResponse(msgspec.Struct, frozen=True):
    """``GET /livekit/rooms``: the rooms this caller may see (tenant-filtered)."""

    rooms: tuple[LiveKitRoomSummary, ...]


class LiveKitParticipantInfo(msgspec.Struct, frozen=True):
    """A participant of ``GET /livekit/rooms/{room_name}``.

    ``state`` is ``JOINING``, ``JOINED``, ``ACTIVE``, ``DISCONNECTED`` or ``UNKNOWN``;
    ``kind`` is ``STANDARD``, ``INGRESS``, ``EGRESS``, ``SIP``, ``AGENT`` or ``UNKNOWN``.
    They stay plain strings so a value added by a newer server still decodes.
    ``joined_at`` is Unix seconds; ``metadata`` is opaque text.
    """

    sid: str
    identity: str
    name: str
    state: str
    kind: str
    joined_at: int
    metadata: str
    attributes: dict[str, str]
    is_publisher: bool


class LiveKitRoomDetails(msgspec.Struct, frozen=True):
    """``GET /livekit/rooms/{room_name}``. ``max_participants`` 0 means unlimited;
    ``metadata`` is the room's JSON text (it holds the owner as ``auth_id``)."""

    sid: str
    name: str
    num_participants: int
    max_participants: int
    creation_time: int
    metadata: str
    active_recording: bool
    participants: tuple[LiveKitParticipantInfo, ...]


class RemoveParticipantRequest(msgspec.Struct, frozen=True):
    """``DELETE /livekit/participant`` body (a JSON body on DELETE)."""

    room_name: str
    participant_identity: str


class RemoveParticipantResponse(msgspec.Struct, frozen=True):
    """``DELETE /livekit/participant`` answer; ``status`` is ``"removed"``."""

    status: str
    room_name: str
    participant_identity: str


class MuteParticipantRequest(msgspec.Struct, frozen=True):
    """``POST /livekit/participant/mute`` body."""

    room_name: str
    participant_identity: str
    track_sid: str
    muted: bool


class MuteParticipantResponse(msgspec.Struct, frozen=True):
    """``POST /livekit/participant/mute`` answer; ``muted`` is the state LiveKit reports."""

    room_name: str
    participant_identity: str
    track_sid: str
    muted: bool


# --------------------------------------------------------------------------- SIP


class SipHook(msgspec.Struct, frozen=True):
    """A SIP hook: calls whose SIP domain is ``host`` are announced to ``url``.

    All three keys are required by the server (a missing ``auth_id`` is a 422);
    ``auth_id`` may be ``""`` only when the server does not require authentication.
    The server stores ``host`` trimmed and lower-cased and ``auth_id`` trimmed.
    """

    host: str
    url: str
    auth_id: str


class SipHooksResponse(msgspec.Struct, frozen=True):
    """``GET``/``POST``/``DELETE /sip/hooks`` answer: the full merged hook list."""

    hooks: tuple[SipHook, ...]


class SetSipHooksRequest(msgspec.Struct, frozen=True):
    """``POST /sip/hooks`` body: hooks to add, or to replace by host (case-insensitive)."""

    hooks: tuple[SipHook, ...]


class DeleteSipHooksRequest(msgspec.Struct, frozen=True):
    """``DELETE /sip/hooks`` body: hosts to remove (case-insensitive; a JSON body on DELETE)."""

    hosts: tuple[str, ...]


class SipTransferRequest(msgspec.Struct, frozen=True):
    """``POST /sip/transfer`` body: transfer a SIP participant to ``transfer_to``."""

    room_name: str
    participant_identity: str
    transfer_to: str


class SipTransferResponse(msgspec.Struct, frozen=True):
    """``POST /sip/transfer`` answer. ``transfer_to`` is ``tel:`` + the trimmed number;
    ``status`` is ``initiated`` when LiveKit did not confirm within 2 s."""

    status: Literal["completed", "initiated"]
    room_name: str
    participant_identity: str
    transfer_to: str


class SipCallSipConfig(msgspec.Struct, frozen=True):
    """``sip`` of ``POST /sip/call``: per-call overrides of the server's SIP settings.

    Unset fields are omitted and the server's configuration applies.
    """

    outbound_address: str | UnsetType = UNSET
    auth_username: str | UnsetType = UNSET
    auth_password: str | UnsetType = UNSET


class SipCallRequest(msgspec.Struct, frozen=True):
    """``POST /sip/call`` body: dial ``to_phone_number`` into ``room_name``."""

    room_name: str
    participant_name: str
    participant_identity: str
    from_phone_number: str
    to_phone_number: str
    sip: SipCallSipConfig | UnsetType = UNSET


class SipCallResponse(msgspec.Struct, frozen=True):
    """``POST /sip/call`` answer; ``status`` is ``"initiated"`` (the call is not yet up)."""

    status: str
    room_name: str
    participant_identity: str
    participant_id: str
    sip_call_id: str


# --------------------------------------------------------------------------- errors


class ErrorBody(msgspec.Struct, frozen=True):
    """A JSON error body (§6.1).

    Auth failures send ``{"error": code, "message": text}``; most handlers send
    ``{"error": text}``; participant and SIP transfer/call handlers add ``code``.
    """

    error: str
    code: str | None = None
    message: str | None = None


_error_decoder: Final = msgspec.json.Decoder(ErrorBody)


def decode_error_body(content: bytes) -> ErrorBody | None:
    """Decode an error body, or return ``None`` when it is not one.

    Framework rejections (400/413/415/422) are plain text, proxies answer HTML, and a
    broken connection can truncate a body: none of these is an error of its own.
    """
    try:
        return _error_decoder.decode(content)
    # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string and
    # RecursionError for deep nesting, outside its own hierarchy.
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


# --------------------------------------------------------------------------- paths and headers


def room_path(room_name: str) -> str:
    """``/livekit/rooms/{room_name}`` with the name percent-encoded as one path segment.

    The name is otherwise used verbatim: a ``/`` becomes ``%2F``, a space ``%20``.
    """
    return "/livekit/rooms/" + quote(room_name, safe="")


def recording_path(stream_id: str) -> str:
    """``/recording/{stream_id}``, percent-encoded as one path segment."""
    return "/recording/" + quote(stream_id, safe="")


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None``.

    Accepts delay-seconds (``"120"``, and leniently ``"1.5"``) and an HTTP-date, which
    is compared with ``now`` (Unix seconds); a date in the past means ``0``. Anything
    unparsable is ``None``: the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # float() accepts "nan" and "inf"; neither is a delay.
        if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
            return None
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; parsedate_to_datetime leaves "-0000" naive.
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)

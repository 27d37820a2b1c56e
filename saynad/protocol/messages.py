"""Sayna WebSocket frames and configuration objects, as frozen msgspec Structs.

Client → server frames form the :data:`ClientFrame` union and server → client frames
the :data:`ServerEvent` union, both tagged on ``"type"``. Binary frames never touch the
JSON codec: inbound TTS audio is wrapped in :class:`TTSAudio`.

Encoding rule for what saynad sends (mirrors what the server and the official clients
expect): a field the caller did not set is *omitted*, never sent as ``null``. Optional
fields default to :data:`msgspec.UNSET`; a value the caller sets is always sent, even
when it equals the server's default. ``speak`` always carries ``flush`` and
``allow_interruption``, as the official client does.

Decoding rule for what the server sends: unknown keys are ignored, absent optional
fields read as ``None``, and a frame whose ``type`` is unknown is reported as a
:class:`~saynad.errors.FrameDecodeError` of kind ``unknown_type`` (callers count it and
carry on). This module is sans-IO: it imports neither trio nor httpx.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from saynad.errors import FrameDecodeError, ValidationError

__all__ = [
    "UNSET",
    "ApiKeyAuth",
    "AudioFrame",
    "AzureAuth",
    "ClearFrame",
    "ClientFrame",
    "ConfigFrame",
    "Error",
    "GoogleAuth",
    "LiveKitConfig",
    "LoadingAudioConfig",
    "LoadingStartFrame",
    "LoadingStopFrame",
    "Message",
    "Participant",
    "ParticipantConnected",
    "ParticipantDisconnected",
    "Pronunciation",
    "ProviderAuth",
    "Ready",
    "RoomMessage",
    "STTConfig",
    "STTResult",
    "SendMessageFrame",
    "ServerEvent",
    "SessionCommand",
    "SipTransferError",
    "SipTransferFrame",
    "SpeakFrame",
    "TTSAudio",
    "TTSConfig",
    "TTSPlaybackComplete",
    "Track",
    "TrackSubscribed",
    "TurnDetectSettings",
    "UnsetType",
    "UpdateConfigFrame",
    "VADEvent",
    "VadSettings",
    "decode_server_event",
    "encode_client_frame",
    "send_message_frame",
    "sip_transfer_frame",
    "speak_frame",
]

# --------------------------------------------------------------------------- provider auth


class ApiKeyAuth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Credentials for Deepgram, ElevenLabs and Cartesia: ``{"api_key": …}``."""

    api_key: str


class GoogleAuth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Google credentials: a service-account JSON object, or a string.

    A string is sent verbatim: the server reads it as JSON text or as a path *on the
    server*. To send a local service-account file, use :meth:`from_file`.
    """

    credentials: str | dict[str, Any]

    @classmethod
    def from_file(cls, path: str | Path) -> GoogleAuth:
        """Read a local service-account JSON file and send its content."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a service-account file holds a JSON object")
        return cls(credentials=data)


class AzureAuth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Azure Speech credentials: ``{"api_key": …, "region": …}``."""

    api_key: str
    region: str


ProviderAuth = ApiKeyAuth | GoogleAuth | AzureAuth
"""A session's credential override for one provider (``stt_config.auth``/``tts_config.auth``)."""

# --------------------------------------------------------------------------- config objects


class STTConfig(msgspec.Struct, frozen=True):
    """``stt_config``: every field but ``auth`` is required by the server."""

    provider: str
    language: str
    sample_rate: int
    channels: int
    punctuation: bool
    encoding: str
    model: str
    auth: ProviderAuth | UnsetType = UNSET


class Pronunciation(msgspec.Struct, frozen=True):
    """A whole-word replacement applied before synthesis."""

    word: str
    pronunciation: str


class TTSConfig(msgspec.Struct, frozen=True):
    """``tts_config`` (WebSocket ``config`` and REST ``/speak``).

    ``model`` is required by the server (use ``""`` when the provider ignores it), and
    ``voice_id`` defaults server-side to a Deepgram voice: set it for other providers.
    """

    provider: str
    model: str
    voice_id: str | UnsetType = UNSET
    speaking_rate: float | UnsetType = UNSET
    audio_format: str | UnsetType = UNSET
    sample_rate: int | UnsetType = UNSET
    connection_timeout: int | UnsetType = UNSET
    request_timeout: int | UnsetType = UNSET
    pronunciations: tuple[Pronunciation, ...] | UnsetType = UNSET
    auth: ProviderAuth | UnsetType = UNSET


class LiveKitConfig(msgspec.Struct, frozen=True):
    """``livekit``: the room to join. ``room_name`` is used verbatim, never rewritten."""

    room_name: str
    enable_recording: bool | UnsetType = UNSET
    sayna_participant_identity: str | UnsetType = UNSET
    sayna_participant_name: str | UnsetType = UNSET
    listen_participants: tuple[str, ...] | UnsetType = UNSET


class LoadingAudioConfig(msgspec.Struct, frozen=True):
    """``loading_audio``: a clip looped in the room while ``loading_start`` is active.

    ``data`` is standard padded base64 of a 16-bit WAV file or raw s16le PCM; raw PCM
    needs ``sample_rate``. :meth:`from_file` builds one from a local file.
    """

    data: str
    format: Literal["wav", "pcm"] | UnsetType = UNSET
    sample_rate: int | UnsetType = UNSET
    channels: int | UnsetType = UNSET
    volume: float | UnsetType = UNSET

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        sample_rate: int | UnsetType = UNSET,
        channels: int | UnsetType = UNSET,
        volume: float | UnsetType = UNSET,
    ) -> LoadingAudioConfig:
        """Encode a local WAV (or raw PCM, with ``sample_rate``) file."""
        raw = Path(path).read_bytes()
        return cls(
            data=base64.b64encode(raw).decode("ascii"),
            sample_rate=sample_rate,
            channels=channels,
            volume=volume,
        )


# --------------------------------------------------------------------------- client → server


class _ClientFrame(msgspec.Struct, frozen=True, tag_field="type"):
    """Base of the frames saynad sends."""


class ConfigFrame(_ClientFrame, frozen=True, tag="config"):
    """``config``: the first frame of every session. The server answers ``ready``."""

    stream_id: str | UnsetType = UNSET
    audio: bool | UnsetType = UNSET
    stt_config: STTConfig | UnsetType = UNSET
    tts_config: TTSConfig | UnsetType = UNSET
    livekit: LiveKitConfig | UnsetType = UNSET
    loading_audio: LoadingAudioConfig | UnsetType = UNSET


class SpeakFrame(_ClientFrame, frozen=True, tag="speak"):
    """``speak``: queue text for synthesis (FIFO; ``flush`` has no effect today)."""

    text: str
    flush: bool = True
    allow_interruption: bool = True


class ClearFrame(_ClientFrame, frozen=True, tag="clear"):
    """``clear``: drop queued speech (ignored inside a non-interruptible window)."""


class SendMessageFrame(_ClientFrame, frozen=True, tag="send_message"):
    """``send_message``: publish a data message to the LiveKit room."""

    message: str
    role: str
    topic: str | UnsetType = UNSET
    debug: Any | UnsetType = UNSET


class SipTransferFrame(_ClientFrame, frozen=True, tag="sip_transfer"):
    """``sip_transfer``: transfer the room's SIP caller to ``transfer_to``."""

    transfer_to: str


class VadSettings(msgspec.Struct, frozen=True):
    """``update_config.vad`` (accepted and ignored by the current server)."""

    silence_duration_ms: int | UnsetType = UNSET


class TurnDetectSettings(msgspec.Struct, frozen=True):
    """``update_config.turn_detect``: the turn-completion threshold (server-global!)."""

    threshold: float | UnsetType = UNSET


class UpdateConfigFrame(_ClientFrame, frozen=True, tag="update_config"):
    """``update_config``: tune VAD / turn detection."""

    vad: VadSettings | UnsetType = UNSET
    turn_detect: TurnDetectSettings | UnsetType = UNSET


class LoadingStartFrame(_ClientFrame, frozen=True, tag="loading_start"):
    """``loading_start``: start looping the loading clip in the room."""


class LoadingStopFrame(_ClientFrame, frozen=True, tag="loading_stop"):
    """``loading_stop``: fade the loading clip out."""


_CommandFrame = (
    SpeakFrame
    | ClearFrame
    | SendMessageFrame
    | SipTransferFrame
    | UpdateConfigFrame
    | LoadingStartFrame
    | LoadingStopFrame
)

ClientFrame = ConfigFrame | _CommandFrame
"""Every JSON frame a client sends."""


class AudioFrame(msgspec.Struct, frozen=True):
    """A binary frame to the server: raw audio for STT, in the format of the session's
    ``stt_config`` (never JSON-encoded; the counterpart of :class:`TTSAudio`)."""

    data: bytes


SessionCommand = _CommandFrame | AudioFrame
"""Everything a client sends once the session is open: every :data:`ClientFrame` but
``config`` (sent once, first; a second one is never sent, §3), and binary audio."""


def speak_frame(text: str, flush: bool = True, allow_interruption: bool = True) -> SpeakFrame:
    """A checked ``speak`` frame (both flags are always sent)."""
    if not isinstance(text, str):
        raise ValidationError("text must be a string")
    return SpeakFrame(text=text, flush=flush, allow_interruption=allow_interruption)


def send_message_frame(
    message: str, role: str, topic: str | None = None, debug: Any = None
) -> SendMessageFrame:
    """A checked ``send_message`` frame; ``topic``/``debug`` are omitted when ``None``."""
    if not isinstance(message, str) or not isinstance(role, str):
        raise ValidationError("message and role must be strings")
    return SendMessageFrame(
        message=message,
        role=role,
        topic=UNSET if topic is None else topic,
        debug=UNSET if debug is None else debug,
    )


def sip_transfer_frame(transfer_to: str) -> SipTransferFrame:
    """A checked ``sip_transfer`` frame, its target stripped of surrounding blanks."""
    if not isinstance(transfer_to, str) or not transfer_to.strip():
        raise ValidationError("transfer_to must be a non-empty string")
    return SipTransferFrame(transfer_to=transfer_to.strip())


# --------------------------------------------------------------------------- server → client


class _ServerEvent(msgspec.Struct, frozen=True, tag_field="type", omit_defaults=True):
    """Base of the JSON frames the server sends."""


class Ready(_ServerEvent, frozen=True, tag="ready"):
    """``ready``: the session is configured. ``livekit_url`` is sent even without LiveKit;
    decide "LiveKit is active" from ``livekit_room_name``."""

    stream_id: str
    livekit_room_name: str | None = None
    livekit_url: str | None = None
    sayna_participant_identity: str | None = None
    sayna_participant_name: str | None = None


class STTResult(_ServerEvent, frozen=True, tag="stt_result"):
    """``stt_result``: an interim or final transcript, or an end-of-turn marker.

    A forced end of turn has ``transcript == ""`` with both flags true.
    """

    transcript: str
    is_final: bool
    is_speech_final: bool
    confidence: float


class TTSPlaybackComplete(_ServerEvent, frozen=True, tag="tts_playback_complete"):
    """``tts_playback_complete``: the TTS queue drained (once per run of ``speak``s)."""

    timestamp: int


class RoomMessage(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A LiveKit data packet: exactly one of ``message`` (UTF-8 text) or ``data`` (base64)."""

    message: str | None = None
    data: str | None = None
    identity: str
    topic: str
    room: str
    timestamp: int


class Message(_ServerEvent, frozen=True, tag="message"):
    """``message``: a data packet received in the LiveKit room."""

    message: RoomMessage


class Participant(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A remote LiveKit participant. ``name`` may be absent or ``""``."""

    identity: str
    name: str | None = None
    room: str
    timestamp: int


class ParticipantConnected(_ServerEvent, frozen=True, tag="participant_connected"):
    """``participant_connected``: a remote participant joined the room."""

    participant: Participant


class ParticipantDisconnected(_ServerEvent, frozen=True, tag="participant_disconnected"):
    """``participant_disconnected``: a remote participant left; the server closes the
    session ~100 ms later (close code 1005)."""

    participant: Participant


class Track(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A remote track the agent subscribed to."""

    identity: str
    name: str | None = None
    track_kind: str
    track_sid: str
    room: str
    timestamp: int


class TrackSubscribed(_ServerEvent, frozen=True, tag="track_subscribed"):
    """``track_subscribed``: the agent subscribed to a remote track."""

    track: Track


class VADEvent(_ServerEvent, frozen=True, tag="vad_event"):
    """``vad_event``: defined in the server's schema, never emitted by current servers."""

    event: str
    timestamp_ms: int
    silence_duration_ms: int | None = None


class Error(_ServerEvent, frozen=True, tag="error"):
    """``error``: a failure report. Never closes the session."""

    message: str


class SipTransferError(_ServerEvent, frozen=True, tag="sip_transfer_error"):
    """``sip_transfer_error``: a WebSocket ``sip_transfer`` failed."""

    message: str


ServerEvent = (
    Ready
    | STTResult
    | TTSPlaybackComplete
    | Message
    | ParticipantConnected
    | ParticipantDisconnected
    | TrackSubscribed
    | VADEvent
    | Error
    | SipTransferError
)
"""Every JSON frame a server sends."""


class TTSAudio(msgspec.Struct, frozen=True):
    """A binary frame from the server: raw TTS audio in the session's ``audio_format``."""

    data: bytes


SERVER_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    cls.__struct_config__.tag  # type: ignore[misc]
    for cls in (
        Ready,
        STTResult,
        TTSPlaybackComplete,
        Message,
        ParticipantConnected,
        ParticipantDisconnected,
        TrackSubscribed,
        VADEvent,
        Error,
        SipTransferError,
    )
)

# --------------------------------------------------------------------------- codecs

_encoder: Final = msgspec.json.Encoder()
_server_decoder: Final[msgspec.json.Decoder[ServerEvent]] = msgspec.json.Decoder(ServerEvent)


def encode_client_frame(frame: ClientFrame) -> bytes:
    """Encode a client frame as compact JSON, ``type`` first, unset fields omitted."""
    return _encoder.encode(frame)


def decode_server_event(data: bytes | str) -> ServerEvent:
    """Decode one text frame from the server.

    Raises :class:`~saynad.errors.FrameDecodeError` (and nothing else) when the frame is
    not JSON, not an object, of an unknown ``type``, or a known type with bad fields.
    Text that is not valid Unicode (invalid UTF-8 bytes, lone surrogates in a ``str``)
    is ``not_json``; JSON nested deeper than msgspec recurses is ``invalid``.
    """
    try:
        return _server_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise classify_decode_failure(data, exc, SERVER_EVENT_TYPES) from exc
    # msgspec raises these outside its own hierarchy; a peer must not crash the reader.
    except UnicodeError as exc:
        raise FrameDecodeError("not_json", f"not valid Unicode text: {exc}") from exc
    except RecursionError as exc:
        raise FrameDecodeError("invalid", _TOO_DEEP) from exc


_TOO_DEEP: Final = "JSON nested too deeply"


def classify_decode_failure(
    data: bytes | str, exc: msgspec.DecodeError, known_types: frozenset[str]
) -> FrameDecodeError:
    """Explain why ``data`` failed to decode. Runs only on the failure path."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.ValidationError as generic:
        # Valid JSON holding a number msgspec cannot represent (an integer of more than
        # 4300 digits, 1e999): readable as text, but not as a frame.
        return FrameDecodeError("invalid", str(generic))
    except msgspec.DecodeError:
        return FrameDecodeError("not_json", str(exc))
    except UnicodeError as generic:
        return FrameDecodeError("not_json", f"not valid Unicode text: {generic}")
    except RecursionError:
        return FrameDecodeError("invalid", _TOO_DEEP)
    if not isinstance(obj, dict):
        return FrameDecodeError("not_object", f"expected a JSON object, got {type(obj).__name__}")
    frame_type = obj.get("type")
    if not isinstance(frame_type, str):
        return FrameDecodeError("invalid", "missing or non-string `type`")
    if frame_type not in known_types:
        return FrameDecodeError(
            "unknown_type", f"unknown frame type {frame_type[:64]!r}", frame_type=frame_type[:64]
        )
    return FrameDecodeError("invalid", str(exc), frame_type=frame_type)

"""REST handlers of the emulator (§6).

Every endpoint answers with the real server's status codes, JSON error texts and
``code`` values, checking in the documented order, against the in-memory
:class:`~saynad.emulator.state.EmulatorState`. Request bodies are read the way the
server's framework reads them: a missing or other content type is a plain-text 415,
malformed JSON a plain-text 400, and valid JSON with a missing or ill-typed field a
plain-text 422. The request Structs below mirror the server's serde structs: ``Option``
fields accept ``null`` as "absent", fields with a default but no ``Option`` accept
absence but not ``null``, integers must be JSON integers in range, unknown keys are
ignored. Unknown paths answer 404 and known paths with the wrong method 405, both with
an empty body.

The serde error texts (``missing field `text` at line 1 column 2``) are reproduced in
form; the line/column suffix is approximate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar
from urllib.parse import unquote

import msgspec

from saynad.emulator.asgi import Request, Response, json_response
from saynad.emulator.audio import synthesize, wav_bytes
from saynad.emulator.context import Context
from saynad.emulator.state import Participant, Room, SipHookEntry, new_sid
from saynad.emulator.wire import TtsConfig
from saynad.protocol.phone import phone_number_problem

__all__ = ["VOICES", "content_type_for_format", "handle", "provider_auth_problem"]

T = TypeVar("T")
Handler = Callable[[Request, Context, str], Response]

# --------------------------------------------------------------------------- request bodies


class _SpeakIn(msgspec.Struct, frozen=True):
    text: str
    # The same serde struct as the WebSocket config's tts_config (§5.2).
    tts_config: TtsConfig


class _TokenIn(msgspec.Struct, frozen=True):
    room_name: str
    participant_name: str
    participant_identity: str


class _RemoveIn(msgspec.Struct, frozen=True):
    room_name: str
    participant_identity: str


class _MuteIn(msgspec.Struct, frozen=True):
    room_name: str
    participant_identity: str
    track_sid: str
    muted: bool


class _SipHookIn(msgspec.Struct, frozen=True):
    host: str
    url: str
    auth_id: str


class _SipHooksIn(msgspec.Struct, frozen=True):
    hooks: list[_SipHookIn] = []


class _DeleteHooksIn(msgspec.Struct, frozen=True):
    hosts: list[str] = []


class _TransferIn(msgspec.Struct, frozen=True):
    room_name: str
    participant_identity: str
    transfer_to: str


class _SipCallSipIn(msgspec.Struct, frozen=True):
    outbound_address: str | None = None
    auth_username: str | None = None
    auth_password: str | None = None


class _SipCallIn(msgspec.Struct, frozen=True):
    room_name: str
    participant_name: str
    participant_identity: str
    from_phone_number: str
    to_phone_number: str
    sip: _SipCallSipIn | None = None


_DECODERS: Final[dict[type[Any], msgspec.json.Decoder[Any]]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (
        _SpeakIn,
        _TokenIn,
        _RemoveIn,
        _MuteIn,
        _SipHooksIn,
        _DeleteHooksIn,
        _TransferIn,
        _SipCallIn,
    )
}

# --------------------------------------------------------------------------- framework rejections


def _plain(status: int, text: str) -> Response:
    return Response(status, text.encode(), content_type="text/plain; charset=utf-8")


def _is_json_content_type(value: str | None) -> bool:
    if value is None:
        return False
    essence = value.split(";", 1)[0].strip().lower()
    return essence == "application/json" or (
        essence.startswith("application/") and essence.endswith("+json")
    )


def _position(body: bytes, offset: int) -> str:
    """serde_json's `` at line L column C`` for a byte offset (column 1-based)."""
    head = body[:offset]
    line = head.count(b"\n") + 1
    column = offset - (head.rfind(b"\n") + 1)
    return f" at line {line} column {column}"


def _end_position(body: bytes) -> str:
    """Where serde stops for a data error: the last non-blank byte of the body."""
    end = len(body.rstrip())
    return _position(body, end)


_MSGSPEC_AT = re.compile(r"^(?P<core>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`$")
_BYTE = re.compile(r"\(byte (?P<byte>\d+)\)")
_SERDE_GOT = {
    "int": "integer",
    "float": "floating point",
    "str": "string",
    "null": "null",
    "array": "sequence",
    "object": "map",
    "bool": "boolean",
}
_SERDE_WANT = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "array": "a sequence",
    "object": "a map",
}


def _serde_data_error(exc: msgspec.ValidationError, body: bytes) -> str:
    match = _MSGSPEC_AT.match(str(exc))
    core = match.group("core") if match else str(exc)
    path = (match.group("path") or "") if match else ""
    if missing := _MISSING.match(core):
        text = f"missing field `{missing.group('field')}`"
    elif expected := _EXPECTED.match(core):
        want = expected.group("want")
        text = (
            f"invalid type: {_SERDE_GOT.get(expected.group('got'), expected.group('got'))}, "
            f"expected {_SERDE_WANT.get(want, want)}"
        )
    else:
        text = core
    prefix = f"{path.lstrip('.')}: " if path else ""
    return prefix + text + _end_position(body)


def _serde_syntax_error(exc: msgspec.DecodeError, body: bytes) -> str:
    message = str(exc)
    if "truncated" in message:
        return "EOF while parsing a value" + _position(body, len(body))
    byte = _BYTE.search(message)
    offset = int(byte.group("byte")) + 1 if byte else len(body)
    what = "trailing characters" if "trailing characters" in message else "expected value"
    return what + _position(body, min(offset, len(body)))


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_body(request: Request, cls: type[T]) -> T | Response:
    """Axum's ``Json<T>`` extractor: 415, then 400 (syntax), then 422 (data)."""
    if not _is_json_content_type(request.headers.get("content-type")):
        return _plain(415, "Expected request with `Content-Type: application/json`")
    decoder: msgspec.json.Decoder[T] = _DECODERS[cls]
    try:
        return decoder.decode(request.body)
    except msgspec.ValidationError as exc:
        return _plain(
            422,
            "Failed to deserialize the JSON body into the target type: "
            + _serde_data_error(exc, request.body),
        )
    except msgspec.DecodeError as exc:
        # msgspec's wording for bad UTF-8 changes between releases (a DecodeError in some,
        # a UnicodeDecodeError in others): decide from the bytes, not from its message.
        if not _is_utf8(request.body):
            return _plain(
                400, "Failed to parse the request body as JSON: invalid unicode code point"
            )
        return _plain(
            400,
            "Failed to parse the request body as JSON: " + _serde_syntax_error(exc, request.body),
        )
    # Outside msgspec's hierarchy; serde_json refuses both as syntax errors (400).
    except UnicodeDecodeError:
        return _plain(400, "Failed to parse the request body as JSON: invalid unicode code point")
    except RecursionError:
        return _plain(400, "Failed to parse the request body as JSON: recursion limit exceeded")


def _error(status: int, text: str, code: str | None = None) -> Response:
    if code is None:
        return json_response(status, {"error": text})
    return json_response(status, {"error": text, "code": code})


# --------------------------------------------------------------------------- health, voices


def _health(request: Request, ctx: Context, _: str) -> Response:
    return json_response(200, {"status": "OK"})


VOICES: Final[dict[str, list[dict[str, str]]]] = {
    "deepgram": [
        {
            "id": "aura-asteria-en",
            "sample": "",
            "name": "Asteria",
            "accent": "American",
            "gender": "Female",
            "language": "English",
        },
        {
            "id": "aura-orion-en",
            "sample": "",
            "name": "Orion",
            "accent": "American",
            "gender": "Male",
            "language": "English",
        },
    ],
    "elevenlabs": [
        {
            "id": "21m00Tcm4TlvDq8ikWAM",
            "sample": "https://emulator.invalid/samples/rachel.mp3",
            "name": "Rachel",
            "accent": "American",
            "gender": "Female",
            "language": "English",
        },
    ],
}
"""The emulator's voice catalogue: the server with Deepgram and ElevenLabs credentials."""


def _voices(request: Request, ctx: Context, _: str) -> Response:
    return json_response(200, VOICES)


# --------------------------------------------------------------------------- speak

_TTS_PROVIDERS: Final = frozenset(
    {"deepgram", "elevenlabs", "google", "azure", "microsoft-azure", "cartesia"}
)
_AUTH_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "deepgram": ("api_key",),
    "elevenlabs": ("api_key",),
    "cartesia": ("api_key",),
    "google": ("credentials",),
    "azure": ("api_key", "region"),
    "microsoft-azure": ("api_key", "region"),
}


def provider_auth_problem(provider: str, auth: Any, providers: frozenset[str]) -> str | None:
    """The server's provider/auth resolution (§5.5): the error text, or ``None``.

    ``providers`` is the set of supported (lower-case) names for this use (STT or TTS).
    """
    name = provider.strip().lower()
    if name not in providers:
        return f"Unsupported provider: {name}"
    if auth is None or auth == {}:
        return None  # server credentials (the emulator has them all)
    prefix = f"Invalid auth input for provider {name}: "
    if not isinstance(auth, dict):
        return prefix + f"auth must be a JSON object for provider {name}"
    allowed = _AUTH_FIELDS[name]
    unknown = sorted(set(auth) - set(allowed))
    if unknown:
        return prefix + f"Unsupported auth field(s) for provider {name}: {', '.join(unknown)}"
    for key in allowed:
        value = auth.get(key)
        if name == "google" and isinstance(value, dict):
            continue
        if value is None or value == "":
            return prefix + f"Auth field '{key}' is required for provider {name}"
        if not isinstance(value, str):
            if name == "google":
                return (
                    prefix
                    + f"Auth field '{key}' must be a string or JSON object for provider {name}"
                )
            return prefix + f"Auth field '{key}' must be a string for provider {name}"
    return None


def content_type_for_format(audio_format: str) -> str:
    """``Content-Type`` of a ``/speak`` answer for ``audio_format`` (§6.4)."""
    return {
        "wav": "audio/wav",
        "mp3": "audio/mpeg",
        "mpeg": "audio/mpeg",
        "ogg": "audio/ogg",
        "opus": "audio/ogg",
        "linear16": "audio/pcm",
        "pcm": "audio/pcm",
        "mulaw": "audio/basic",
    }.get(audio_format.lower(), "application/octet-stream")


def _speak(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _SpeakIn)
    if isinstance(body, Response):
        return body
    if not body.text.strip():
        return _error(400, "Text cannot be empty")
    tts = body.tts_config
    problem = provider_auth_problem(tts.provider, tts.auth, _TTS_PROVIDERS)
    if problem is not None:
        return _error(400, problem)
    text = body.text
    # The handler's own pass is a plain substring replacement (the provider's later
    # whole-word pass finds nothing left to replace).
    for item in tts.pronunciations:
        if item.word:
            text = text.replace(item.word, item.pronunciation)
    audio_format = tts.audio_format if tts.audio_format is not None else "linear16"
    sample_rate = tts.sample_rate if tts.sample_rate is not None else 24000
    try:
        pcm = synthesize(text, sample_rate, ctx.options.tts_ms_per_char)
    except ValueError as exc:
        return _error(500, f"Failed to synthesize speech: {exc}")
    # Only WAV gets a container; every other format carries the raw PCM (the emulator
    # has no MP3/Opus encoder) under the header the server would send.
    audio = wav_bytes(pcm, sample_rate) if audio_format.lower() == "wav" else pcm
    return Response(
        200,
        audio,
        content_type=content_type_for_format(audio_format),
        headers={"x-audio-format": audio_format, "x-sample-rate": str(sample_rate)},
    )


# --------------------------------------------------------------------------- LiveKit

_NOT_CONFIGURED = "LiveKit service not configured"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def fake_livekit_token(room_name: str, name: str, identity: str, *, now: float) -> str:
    """A JWT-shaped LiveKit access token, HS256-signed with the emulator's own key."""
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {
        "iss": "saynad-emulator",
        "sub": identity,
        "name": name,
        "nbf": int(now),
        "exp": int(now) + 6 * 3600,
        "video": {"room": room_name, "roomJoin": True, "canPublish": True, "canSubscribe": True},
    }
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(
        b"saynad-emulator-livekit-secret", f"{header}.{payload}".encode(), hashlib.sha256
    ).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _token(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _TokenIn)
    if isinstance(body, Response):
        return body
    if not ctx.options.livekit:
        return _error(500, _NOT_CONFIGURED)
    for field, value in (
        ("room_name", body.room_name),
        ("participant_name", body.participant_name),
        ("participant_identity", body.participant_identity),
    ):
        if not value.strip():
            return _error(400, f"Invalid request: {field} cannot be empty")
    # With a tenant the room is created (or claimed) before the token is minted.
    if ctx.tenant is not None and not ctx.state.ensure_room(body.room_name, ctx.tenant)[1]:
        return _error(403, "Access denied: room belongs to a different tenant")
    token = fake_livekit_token(
        body.room_name, body.participant_name, body.participant_identity, now=time.time()
    )
    ctx.state.tokens.append(
        {
            "room_name": body.room_name,
            "participant_name": body.participant_name,
            "participant_identity": body.participant_identity,
            "token": token,
        }
    )
    return json_response(
        200,
        {
            "token": token,
            "room_name": body.room_name,
            "participant_identity": body.participant_identity,
            "livekit_url": ctx.options.livekit_url,
        },
    )


def _visible(room: Room, tenant: str | None) -> bool:
    return tenant is None or room.owner == tenant


def _rooms(request: Request, ctx: Context, _: str) -> Response:
    if not ctx.options.livekit:
        return _error(500, _NOT_CONFIGURED)
    rooms = [
        {
            "name": room.name,
            "num_participants": len(room.participants),
            "creation_time": room.creation_time,
        }
        for room in ctx.state.rooms.values()
        if _visible(room, ctx.tenant)
    ]
    return json_response(200, {"rooms": rooms})


def _room(request: Request, ctx: Context, room_name: str) -> Response:
    if not room_name.strip():
        return _error(400, "Room name cannot be empty")
    if not ctx.options.livekit:
        return _error(500, _NOT_CONFIGURED)
    access = ctx.state.access(room_name, ctx.tenant)
    if ctx.tenant is not None and access != "ok":
        # Another tenant's room is masked as absent.
        return _error(404, f"Room '{room_name}' not found or not accessible")
    room = ctx.state.rooms.get(room_name)
    if room is None:
        return _error(404, f"Room '{room_name}' not found")
    participants = [
        {
            "sid": p.sid,
            "identity": p.identity,
            "name": p.name,
            "state": p.state,
            "kind": p.kind,
            "joined_at": p.joined_at,
            "metadata": p.metadata,
            "attributes": p.attributes,
            "is_publisher": p.is_publisher,
        }
        for p in room.participants.values()
    ]
    return json_response(
        200,
        {
            "sid": room.sid,
            "name": room.name,
            "num_participants": len(participants),
            "max_participants": room.max_participants,
            "creation_time": room.creation_time,
            "metadata": room.metadata_text(),
            "active_recording": room.active_recording,
            "participants": participants,
        },
    )


def _participant_room(room_name: str, ctx: Context) -> Room | Response:
    """The checks participant kick and mute share (§6.8, §6.9), in the server's order."""
    if not ctx.options.livekit:
        return _error(500, _NOT_CONFIGURED, "LIVEKIT_NOT_CONFIGURED")
    if ctx.state.access(room_name, ctx.tenant) != "ok":
        return _error(
            404, f"Room '{room_name}' not found or not accessible", "PARTICIPANT_NOT_FOUND"
        )
    return ctx.state.rooms[room_name]


def _remove_participant(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _RemoveIn)
    if isinstance(body, Response):
        return body
    if not body.room_name.strip():
        return _error(400, "Room name cannot be empty", "INVALID_REQUEST")
    if not body.participant_identity.strip():
        return _error(400, "Participant identity cannot be empty", "INVALID_REQUEST")
    room = _participant_room(body.room_name, ctx)
    if isinstance(room, Response):
        return room
    if body.participant_identity not in room.participants:
        return _error(
            404,
            f"Participant '{body.participant_identity}' not found in room '{body.room_name}'",
            "PARTICIPANT_NOT_FOUND",
        )
    # leave() tells the room's sessions, exactly like a kicked participant disconnecting.
    ctx.state.leave(body.room_name, body.participant_identity)
    return json_response(
        200,
        {
            "status": "removed",
            "room_name": body.room_name,
            "participant_identity": body.participant_identity,
        },
    )


def _mute(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _MuteIn)
    if isinstance(body, Response):
        return body
    if not body.room_name.strip():
        return _error(400, "Room name cannot be empty", "INVALID_REQUEST")
    if not body.participant_identity.strip():
        return _error(400, "Participant identity cannot be empty", "INVALID_REQUEST")
    if not body.track_sid.strip():
        return _error(400, "Track SID cannot be empty", "INVALID_REQUEST")
    room = _participant_room(body.room_name, ctx)
    if isinstance(room, Response):
        return room
    participant = room.participants.get(body.participant_identity)
    if participant is None or body.track_sid not in participant.tracks:
        return _error(
            404,
            f"Track '{body.track_sid}' or participant '{body.participant_identity}' "
            f"not found in room '{body.room_name}'",
            "PARTICIPANT_NOT_FOUND",
        )
    participant.tracks[body.track_sid] = body.muted
    return json_response(
        200,
        {
            "room_name": body.room_name,
            "participant_identity": body.participant_identity,
            "track_sid": body.track_sid,
            "muted": participant.tracks[body.track_sid],
        },
    )


# --------------------------------------------------------------------------- recordings


def _recording(request: Request, ctx: Context, stream_id: str) -> Response:
    if not stream_id or "/" in stream_id or ".." in stream_id:
        return _error(400, "Invalid stream_id format")
    if not ctx.options.recordings:
        return _error(503, "Recording storage not configured")
    data = ctx.state.recordings.get(stream_id)
    if data is None:
        return _error(404, f"Recording not found: {stream_id}")
    return Response(
        200,
        data,
        content_type="audio/ogg",
        headers={"content-disposition": f'attachment; filename="{stream_id}.ogg"'},
    )


# --------------------------------------------------------------------------- SIP hooks

_NO_CACHE = "No cache path configured. Cannot persist SIP hooks."


def _hooks_response(ctx: Context) -> Response:
    hooks = [{"host": h.host, "url": h.url, "auth_id": h.auth_id} for h in ctx.state.hook_list()]
    return json_response(200, {"hooks": hooks})


def _hardcoded(hosts: set[str]) -> Response:
    listed = ", ".join(sorted(hosts))
    return _error(
        405, f"Host(s) {listed} are hardcoded in the application config and cannot be changed."
    )


def _get_hooks(request: Request, ctx: Context, _: str) -> Response:
    if not ctx.options.sip:
        return json_response(200, {"hooks": []})
    return _hooks_response(ctx)


def _set_hooks(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _SipHooksIn)
    if isinstance(body, Response):
        return body
    if not ctx.options.sip:
        return _error(500, _NO_CACHE)
    if ctx.options.auth_required:
        for hook in body.hooks:
            if not hook.auth_id.strip():
                return _error(
                    400,
                    f"Hook for host '{hook.host}' has empty auth_id. "
                    "When AUTH_REQUIRED=true, auth_id must be provided.",
                )
    hosts = [hook.host.strip().lower() for hook in body.hooks]
    fixed = set(hosts) & ctx.state.fixed_hook_hosts
    if fixed:
        return _hardcoded(fixed)
    seen: set[str] = set()
    for host in hosts:
        if host in seen:
            return _error(400, f"Duplicate host detected: {host}")
        seen.add(host)
    for host, hook in zip(hosts, body.hooks, strict=True):
        ctx.state.sip_hooks[host] = SipHookEntry(
            host=host, url=hook.url, auth_id=hook.auth_id.strip()
        )
    return _hooks_response(ctx)


def _delete_hooks(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _DeleteHooksIn)
    if isinstance(body, Response):
        return body
    if not body.hosts:
        return _error(400, "No hosts provided to delete.")
    if not ctx.options.sip:
        return _error(500, _NO_CACHE)
    hosts = {host.strip().lower() for host in body.hosts}
    fixed = hosts & ctx.state.fixed_hook_hosts
    if fixed:
        return _hardcoded(fixed)
    for host in hosts:
        ctx.state.sip_hooks.pop(host, None)
    return _hooks_response(ctx)


# --------------------------------------------------------------------------- SIP transfer and call


def _transfer(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _TransferIn)
    if isinstance(body, Response):
        return body
    problem = phone_number_problem(body.transfer_to)
    if problem is not None:
        return _error(400, f"Invalid phone number: {problem}", "INVALID_PHONE_NUMBER")
    if not body.room_name.strip():
        # The server really uses this code here.
        return _error(400, "Room name cannot be empty", "INVALID_PHONE_NUMBER")
    if not ctx.options.livekit:
        return _error(500, "LiveKit SIP service not configured", "LIVEKIT_NOT_CONFIGURED")
    if ctx.tenant is not None and ctx.state.access(body.room_name, ctx.tenant) != "ok":
        return _error(404, "Room not found or not accessible", "ROOM_ACCESS_DENIED")
    if not body.participant_identity.strip():
        return _error(400, "Participant identity cannot be empty", "PARTICIPANT_NOT_FOUND")
    room = ctx.state.rooms.get(body.room_name)
    participant = room.participants.get(body.participant_identity) if room else None
    if participant is None or participant.kind != "SIP":
        return _error(
            404,
            f"Participant '{body.participant_identity}' not found or is not a SIP participant",
            "PARTICIPANT_NOT_FOUND",
        )
    transfer_to = f"tel:{body.transfer_to.strip()}"
    ctx.state.transfers.append(
        {
            "room_name": body.room_name,
            "participant_identity": body.participant_identity,
            "transfer_to": transfer_to,
        }
    )
    return json_response(
        200,
        {
            "status": "completed",
            "room_name": body.room_name,
            "participant_identity": body.participant_identity,
            "transfer_to": transfer_to,
        },
    )


# The outbound SIP address the emulated server has in its configuration (options.sip).
EMULATOR_OUTBOUND_ADDRESS: Final = "sip.emulator.invalid"


def _call(request: Request, ctx: Context, _: str) -> Response:
    body = _json_body(request, _SipCallIn)
    if isinstance(body, Response):
        return body
    bad = "INVALID_PHONE_NUMBER"
    if not body.room_name.strip():
        return _error(400, "Room name cannot be empty", bad)
    if not body.participant_name.strip():
        return _error(400, "Participant name cannot be empty", bad)
    if not body.participant_identity.strip():
        return _error(400, "Participant identity cannot be empty", bad)
    if (problem := phone_number_problem(body.to_phone_number)) is not None:
        return _error(400, f"Invalid to_phone_number: {problem}", bad)
    if (problem := phone_number_problem(body.from_phone_number)) is not None:
        return _error(400, f"Invalid from_phone_number: {problem}", bad)
    sip = body.sip or _SipCallSipIn()
    outbound = sip.outbound_address or (EMULATOR_OUTBOUND_ADDRESS if ctx.options.sip else None)
    if not outbound:
        return _error(500, "Outbound address not configured", "OUTBOUND_ADDRESS_NOT_CONFIGURED")
    if not ctx.options.livekit:
        return _error(500, "LiveKit SIP service not configured", "LIVEKIT_NOT_CONFIGURED")
    room = ctx.state.rooms.get(body.room_name)
    if ctx.tenant is not None and room is not None and room.owner != ctx.tenant:
        # Unlike /livekit/token, a call never claims an unowned room.
        return _error(404, "Room not found or not accessible", "ROOM_ACCESS_DENIED")
    if room is None:
        ctx.state.create_room(body.room_name, owner=ctx.tenant)
    to_number = body.to_phone_number.strip()
    from_number = body.from_phone_number.strip()
    participant = Participant(
        identity=body.participant_identity,
        name=body.participant_name,
        kind="SIP",
        attributes={"sip.phoneNumber": to_number, "sip.trunkPhoneNumber": from_number},
    )
    if ctx.options.sip_answer:  # the callee picks up at once; else it rings forever
        participant = ctx.state.join(
            body.room_name,
            body.participant_identity,
            name=body.participant_name,
            kind="SIP",
            attributes=participant.attributes,
            tracks=(new_sid("TR"),),
        )
    sip_call_id = new_sid("SC")
    ctx.state.calls.append(
        {
            "room_name": body.room_name,
            "participant_name": body.participant_name,
            "participant_identity": body.participant_identity,
            "from_phone_number": from_number,
            "to_phone_number": to_number,
            "outbound_address": outbound,
            "auth_username": sip.auth_username,
            "auth_password": sip.auth_password,
            "participant_id": participant.sid,
            "sip_call_id": sip_call_id,
        }
    )
    return json_response(
        200,
        {
            "status": "initiated",
            "room_name": body.room_name,
            "participant_identity": body.participant_identity,
            "participant_id": participant.sid,
            "sip_call_id": sip_call_id,
        },
    )


# --------------------------------------------------------------------------- other routes


def _livekit_webhook(request: Request, ctx: Context, _: str) -> Response:
    # §6.14 answers with status only. The emulator holds no LiveKit API secret, so it
    # can never verify a signature: without LiveKit it is a 503, otherwise a 401.
    if not ctx.options.livekit:
        return Response(503)
    return Response(401)


def _ws_over_http(request: Request, ctx: Context, _: str) -> Response:
    # A plain GET on /ws is axum's WebSocketUpgrade rejection.
    return _plain(400, "Connection header did not include 'upgrade'")


# --------------------------------------------------------------------------- routing

_STATIC: Final[dict[str, dict[str, Handler]]] = {
    "/": {"GET": _health},
    "/voices": {"GET": _voices},
    "/speak": {"POST": _speak},
    "/livekit/token": {"POST": _token},
    "/livekit/rooms": {"GET": _rooms},
    "/livekit/participant": {"DELETE": _remove_participant},
    "/livekit/participant/mute": {"POST": _mute},
    "/livekit/webhook": {"POST": _livekit_webhook},
    "/sip/hooks": {"GET": _get_hooks, "POST": _set_hooks, "DELETE": _delete_hooks},
    "/sip/transfer": {"POST": _transfer},
    "/sip/call": {"POST": _call},
    "/ws": {"GET": _ws_over_http},
}
# Routes with one path parameter: the segment after the prefix, percent-decoded.
_PARAM: Final[dict[str, dict[str, Handler]]] = {
    "/livekit/rooms/": {"GET": _room},
    "/recording/": {"GET": _recording},
}


def _route(raw_path: str) -> tuple[dict[str, Handler], str] | Response | None:
    methods = _STATIC.get(raw_path)
    if methods is not None:
        return methods, ""
    for prefix, methods in _PARAM.items():
        if raw_path.startswith(prefix):
            segment = raw_path[len(prefix) :]
            # A parameter is exactly one non-empty segment; "%2F" is part of it.
            if not segment or "/" in segment:
                return None
            try:
                return methods, unquote(segment, errors="strict")
            except UnicodeDecodeError:
                return _plain(400, "Invalid URL: path parameter is not valid UTF-8")
    return None


async def handle(request: Request, ctx: Context) -> Response:
    """Answer one REST request (authentication already passed)."""
    # Route on the raw path: the decoded one turns "%2F" into "/", a segment boundary.
    routed = _route(request.raw_path.decode("latin-1"))
    if routed is None:
        return Response(404)
    if isinstance(routed, Response):
        return routed
    methods, param = routed
    handler = methods.get(request.method)
    if handler is None:
        return Response(405, headers={"allow": ",".join(methods)})
    return handler(request, ctx, param)

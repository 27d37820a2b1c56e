"""``RestClient``: every Sayna REST endpoint over one ``httpx.AsyncClient``.

The client is a thin shell around :mod:`saynad.protocol.rest`: it checks arguments,
encodes request Structs, sends them, and maps what comes back. All failures surface as
:class:`~saynad.errors.ClientError` subclasses, translated once here:

- a status >= 400 becomes the :class:`~saynad.errors.HTTPStatusError` subclass for that
  status, carrying the method, endpoint, raw body text and, when the body is a JSON
  error, its ``error``/``code``/``message`` fields;
- connection refused, DNS, TLS and reset errors become
  :class:`~saynad.errors.TransportError`; deadlines become
  :class:`~saynad.errors.RequestTimeoutError` (both chained with ``from``);
- a 2xx body that does not match the schema becomes
  :class:`~saynad.errors.ResponseDecodeError`;
- bad arguments raise :class:`~saynad.errors.ValidationError` before anything is sent.

Observation: ``on_response(endpoint, status, seconds)`` is called after every attempt
(retries included) with the endpoint as ``"METHOD /path"`` where path parameters are
folded (``GET /livekit/rooms/{room_name}``, ``GET /recording/{stream_id}``, so the value
set stays bounded), the HTTP status (``0`` when no response arrived) and the attempt's
duration. The daemon feeds its metrics from it; this layer knows nothing of Prometheus.

Retries: only idempotent GETs (health, voices, rooms, room, SIP hooks, recording) are
retried, on 429/502/503/504 and transport errors, at most ``max_retries`` times, waiting
``Retry-After`` when the server gives one (capped by ``retry_after_max_s``) and a
jittered exponential backoff otherwise. Waits use :func:`trio.sleep`, so tests run them
instantly under trio's ``MockClock``. POST and DELETE requests are never retried: a
lost answer does not tell whether the server acted.
"""

from __future__ import annotations

import importlib.metadata
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import httpx
import msgspec
import trio

from saynad._io.httpclient import async_client
from saynad.errors import (
    ClientError,
    HTTPStatusError,
    RequestTimeoutError,
    ResponseDecodeError,
    TransportError,
    ValidationError,
    http_status_error_class,
)
from saynad.protocol.messages import TTSConfig
from saynad.protocol.phone import phone_number_problem
from saynad.protocol.rest import (
    DeleteSipHooksRequest,
    HealthResponse,
    LiveKitRoomDetails,
    LiveKitRoomsResponse,
    LiveKitTokenRequest,
    LiveKitTokenResponse,
    MuteParticipantRequest,
    MuteParticipantResponse,
    RemoveParticipantRequest,
    RemoveParticipantResponse,
    SetSipHooksRequest,
    SipCallRequest,
    SipCallResponse,
    SipCallSipConfig,
    SipHook,
    SipHooksResponse,
    SipTransferRequest,
    SipTransferResponse,
    SpeakRequest,
    Voices,
    decode_error_body,
    parse_retry_after,
    recording_path,
    room_path,
)
from saynad.protocol.urls import rest_base_url

__all__ = ["RETRY_STATUSES", "ResponseHook", "RestClient", "endpoint_name"]

T = TypeVar("T")

RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
"""Statuses after which a GET is retried: the server (or a proxy) asks to come back."""

_encoder: Final = msgspec.json.Encoder()
# One decoder per response type, built once.
_HEALTH: Final = msgspec.json.Decoder(HealthResponse)
_VOICES: Final = msgspec.json.Decoder(Voices)
_TOKEN: Final = msgspec.json.Decoder(LiveKitTokenResponse)
_ROOMS: Final = msgspec.json.Decoder(LiveKitRoomsResponse)
_ROOM: Final = msgspec.json.Decoder(LiveKitRoomDetails)
_REMOVED: Final = msgspec.json.Decoder(RemoveParticipantResponse)
_MUTED: Final = msgspec.json.Decoder(MuteParticipantResponse)
_HOOKS: Final = msgspec.json.Decoder(SipHooksResponse)
_TRANSFER: Final = msgspec.json.Decoder(SipTransferResponse)
_CALL: Final = msgspec.json.Decoder(SipCallResponse)

_JSON_HEADERS: Final = {"content-type": "application/json"}
# Body text kept on errors: enough to read a server message, bounded for logs.
_MAX_ERROR_BODY_CHARS: Final = 4096


ResponseHook = Callable[[str, int, float], None]
"""``on_response(endpoint, status, seconds)``: see the module docstring."""

# Paths with a parameter, folded to their template for observation.
_PARAM_PREFIXES: Final = (
    ("/livekit/rooms/", "/livekit/rooms/{room_name}"),
    ("/recording/", "/recording/{stream_id}"),
)


def endpoint_name(method: str, path: str) -> str:
    """``"GET /livekit/rooms/{room_name}"`` for ``("GET", "/livekit/rooms/sip-%2B1555")``."""
    for prefix, template in _PARAM_PREFIXES:
        if path.startswith(prefix):
            return f"{method} {template}"
    return f"{method} {path}"


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("saynad")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"saynad/{version}"


def _describe(exc: BaseException) -> str:
    """``ConnectError: <reason>``, the reason being the first non-empty message down the
    cause chain: under trio, httpx's TLS errors are empty and the certificate problem
    sits three causes down (``ssl.SSLCertVerificationError``)."""
    cause: BaseException | None = exc
    for _ in range(8):  # chains are short; a bound also stops a cycle
        if cause is None:
            break
        if str(cause):
            return f"{type(exc).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _require(name: str, value: object) -> str:
    """Blank strings are refused client-side, as the official client does."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string")
    return value


def _require_phone(name: str, value: object, label: str) -> None:
    """The server's phone rule, with the server's text (``{label}: {detail}``)."""
    problem = phone_number_problem(_require(name, value))
    if problem is not None:
        raise ValidationError(f"{label}: {problem}")


def _strings(name: str, values: Iterable[str]) -> tuple[str, ...]:
    # A bare str is an Iterable[str]; sending its characters as hosts is never meant.
    if isinstance(values, str | bytes):
        raise ValidationError(f"{name} must be a list of strings, not a single string")
    items = tuple(values)
    if not all(isinstance(item, str) for item in items):
        raise ValidationError(f"{name} must contain only strings")
    return items


class RestClient:
    """A client for the Sayna REST API.

    ``url`` may be ``http(s)://host[:port]`` or the WebSocket URL ``ws(s)://…/ws``: the
    REST base is derived from it. ``api_key`` defaults to the ``SAYNA_API_KEY``
    environment variable and is sent as ``Authorization: Bearer <key>``. Use it as
    ``async with RestClient(url) as rest: ...``, or call :meth:`aclose` when done.

    ``timeout_s`` bounds each attempt of a request end to end (``None``: no deadline).
    ``transport`` replaces httpx's network transport (tests pass an
    ``httpx.MockTransport``). ``max_retries`` bounds the retries of a GET;
    ``backoff_base_s``/``backoff_max_s`` shape the jittered exponential backoff between
    them and ``retry_after_max_s`` caps a server's ``Retry-After``. ``headers`` are
    added to every request. ``on_response`` observes every attempt (see the module
    docstring); an exception it raises propagates to the caller.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float | None = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 10.0,
        retry_after_max_s: float = 60.0,
        headers: Mapping[str, str] | None = None,
        on_response: ResponseHook | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive or None")
        self.base_url = rest_base_url(url)
        key = api_key or os.environ.get("SAYNA_API_KEY") or None
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._retry_after_max_s = retry_after_max_s
        self._rng = random.Random()
        self._on_response = on_response
        default_headers = {"user-agent": _user_agent()}
        if key:
            default_headers["authorization"] = f"Bearer {key}"
        default_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        self._client = async_client(
            base_url=self.base_url,
            headers=default_headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            # The server never redirects; a redirect comes from something else in the
            # path and must not silently re-send a body or the credentials.
            follow_redirects=False,
        )
        self._closed = False

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent; later calls raise ``ClientError``."""
        self._closed = True
        await self._client.aclose()

    # ---------------------------------------------------------------- health, voices, speak

    async def health(self) -> HealthResponse:
        """``GET /``: ``HealthResponse(status="OK")`` when the server is up."""
        return await self._get_json("/", _HEALTH)

    async def get_voices(self) -> Voices:
        """``GET /voices``: the TTS voices, keyed by provider."""
        return await self._get_json("/voices", _VOICES)

    async def speak(self, text: str, tts: TTSConfig) -> tuple[bytes, dict[str, str]]:
        """``POST /speak``: synthesize ``text`` once, without a WebSocket session.

        Returns the audio bytes and the response headers (names lower-cased), among
        them ``content-type``, ``x-audio-format`` and ``x-sample-rate``.
        """
        response = await self._send(
            "POST", "/speak", _encoder.encode(SpeakRequest(text=text, tts_config=tts))
        )
        return response.content, dict(response.headers.items())

    # ---------------------------------------------------------------- LiveKit

    async def get_livekit_token(
        self, room_name: str, participant_name: str, participant_identity: str
    ) -> LiveKitTokenResponse:
        """``POST /livekit/token``: a LiveKit access token for one participant.

        With tenant authentication the server creates or claims the room; a room owned
        by another tenant raises :class:`~saynad.errors.AccessDeniedError` (403). Never
        retry that with a modified room name: room names are used verbatim.
        """
        _require("room_name", room_name)
        _require("participant_name", participant_name)
        _require("participant_identity", participant_identity)
        body = LiveKitTokenRequest(room_name, participant_name, participant_identity)
        return await self._post_json("POST", "/livekit/token", body, _TOKEN)

    async def get_livekit_rooms(self) -> LiveKitRoomsResponse:
        """``GET /livekit/rooms``: the rooms visible to this API key."""
        return await self._get_json("/livekit/rooms", _ROOMS)

    async def get_livekit_room(self, room_name: str) -> LiveKitRoomDetails:
        """``GET /livekit/rooms/{room_name}``: one room with its participants.

        The name is percent-encoded as a single path segment (``/`` → ``%2F``) and not
        otherwise changed (the official client also strips it; saynad does not, so a
        name with surrounding spaces stays reachable). Another tenant's room raises
        :class:`~saynad.errors.NotFoundError`, as an absent one does.
        """
        _require("room_name", room_name)
        return await self._get_json(room_path(room_name), _ROOM)

    async def remove_livekit_participant(
        self, room_name: str, participant_identity: str
    ) -> RemoveParticipantResponse:
        """``DELETE /livekit/participant``: disconnect a participant from a room.

        The participant's token stays valid: it may rejoin unless you stop issuing it.
        """
        _require("room_name", room_name)
        _require("participant_identity", participant_identity)
        body = RemoveParticipantRequest(room_name, participant_identity)
        return await self._post_json("DELETE", "/livekit/participant", body, _REMOVED)

    async def mute_livekit_participant_track(
        self, room_name: str, participant_identity: str, track_sid: str, muted: bool
    ) -> MuteParticipantResponse:
        """``POST /livekit/participant/mute``: mute (or unmute) one published track."""
        _require("room_name", room_name)
        _require("participant_identity", participant_identity)
        _require("track_sid", track_sid)
        if not isinstance(muted, bool):
            raise ValidationError("muted must be a boolean")
        body = MuteParticipantRequest(room_name, participant_identity, track_sid, muted)
        return await self._post_json("POST", "/livekit/participant/mute", body, _MUTED)

    # ---------------------------------------------------------------- SIP

    async def get_sip_hooks(self) -> SipHooksResponse:
        """``GET /sip/hooks``: every SIP hook (server-configured and runtime-added)."""
        return await self._get_json("/sip/hooks", _HOOKS)

    async def set_sip_hooks(self, hooks: Iterable[SipHook]) -> SipHooksResponse:
        """``POST /sip/hooks``: add hooks, replacing existing ones with the same host.

        Returns the full merged list. Hosts from the server's configuration cannot be
        changed (405, :class:`~saynad.errors.BadRequestError`).
        """
        if isinstance(hooks, SipHook):
            raise ValidationError("hooks must be a list of SipHook, not a single SipHook")
        items = tuple(hooks)
        if not all(isinstance(hook, SipHook) for hook in items):
            raise ValidationError("hooks must contain only SipHook values")
        return await self._post_json("POST", "/sip/hooks", SetSipHooksRequest(items), _HOOKS)

    async def delete_sip_hooks(self, hosts: Iterable[str]) -> SipHooksResponse:
        """``DELETE /sip/hooks``: remove hooks by host (case-insensitive).

        Returns the remaining hooks. At least one host is required.
        """
        items = _strings("hosts", hosts)
        if not items:
            raise ValidationError("hosts must contain at least one host")
        return await self._post_json("DELETE", "/sip/hooks", DeleteSipHooksRequest(items), _HOOKS)

    async def sip_transfer(
        self, room_name: str, participant_identity: str, transfer_to: str
    ) -> SipTransferResponse:
        """``POST /sip/transfer``: transfer a SIP participant's call to ``transfer_to``.

        ``transfer_to`` is checked with the server's phone rule first (digits with an
        optional leading ``+``). Not retried: a transfer must not happen twice.
        """
        _require("room_name", room_name)
        _require("participant_identity", participant_identity)
        _require_phone("transfer_to", transfer_to, "Invalid phone number")
        body = SipTransferRequest(room_name, participant_identity, transfer_to)
        return await self._post_json("POST", "/sip/transfer", body, _TRANSFER)

    async def sip_call(
        self,
        room_name: str,
        participant_name: str,
        participant_identity: str,
        from_phone_number: str,
        to_phone_number: str,
        sip: SipCallSipConfig | None = None,
    ) -> SipCallResponse:
        """``POST /sip/call``: dial ``to_phone_number`` into ``room_name``.

        ``sip`` overrides the server's outbound address and credentials for this call.
        Not retried: a call must not be placed twice.
        """
        _require("room_name", room_name)
        _require("participant_name", participant_name)
        _require("participant_identity", participant_identity)
        _require("from_phone_number", from_phone_number)
        _require("to_phone_number", to_phone_number)
        # The server's order: the destination first.
        _require_phone("to_phone_number", to_phone_number, "Invalid to_phone_number")
        _require_phone("from_phone_number", from_phone_number, "Invalid from_phone_number")
        if sip is not None and not isinstance(sip, SipCallSipConfig):
            raise ValidationError("sip must be a SipCallSipConfig")
        body = SipCallRequest(
            room_name,
            participant_name,
            participant_identity,
            from_phone_number,
            to_phone_number,
            sip if sip is not None else msgspec.UNSET,
        )
        return await self._post_json("POST", "/sip/call", body, _CALL)

    # ---------------------------------------------------------------- recordings

    async def get_recording(self, stream_id: str) -> tuple[bytes, dict[str, str]]:
        """``GET /recording/{stream_id}``: a session's ``audio.ogg``.

        Returns the bytes and the response headers (names lower-cased). The server
        refuses ids that are blank or contain ``/`` or ``..``; so does this method.
        """
        _require("stream_id", stream_id)
        if "/" in stream_id or ".." in stream_id:
            raise ValidationError("stream_id must not contain '/' or '..'")
        response = await self._send("GET", recording_path(stream_id), None, retry=True)
        return response.content, dict(response.headers.items())

    # ---------------------------------------------------------------- plumbing

    async def _get_json(self, path: str, decoder: msgspec.json.Decoder[T]) -> T:
        response = await self._send("GET", path, None, retry=True)
        return self._decode(response, "GET", path, decoder)

    async def _post_json(
        self, method: str, path: str, body: Any, decoder: msgspec.json.Decoder[T]
    ) -> T:
        response = await self._send(method, path, _encoder.encode(body))
        return self._decode(response, method, path, decoder)

    @staticmethod
    def _decode(
        response: httpx.Response, method: str, path: str, decoder: msgspec.json.Decoder[T]
    ) -> T:
        try:
            return decoder.decode(response.content)
        # Invalid UTF-8 inside a string and deep nesting escape msgspec's hierarchy.
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ResponseDecodeError(
                response.status_code,
                method=method,
                endpoint=path,
                detail=str(exc),
                body=response.content[:500].decode("utf-8", errors="replace"),
            ) from exc

    async def _send(
        self, method: str, path: str, content: bytes | None, *, retry: bool = False
    ) -> httpx.Response:
        """Send one request, retrying a GET when ``retry``; return a 2xx response."""
        if self._closed:
            raise ClientError("RestClient is closed")
        retries = self._max_retries if retry else 0
        attempt = 0
        while True:
            delay: float
            try:
                response = await self._attempt(method, path, content)
            except TransportError:
                if attempt >= retries:
                    raise
                delay = self._backoff(attempt)
            else:
                if response.status_code < 400:
                    return response
                error = self._status_error(method, path, response)
                if attempt >= retries or response.status_code not in RETRY_STATUSES:
                    raise error
                if error.retry_after_s is not None:
                    delay = min(error.retry_after_s, self._retry_after_max_s)
                else:
                    delay = self._backoff(attempt)
            attempt += 1
            await trio.sleep(delay)

    async def _attempt(self, method: str, path: str, content: bytes | None) -> httpx.Response:
        """One HTTP exchange, observed by ``on_response`` when set."""
        hook = self._on_response
        if hook is None:
            return await self._exchange(method, path, content)
        started = trio.current_time()
        status = 0
        try:
            response = await self._exchange(method, path, content)
            status = response.status_code
            return response
        finally:
            hook(endpoint_name(method, path), status, trio.current_time() - started)

    async def _exchange(self, method: str, path: str, content: bytes | None) -> httpx.Response:
        """One HTTP exchange, with httpx's errors translated to saynad's."""
        headers = _JSON_HEADERS if content is not None else None
        try:
            # trio's deadline covers the whole exchange (connect, send, full body),
            # which httpx's per-operation timeouts do not.
            with trio.fail_after(self._timeout_s if self._timeout_s is not None else float("inf")):
                return await self._client.request(method, path, content=content, headers=headers)
        except trio.TooSlowError as exc:
            raise RequestTimeoutError(
                f"{method} {path}: no complete answer within {self._timeout_s} s"
            ) from exc
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(f"{method} {path}: {_describe(exc)}") from exc
        except httpx.DecodingError as exc:
            raise ResponseDecodeError(
                0, method=method, endpoint=path, detail=f"undecodable content encoding: {exc}"
            ) from exc
        except httpx.RequestError as exc:
            # ConnectError (refused, DNS, TLS), ReadError/WriteError (reset),
            # RemoteProtocolError (the peer broke HTTP), ProxyError, ...
            raise TransportError(f"{method} {path}: {_describe(exc)}") from exc

    @staticmethod
    def _status_error(method: str, path: str, response: httpx.Response) -> HTTPStatusError:
        parsed = decode_error_body(response.content)
        text = response.content.decode("utf-8", errors="replace")[:_MAX_ERROR_BODY_CHARS]
        return http_status_error_class(response.status_code)(
            response.status_code,
            method=method,
            endpoint=path,
            error=parsed.error if parsed else None,
            code=parsed.code if parsed else None,
            detail=parsed.message if parsed else None,
            body=text,
            retry_after_s=parse_retry_after(response.headers.get("retry-after"), now=time.time()),
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of the step,
        so retries from many clients spread out but never collapse to zero."""
        step = min(self._backoff_max_s, self._backoff_base_s * 2.0**attempt)
        return step / 2 + self._rng.uniform(0, step / 2)

"""One Sayna WebSocket session: :func:`open_session` and :class:`Session`.

::

    async with open_session(url, stt=stt, tts=tts) as session:   # returns after `ready`
        await session.speak("Hello!")
        async for event in session.events():
            ...

Lifecycle. :func:`open_session` validates its arguments (before any connection),
connects, sends ``config`` and waits for ``ready``. A fatal ``error`` before ``ready``
(the prefixes of §2.5 of the protocol reference) raises
:class:`~saynad.errors.SessionConfigError`; other ``error`` frames before ``ready``
(loading-audio problems, asynchronous provider errors) are kept and delivered first by
:meth:`Session.events`. No ``ready`` within ``ready_timeout_s`` (counted from the end of
the handshake) raises :class:`~saynad.errors.ReadyTimeoutError`. Leaving the block closes
the socket with code 1000.

Events. :meth:`Session.events` yields every server frame as its typed struct
(:class:`~saynad.protocol.messages.STTResult`, ``Error``, ...) and binary frames as
:class:`~saynad.protocol.messages.TTSAudio`. ``error`` frames are ordinary events: they
never end the session. Frames that do not decode (not JSON, unknown ``type``, bad
fields) are counted in :attr:`Session.stats`, logged (rate-limited) and skipped.
There is a single consumer; commands may be sent from any task.

Commands. Each command method (:meth:`Session.speak`, :meth:`Session.clear`, …) checks
its arguments, builds the frame (a frozen struct of :mod:`saynad.protocol.messages`) and
sends it; :meth:`Session.send` sends a frame you built (any
:data:`~saynad.protocol.messages.SessionCommand`, :class:`~saynad.protocol.messages.AudioFrame`
for raw audio). Same bytes on the wire either way.

How the iterator ends when the connection closes:

- it **ends normally** when this side closed the session (:meth:`Session.aclose`), when
  the server closed with code ``1000``, or when the server closed without a status code
  (``1005``) after a ``participant_disconnected`` event — that is how the server ends a
  LiveKit session when a participant leaves (§2.2, §9 rule 5);
- it **raises** :class:`~saynad.errors.ConnectionClosedError` (with ``code`` and
  ``reason``) for every other close: ``1005`` out of the blue, ``1006`` (the connection
  broke), ``1011``, ``1009`` (a message over ``max_message_bytes``), and so on.

Once ended, further iteration ends at once (or raises the same error again). Sending a
command after :meth:`Session.aclose` raises :class:`~saynad.errors.SessionClosedError`;
sending after the server closed raises :class:`~saynad.errors.ConnectionClosedError`.

Back-pressure: events are read only while someone iterates. A session nobody reads
stops reading its socket (the default transport holds at most one 64 KiB read ahead;
the trio-websocket one ``receive_queue_size`` messages), and the server then blocks
(the real server queues 1024 frames per connection, then waits).
"""

from __future__ import annotations

import math
import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import structlog
import trio

from saynad._groups import unwrapped
from saynad.client import pacing
from saynad.client.transport import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RECEIVE_QUEUE_SIZE,
    Implementation,
    WebSocketTransport,
    connect_websocket,
)
from saynad.errors import (
    ConnectionClosedError,
    FrameDecodeError,
    ReadyTimeoutError,
    SessionClosedError,
    SessionConfigError,
    ValidationError,
)
from saynad.protocol.messages import (
    UNSET,
    AudioFrame,
    ClearFrame,
    ClientFrame,
    ConfigFrame,
    Error,
    LiveKitConfig,
    LoadingAudioConfig,
    LoadingStartFrame,
    LoadingStopFrame,
    Message,
    ParticipantConnected,
    ParticipantDisconnected,
    Ready,
    SendMessageFrame,
    ServerEvent,
    SessionCommand,
    SipTransferError,
    SipTransferFrame,
    SpeakFrame,
    STTConfig,
    STTResult,
    TrackSubscribed,
    TTSAudio,
    TTSConfig,
    TTSPlaybackComplete,
    TurnDetectSettings,
    UnsetType,
    UpdateConfigFrame,
    VADEvent,
    VadSettings,
    decode_server_event,
    encode_client_frame,
    send_message_frame,
    sip_transfer_frame,
    speak_frame,
)
from saynad.protocol.urls import websocket_url

__all__ = [
    "FATAL_CONFIG_ERROR_PREFIXES",
    "Session",
    "SessionEvent",
    "SessionStats",
    "is_fatal_config_error",
    "open_session",
]

SessionEvent = ServerEvent | TTSAudio
"""What :meth:`Session.events` yields."""

FATAL_CONFIG_ERROR_PREFIXES: Final[tuple[str, ...]] = (
    "STT configuration is required when audio=true",
    "TTS configuration is required when audio=true",
    "Unsupported provider: ",
    "Invalid auth input for provider ",
    "Missing server auth for provider ",
    "Failed to create voice manager: ",
    "Failed to start voice manager: ",
    "Failed to set up STT callback: ",
    "Failed to set up STT error callback: ",
    "Failed to set up TTS error callback: ",
    "Failed to set up TTS completion callback: ",
    "Timeout waiting for voice providers to be ready",
    "LiveKit room handler not initialized",
    "Access denied: room '",
    "Failed to create room '",
    "Failed to prepare room: ",
    "Failed to create room: ",
    "Failed to generate agent token: ",
    "Failed to connect to LiveKit room: ",
    "Invalid message format: ",
)
"""``error`` texts that, before ``ready``, mean no ``ready`` will follow (§2.5).

Everything else before ``ready`` is non-fatal — notably ``Failed to set up TTS audio
callback: …``, the loading-audio texts, ``STT streaming error: …`` and ``TTS error: …``.
"""

# How many pre-``ready`` events are kept for events(). The server sends a handful at
# most; past this bound the oldest are dropped and counted (stats.dropped).
_PENDING_LIMIT: Final = 256

# Malformed-frame logging: the first few lines in full, then one per window per session.
_LOG_BURST: Final = 5
_LOG_WINDOW_S: Final = 10.0

_log = structlog.get_logger("saynad.client.session")


def is_fatal_config_error(message: str) -> bool:
    """Whether an ``error`` text received before ``ready`` is fatal (§2.5)."""
    return message.startswith(FATAL_CONFIG_ERROR_PREFIXES)


_IN_KIND: Final[dict[type[Any], str]] = {
    cls: cls.__struct_config__.tag  # type: ignore[misc]
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
}
# What Session.send takes, by class: the frame's ``type`` (``audio`` for binary frames),
# the key of SessionStats.out_by_kind. ``config`` is not among them: open_session sends it.
_COMMAND_KIND: Final[dict[type[Any], str]] = {
    **{
        cls: cls.__struct_config__.tag  # type: ignore[misc]
        for cls in (
            SpeakFrame,
            ClearFrame,
            SendMessageFrame,
            SipTransferFrame,
            UpdateConfigFrame,
            LoadingStartFrame,
            LoadingStopFrame,
        )
    },
    AudioFrame: "audio",
}
_OUT_KIND: Final[dict[type[Any], str]] = {**_COMMAND_KIND, ConfigFrame: "config"}


@dataclass(slots=True)
class SessionStats:
    """Per-session counters, updated in place (cheap to read at any time).

    ``bytes_in``/``bytes_out`` count payload bytes as on the wire (a text frame's
    UTF-8 length, not its characters). ``in_by_kind`` is keyed by the
    frame ``type`` (``tts_audio`` for binary frames), ``out_by_kind`` likewise
    (``audio`` for binary frames). ``malformed`` counts frames that are not JSON, not an
    object, or a known type with bad fields; ``unknown_types`` frames with an unknown
    ``type``. ``dropped`` counts pre-``ready`` events discarded past the buffer bound.
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    malformed: int = 0
    unknown_types: int = 0
    dropped: int = 0
    in_by_kind: dict[str, int] = field(default_factory=dict)
    out_by_kind: dict[str, int] = field(default_factory=dict)


class _Events:
    """The async iterator returned by :meth:`Session.events` (a plain class, not an
    async generator, so abandoning it needs no finalisation)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def __aiter__(self) -> _Events:
        return self

    def __anext__(self) -> Coroutine[Any, Any, SessionEvent]:
        # The coroutine itself, not one awaiting it: one frame less under every wait.
        return self._session._next_event()


class Session:
    """An open, ready Sayna session. Obtain one from :func:`open_session`."""

    def __init__(self, transport: WebSocketTransport, *, url: str) -> None:
        self._transport = transport
        self.url = url
        """The WebSocket URL this session is connected to."""
        self.stats = SessionStats()
        """Counters for frames and bytes in each direction (see :class:`SessionStats`)."""
        self._ready: Ready | None = None
        self._pending: deque[SessionEvent] = deque()
        self._closing = False
        self._peer_left = False
        self._ended = False
        self._end_error: ConnectionClosedError | None = None
        self._bad_logged = 0
        self._bad_window_start = 0.0
        self._bad_suppressed = 0

    # ------------------------------------------------------------------ properties

    @property
    def ready(self) -> Ready:
        """The ``ready`` frame: ``stream_id``, LiveKit room name, URL, agent identity/name."""
        if self._ready is None:  # only reachable from inside open_session
            raise RuntimeError("the session is not ready yet")
        return self._ready

    @property
    def stream_id(self) -> str:
        """The session's stream id (ours, or the UUID the server generated)."""
        return self.ready.stream_id

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closing

    # ------------------------------------------------------------------ commands

    async def send(self, frame: SessionCommand) -> None:
        """Send one command, built as its frame: any
        :data:`~saynad.protocol.messages.SessionCommand` (``SpeakFrame``, ``ClearFrame``,
        ``SendMessageFrame``, ``SipTransferFrame``, ``UpdateConfigFrame``,
        ``LoadingStartFrame``, ``LoadingStopFrame``, or an ``AudioFrame`` of raw audio).

        The methods below build these frames for you and check their arguments;
        :meth:`send` sends a frame exactly as built (msgspec does not check field types
        when a frame is constructed), so a program that queues commands, or builds them
        once and sends them many times, can keep the frames themselves. The bytes on the
        wire are the same either way. ``ConfigFrame`` is refused with
        :class:`~saynad.errors.ValidationError`: :func:`open_session` sends the one
        ``config`` of a session (a second one would rebuild the server's pipeline).
        """
        kind = _COMMAND_KIND.get(type(frame))
        if kind is None:
            if isinstance(frame, ConfigFrame):
                raise ValidationError("config is sent by open_session, once per session")
            raise ValidationError(f"not a session command: {type(frame).__name__}")
        if self._closing:
            raise SessionClosedError("the session is closed")
        stats = self.stats
        if type(frame) is AudioFrame:
            pcm = frame.data
            data = pcm if type(pcm) is bytes else bytes(pcm)
            await self._transport.send_bytes(data)
        else:
            data = encode_client_frame(frame)  # type: ignore[arg-type]
            await self._transport.send_text(data)
        stats.frames_out += 1
        stats.bytes_out += len(data)
        stats.out_by_kind[kind] = stats.out_by_kind.get(kind, 0) + 1

    async def speak(self, text: str, flush: bool = True, allow_interruption: bool = True) -> None:
        """Queue ``text`` for synthesis. Both flags are always sent.

        Speech is FIFO (``flush`` has no effect on current servers); empty text produces
        nothing, not even ``tts_playback_complete``. ``allow_interruption=False`` makes
        :meth:`clear` a no-op while this utterance plays.
        """
        await self._send(speak_frame(text, flush, allow_interruption))

    async def send_audio(self, pcm: bytes | bytearray | memoryview) -> None:
        """Send raw audio for STT, in the ``stt_config`` format (one binary frame)."""
        if self._closing:
            raise SessionClosedError("the session is closed")
        data = pcm if type(pcm) is bytes else bytes(pcm)
        await self._transport.send_bytes(data)
        stats = self.stats
        stats.frames_out += 1
        stats.bytes_out += len(data)
        stats.out_by_kind["audio"] = stats.out_by_kind.get("audio", 0) + 1

    async def stream_audio(
        self,
        chunks: Sequence[bytes | bytearray | memoryview],
        interval_s: float = 0.020,
        *,
        start: float | None = None,
        on_sent: pacing.OnSent | None = None,
    ) -> None:
        """Stream audio at a steady pace: ``chunks[i]`` goes out as one binary frame at
        ``start + i * interval_s`` on trio's clock (``start`` defaults to the moment of
        the call).

        Real-time 16 kHz mono ``linear16`` in 20 ms chunks is 640-byte chunks with the
        default ``interval_s``; ``interval_s=0`` sends as fast as the socket takes them.
        Frames never leave early, and each is due on the absolute schedule: a frame
        written late (the process was busy) does not delay the ones after it. What is
        already due when the call starts — chunk 0, and every chunk whose time has
        passed when ``start`` lies in the past — is written at once by the calling task;
        overdue frames after a stall go out at once too. Frames due together leave in
        one write (up to 16 frames or 64 KiB of audio): the server gets them back to
        back, and catching up costs one system call, not one per frame.

        ``start``: where the schedule begins. Leave it out when the call itself marks
        the start of the audio. When the schedule began earlier — the audio is due from
        the moment a ``speak`` was sent, but the stream runs in a task started later (a
        task started in a busy process may run a scheduler batch or two after
        ``start_soon``) — take ``t0 = trio.current_time()`` at that moment and pass
        ``start=t0``: the stream then catches up on what it missed instead of shifting
        the whole stream by the delay.
        ``on_sent(i, lag_s)`` runs after chunk ``i`` was written, ``lag_s`` after its due
        time; it must be quick and is called from saynad's pacing timer, outside any
        task (an exception from it stops the stream and is raised here; it still hears
        of the other frames of the same write, which are on the wire).

        Returns once the last frame is written. Cheaper than a ``sleep_until`` and
        :meth:`send_audio` per chunk: the pacing timer writes due frames itself and this
        task wakes only at the end (see :mod:`saynad.client.pacing`). Commands sent from
        other tasks meanwhile go out between two frames. Cancelling stops the stream.
        Each frame counts in :attr:`stats` as soon as it is written.
        """
        if self._closing:
            raise SessionClosedError("the session is closed")
        if not (interval_s >= 0 and math.isfinite(interval_s)):
            raise ValidationError("interval_s must be a finite number ≥ 0")
        if start is not None and not math.isfinite(start):
            raise ValidationError("start must be a finite time on trio's clock")
        frames: Sequence[bytes] = (
            chunks  # type: ignore[assignment]
            if all(type(chunk) is bytes for chunk in chunks)
            else [bytes(chunk) for chunk in chunks]
        )
        stats = self.stats
        kinds = stats.out_by_kind

        # Counted frame by frame, as send_audio does, so stats (and the daemon's metrics,
        # read at scrape time) follow a long stream while it runs.
        def sent(index: int, lag_s: float) -> None:
            stats.frames_out += 1
            stats.bytes_out += len(frames[index])
            kinds["audio"] = kinds.get("audio", 0) + 1
            if on_sent is not None:
                on_sent(index, lag_s)

        await self._transport.stream_bytes(
            frames,
            interval_s,
            start=trio.current_time() if start is None else start,
            on_sent=sent,
        )

    async def clear(self) -> None:
        """Drop queued and unsent speech (ignored inside a non-interruptible window)."""
        await self._send(ClearFrame())

    async def tts_flush(self, allow_interruption: bool = True) -> None:
        """Send ``speak`` with empty text, as the official client does (a server no-op)."""
        await self._send(SpeakFrame(text="", flush=True, allow_interruption=allow_interruption))

    async def send_message(
        self, message: str, role: str, topic: str | None = None, debug: Any = None
    ) -> None:
        """Publish a data message to the LiveKit room; ``topic``/``debug`` are omitted when
        ``None`` (the server then uses topic ``messages``)."""
        await self._send(send_message_frame(message, role, topic, debug))

    async def sip_transfer(self, transfer_to: str) -> None:
        """Transfer the room's SIP caller to ``transfer_to`` (sent stripped).

        Failures arrive later as :class:`~saynad.protocol.messages.SipTransferError`.
        """
        await self._send(sip_transfer_frame(transfer_to))

    async def update_config(
        self, *, vad: VadSettings | None = None, turn_detect: TurnDetectSettings | None = None
    ) -> None:
        """Send ``update_config``. ``turn_detect.threshold`` is server-global (§3.8)."""
        await self._send(
            UpdateConfigFrame(
                vad=UNSET if vad is None else vad,
                turn_detect=UNSET if turn_detect is None else turn_detect,
            )
        )

    async def loading_start(self) -> None:
        """Start looping the loading clip in the room (exactly ``{"type":"loading_start"}``)."""
        await self._send(LoadingStartFrame())

    async def loading_stop(self) -> None:
        """Fade the loading clip out (exactly ``{"type":"loading_stop"}``)."""
        await self._send(LoadingStopFrame())

    async def aclose(self) -> None:
        """Close the WebSocket with code 1000. Idempotent; :meth:`events` then ends."""
        if self._closing:
            return
        self._closing = True
        await self._transport.aclose(1000)

    async def _send(self, frame: ClientFrame) -> None:
        """Send a JSON frame (``config`` too: open_session's way)."""
        if self._closing:
            raise SessionClosedError("the session is closed")
        data = encode_client_frame(frame)
        await self._transport.send_text(data)
        stats = self.stats
        stats.frames_out += 1
        stats.bytes_out += len(data)
        kind = _OUT_KIND[type(frame)]
        stats.out_by_kind[kind] = stats.out_by_kind.get(kind, 0) + 1

    # ------------------------------------------------------------------ events

    def events(self) -> AsyncIterator[SessionEvent]:
        """Iterate over incoming events; see the module docstring for how it ends."""
        return _Events(self)

    async def _next_event(self) -> SessionEvent:
        if self._pending:
            return self._pending.popleft()
        while True:
            if self._ended:
                if self._end_error is not None:
                    error = self._end_error
                    raise ConnectionClosedError(error.code, error.reason)
                raise StopAsyncIteration
            try:
                raw = await self._transport.receive()
            except ConnectionClosedError as exc:
                self._ended = True
                if not (
                    self._closing or exc.code == 1000 or (exc.code == 1005 and self._peer_left)
                ):
                    self._end_error = exc
                continue
            event = self._decode(raw)
            if event is not None:
                return event

    def _decode(self, raw: str | bytes) -> SessionEvent | None:
        """Count and decode one frame; ``None`` for frames that are skipped."""
        stats = self.stats
        stats.frames_in += 1
        # Bytes on the wire: a text frame's UTF-8 length (str.isascii() is a flag check).
        if isinstance(raw, bytes) or raw.isascii():
            stats.bytes_in += len(raw)
        else:
            stats.bytes_in += len(raw.encode("utf-8", "surrogatepass"))
        kinds = stats.in_by_kind
        if type(raw) is bytes:
            kinds["tts_audio"] = kinds.get("tts_audio", 0) + 1
            return TTSAudio(raw)
        try:
            event = decode_server_event(raw)
        except FrameDecodeError as exc:
            if exc.kind == "unknown_type":
                stats.unknown_types += 1
            else:
                stats.malformed += 1
            self._log_bad_frame(exc, raw)
            return None
        cls = type(event)
        kind = _IN_KIND[cls]
        kinds[kind] = kinds.get(kind, 0) + 1
        if cls is ParticipantDisconnected:
            self._peer_left = True
        return event

    def _log_bad_frame(self, exc: FrameDecodeError, raw: str | bytes) -> None:
        """One warning per bad frame, at most ``_LOG_BURST`` per ``_LOG_WINDOW_S``."""
        now = time.monotonic()
        if now - self._bad_window_start >= _LOG_WINDOW_S:
            self._bad_window_start = now
            self._bad_logged = 0
        if self._bad_logged >= _LOG_BURST:
            self._bad_suppressed += 1
            return
        self._bad_logged += 1
        _log.warning(
            "ignored undecodable frame",
            kind=exc.kind,
            frame_type=exc.frame_type,
            detail=exc.detail[:200],
            preview=raw[:80],
            stream_id=self._ready.stream_id if self._ready else None,
            suppressed_before=self._bad_suppressed,
        )
        self._bad_suppressed = 0

    async def _wait_ready(self) -> Ready:
        """Read until ``ready``: keep non-fatal events, raise on a fatal ``error``."""
        while True:
            event = self._decode(await self._transport.receive())
            if event is None:
                continue
            if isinstance(event, Ready):
                self._ready = event
                return event
            if isinstance(event, Error) and is_fatal_config_error(event.message):
                raise SessionConfigError(event.message)
            if len(self._pending) >= _PENDING_LIMIT:
                self._pending.popleft()
                self.stats.dropped += 1
            self._pending.append(event)


def _build_config(
    *,
    stt: STTConfig | None,
    tts: TTSConfig | None,
    livekit: LiveKitConfig | None,
    audio: bool | UnsetType,
    stream_id: str | None,
    loading_audio: LoadingAudioConfig | None,
) -> ConfigFrame:
    """Validate the caller's arguments and build the ``config`` frame (omit what was not
    passed, so the server applies its own defaults)."""
    if audio is not UNSET and not isinstance(audio, bool):
        raise ValidationError("audio must be a bool")
    if stt is not None and not isinstance(stt, STTConfig):
        raise ValidationError("stt must be an STTConfig")
    if tts is not None and not isinstance(tts, TTSConfig):
        raise ValidationError("tts must be a TTSConfig")
    if livekit is not None and not isinstance(livekit, LiveKitConfig):
        raise ValidationError("livekit must be a LiveKitConfig")
    if loading_audio is not None:
        if not isinstance(loading_audio, LoadingAudioConfig):
            raise ValidationError("loading_audio must be a LoadingAudioConfig")
        if not loading_audio.data:
            raise ValidationError("loading_audio.data must be non-empty base64")
    if stream_id is not None and not isinstance(stream_id, str):
        raise ValidationError("stream_id must be a string")
    if audio is not False and (stt is None or tts is None):
        missing = " and ".join(name for name, v in (("stt", stt), ("tts", tts)) if v is None)
        raise ValidationError(f"{missing} required when audio is enabled (pass audio=False)")
    return ConfigFrame(
        stream_id=UNSET if stream_id is None else stream_id,
        audio=audio,
        stt_config=UNSET if stt is None else stt,
        tts_config=UNSET if tts is None else tts,
        livekit=UNSET if livekit is None else livekit,
        loading_audio=UNSET if loading_audio is None else loading_audio,
    )


def _positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValidationError(f"{name} must be a positive number")


@asynccontextmanager
async def open_session(
    url: str,
    *,
    stt: STTConfig | None = None,
    tts: TTSConfig | None = None,
    livekit: LiveKitConfig | None = None,
    audio: bool | UnsetType = UNSET,
    api_key: str | None = None,
    stream_id: str | None = None,
    loading_audio: LoadingAudioConfig | None = None,
    ready_timeout_s: float = 60.0,
    connect_timeout_s: float = 10.0,
    close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    receive_queue_size: int = DEFAULT_RECEIVE_QUEUE_SIZE,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_interval_s: float | None = None,
    keepalive_timeout_s: float = 10.0,
    transport: Implementation = "wsproto",
) -> AsyncIterator[Session]:
    """Open a Sayna session; the block runs once ``ready`` has arrived.

    ``url``: ``http(s)://host[:port]`` (``/ws`` is appended) or ``ws(s)://…`` (used as
    given). ``api_key`` (else the ``SAYNA_API_KEY`` environment variable) is sent as
    ``Authorization: Bearer …`` on the upgrade. Every ``config`` field the caller did
    not pass is omitted, so the server applies its own default.

    ``audio``: by default nothing is sent — ``config`` carries no ``audio`` key, and the
    server reads an absent (or ``null``) ``audio`` as ``true`` (§3.3 of the protocol
    reference): a voice session, with ``stt`` and ``tts`` required, exactly what the
    official SDK gets by always sending ``"audio": true``. saynad omits it by the same
    rule as every other field (what you did not choose is the server's to decide), and
    still checks that ``stt`` and ``tts`` are given, as the server would. Pass
    ``audio=True`` to send the key anyway, or ``audio=False`` for a session without
    media (data messages and participant events only; ``stt``/``tts`` not needed).

    Raises :class:`~saynad.errors.ValidationError` (bad arguments, nothing sent),
    :class:`~saynad.errors.TransportError` (cannot connect),
    :class:`~saynad.errors.HandshakeRejectedError` (e.g. 401),
    :class:`~saynad.errors.SessionConfigError` (fatal ``error`` before ``ready``),
    :class:`~saynad.errors.ReadyTimeoutError` (no ``ready`` within ``ready_timeout_s``)
    and :class:`~saynad.errors.ConnectionClosedError` (closed before ``ready``).

    Keepalive: with ``keepalive_interval_s``, a task pings the server whenever nothing
    arrived for that long; when no byte comes back within ``keepalive_timeout_s`` the
    connection is dropped and :meth:`Session.events` raises
    :class:`~saynad.errors.ConnectionClosedError` (1006, ``"keepalive: …"``). A dead or
    stalled peer is therefore noticed within ``interval + timeout``. The server answers
    pings itself (it sends none); the answer is read by whoever iterates
    :meth:`Session.events`, so keep reading (the daemon's session reader always does).

    ``transport`` chooses the WebSocket implementation under the session; both speak
    the same protocol and raise the same errors:

    - ``"wsproto"`` (the default): saynad's thin trio shell over wsproto's sans-IO
      protocol. No background task; it reads only while :meth:`Session.events` waits
      (at most one 64 KiB read ahead), writes each frame with one socket call, and
      :meth:`Session.stream_audio` writes paced audio straight from the pacing timer.
    - ``"trio-websocket"``: the `trio-websocket <https://trio-websocket.readthedocs.io>`_
      library: a reader task per connection that reads ahead up to
      ``receive_queue_size`` messages (the option applies to it alone), and a lock and a
      task switch per frame — several times the CPU per audio frame (``make bench``
      compares the two). A fallback, should the default ever misbehave with a proxy in
      between.
    """
    frame = _build_config(
        stt=stt,
        tts=tts,
        livekit=livekit,
        audio=audio,
        stream_id=stream_id,
        loading_audio=loading_audio,
    )
    ws_url = websocket_url(url)
    _positive("ready_timeout_s", ready_timeout_s)
    _positive("connect_timeout_s", connect_timeout_s)
    _positive("close_timeout_s", close_timeout_s)
    if keepalive_interval_s is not None:
        _positive("keepalive_interval_s", keepalive_interval_s)
    _positive("keepalive_timeout_s", keepalive_timeout_s)
    if not isinstance(max_message_bytes, int) or max_message_bytes <= 0:
        raise ValidationError("max_message_bytes must be a positive integer")
    if not isinstance(receive_queue_size, int) or receive_queue_size <= 0:
        raise ValidationError("receive_queue_size must be a positive integer")
    if transport not in ("wsproto", "trio-websocket"):
        raise ValidationError("transport must be 'wsproto' or 'trio-websocket'")
    key = os.environ.get("SAYNA_API_KEY") if api_key is None else api_key
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    # Keepalive or not, the block's errors and the session's own leave this function
    # bare: the nurseries in between never turn them into exception groups.
    with unwrapped():
        async with connect_websocket(
            ws_url,
            headers,
            connect_timeout_s=connect_timeout_s,
            max_message_bytes=max_message_bytes,
            receive_queue_size=receive_queue_size,
            close_timeout_s=close_timeout_s,
            ssl_context=ssl_context,
            implementation=transport,
        ) as connection:
            session = Session(connection, url=ws_url)
            try:
                await session._send(frame)
                del frame  # sent: not kept alive for the whole session
                try:
                    with trio.fail_after(ready_timeout_s):
                        await session._wait_ready()
                except trio.TooSlowError:
                    raise ReadyTimeoutError(
                        f"no ready frame from {ws_url} within {ready_timeout_s} s"
                    ) from None
                if keepalive_interval_s is None:
                    yield session
                else:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            _keepalive,
                            connection,
                            keepalive_interval_s,
                            keepalive_timeout_s,
                            name="keepalive",
                        )
                        try:
                            yield session
                        finally:
                            nursery.cancel_scope.cancel()
            finally:
                await session.aclose()


async def _keepalive(transport: WebSocketTransport, interval_s: float, timeout_s: float) -> None:
    """Ping an idle connection; drop it when the peer stays silent past the deadline."""
    while True:
        idle_until = transport.last_activity + interval_s
        if trio.current_time() < idle_until:
            await trio.sleep_until(idle_until)
            continue
        sent = trio.current_time()
        # The deadline covers sending the ping too: against a stalled peer the socket's
        # send buffer fills up (audio keeps flowing) and the ping waits behind it.
        with trio.move_on_after(timeout_s):
            try:
                await transport.ping()
            except ConnectionClosedError:
                return  # the reader reports the close
            while transport.last_activity < sent:
                await transport.wait_activity()
        if transport.last_activity < sent:
            _log.warning("keepalive: no answer, dropping the connection", timeout_s=timeout_s)
            await transport.abort(f"keepalive: no answer within {timeout_s:g} s")
            return

"""The emulator's WebSocket session (§2–§4 of the protocol reference).

One connection is one :class:`_Session` and one task tree, owned by
:func:`serve_session`::

    serve_session (nursery)
    ├── read loop      the connection's frames, strictly in order, each handled fully
    │                  before the next (config, commands, binary audio → fake STT)
    ├── writer         the single task that writes to the socket; drains the outbound
    │                  queue (1024 frames, as the server; producers block when full) and
    │                  applies the chaos options (latency, garbage, abrupt drop)
    ├── TTS worker     speak jobs (FIFO, 256) → tone chunks of ``tts_chunk_ms`` at real-
    │                  time pace → ``tts_playback_complete`` when the queue drains; a
    │                  ``speak`` that finds nothing playing and no first-audio delay has
    │                  its first chunk queued by the read loop itself (a task switch
    │                  sooner), the worker plays the rest
    └── room pump      LiveKit room events (256; overflow dropped and counted in
                       ``state.dropped_room_events``) → participant/message frames

Frames are compact JSON with ``type`` first and absent fields omitted (the structs of
:mod:`saynad.protocol.messages`, encoded by msgspec). The server never acknowledges a
successful command; only failures produce frames. ``error`` frames never close the
connection. The session ends when the peer goes away, ~100 ms after a
``participant_disconnected`` (Close frame *without* status code, as the server does), or
when chaos drops it (Close 1011). On every end the agent leaves its room and the room is
deleted, even if it existed before (§2.6).

Deterministic STT: for every ``utterance_ms`` of received audio (bytes → ms from the
``stt_config`` rate and channels, 16-bit samples) the next line of ``options.script``
is transcribed — an interim result with the first half of its words once
``interim_ms`` of that utterance arrived, then a final one (``is_final`` and
``is_speech_final`` true) at ``utterance_ms``. With ``options.numbered`` finals read
``"1: …"``, ``"2: …"``, numbered per connection.
"""

from __future__ import annotations

import base64
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec
import trio
from wsproto.frame_protocol import CloseReason, FrameProtocol

from saynad._io import pacing
from saynad.emulator import wire
from saynad.emulator.asgi import WebSocket
from saynad.emulator.audio import speech_bytes, tone
from saynad.emulator.context import Context
from saynad.emulator.rest import provider_auth_problem
from saynad.emulator.state import Participant, Room, RoomEvent
from saynad.errors import FrameDecodeError
from saynad.protocol.messages import (
    Error,
    Message,
    ParticipantConnected,
    ParticipantDisconnected,
    Ready,
    RoomMessage,
    ServerEvent,
    SipTransferError,
    STTResult,
    Track,
    TrackSubscribed,
    TTSPlaybackComplete,
)
from saynad.protocol.messages import Participant as ParticipantInfo
from saynad.protocol.phone import phone_number_problem

__all__ = ["serve_session"]

OUTBOUND_QUEUE_FRAMES: Final = 1024
TTS_QUEUE_JOBS: Final = 256
ROOM_EVENT_QUEUE: Final = 256
DISCONNECT_CLOSE_DELAY_S: Final = 0.1
GARBAGE_FRAME: Final = "chaos: this frame is not JSON {"

DEFAULT_TTS_SAMPLE_RATE: Final = 24_000
DEFAULT_AGENT_IDENTITY: Final = "sayna-ai"
DEFAULT_AGENT_NAME: Final = "Sayna AI"
INTERIM_CONFIDENCE: Final = 0.8
FINAL_CONFIDENCE: Final = 0.95

AUDIO_DISABLED: Final = "Audio processing is disabled. Send config message with audio=true first."
VOICE_MANAGER_MISSING: Final = (
    "Voice manager not configured. Send config message with audio=true first."
)
LIVEKIT_MISSING: Final = (
    "LiveKit client not configured. Send config message with livekit configuration first."
)
_PROVIDERS: Final = frozenset(
    {"deepgram", "google", "elevenlabs", "microsoft-azure", "azure", "cartesia"}
)
# A recording is not real audio in the emulator: an Ogg magic and the stream id.
_RECORDING_MAGIC: Final = b"OggS"

_encoder: Final = msgspec.json.Encoder()


def _allow_close_without_status() -> None:
    """Let an ASGI app send a Close frame without status code.

    hypercorn passes the ASGI close code through ``int()``, and wsproto only omits the
    code when it receives the ``CloseReason.NO_STATUS_RCVD`` member itself (an identity
    check), turning a plain ``1005`` into ``1000``. The real server closes *without* a
    code after ``participant_disconnected`` (peers see 1005), so the emulator teaches
    wsproto to read a plain ``1005`` the same way. 1005 may never be sent on the wire
    (RFC 6455 §7.4.1), so no other behaviour changes.
    """
    original = FrameProtocol.close
    if getattr(original, "_saynad_patched", False):
        return

    def close(self: FrameProtocol, code: int | None = None, reason: str | None = None) -> bytearray:
        if code == CloseReason.NO_STATUS_RCVD:
            return original(self, CloseReason.NO_STATUS_RCVD, None)
        return original(self, code, reason)

    close._saynad_patched = True  # type: ignore[attr-defined]
    FrameProtocol.close = close  # type: ignore[method-assign]


_allow_close_without_status()


def _now_ms() -> int:
    return int(time.time() * 1000)


_T = TypeVar("_T")


async def _put(channel: trio.MemorySendChannel[_T], item: _T) -> None:
    """``channel.send(item)`` without its schedule point when the channel has room: the
    caller goes on at once (its next wait is its schedule point), the receiver runs in
    the scheduler's next batch either way."""
    try:
        channel.send_nowait(item)
    except trio.WouldBlock:
        await channel.send(item)


def _text(event: ServerEvent) -> str:
    return _encoder.encode(event).decode()


@dataclass(slots=True)
class _Close:
    """Ask the writer to close: ``code`` ``None`` sends a Close frame without code."""

    code: int | None
    delay_s: float = 0.0


_Outbound = str | bytes | _Close


@dataclass(slots=True)
class _SpeakJob:
    text: str
    allow_interruption: bool
    generation: int
    # Filled in when the job starts (see _Session.start_job).
    rate: int = 0
    size: int = 0  # bytes of speech
    chunk_bytes: int = 0
    start: float = 0.0
    next_chunk: int = 0  # the chunks before it are out

    def chunks(self) -> int:
        return -(-self.size // self.chunk_bytes)

    def chunk(self, index: int) -> bytes:
        """Chunk ``index`` of the speech, sliced from the tone."""
        offset = index * self.chunk_bytes
        return tone(self.rate, offset, min(offset + self.chunk_bytes, self.size))


@dataclass(slots=True)
class _Pipeline:
    """The "voice manager": what ``config`` set up for STT and TTS."""

    stt_bytes_per_s: int
    tts_sample_rate: int
    pronunciations: list[tuple[re.Pattern[str], str]]


class _Session:
    """One WebSocket connection's server-side state and tasks."""

    def __init__(self, socket: WebSocket, ctx: Context) -> None:
        self.socket = socket
        self.ctx = ctx
        self.options = ctx.options
        self.state = ctx.state
        self.cancel_scope = trio.CancelScope()
        self.out_send, self.out_recv = trio.open_memory_channel[_Outbound](OUTBOUND_QUEUE_FRAMES)
        self.tts_send, self.tts_recv = trio.open_memory_channel[_SpeakJob](TTS_QUEUE_JOBS)
        self.room_send, self.room_recv = trio.open_memory_channel[RoomEvent](ROOM_EVENT_QUEUE)
        # Set once a config passed the STT/TTS presence check (the server stores
        # `audio` and `stream_id` at that point, even if a later step fails).
        self.config_seen = False
        self.audio = False
        self.stream_id: str | None = None
        self.pipeline: _Pipeline | None = None
        # LiveKit
        self.livekit_requested = False
        self.room: Room | None = None
        self.room_name: str | None = None
        self.agent_identity = DEFAULT_AGENT_IDENTITY
        self.listen: frozenset[str] = frozenset()
        self.recording = False
        self.closing = False
        # Loading indicator
        self.loading_error: str | None = None
        self.loading_clip = False
        self.loading_active = False
        # TTS
        self.tts_generation = 0
        self.tts_jobs = 0  # queued or being played
        self.no_interrupt_until = float("-inf")
        # The session's entry in state.speech_timings, when those are recorded.
        self.timing: list[float] | None = None
        # STT
        self.stt_bytes = 0
        self.stt_utterances = 0
        self.stt_interim_sent = False
        self.finals = 0

    # ------------------------------------------------------------------ tasks

    async def read_loop(self, out: trio.MemorySendChannel[_Outbound]) -> None:
        """Handle the connection's frames in order until the peer goes away."""
        async with out, self.tts_send:
            while (frame := await self.socket.receive()) is not None:
                if type(frame) is str:
                    self.state.wire_log.append(frame)
                    await self.on_text(frame, out)
                else:
                    assert isinstance(frame, bytes)
                    await self.on_audio(frame, out)

    async def write_loop(self) -> None:
        """The only task that writes to the socket."""
        chaos = self.options.chaos
        drop_after = chaos.drop_after_frames
        garbage_every = chaos.garbage_every
        latency_s = chaos.latency_s
        sent = 0
        async with self.out_recv:
            if drop_after is not None and drop_after <= 0:
                await self.close(1011)
                return
            async for item in self.out_recv:
                if isinstance(item, _Close):
                    await trio.sleep(item.delay_s)
                    await self.close(item.code)
                    return
                if latency_s > 0:
                    await trio.sleep(latency_s)
                if garbage_every and (sent + 1) % garbage_every == 0:
                    await self.socket.send_text(GARBAGE_FRAME)
                if type(item) is str:
                    await self.socket.send_text(item)
                else:
                    assert isinstance(item, bytes)
                    await self.socket.send_bytes(item)
                    timing = self.timing
                    if timing is not None and math.isnan(timing[1]):
                        timing[1] = time.monotonic()
                sent += 1
                if drop_after is not None and sent >= drop_after:
                    await self.close(1011)
                    return

    async def tts_loop(self, out: trio.MemorySendChannel[_Outbound]) -> None:
        """Play queued speech at real-time pace; report when the queue drains."""
        chunk_s = self.options.tts_chunk_ms / 1000
        produced_generation: int | None = None
        async with self.tts_recv, out:
            async for job in self.tts_recv:
                try:
                    if job.generation == self.tts_generation and self.pipeline is not None:
                        if not job.chunk_bytes:  # not started by the read loop
                            self.start_job(job, self.pipeline)
                        elif job.next_chunk:  # and its first chunk played there
                            produced_generation = job.generation
                        for index in range(job.next_chunk, job.chunks()):
                            await pacing.sleep_until(job.start + index * chunk_s)
                            if job.generation != self.tts_generation:
                                break  # cleared
                            await self.produce(job.chunk(index), out)
                            produced_generation = job.generation
                finally:
                    self.tts_jobs -= 1
                if (
                    produced_generation is not None
                    and produced_generation == self.tts_generation
                    and self.tts_jobs == 0
                ):
                    produced_generation = None
                    await out.send(_text(TTSPlaybackComplete(timestamp=_now_ms())))

    async def produce(self, chunk: bytes, out: trio.MemorySendChannel[_Outbound]) -> None:
        """Play one chunk of speech."""
        if self.room is not None:
            # LiveKit sessions publish to the room track, not the socket.
            self.room.published_audio_bytes += len(chunk)
        else:
            await _put(out, chunk)

    def start_job(self, job: _SpeakJob, pipeline: _Pipeline) -> None:
        """Start ``job``: its length in bytes, its chunk size and its schedule (chunk i
        is due ``i × tts_chunk_ms`` after the first, ``tts_first_audio_ms`` from now);
        the chunks themselves are sliced from the tone as they are played."""
        job.rate = rate = pipeline.tts_sample_rate
        job.size = speech_bytes(job.text, rate, self.options.tts_ms_per_char)
        job.chunk_bytes = max(2, rate * self.options.tts_chunk_ms // 1000 * 2)
        job.start = trio.current_time() + self.options.tts_first_audio_ms / 1000
        if not job.allow_interruption:
            self.no_interrupt_until = job.start + job.size / (2 * rate)

    async def room_loop(self, out: trio.MemorySendChannel[_Outbound]) -> None:
        """Turn room events into frames."""
        async with self.room_recv, out:
            async for event in self.room_recv:
                if not self.closing:
                    await self.on_room_event(event, out)

    def room_listener(self, event: RoomEvent) -> None:
        """Called synchronously by the room; must never block."""
        if event.participant.identity == self.agent_identity:
            return  # our own agent: LiveKit does not echo a participant's own events
        try:
            self.room_send.send_nowait(event)
        except trio.WouldBlock:
            self.state.dropped_room_events += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the session is ending

    async def close(self, code: int | None) -> None:
        """Close the socket (``None``: Close frame without status code), end the session."""
        self.closing = True
        # Clean up first, so that a peer who saw the Close frame finds the room gone.
        self.cleanup()
        await self.socket.close(CloseReason.NO_STATUS_RCVD if code is None else code)
        self.cancel_scope.cancel()

    def cleanup(self) -> None:
        """The server's cleanup on every close: leave the room, then delete it."""
        self.room_send.close()
        self.detach_room()
        self.pipeline = None

    def detach_room(self) -> None:
        room = self.room
        if room is None:
            return
        self.room = None
        if self.room_listener in room.listeners:
            room.listeners.remove(self.room_listener)
        room.participants.pop(self.agent_identity, None)
        if self.recording and self.options.recordings and self.stream_id is not None:
            self.state.keep_recording(self.stream_id, _RECORDING_MAGIC + self.stream_id.encode())
        room.active_recording = False
        self.state.delete_room(room.name)

    # ------------------------------------------------------------------ frames

    async def error(self, out: trio.MemorySendChannel[_Outbound], message: str) -> None:
        await out.send(_text(Error(message=message)))

    async def on_text(self, text: str, out: trio.MemorySendChannel[_Outbound]) -> None:
        try:
            frame = wire.decode_client_frame(text)
        except FrameDecodeError as exc:
            await self.error(out, f"Invalid message format: {exc.detail}")
            return
        if isinstance(frame, wire.Speak):
            await self.on_speak(frame, out)
        elif isinstance(frame, wire.Config):
            await self.on_config(frame, out)
        elif isinstance(frame, wire.Clear):
            await self.on_clear(out)
        elif isinstance(frame, wire.SendMessage):
            await self.on_send_message(frame, out)
        elif isinstance(frame, wire.SipTransfer):
            await self.on_sip_transfer(frame, out)
        elif isinstance(frame, wire.UpdateConfig):
            await self.on_update_config(frame, out)
        elif isinstance(frame, wire.LoadingStart):
            await self.on_loading_start(out)
        else:  # loading_stop: always silent (~30 ms fade on the real server)
            self.loading_active = False

    async def on_config(self, msg: wire.Config, out: trio.MemorySendChannel[_Outbound]) -> None:
        stream_id = msg.stream_id if msg.stream_id is not None else str(uuid.uuid4())
        audio = msg.audio is not False  # absent or null mean true
        stt, tts = msg.stt_config, msg.tts_config
        if audio and stt is None:
            await self.error(out, "STT configuration is required when audio=true")
            return
        if audio and tts is None:
            await self.error(out, "TTS configuration is required when audio=true")
            return
        self.config_seen = True
        self.audio = audio
        self.stream_id = stream_id
        timings = self.state.speech_timings
        if timings is not None:
            self.timing = timings[stream_id] = [math.nan, math.nan]
        # A second config replaces the first (§2.5): leave the previous room's events.
        previous = self.room
        if previous is not None and self.room_listener in previous.listeners:
            previous.listeners.remove(self.room_listener)
        self.room = None
        self.room_name = None
        self.livekit_requested = msg.livekit is not None
        self.loading_error = None
        self.loading_clip = False
        self.loading_active = False

        if msg.loading_audio is not None:
            if not audio or msg.livekit is None:
                await self.error(
                    out, "loading_audio requires audio to be enabled and a livekit configuration"
                )
            else:
                problem = wire.loading_audio_problem(msg.loading_audio)
                if problem is None:
                    self.loading_clip = True
                else:
                    self.loading_error = problem
                    await self.error(out, problem)

        if audio:
            assert stt is not None
            assert tts is not None
            for provider, auth in ((stt.provider, stt.auth), (tts.provider, tts.auth)):
                problem = provider_auth_problem(provider, auth, _PROVIDERS)
                if problem is not None:
                    await self.error(out, problem)
                    return
            self.pipeline = _Pipeline(
                stt_bytes_per_s=max(1, stt.sample_rate * stt.channels * 2),
                tts_sample_rate=(
                    DEFAULT_TTS_SAMPLE_RATE if tts.sample_rate is None else tts.sample_rate
                ),
                pronunciations=[
                    (re.compile(rf"\b{re.escape(p.word)}\b"), p.pronunciation)
                    for p in tts.pronunciations
                    if p.word
                ],
            )
            self.stt_bytes = 0
            self.stt_utterances = 0
            self.stt_interim_sent = False
        else:
            self.pipeline = None

        identity: str | None = None
        name: str | None = None
        lk = msg.livekit
        if lk is not None:
            if not self.options.livekit:
                await self.error(
                    out, "LiveKit room handler not initialized. Check API keys configuration."
                )
                return
            room, allowed = self.state.ensure_room(lk.room_name, self.ctx.tenant)
            if room is None or not allowed:
                await self.error(
                    out, f"Access denied: room '{lk.room_name}' belongs to a different tenant"
                )
                return
            identity = (
                DEFAULT_AGENT_IDENTITY
                if lk.sayna_participant_identity is None
                else lk.sayna_participant_identity
            )
            name = (
                DEFAULT_AGENT_NAME
                if lk.sayna_participant_name is None
                else lk.sayna_participant_name
            )
            self.agent_identity = identity
            self.listen = frozenset(lk.listen_participants)
            self.recording = lk.enable_recording
            if lk.enable_recording and self.options.recordings:
                room.active_recording = True
            # The agent joins silently: the emulator does not announce agents to other
            # sessions (one room per session is the rule anyway, §9 rule 6).
            room.participants[identity] = Participant(identity=identity, name=name, kind="AGENT")
            room.listeners.append(self.room_listener)
            self.room = room
            self.room_name = lk.room_name

        await out.send(
            _text(
                Ready(
                    stream_id=stream_id,
                    livekit_room_name=self.room_name,
                    livekit_url=self.options.livekit_url,
                    sayna_participant_identity=identity,
                    sayna_participant_name=name,
                )
            )
        )

    async def on_speak(self, msg: wire.Speak, out: trio.MemorySendChannel[_Outbound]) -> None:
        if not self.audio:
            await self.error(out, AUDIO_DISABLED)
            return
        pipeline = self.pipeline
        if pipeline is None:
            await self.error(out, VOICE_MANAGER_MISSING)
            return
        if pipeline.tts_sample_rate <= 0:
            await self.error(
                out, f"Failed to synthesize speech: invalid sample rate {pipeline.tts_sample_rate}"
            )
            return
        text = msg.text
        if not text.strip():
            return  # silently skipped: no audio, no tts_playback_complete
        timing = self.timing
        if timing is not None and math.isnan(timing[0]):
            timing[0] = time.monotonic()
        for pattern, replacement in pipeline.pronunciations:
            text = pattern.sub(replacement, text)
        job = _SpeakJob(text, msg.allow_interruption is not False, self.tts_generation)
        self.tts_jobs += 1
        try:
            if self.tts_jobs == 1 and self.options.tts_first_audio_ms <= 0:
                # Nothing is playing and the first audio is due now: play it from here,
                # a task switch sooner than the worker could; the worker plays the rest.
                self.start_job(job, pipeline)
                if job.size:
                    await self.produce(job.chunk(0), out)
                    job.next_chunk = 1
            await _put(self.tts_send, job)
        except BaseException:
            self.tts_jobs -= 1
            raise

    async def on_clear(self, out: trio.MemorySendChannel[_Outbound]) -> None:
        if not self.audio:
            return  # silent no-op without an audio session
        if self.pipeline is None:
            await self.error(out, VOICE_MANAGER_MISSING)
            return
        if trio.current_time() < self.no_interrupt_until:
            return  # inside a non-interruptible utterance
        # Queued jobs and the one being played carry the old generation: all dropped.
        self.tts_generation += 1

    async def on_audio(self, data: bytes, out: trio.MemorySendChannel[_Outbound]) -> None:
        if not self.audio:
            await self.error(out, AUDIO_DISABLED)
            return
        pipeline = self.pipeline
        if pipeline is None:
            await self.error(out, VOICE_MANAGER_MISSING)
            return
        utterance_ms = self.options.utterance_ms
        if utterance_ms <= 0:
            return
        interim_ms = self.options.interim_ms
        self.stt_bytes += len(data)
        received_ms = self.stt_bytes * 1000 // pipeline.stt_bytes_per_s
        # Bounded: each pass emits one result and moves a threshold forward.
        while True:
            base = self.stt_utterances * utterance_ms
            if not self.stt_interim_sent and 0 < interim_ms < utterance_ms:
                if received_ms < base + interim_ms:
                    return
                self.stt_interim_sent = True
                await out.send(_text(self.transcript(final=False)))
                continue
            if received_ms < base + utterance_ms:
                return
            await out.send(_text(self.transcript(final=True)))
            self.stt_utterances += 1
            self.stt_interim_sent = False

    def audio_nowait(self, data: bytes) -> bool:
        """:meth:`on_audio` for audio that completes no transcript: count it and return
        ``True``; ``False`` (nothing changed) when :meth:`on_audio` has a frame to send.
        The socket's :attr:`~saynad.emulator.asgi.WebSocket.binary_sink`: a streamed
        frame costs no task switch."""
        pipeline = self.pipeline
        if not self.audio or pipeline is None:
            return False
        utterance_ms = self.options.utterance_ms
        if utterance_ms <= 0:
            return True
        interim_ms = self.options.interim_ms
        stt_bytes = self.stt_bytes + len(data)
        due = self.stt_utterances * utterance_ms
        if not self.stt_interim_sent and 0 < interim_ms < utterance_ms:
            due += interim_ms
        else:
            due += utterance_ms
        if stt_bytes * 1000 // pipeline.stt_bytes_per_s >= due:
            return False
        self.stt_bytes = stt_bytes
        return True

    def transcript(self, *, final: bool) -> STTResult:
        script = self.options.script or ("",)
        line = script[self.stt_utterances % len(script)]
        if not final:
            words = line.split()
            partial = " ".join(words[: max(1, (len(words) + 1) // 2)])
            return STTResult(
                transcript=partial,
                is_final=False,
                is_speech_final=False,
                confidence=INTERIM_CONFIDENCE,
            )
        self.finals += 1
        if self.options.numbered:
            line = f"{self.finals}: {line}"
        return STTResult(
            transcript=line, is_final=True, is_speech_final=True, confidence=FINAL_CONFIDENCE
        )

    async def on_send_message(
        self, msg: wire.SendMessage, out: trio.MemorySendChannel[_Outbound]
    ) -> None:
        room = self.room
        if room is None:
            await self.error(out, LIVEKIT_MISSING)
            return
        topic = "messages" if msg.topic is None else msg.topic
        payload = _encoder.encode({"message": msg.message, "role": msg.role, "debug": msg.debug})
        self.state.published_messages.append(
            {
                "room": room.name,
                "identity": self.agent_identity,
                "topic": topic,
                "payload": payload.decode(),
            }
        )
        agent = room.participants.get(self.agent_identity) or Participant(
            identity=self.agent_identity
        )
        room.notify(RoomEvent("message", agent, {"payload": payload, "topic": topic}))

    async def on_sip_transfer(
        self, msg: wire.SipTransfer, out: trio.MemorySendChannel[_Outbound]
    ) -> None:
        async def fail(message: str) -> None:
            await out.send(_text(SipTransferError(message=message)))

        problem = phone_number_problem(msg.transfer_to)
        if problem is not None:
            await fail(f"Invalid phone number: {problem}")
            return
        room_name = self.room_name
        if room_name is None:
            await fail("Room name not available. Ensure LiveKit is configured.")
            return
        if not (self.options.livekit and self.options.sip):
            await fail(LIVEKIT_MISSING)
            return
        access = self.state.access(room_name, self.ctx.tenant)
        if access == "absent":
            await fail("SIP transfer failed: Room not found")
            return
        if access == "denied":
            await fail("SIP transfer failed: Room not accessible")
            return
        room = self.state.rooms[room_name]
        caller = next(
            (
                p
                for p in room.participants.values()
                if p.kind == "SIP" and p.identity != self.agent_identity
            ),
            None,
        )
        if caller is None:
            await fail("No SIP participant found in room to transfer")
            return
        # Success is silent, as on the server.
        self.state.transfers.append(
            {
                "room_name": room_name,
                "participant_identity": caller.identity,
                "transfer_to": f"tel:{msg.transfer_to.strip()}",
            }
        )

    async def on_update_config(
        self, msg: wire.UpdateConfig, out: trio.MemorySendChannel[_Outbound]
    ) -> None:
        # Behaves like a server built with `stt-vad`: the threshold is validated and
        # applied process-wide; `vad` is accepted and ignored.
        turn = msg.turn_detect
        if turn is None or turn.threshold is None:
            return
        threshold = turn.threshold
        if not 0.0 <= threshold <= 1.0:
            await self.error(
                out,
                f"Invalid turn detection threshold: {wire.rust_f32_display(threshold)}. "
                "Must be between 0.0 and 1.0",
            )
            return
        self.state.turn_threshold = threshold

    async def on_loading_start(self, out: trio.MemorySendChannel[_Outbound]) -> None:
        if not self.config_seen:
            problem: str | None = "Send a config message first before using loading_start."
        elif not self.audio:
            problem = (
                "Loading indicator requires audio to be enabled. "
                "Send a config message with audio=true."
            )
        elif self.loading_error is not None:
            problem = self.loading_error
        elif not self.livekit_requested:
            problem = (
                "Loading indicator requires a LiveKit room. "
                "Include a livekit configuration in your config message."
            )
        elif self.room is None:
            problem = (
                "loading indicator requires an active LiveKit connection; connect to a room first"
            )
        elif not self.loading_clip:
            problem = "no loading audio configured"
        else:
            problem = None
        if problem is not None:
            await self.error(out, problem)
            return
        self.loading_active = True

    async def on_room_event(self, event: RoomEvent, out: trio.MemorySendChannel[_Outbound]) -> None:
        room_name = self.room_name
        if room_name is None:
            return
        participant = event.participant
        if event.kind == "message":
            if (
                self.listen
                and participant.identity not in self.listen
                and participant.identity != "server"
            ):
                return
            payload = event.payload.get("payload", b"")
            topic = event.payload.get("topic") or "default"
            try:
                text: str | None = bytes(payload).decode("utf-8")
                data: str | None = None
            except UnicodeDecodeError:
                text, data = None, base64.b64encode(payload).decode("ascii")
            await out.send(
                _text(
                    Message(
                        message=RoomMessage(
                            message=text,
                            data=data,
                            identity=participant.identity,
                            topic=topic,
                            room="livekit",  # the server really sends this literal
                            timestamp=_now_ms(),
                        )
                    )
                )
            )
            return
        info = ParticipantInfo(
            identity=participant.identity,
            name=participant.name,
            room=room_name,
            timestamp=_now_ms(),
        )
        if event.kind == "participant_connected":
            await out.send(_text(ParticipantConnected(participant=info)))
            if self.audio:
                for track_sid in participant.tracks:
                    track = Track(
                        identity=participant.identity,
                        name=participant.name,
                        track_kind="audio",
                        track_sid=track_sid,
                        room=room_name,
                        timestamp=_now_ms(),
                    )
                    await out.send(_text(TrackSubscribed(track=track)))
        elif event.kind == "participant_disconnected":
            await out.send(_text(ParticipantDisconnected(participant=info)))
            # Any remote participant leaving ends the session (§2.6).
            self.closing = True
            await out.send(_Close(None, DISCONNECT_CLOSE_DELAY_S))


async def serve_session(socket: WebSocket, ctx: Context) -> None:
    """Serve one accepted WebSocket until it closes."""
    session = _Session(socket, ctx)
    socket.binary_sink = session.audio_nowait
    try:
        with session.cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.write_loop, name="emulator-ws-writer")
                nursery.start_soon(session.tts_loop, session.out_send.clone(), name="emulator-tts")
                nursery.start_soon(
                    session.room_loop, session.out_send.clone(), name="emulator-room-events"
                )
                await session.read_loop(session.out_send)
                # The peer is gone: nothing left to deliver.
                nursery.cancel_scope.cancel()
    finally:
        session.cleanup()

"""What a session's behaviours see and use.

A behaviour is one task in its session's nursery. It receives the session's events
through its own bounded channel and acts through an :class:`Outbox`, which queues
commands for the session's single writer task (one writer per socket: frames never
interleave mid-message and a slow behaviour never holds the socket). A command is the
frame itself, a :data:`~saynad.protocol.messages.SessionCommand` (``SpeakFrame``,
``AudioFrame``, …), or a :class:`ReplyStart` (a reply's first ``speak`` and the turn it
answers, for the latency metric); the writer hands each to
:meth:`~saynad.client.session.Session.send`. The writer's inbox
is a :class:`CommandQueue` with two lanes: control commands (``speak``, ``clear``, …)
are written before queued audio, so a reply or a barge-in never waits behind seconds of
caller audio when the socket is slow. Both lanes block their producers when full.

Paced audio (the audio source's file, at real-time pace) does not go through the
queue: :meth:`Outbox.stream_audio` hands whole passes of prepared chunks to
:meth:`~saynad.client.session.Session.stream_audio`, whose pacing timer writes each
frame at its due time, between the writer's commands.

A behaviour may finish early (a greeting that has spoken): the reader then stops
sending it events.

Fan-out overflow policy (per behaviour channel, ``capacity`` events):

- *media* events — :class:`~saynad.protocol.messages.TTSAudio` and interim
  :class:`~saynad.protocol.messages.STTResult` — are dropped when the channel is full,
  and each drop is counted (``SessionCounters.dropped_events``);
- *control* events — everything else: final transcripts, room events, errors — are
  never dropped. The reader never waits either (it must keep reading pongs and the
  server's close), so a behaviour that falls ``capacity`` control events behind ends
  the session with :class:`~saynad.errors.BehaviourOverloadError` (overflow policy:
  disconnect); the supervisor's policy restarts it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import trio
import trio.lowlevel

from saynad.client.pacing import OnSent
from saynad.client.session import SessionEvent
from saynad.errors import ConnectionClosedError, SessionClosedError
from saynad.protocol.messages import (
    AudioFrame,
    ClearFrame,
    LoadingStartFrame,
    LoadingStopFrame,
    SessionCommand,
    SpeakFrame,
    STTResult,
    TTSAudio,
    send_message_frame,
    sip_transfer_frame,
    speak_frame,
)

__all__ = [
    "AUDIO_LATE_S",
    "STREAM_CLOSE_WAIT_S",
    "AudioStreamer",
    "Behaviour",
    "BehaviourContext",
    "Command",
    "CommandQueue",
    "Outbox",
    "ReplyStart",
    "SessionCounters",
    "SessionIdentity",
    "is_media",
]


@dataclass(frozen=True)
class SessionIdentity:
    """Who this session is, for logs, sinks and agents."""

    name: str
    template: str
    origin: str
    room: str | None = None
    stream_id: str | None = None
    caller: str | None = None
    callee: str | None = None
    sip_headers: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    """Values an API request gave the session (``POST /v1/calls``, ``/v1/sessions``)."""


LATENCY_SAMPLES: Final = 1024
"""How many recent final-transcript→first-speak latencies a session keeps."""

AUDIO_LATE_S: Final = 0.050
"""A real-time audio chunk sent later than this after its due time counts as late
(``audio_chunks_late``); the bound of a shard's capacity in docs/benchmarks-scale.md."""


@dataclass
class SessionCounters:
    """Counted while a session runs; reported in its summary line and read by metrics.

    Every integer only grows during a run (a restart gets fresh counters). The names are
    stable: the metrics catalog reads them.

    - ``transcripts``: non-empty final transcripts received;
    - ``replies``: agent replies spoken (at least one sentence sent);
    - ``spoken``: ``speak`` frames sent (greeting, reply sentences, fallback, goodbye);
    - ``audio_chunks_sent``: binary audio frames the audio source sent;
    - ``tts_audio_frames``: binary TTS audio frames received (the agent tells from it
      whether the sentence playing when the caller cut in was partly heard);
    - ``dropped_events``: media events the fan-out dropped (a behaviour's channel was full);
    - ``behaviour_errors``: behaviours that raised;
    - ``agent_requests``: turns handed to the agent backend;
    - ``agent_failures``: backend failures (timeout, HTTP status, transport, bad reply,
      exception), broken down by reason in ``agent_failure_reasons``;
    - ``barge_ins``: replies cut because the caller spoke;
    - ``transfers`` / ``transfer_errors``: ``sip_transfer`` frames sent by the agent /
      ``sip_transfer_error`` frames received;
    - ``sink_written`` / ``sink_dropped`` / ``sink_errors``: transcript entries delivered
      by the sinks / lost (queue overflow, retries exhausted, unwritten at teardown) /
      failed write or POST attempts;
    - ``audio_sink_errors``: utterances an audio sink could not write (each one lost);
    - ``audio_chunks_late``: real-time audio chunks the audio source sent more than
      :data:`AUDIO_LATE_S` after their due time (the process is overloaded).

    Latency: ``last_turn_end_at`` is the trio time at which the reader received the
    latest ``stt_result`` closing a turn (``is_final`` and ``is_speech_final``); the
    writer, when it sends the first ``speak`` frame of the reply to that turn, records
    the difference with :meth:`observe_first_speak` — kept in ``first_speak_latencies_s``
    (the latest :data:`LATENCY_SAMPLES`) and passed to ``on_first_speak`` if set (e.g. a
    histogram's ``observe``).
    """

    transcripts: int = 0
    replies: int = 0
    spoken: int = 0
    audio_chunks_sent: int = 0
    tts_audio_frames: int = 0
    dropped_events: int = 0
    behaviour_errors: int = 0
    agent_requests: int = 0
    agent_failures: int = 0
    agent_failure_reasons: Counter[str] = field(default_factory=Counter)
    barge_ins: int = 0
    transfers: int = 0
    transfer_errors: int = 0
    sink_written: int = 0
    sink_dropped: int = 0
    sink_errors: int = 0
    audio_sink_errors: int = 0
    audio_chunks_late: int = 0
    last_turn_end_at: float | None = None
    first_speak_latencies_s: deque[float] = field(
        default_factory=lambda: deque(maxlen=LATENCY_SAMPLES)
    )
    on_first_speak: Callable[[float], None] | None = None

    def agent_failed(self, reason: str) -> None:
        """Count one agent failure (``reason``: a short stable word, e.g. ``timeout``)."""
        self.agent_failures += 1
        self.agent_failure_reasons[reason] += 1

    def observe_first_speak(self, latency_s: float) -> None:
        """Record one final-transcript→first-``speak`` latency."""
        self.first_speak_latencies_s.append(latency_s)
        if self.on_first_speak is not None:
            self.on_first_speak(latency_s)


@dataclass(frozen=True, slots=True)
class ReplyStart:
    """The first ``speak`` of a reply, and when the turn it answers ended (trio time):
    the writer sends ``frame`` and records the latency once it is sent."""

    frame: SpeakFrame
    turn_end_at: float


Command = SessionCommand | ReplyStart
"""One entry of the writer's inbox: a frame to send as it is, or a :class:`ReplyStart`.
:class:`~saynad.protocol.messages.AudioFrame` goes to the media lane, all else to the
control lane."""

# Built once: every clear, loading_start and loading_stop is the same frame.
_CLEAR: Final = ClearFrame()
_LOADING_START: Final = LoadingStartFrame()
_LOADING_STOP: Final = LoadingStopFrame()


class CommandQueue:
    """The writer's inbox: a *control* lane served before a *media* lane (audio).

    Each lane is a bounded FIFO (``control_capacity``, ``media_capacity`` commands);
    overflow policy: block — a producer waits for room in its own lane, so queued audio
    never holds up a ``speak`` or a ``clear``. One consumer (the writer).

    :meth:`close` means no more commands (the writer drains what is queued, then
    :meth:`get` raises :class:`trio.EndOfChannel`); :meth:`close_receiving` means the
    writer is gone (producers get :class:`trio.BrokenResourceError`, as with a memory
    channel whose receiver closed).
    """

    def __init__(self, control_capacity: int = 256, media_capacity: int = 64) -> None:
        if control_capacity < 1 or media_capacity < 1:
            raise ValueError("capacities must be >= 1")
        self._lanes: tuple[deque[Command], deque[Command]] = (deque(), deque())
        self._capacity = (control_capacity, media_capacity)
        self._space = (trio.lowlevel.ParkingLot(), trio.lowlevel.ParkingLot())
        self._consumer = trio.lowlevel.ParkingLot()
        self._closed = False
        self._broken = False

    def statistics(self) -> tuple[int, int]:
        """Commands queued in the (control, media) lanes."""
        return len(self._lanes[0]), len(self._lanes[1])

    async def put(self, command: Command, *, media: bool = False) -> None:
        """Queue ``command`` in its lane; wait while that lane is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        index = 1 if media else 0
        lane = self._lanes[index]
        while True:
            if self._broken:
                raise trio.BrokenResourceError("the session's writer is gone")
            if self._closed:
                raise trio.ClosedResourceError("the session is ending")
            if len(lane) < self._capacity[index]:
                break
            await self._space[index].park()
        lane.append(command)
        self._consumer.unpark()
        await trio.lowlevel.cancel_shielded_checkpoint()

    def get_nowait(self) -> Command | None:
        """The next command (control first), or ``None`` when both lanes are empty."""
        for index in (0, 1):
            lane = self._lanes[index]
            if lane:
                self._space[index].unpark()
                return lane.popleft()
        return None

    async def get(self) -> Command:
        """Wait for the next command (control first); ``EndOfChannel`` once closed.

        A checkpoint, like a memory channel's ``receive``: a command already queued is
        returned after a schedule point; when the writer had to wait, the wait was the
        schedule point and the command is returned in the very step that wakes it. (A
        second schedule point there would cost every ``speak`` one more pass of the
        scheduler — behind every other runnable task of every session.)
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        command = self.get_nowait()
        if command is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return command
        while True:
            if self._closed:
                raise trio.EndOfChannel
            await self._consumer.park()
            command = self.get_nowait()
            if command is not None:
                return command

    def close(self) -> None:
        """No more commands: the writer finishes what is queued."""
        self._closed = True
        self._consumer.unpark_all()
        for lot in self._space:
            lot.unpark_all()

    def close_receiving(self) -> None:
        """The writer is gone: queued commands are dropped, producers fail."""
        self._broken = True
        for lane in self._lanes:
            lane.clear()
        for lot in self._space:
            lot.unpark_all()


class AudioStreamer(Protocol):
    """What :meth:`Outbox.stream_audio` uses of the session: its
    :meth:`~saynad.client.session.Session.stream_audio`."""

    async def stream_audio(
        self,
        chunks: Sequence[bytes | bytearray | memoryview],
        interval_s: float = 0.020,
        *,
        start: float | None = None,
        on_sent: OnSent | None = None,
    ) -> None: ...


STREAM_CLOSE_WAIT_S: Final = 2.0
"""How long :meth:`Outbox.stream_audio`, whose connection closed under it, waits for
the session to report the close (and cancel the behaviour) before raising it itself."""


class Outbox:
    """The behaviours' way to act on the session.

    Every method but :meth:`stream_audio` and :meth:`end` queues one command for the
    session's writer. :meth:`stream_audio` streams paced audio (a caller's voice, a
    file) without the queue: the session's pacing timer writes each frame straight to
    the socket at its due time, so a real-time stream costs no task step and no queue
    work per chunk. Commands queued meanwhile (``speak``, ``clear``, …) are written
    between two frames, as soon as the writer takes them. :meth:`send_audio` (one
    chunk through the writer's media lane) remains for audio that is not paced.
    """

    def __init__(self, queue: CommandQueue, end: trio.Event, streamer: AudioStreamer) -> None:
        self._queue = queue
        self._end = end
        self._streamer = streamer
        self.end_reason: str | None = None
        self.goodbye: str | None = None
        """The goodbye line asked for with :meth:`end` (None: the session's own)."""

    async def speak(
        self, text: str, *, allow_interruption: bool = True, turn_end_at: float | None = None
    ) -> None:
        """Queue ``speak``. ``turn_end_at``: see :class:`ReplyStart` (agents set it once
        per reply, on its first sentence)."""
        frame = speak_frame(text, allow_interruption=allow_interruption)
        await self._queue.put(frame if turn_end_at is None else ReplyStart(frame, turn_end_at))

    async def clear(self) -> None:
        await self._queue.put(_CLEAR)

    async def send_audio(self, pcm: bytes) -> None:
        """Queue caller audio (the media lane: written after any pending control command)."""
        await self._queue.put(AudioFrame(pcm), media=True)

    async def stream_audio(
        self,
        chunks: Sequence[bytes | bytearray | memoryview],
        interval_s: float = 0.020,
        *,
        start: float | None = None,
        on_sent: OnSent | None = None,
    ) -> None:
        """Stream caller audio at a steady pace: ``chunks[i]`` goes out as one binary
        frame at ``start + i * interval_s`` on trio's clock (``start``: the moment of
        the call by default). :meth:`saynad.client.session.Session.stream_audio` on the
        session's socket, with its guarantees: frames never leave early, a late frame
        does not delay the ones after it (what is overdue goes out back to back),
        ``interval_s=0`` sends as fast as the socket takes them, and ``on_sent(i,
        lag_s)`` runs (quick, from the pacing timer, outside any task) after chunk ``i``
        was written, ``lag_s`` after its due time. Returns once the last frame is
        written; cancelling stops the stream.

        A long or looping source keeps one absolute schedule by calling this once per
        pass with ``start`` advanced by the length of the pass (``start + len(chunks) *
        interval_s``): the next pass then never drifts. Bytes chunks are used as they
        are: build them once.

        When the connection closes under the stream, that is the session's business,
        not the behaviour's: this waits (at most :data:`STREAM_CLOSE_WAIT_S`) for the
        session to notice — it then ends, normally or with its error, and cancels its
        behaviours — and only then raises the close
        (:class:`~saynad.errors.ConnectionClosedError`).
        """
        try:
            await self._streamer.stream_audio(chunks, interval_s, start=start, on_sent=on_sent)
        except (ConnectionClosedError, SessionClosedError):
            # The session's reader reports how the connection ended: a normal end (a
            # closing session is no error) or the session's error. Either way this
            # behaviour is cancelled here.
            await trio.sleep(STREAM_CLOSE_WAIT_S)
            raise

    async def send(self, command: Command) -> None:
        """Queue a prepared command (an ``AudioFrame`` goes to the media lane). A source
        that repeats itself builds its frames once."""
        await self._queue.put(command, media=type(command) is AudioFrame)

    async def send_message(self, message: str, role: str, *, topic: str | None = None) -> None:
        await self._queue.put(send_message_frame(message, role, topic))

    async def sip_transfer(self, transfer_to: str) -> None:
        await self._queue.put(sip_transfer_frame(transfer_to))

    async def loading_start(self) -> None:
        await self._queue.put(_LOADING_START)

    async def loading_stop(self) -> None:
        await self._queue.put(_LOADING_STOP)

    def end(self, reason: str, *, goodbye: str | None = None) -> None:
        """Ask the session to end (normally) as soon as possible. ``goodbye`` replaces
        the session's goodbye line for this end (``""``: end without one)."""
        if self.end_reason is None:
            self.end_reason = reason
            self.goodbye = goodbye
        self._end.set()


@dataclass
class BehaviourContext:
    """Everything a behaviour's ``run`` gets."""

    identity: SessionIdentity
    events: trio.MemoryReceiveChannel[SessionEvent]
    out: Outbox
    counters: SessionCounters


class Behaviour(Protocol):
    """One thing a session does. ``wants`` filters the events it is sent."""

    name: str

    def wants(self, event: SessionEvent) -> bool: ...

    async def run(self, ctx: BehaviourContext) -> None: ...


def is_media(event: SessionEvent) -> bool:
    """Media events may be dropped under pressure; control events never are."""
    return type(event) is TTSAudio or (type(event) is STTResult and not event.is_final)

"""The session actor: one Sayna session and its behaviours, as one task tree.

::

    run_session(plan, control)
    └── open_session(...)                      connect, config, ready
        └── outer nursery
            ├── writer                         outbox → socket (commands)
            ├── sinks                          journal queues → jsonl files, …
            └── inner nursery
                ├── reader                     events → decode → fan-out per behaviour
                └── behaviours                 greeting, agent, recorder, audio, …

Paced audio (``Outbox.stream_audio``: the audio source) is written by the session's
pacing timer at each frame's due time, between the writer's commands.

The session ends *normally* when the server closes it (e.g. after
``participant_disconnected``), when a behaviour calls ``out.end``, on a drain request,
at ``max_duration_s`` or after ``idle_timeout_s`` without speech. It ends *with an
error* (and the supervisor decides about a restart) when the connection breaks or a
behaviour raises.

Idle means: no non-empty transcript (interim or final) and no finished agent speech
(``tts_playback_complete``) for ``idle_timeout_s``; the clock starts at ``ready``.

Teardown is bounded phase by phase, so a session never outlives its limits by more than
the sum of these deadlines: behaviours are cancelled (they clean up within 1–2 s,
shielded), an optional goodbye line — after a ``clear`` of the agent's queued speech —
gets ``goodbye_timeout_s`` to be generated, sinks get ``flush_timeout_s`` to deliver
what they hold (the rest is dropped and counted), and closing the socket waits at most
the transport's close timeout.

A sink that fails never fails its session (counted in ``sink_errors``); a behaviour
that raises does (the supervisor's policy decides about a restart).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog
import trio

from saynad._groups import unwrapped
from saynad.actors.behaviour import (
    AudioStreamer,
    Behaviour,
    BehaviourContext,
    Command,
    CommandQueue,
    Outbox,
    ReplyStart,
    SessionCounters,
    SessionIdentity,
    is_media,
)
from saynad.actors.behaviours.transcripts import EntryQueue, Journal, Recorder, Sink
from saynad.actors.supervisor import ChildControl
from saynad.client.session import SessionEvent, SessionStats, open_session
from saynad.errors import BehaviourOverloadError, ConnectionClosedError, SessionClosedError
from saynad.protocol.messages import (
    UNSET,
    AudioFrame,
    ClearFrame,
    LiveKitConfig,
    LoadingAudioConfig,
    ParticipantDisconnected,
    Ready,
    SessionCommand,
    SpeakFrame,
    STTConfig,
    STTResult,
    TTSAudio,
    TTSConfig,
    TTSPlaybackComplete,
)

__all__ = [
    "EndPolicy",
    "RunTally",
    "SessionObserver",
    "SessionPlan",
    "SessionPort",
    "run_session",
    "serve_session",
]

log = structlog.get_logger("saynad.session")


@dataclass(frozen=True)
class EndPolicy:
    """When a session ends by itself."""

    on_participant_disconnected: bool = True
    max_duration_s: float | None = None
    idle_timeout_s: float | None = None
    goodbye_text: str | None = None
    goodbye_timeout_s: float = 5.0
    flush_timeout_s: float = 5.0


BehaviourFactory = Callable[[Journal], Sequence[Behaviour]]


class SessionPort(AudioStreamer, Protocol):
    """What the actor uses of a :class:`~saynad.client.session.Session` (tests pass a
    fake with the same methods): its ``stream_audio`` (:class:`AudioStreamer`, for the
    outbox) and the following."""

    @property
    def ready(self) -> Ready: ...

    @property
    def stats(self) -> Any: ...

    async def send(self, frame: SessionCommand) -> None: ...

    def events(self) -> AsyncIterator[SessionEvent]: ...


@dataclass(eq=False)
class RunTally:
    """One run's counters, handed to the observer once at the start and once at the end.

    Nothing is copied per frame: ``stats`` is the session's own
    :class:`~saynad.client.session.SessionStats` and ``counters`` the behaviours'
    :class:`~saynad.actors.behaviour.SessionCounters`, both updated in place; an
    observer reads them when it needs to (the metrics do at scrape time).
    """

    origin: str
    stats: SessionStats
    counters: SessionCounters
    stt_finals: int = 0


class SessionObserver(Protocol):
    """Receives a session's tallies and latencies (the daemon's metrics implement it).

    Calls are rare (per run, per ``speak``), never per frame, and must not block.
    """

    def run_started(self, run: RunTally) -> None: ...

    def run_ended(self, run: RunTally) -> None: ...

    def observe_speak_to_audio(self, seconds: float) -> None: ...

    def observe_final_to_speak(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class SessionPlan:
    """Everything one run of a session needs, resolved from the configuration."""

    url: str
    identity: SessionIdentity
    stt: STTConfig | None = None
    tts: TTSConfig | None = None
    livekit: LiveKitConfig | None = None
    audio: bool = True
    api_key: str | None = None
    stream_id: str | None = None
    loading_audio: LoadingAudioConfig | None = None
    ready_timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    keepalive_interval_s: float | None = None
    keepalive_timeout_s: float = 10.0
    behaviours: BehaviourFactory = lambda journal: ()
    sinks: Sequence[Sink] = ()
    end: EndPolicy = EndPolicy()
    fanout_capacity: int = 256
    outbox_capacity: int = 256
    """Control commands (speak, clear, …) queued for the writer; producers then wait."""
    audio_capacity: int = 64
    """Audio chunks queued for the writer (after control commands); the source then waits."""
    counters: SessionCounters = field(default_factory=SessionCounters, compare=False)
    """This run's counters; pass your own to read them during and after the run."""
    observer: SessionObserver | None = None


@dataclass
class _Subscriber:
    behaviour: Behaviour
    send: trio.MemorySendChannel[SessionEvent]
    receive: trio.MemoryReceiveChannel[SessionEvent]


@dataclass
class _Run:
    """State of one run, shared by its tasks."""

    plan: SessionPlan
    session: SessionPort
    identity: SessionIdentity
    counters: SessionCounters
    end: trio.Event = field(default_factory=trio.Event)
    end_reason: str | None = None
    last_speech: float = 0.0
    tally: RunTally | None = None
    # When the oldest unanswered non-empty ``speak`` left (trio time), until its first
    # audio frame arrives: the speak→first-audio latency.
    speak_at: float | None = None

    def finish(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.end.set()


async def run_session(plan: SessionPlan, control: ChildControl) -> None:
    """Run one session until it ends; raise when it ends with an error."""
    control.connecting()
    async with open_session(
        plan.url,
        stt=plan.stt,
        tts=plan.tts,
        livekit=plan.livekit,
        # The server defaults to audio on: only a data-only session says so on the wire.
        audio=UNSET if plan.audio else False,
        api_key=plan.api_key,
        stream_id=plan.stream_id,
        loading_audio=plan.loading_audio,
        ready_timeout_s=plan.ready_timeout_s,
        connect_timeout_s=plan.connect_timeout_s,
        keepalive_interval_s=plan.keepalive_interval_s,
        keepalive_timeout_s=plan.keepalive_timeout_s,
    ) as session:
        await serve_session(plan, session, control)


async def serve_session(plan: SessionPlan, session: SessionPort, control: ChildControl) -> None:
    """Run ``plan``'s behaviours on an open, ready ``session`` until the session ends."""
    started = trio.current_time()
    ready = session.ready
    identity = replace(plan.identity, room=ready.livekit_room_name, stream_id=ready.stream_id)
    counters = plan.counters
    run = _Run(plan, session, identity, counters, last_speech=trio.current_time())
    run.tally = tally = RunTally(identity.origin, session.stats, counters)
    observer = plan.observer
    if observer is not None:
        if counters.on_first_speak is None:
            counters.on_first_speak = observer.observe_final_to_speak
        observer.run_started(tally)
    # An inbound call's numbers and SIP headers go on every line the session logs.
    call: dict[str, object] = (
        {
            "caller": identity.caller,
            "callee": identity.callee,
            "sip_headers": dict(identity.sip_headers),
        }
        if identity.origin == "inbound"
        else {}
    )
    with structlog.contextvars.bound_contextvars(
        session=identity.name,
        template=identity.template,
        room=identity.room,
        stream_id=identity.stream_id,
        **call,
    ):
        control.ready(room=identity.room, stream_id=identity.stream_id)
        try:
            # The actor's boundary: a behaviour's error (or the reader's) leaves the
            # session's nurseries as itself, so logs, /sessions and metrics name it.
            with unwrapped():
                await _serve(run, control)
        finally:
            if observer is not None:
                observer.run_ended(tally)
            stats = session.stats
            info = control.registry.get(control.name)
            log.info(
                "session ended",
                reason=run.end_reason or control.stop_reason or "error",
                duration_s=round(trio.current_time() - started, 3),
                restarts=info.restarts if info is not None else 0,
                frames_in=stats.frames_in,
                frames_out=stats.frames_out,
                malformed=stats.malformed,
                transcripts=counters.transcripts,
                replies=counters.replies,
                agent_failures=counters.agent_failures,
                barge_ins=counters.barge_ins,
                dropped_events=counters.dropped_events,
                sink_dropped=counters.sink_dropped,
            )


async def _serve(run: _Run, control: ChildControl) -> None:
    plan = run.plan
    journal = Journal(run.identity, run.counters)
    commands = CommandQueue(plan.outbox_capacity, plan.audio_capacity)
    outbox = Outbox(commands, run.end, run.session)
    behaviours = [Recorder(journal), *plan.behaviours(journal)]
    subscribers = []
    for behaviour in behaviours:
        send, receive = trio.open_memory_channel[SessionEvent](plan.fanout_capacity)
        subscribers.append(_Subscriber(behaviour, send, receive))
    queues = [journal.add_queue(sink.name, sink.queue_size) for sink in plan.sinks]

    async with trio.open_nursery() as outer:
        outer.start_soon(_writer, run, commands, name="writer")
        sinks_done = trio.Event()
        # The sinks are shielded from the session's cancellation: when the connection
        # breaks (the writer or the reader fails and this nursery cancels its tasks) they
        # still take every entry recorded until the journal closes, and stop only once
        # drained or flush_timeout_s after that (below).
        sinks_scope = trio.CancelScope(shield=True)
        outer.start_soon(_sinks, run, queues, sinks_scope, sinks_done, name="sinks")
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(_reader, run, subscribers, name="reader")
                for sub in subscribers:
                    ctx = BehaviourContext(run.identity, sub.receive, outbox, run.counters)
                    inner.start_soon(
                        _behaviour, sub.behaviour, ctx, name=f"behaviour:{sub.behaviour.name}"
                    )
                inner.start_soon(_limits, run, name="limits")
                inner.start_soon(_drain_watch, run, control, name="drain-watch")
                await run.end.wait()
                if outbox.end_reason is not None:
                    run.finish(outbox.end_reason)
                inner.cancel_scope.cancel()
            await _goodbye(run, commands, journal, outbox.goodbye)
        finally:
            commands.close()
            # Sinks write what they hold, within a deadline; then everything stops.
            journal.close()
            with trio.CancelScope(shield=True), trio.move_on_after(plan.end.flush_timeout_s):
                await sinks_done.wait()
            sinks_scope.cancel()
            outer.cancel_scope.cancel()


async def _sinks(
    run: _Run, queues: list[EntryQueue], scope: trio.CancelScope, done: trio.Event
) -> None:
    try:
        with scope:
            async with trio.open_nursery() as nursery:
                for sink, queue in zip(run.plan.sinks, queues, strict=True):
                    nursery.start_soon(_sink, run, sink, queue, name=f"sink:{sink.name}")
    finally:
        done.set()


async def _sink(run: _Run, sink: Sink, queue: EntryQueue) -> None:
    """One sink; its failure is contained: counted, logged, its entries dropped."""
    try:
        await sink.run(run.identity, queue, run.counters)
    except Exception:
        run.counters.sink_errors += 1
        log.exception("transcript sink failed", sink=sink.name)
        queue.close()
        queue.discard()


async def _goodbye(
    run: _Run, commands: CommandQueue, journal: Journal, override: str | None
) -> None:
    """Say the goodbye line (``override``, else the plan's) and wait (bounded) until its
    audio was generated. A data-only session has no voice to say it with."""
    text = override if override is not None else run.plan.end.goodbye_text
    if not text or not run.plan.audio or run.end_reason in ("server closed", "participant left"):
        return
    with trio.move_on_after(run.plan.end.goodbye_timeout_s):
        await commands.put(ClearFrame())  # the agent's queued speech would come first
        await commands.put(SpeakFrame(text=text, allow_interruption=False))
        journal.record("agent", text)
        async for event in run.session.events():
            if type(event) is TTSPlaybackComplete:
                break


async def _writer(run: _Run, commands: CommandQueue) -> None:
    """The socket's only sender. Once the session is ending, a closed socket is expected."""
    try:
        await _write(run, commands)
    except (ConnectionClosedError, SessionClosedError):
        if not run.end.is_set():
            raise


async def _write(run: _Run, commands: CommandQueue) -> None:
    session = run.session
    counters = run.counters
    try:
        command: Command | None = None
        while True:
            if command is None:  # nothing queued: wait (else go on without a round trip)
                try:
                    command = await commands.get()
                except trio.EndOfChannel:
                    return
            if type(command) is AudioFrame:  # the common case first
                await session.send(command)
            elif isinstance(command, ReplyStart):
                await session.send(command.frame)
                now = _spoken(run, command.frame)
                counters.observe_first_speak(now - command.turn_end_at)
            elif type(command) is SpeakFrame:
                await session.send(command)
                _spoken(run, command)
            elif type(command) is ClearFrame:
                await session.send(command)
                run.speak_at = None  # what was queued may never produce audio
            else:
                await session.send(command)
            command = commands.get_nowait()
    finally:
        commands.close_receiving()


def _spoken(run: _Run, frame: SpeakFrame) -> float:
    """Count a ``speak`` just sent; returns the time (trio's clock)."""
    run.counters.spoken += 1
    now = trio.current_time()
    if run.speak_at is None and frame.text.strip():
        run.speak_at = now
    return now


async def _reader(run: _Run, subscribers: list[_Subscriber]) -> None:
    """Read every event and hand it to the behaviours that want it.

    A behaviour that has finished (closed its channel) simply stops getting events.
    """
    end_on_leave = run.plan.end.on_participant_disconnected
    counters = run.counters
    tally = run.tally
    assert tally is not None
    observer = run.plan.observer
    live = list(subscribers)
    try:
        async for event in run.session.events():
            cls = type(event)
            if cls is TTSAudio:
                counters.tts_audio_frames += 1
                if run.speak_at is not None:
                    if observer is not None:
                        observer.observe_speak_to_audio(trio.current_time() - run.speak_at)
                    run.speak_at = None
            elif cls is STTResult:
                assert isinstance(event, STTResult)
                if event.transcript:
                    run.last_speech = trio.current_time()
                if event.is_final:
                    tally.stt_finals += 1
                    if event.is_speech_final:
                        counters.last_turn_end_at = trio.current_time()
            elif cls is TTSPlaybackComplete:
                run.last_speech = trio.current_time()
                run.speak_at = None  # LiveKit sessions get no audio frames on the socket
            media = is_media(event)
            for sub in live:
                if not sub.behaviour.wants(event):
                    continue
                # Hand over without yielding when there is room, so every behaviour of an
                # event wakes in the same scheduler batch (the next receive yields anyway).
                try:
                    sub.send.send_nowait(event)
                except trio.WouldBlock:
                    if not media:
                        # Control events are never dropped, and the reader never waits
                        # (it must keep reading: pongs, the server's close). A behaviour
                        # this far behind ends the session; the policy restarts it.
                        raise BehaviourOverloadError(
                            f"behaviour {sub.behaviour.name!r} is "
                            f"{run.plan.fanout_capacity} events behind"
                        ) from None
                    counters.dropped_events += 1
                except trio.BrokenResourceError:
                    live = [s for s in live if s is not sub]
            if cls is ParticipantDisconnected and end_on_leave:
                run.finish("participant left")
        run.finish("server closed")
    finally:
        for sub in subscribers:
            sub.send.close()


async def _behaviour(behaviour: Behaviour, ctx: BehaviourContext) -> None:
    try:
        async with ctx.events:
            await behaviour.run(ctx)
    except Exception:
        ctx.counters.behaviour_errors += 1
        log.exception("behaviour failed", behaviour=behaviour.name)
        raise


async def _drain_watch(run: _Run, control: ChildControl) -> None:
    await control.drain_requested.wait()
    run.finish("drain")


async def _limits(run: _Run) -> None:
    """End the session at ``max_duration_s`` or after ``idle_timeout_s`` without speech."""
    end = run.plan.end
    if end.max_duration_s is None and end.idle_timeout_s is None:
        return
    deadline = trio.current_time() + end.max_duration_s if end.max_duration_s is not None else None
    while True:
        now = trio.current_time()
        if deadline is not None and now >= deadline:
            run.finish("max duration")
            return
        wake = [deadline] if deadline is not None else []
        if end.idle_timeout_s is not None:
            idle_at = run.last_speech + end.idle_timeout_s
            if now >= idle_at:
                run.finish("idle timeout")
                return
            wake.append(idle_at)
        await trio.sleep_until(min(wake))

"""The session actor: one Sayna session and its behaviours, as one task tree.

::

    run_session(plan, control)
    └── open_session(...)                      connect, config, ready
        └── outer nursery
            ├── writer                         outbox → socket (the only sender)
            ├── sinks                          journal queues → jsonl files, …
            └── inner nursery
                ├── reader                     events → decode → fan-out per behaviour
                └── behaviours                 greeting, agent, recorder, audio, …

The session ends *normally* when the server closes it (e.g. after
``participant_disconnected``), when a behaviour calls ``out.end``, on a drain request,
at ``max_duration_s`` or after ``idle_timeout_s`` without speech. It ends *with an
error* (and the supervisor decides about a restart) when the connection breaks or a
behaviour raises. Teardown is bounded: an optional goodbye line gets
``goodbye_timeout_s``, sinks get ``flush_timeout_s`` to write what they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog
import trio

from saynad.actors.behaviour import (
    Behaviour,
    BehaviourContext,
    Command,
    Outbox,
    SessionCounters,
    SessionIdentity,
    is_media,
)
from saynad.actors.behaviours.transcripts import Entry, Journal, JsonlSink, Recorder
from saynad.actors.supervisor import ChildControl
from saynad.client.session import Session, SessionEvent, open_session
from saynad.errors import ConnectionClosedError, SessionClosedError
from saynad.protocol.messages import (
    UNSET,
    LiveKitConfig,
    LoadingAudioConfig,
    ParticipantDisconnected,
    STTConfig,
    STTResult,
    TTSConfig,
    TTSPlaybackComplete,
)

__all__ = ["EndPolicy", "SessionPlan", "run_session"]

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
    behaviours: BehaviourFactory = lambda journal: ()
    sinks: Sequence[JsonlSink] = ()
    end: EndPolicy = EndPolicy()
    fanout_capacity: int = 256
    outbox_capacity: int = 256
    sink_queue_size: int = 10_000


@dataclass
class _Subscriber:
    behaviour: Behaviour
    send: trio.MemorySendChannel[SessionEvent]
    receive: trio.MemoryReceiveChannel[SessionEvent]


@dataclass
class _Run:
    """State of one run, shared by its tasks."""

    plan: SessionPlan
    session: Session
    identity: SessionIdentity
    counters: SessionCounters = field(default_factory=SessionCounters)
    end: trio.Event = field(default_factory=trio.Event)
    end_reason: str | None = None
    last_speech: float = 0.0

    def finish(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.end.set()


async def run_session(plan: SessionPlan, control: ChildControl) -> None:
    """Run one session until it ends; raise when it ends with an error."""
    control.connecting()
    started = trio.current_time()
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
    ) as session:
        ready = session.ready
        identity = replace(plan.identity, room=ready.livekit_room_name, stream_id=ready.stream_id)
        run = _Run(plan, session, identity, last_speech=trio.current_time())
        with structlog.contextvars.bound_contextvars(
            session=identity.name,
            template=identity.template,
            room=identity.room,
            stream_id=identity.stream_id,
        ):
            control.ready(room=identity.room, stream_id=identity.stream_id)
            try:
                await _serve(run, control)
            finally:
                stats = session.stats
                log.info(
                    "session ended",
                    reason=run.end_reason or "error",
                    duration_s=round(trio.current_time() - started, 3),
                    restarts=control.registry.get(control.name).restarts  # type: ignore[union-attr]
                    if control.registry.get(control.name)
                    else 0,
                    frames_in=stats.frames_in,
                    frames_out=stats.frames_out,
                    malformed=stats.malformed,
                    transcripts=run.counters.transcripts,
                    replies=run.counters.replies,
                    dropped_events=run.counters.dropped_events,
                )


async def _serve(run: _Run, control: ChildControl) -> None:
    plan = run.plan
    journal = Journal(run.identity)
    out_send, out_receive = trio.open_memory_channel[Command](plan.outbox_capacity)
    outbox = Outbox(out_send, run.end)
    behaviours = [Recorder(journal), *plan.behaviours(journal)]
    subscribers = []
    for behaviour in behaviours:
        send, receive = trio.open_memory_channel[SessionEvent](plan.fanout_capacity)
        subscribers.append(_Subscriber(behaviour, send, receive))
    queues = [journal.add_queue(type(s).__name__, plan.sink_queue_size) for s in plan.sinks]

    async with trio.open_nursery() as outer:
        outer.start_soon(_writer, run, out_receive, name="writer")
        sinks_done = trio.Event()
        outer.start_soon(_sinks, run, queues, sinks_done, name="sinks")
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
            await _goodbye(run, out_send)
        finally:
            out_send.close()
            # Sinks write what they hold, within a deadline; then everything stops.
            with trio.CancelScope(shield=True), trio.move_on_after(plan.end.flush_timeout_s):
                await journal.aclose()
                await sinks_done.wait()
            outer.cancel_scope.cancel()


async def _sinks(
    run: _Run, queues: list[trio.MemoryReceiveChannel[Entry]], done: trio.Event
) -> None:
    try:
        async with trio.open_nursery() as nursery:
            for sink, queue in zip(run.plan.sinks, queues, strict=True):
                nursery.start_soon(
                    sink.run, run.identity, queue, name=f"sink:{type(sink).__name__}"
                )
    finally:
        done.set()


async def _goodbye(run: _Run, out: trio.MemorySendChannel[Command]) -> None:
    """Say the goodbye line and wait (bounded) until its audio was generated."""
    text = run.plan.end.goodbye_text
    if not text or run.end_reason in ("server closed", "participant left"):
        return
    with trio.move_on_after(run.plan.end.goodbye_timeout_s):
        await out.send(Command("speak", {"text": text, "allow_interruption": False}))
        async for event in run.session.events():
            if type(event) is TTSPlaybackComplete:
                break


async def _writer(run: _Run, commands: trio.MemoryReceiveChannel[Command]) -> None:
    """The socket's only sender. Once the session is ending, a closed socket is expected."""
    try:
        await _write(run.session, commands)
    except (ConnectionClosedError, SessionClosedError):
        if not run.end.is_set():
            raise


async def _write(session: Session, commands: trio.MemoryReceiveChannel[Command]) -> None:
    async with commands:
        async for command in commands:
            kind = command.kind
            if kind == "send_audio":
                await session.send_audio(command.args["pcm"])
            elif kind == "speak":
                await session.speak(**command.args)
            elif kind == "clear":
                await session.clear()
            elif kind == "send_message":
                await session.send_message(**command.args)
            elif kind == "sip_transfer":
                await session.sip_transfer(**command.args)
            elif kind == "loading_start":
                await session.loading_start()
            elif kind == "loading_stop":
                await session.loading_stop()
            else:  # pragma: no cover - programming error
                raise ValueError(f"unknown command {kind!r}")


async def _reader(run: _Run, subscribers: list[_Subscriber]) -> None:
    """Read every event and hand it to the behaviours that want it."""
    end_on_leave = run.plan.end.on_participant_disconnected
    counters = run.counters
    try:
        async for event in run.session.events():
            if type(event) is STTResult and event.transcript:
                run.last_speech = trio.current_time()
            media = is_media(event)
            for sub in subscribers:
                if not sub.behaviour.wants(event):
                    continue
                if media:
                    try:
                        sub.send.send_nowait(event)
                    except trio.WouldBlock:
                        counters.dropped_events += 1
                else:
                    await sub.send.send(event)
            if type(event) is ParticipantDisconnected and end_on_leave:
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

"""The supervisor: owns the sessions nursery and restarts what fails.

One :class:`Supervisor` runs under the daemon's root nursery. It takes commands through
one bounded inbox (:class:`Start`, :class:`Stop`, :class:`Restart`, :class:`Reload`) and
keeps one supervising task per session::

    Supervisor.run ── nursery
        ├── inbox loop        commands → start / stop / restart / reload
        └── _supervise(name)  one per session: run → exit → policy → backoff → run …

A session's work is a *runner* (``async def runner(child, control)``): the supervisor
knows nothing of Sayna. When the runner raises, the exception is contained to that
session: logged, recorded in the registry, counted, and the restart policy decides:

- ``permanent``: restarted after every exit;
- ``transient``: restarted only after an abnormal exit (an exception);
- ``temporary``: never restarted (inbound calls).

Restarts wait a jittered exponential backoff; more than ``max_restarts`` restarts in
``window_s`` seconds mark the session ``failed`` and leave it down while the daemon and
every other session carry on. Both read ``trio.current_time()``, so tests run under
``trio.testing.MockClock``.

Outages are not crashes. A run that never reported ``ready`` and ended with an error
the ``is_outage`` predicate accepts (by default :func:`is_unreachable`: an
:class:`~saynad.errors.UnreachableError`, i.e. the peer could not be reached at all)
waits its backoff like any other, but is not recorded in the restart intensity and does
not reset the backoff, however long the attempt took. A session therefore rides out an
outage of any length, retrying at most every ``backoff_max_s`` once the delays have
grown, and ``failed`` is kept for crash loops: errors after ``ready``, a peer that
answers but refuses (a rejected handshake, a fatal error before ``ready``), a broken
configuration, a behaviour that keeps raising. Which errors mean "unreachable" is the
runner's business; the supervisor only checks the predicate.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Final

import structlog
import trio

from saynad._groups import describe
from saynad.actors.registry import Registry, SessionState
from saynad.errors import UnreachableError
from saynad.protocol.backoff import Backoff, RestartIntensity

__all__ = [
    "Child",
    "ChildControl",
    "Ping",
    "Policy",
    "Reload",
    "ReloadPlan",
    "Restart",
    "RestartPolicy",
    "Runner",
    "Start",
    "Stop",
    "Supervisor",
    "is_unreachable",
    "plan_reload",
]

log = structlog.get_logger("saynad.supervisor")


class RestartPolicy(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


HEALTHY_RUN_S: Final = 5.0
"""A run that stayed ``ready`` this long was healthy: its end restarts the backoff and
the restart-intensity window. Shorter runs (a crash loop after ``ready``) keep counting."""


@dataclass(frozen=True)
class Policy:
    """How one session is supervised. The numbers come from the configuration."""

    restart: RestartPolicy = RestartPolicy.PERMANENT
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_multiplier: float = 2.0
    max_restarts: int = 5
    window_s: float = 60.0
    drain_timeout_s: float = 10.0


@dataclass(frozen=True)
class Child:
    """What to supervise. ``spec`` is handed to the runner and compared on reload."""

    name: str
    spec: Hashable
    policy: Policy = Policy()
    origin: str = "config"
    template: str = ""
    ticket: Hashable = None
    """What a child started from outside was admitted for (its call), for the runner;
    None for configured children."""


@dataclass
class ChildControl:
    """The runner's handle on its supervisor: report progress, hear drain requests."""

    name: str
    registry: Registry
    drain_requested: trio.Event = field(default_factory=trio.Event)
    ready_at: float | None = None
    """``trio.current_time()`` when this run reported ``ready`` (``None``: it never did)."""
    stop_reason: str | None = None
    """Why the supervisor stopped this run from outside (``deleted``), for its logs."""

    def connecting(self) -> None:
        self.registry.set_state(self.name, SessionState.CONNECTING)

    def ready(self, *, room: str | None = None, stream_id: str | None = None) -> None:
        self.ready_at = trio.current_time()
        self.registry.update(self.name, room=room, stream_id=stream_id)
        self.registry.set_state(self.name, SessionState.READY)

    def draining(self) -> None:
        self.registry.set_state(self.name, SessionState.DRAINING)


Runner = Callable[[Child, ChildControl], Awaitable[None]]


def is_unreachable(exc: BaseException) -> bool:
    """The default ``is_outage`` predicate: ``exc`` is an :class:`UnreachableError`.

    An exception group counts when every exception in it does (a runner whose nursery
    wrapped the connect failure).
    """
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(UnreachableError)
        return rest is None
    return isinstance(exc, UnreachableError)


@dataclass(frozen=True)
class Start:
    child: Child


@dataclass(frozen=True)
class Stop:
    name: str


@dataclass(frozen=True)
class Restart:
    name: str


@dataclass(frozen=True)
class Ping:
    """Answered by setting ``answered``: proves the inbox loop is alive (watchdog, healthz)."""

    answered: trio.Event = field(default_factory=trio.Event, compare=False)


@dataclass(frozen=True)
class ReloadPlan:
    """What converging on a set of children does, by name: start ``added``, stop
    ``removed``, restart ``changed`` (compared by value); ``unchanged`` keep running."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


def plan_reload(current: Mapping[str, Child], wanted: Mapping[str, Child]) -> ReloadPlan:
    """The one place a reload is planned: ``wanted`` against what runs (``current``).

    A child that is wanted but not running is added, even when the configuration did
    not change it (a ``transient`` session that ended normally starts again).
    """
    return ReloadPlan(
        added=tuple(n for n in wanted if n not in current),
        removed=tuple(n for n in current if n not in wanted),
        changed=tuple(n for n in wanted if n in current and wanted[n] != current[n]),
        unchanged=tuple(n for n in wanted if n in current and wanted[n] == current[n]),
    )


@dataclass
class Reload:
    """Converge on ``children`` (the always-on sessions of a new configuration)."""

    children: Mapping[str, Child]
    origin: str = "config"
    done: trio.Event | None = field(default=None, compare=False)
    """Set once the plan is applied: removed and changed sessions stopped, new ones spawned."""
    plan: ReloadPlan | None = field(default=None, compare=False)
    """The plan applied, set before ``done``."""


Command = Start | Stop | Restart | Reload | Ping


@dataclass
class _Entry:
    child: Child
    scope: trio.CancelScope
    control: ChildControl
    done: trio.Event = field(default_factory=trio.Event)
    stop_requested: bool = False
    running: bool = False
    """A run is under way (not starting, not in backoff)."""

    @property
    def serving(self) -> bool:
        """The current run reported ``ready``: it has something to drain."""
        return self.running and self.control.ready_at is not None


class Supervisor:
    """Owns the sessions nursery. Use :meth:`run` with ``nursery.start``."""

    def __init__(
        self,
        runner: Runner,
        registry: Registry | None = None,
        *,
        rng: random.Random | None = None,
        inbox_size: int = 64,
        on_failure: Callable[[Child, str], None] | None = None,
        on_restart: Callable[[Child, str], None] | None = None,
        on_start: Callable[[Child], None] | None = None,
        is_outage: Callable[[BaseException], bool] = is_unreachable,
    ) -> None:
        """``is_outage(exc)``: does a run that ended with ``exc`` before ``ready`` mean its
        peer was unreachable (back off, do not count toward the restart intensity)?"""
        self._runner = runner
        self._is_outage = is_outage
        self.registry = registry if registry is not None else Registry()
        self._rng = rng or random.Random()
        self._send, self._receive = trio.open_memory_channel[Command](inbox_size)
        self._entries: dict[str, _Entry] = {}
        self._nursery: trio.Nursery | None = None
        self._on_failure = on_failure
        self._on_restart = on_restart
        self._on_start = on_start
        self.admitting = True

    # ------------------------------------------------------------------ public

    async def send(self, command: Command) -> None:
        """Queue a command (waits while the inbox is full)."""
        await self._send.send(command)

    def children(self) -> dict[str, Child]:
        return {name: entry.child for name, entry in self._entries.items()}

    def running(self, name: str) -> bool:
        return name in self._entries

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve commands until cancelled; the sessions nursery lives here."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            async with self._receive:
                async for command in self._receive:
                    await self._apply(command)

    async def reload(self, children: Mapping[str, Child], *, origin: str = "config") -> ReloadPlan:
        """Converge on ``children`` and return once applied, with what was done."""
        command = Reload(children, origin, done=trio.Event())
        await self._send.send(command)
        assert command.done is not None
        await command.done.wait()
        assert command.plan is not None
        return command.plan

    async def ping(self) -> None:
        """Return once the inbox loop has answered (callers bound it with a deadline)."""
        command = Ping()
        await self._send.send(command)
        await command.answered.wait()

    async def start_now(self, child: Child) -> bool:
        """Start ``child`` at once (used for inbound calls: no inbox round trip)."""
        if not self.admitting or child.name in self._entries:
            return False
        self._spawn(child)
        return True

    def stop_now(self, name: str, *, reason: str) -> bool:
        """End ``name`` at once, without asking it to finish (no drain, no goodbye): its
        run is cancelled (teardown stays bounded: sinks still flush) and never restarted.
        ``reason`` goes to its ``session ended`` line. False when no such session runs."""
        entry = self._entries.get(name)
        if entry is None:
            return False
        entry.stop_requested = True
        entry.control.stop_reason = reason
        self.registry.set_state(name, SessionState.DRAINING)
        entry.scope.cancel()
        return True

    async def drain(self, timeout_s: float) -> None:
        """Stop admitting, ask every session to finish, cancel what remains at the deadline.

        Sessions that are not serving (starting, connecting, in backoff, failed) stop at
        once: only a session that reported ``ready`` has a call to finish.
        """
        self.admitting = False
        entries = list(self._entries.values())
        for entry in entries:
            self._request_stop(entry)
        with trio.move_on_after(timeout_s):
            for entry in entries:
                await entry.done.wait()
        for entry in list(self._entries.values()):
            entry.scope.cancel()
        for entry in entries:
            await entry.done.wait()

    # ------------------------------------------------------------------ commands

    async def _apply(self, command: Command) -> None:
        if isinstance(command, Start):
            if self.admitting and command.child.name not in self._entries:
                self._spawn(command.child)
        elif isinstance(command, Stop):
            await self._stop(command.name)
        elif isinstance(command, Restart):
            entry = self._entries.get(command.name)
            if entry is not None:
                child = entry.child
                await self._stop(command.name)
                self._spawn(child)
        elif isinstance(command, Reload):
            await self._reload(command)
            if command.done is not None:
                command.done.set()
        elif isinstance(command, Ping):
            command.answered.set()

    async def _reload(self, command: Reload) -> None:
        current = {n: e.child for n, e in self._entries.items() if e.child.origin == command.origin}
        wanted = command.children
        plan = command.plan = plan_reload(current, wanted)
        log.info(
            "reload plan",
            added=sorted(plan.added),
            removed=sorted(plan.removed),
            changed=sorted(plan.changed),
            unchanged=len(plan.unchanged),
        )
        async with trio.open_nursery() as stops:
            for name in plan.removed + plan.changed:
                stops.start_soon(self._stop, name)
        for name in plan.added + plan.changed:
            if self.admitting:
                self._spawn(wanted[name])

    async def _stop(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            return
        self._request_stop(entry)
        with trio.move_on_after(entry.child.policy.drain_timeout_s):
            await entry.done.wait()
        entry.scope.cancel()
        await entry.done.wait()

    def _request_stop(self, entry: _Entry) -> None:
        entry.stop_requested = True
        self.registry.set_state(entry.child.name, SessionState.DRAINING)
        entry.control.drain_requested.set()
        if not entry.serving:
            # Starting, connecting or waiting out a backoff: there is no call to finish,
            # so it stops at once instead of holding the drain until its deadline.
            entry.scope.cancel()

    # ------------------------------------------------------------------ supervision

    def _spawn(self, child: Child) -> None:
        assert self._nursery is not None, "Supervisor.run is not running"
        self.registry.add(child.name, origin=child.origin, template=child.template)
        entry = _Entry(
            child=child,
            scope=trio.CancelScope(),
            control=ChildControl(child.name, self.registry),
        )
        self._entries[child.name] = entry
        if self._on_start is not None:
            self._on_start(child)
        self._nursery.start_soon(self._supervise, entry, name=f"session:{child.name}")

    async def _supervise(self, entry: _Entry) -> None:
        child = entry.child
        policy = child.policy
        backoff = Backoff(
            policy.backoff_initial_s, policy.backoff_max_s, policy.backoff_multiplier, rng=self._rng
        )
        intensity = RestartIntensity(policy.max_restarts, policy.window_s)
        restarts = 0
        final = SessionState.STOPPED
        try:
            with entry.scope:
                while True:
                    entry.control = ChildControl(
                        child.name, self.registry, entry.control.drain_requested
                    )
                    started = trio.current_time()
                    error, unreachable = await self._run_once(entry)
                    if entry.stop_requested:
                        break
                    if policy.restart is RestartPolicy.TEMPORARY or (
                        policy.restart is RestartPolicy.TRANSIENT and error is None
                    ):
                        break
                    reason = "error" if error is not None else "exit"
                    now = trio.current_time()
                    ready_at = entry.control.ready_at
                    # Never ready and the peer was unreachable: an outage, not a crash. It
                    # backs off (the delays keep growing to backoff_max_s) but is not
                    # counted, so no outage, however long, leaves the session failed.
                    outage = unreachable and ready_at is None
                    if ready_at is not None and now - ready_at >= HEALTHY_RUN_S:
                        # A run that served for a while ends an incident: the next failure
                        # (a server restart, a dropped peer) starts from the first delay and
                        # a fresh intensity window, so repeated server restarts never add
                        # up to a long delay or leave the session failed.
                        backoff.reset()
                        intensity = RestartIntensity(policy.max_restarts, policy.window_s)
                    elif not outage and now - started >= policy.backoff_max_s:
                        backoff.reset()  # it ran long enough to count as healthy
                    if not outage and not intensity.record(now):
                        final = SessionState.FAILED
                        why = f"more than {policy.max_restarts} restarts in {policy.window_s:g} s"
                        self.registry.set_state(
                            child.name,
                            SessionState.FAILED,
                            error=why + (f"; last: {error}" if error else ""),
                        )
                        log.error(
                            "session failed",
                            session=child.name,
                            restarts=restarts,
                            last_error=error,
                        )
                        if self._on_failure is not None:
                            self._on_failure(child, reason)
                        # Left down: the row stays, marked failed, until a reload or restart.
                        await trio.sleep_forever()
                    delay = backoff.next_delay()
                    self.registry.set_state(child.name, SessionState.BACKOFF, error=error)
                    log.info(
                        "session backoff",
                        session=child.name,
                        delay_s=round(delay, 3),
                        reason=reason,
                        outage=outage,
                    )
                    await trio.sleep(delay)
                    if entry.stop_requested:
                        break
                    restarts += 1
                    self.registry.update(child.name, restarts=restarts)
                    if self._on_restart is not None:
                        self._on_restart(child, reason)
                    self.registry.set_state(child.name, SessionState.STARTING)
        finally:
            if self._entries.get(child.name) is entry:
                del self._entries[child.name]
                self.registry.set_state(child.name, final)
                self.registry.remove(child.name)
            entry.done.set()

    async def _run_once(self, entry: _Entry) -> tuple[str | None, bool]:
        """Run the runner once; return ``(None, False)`` on a normal exit, else the error
        text and whether ``is_outage`` accepts the exception.

        The exception itself is not kept: its traceback would hold the ended run's frames
        (and everything they reference) through the backoff and the next run.
        """
        child = entry.child
        entry.running = True
        try:
            await self._runner(child, entry.control)
        except Exception as exc:  # contained: one session's failure never spreads
            text = describe(exc)
            log.warning("session ended with an error", session=child.name, error=text)
            return text, self._is_outage(exc)
        finally:
            entry.running = False
        return None, False

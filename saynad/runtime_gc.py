"""The daemon's garbage-collector policy (``runtime.gc``): few, short GC pauses.

A fleet of sessions keeps a few hundred thousand objects alive for hours (sockets,
behaviours, channels, the suspended coroutines of their tasks), and every session waits
through each collection. With CPython's default thresholds a young collection runs every
few hundred milliseconds and a full collection walks the whole heap (tens to hundreds of
milliseconds at 1,000 sessions): those pauses, not the agent path, make the tail of
saynad's reply latency (``docs/benchmarks-agent.md``).

``tuned`` (the default) does three things:

1. At start: :data:`THRESHOLDS` (young collections after 10,000 net allocations instead
   of 700), so the many short-lived objects of a turn die by reference counting before
   a collection walks them.
2. Once the always-on sessions have settled (none starting, connecting or draining; at
   most :data:`SETTLE_TIMEOUT_S` after being asked, so a session that never connects
   does not hold it back): ``gc.collect()`` then ``gc.freeze()``. The fleet's long-lived
   objects leave every later collection.
3. A *refreeze* after each change of the fleet: a reload, or a session run that ended
   (a restart, a removed session, a finished call). Frozen objects are never collected,
   so a frozen run that ends would leave its reference cycles behind for good; a refreeze
   is ``gc.unfreeze()``, ``gc.collect()`` (which reclaims them), ``gc.freeze()``. It
   waits until the fleet has settled again and runs at most once per
   :data:`MIN_INTERVAL_S`, so a burst of reloads or restarts costs one full collection
   a minute at most. What frozen garbage exists at any time is bounded by what ended
   since the last refreeze.

When the daemon stops, the thresholds it found are restored and everything is unfrozen
(this matters when a :class:`~saynad.app.Daemon` runs inside another program, e.g. tests).

``stock`` leaves the collector as the interpreter set it.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Final

import structlog
import trio

from saynad.actors.registry import Registry, SessionState

__all__ = [
    "MIN_INTERVAL_S",
    "SETTLE_TIMEOUT_S",
    "THRESHOLDS",
    "Freeze",
    "GcPolicy",
]

THRESHOLDS: Final = (10_000, 50, 10)
"""``gc.set_threshold`` values of the ``tuned`` policy (CPython's defaults: 700, 10, 10)."""

SETTLE_TIMEOUT_S: Final = 60.0
"""Longest wait for the fleet to settle before freezing anyway."""

MIN_INTERVAL_S: Final = 60.0
"""Shortest time between two refreezes (each is one full collection)."""

_SETTLE_POLL_S: Final = 0.05
"""Coalesces bursts of state transitions while waiting for the fleet to settle."""

_UNSETTLED: Final = frozenset(
    {SessionState.STARTING, SessionState.CONNECTING, SessionState.DRAINING}
)
_RUN_ENDED: Final = frozenset({SessionState.BACKOFF, SessionState.STOPPED, SessionState.FAILED})

log = structlog.get_logger("saynad.gc")


@dataclass(frozen=True)
class Freeze:
    """One (re)freeze: why, what the collection before it reclaimed, how long it took."""

    reason: str
    collected: int
    frozen: int
    pause_s: float


class GcPolicy:
    """The collector policy of one daemon; ``enabled=False`` is ``runtime.gc: stock``.

    The daemon calls :meth:`apply` when it starts, runs :meth:`run` once the supervisor
    holds the always-on sessions, asks for a freeze with :meth:`request_freeze` (at
    start and after each reload) and calls :meth:`restore` when it stops. Session runs
    that end ask for a refreeze by themselves (``run`` listens to the registry).
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        thresholds: tuple[int, int, int] = THRESHOLDS,
        settle_timeout_s: float = SETTLE_TIMEOUT_S,
        min_interval_s: float = MIN_INTERVAL_S,
    ) -> None:
        self.enabled = enabled
        self.thresholds = thresholds
        self.settle_timeout_s = settle_timeout_s
        self.min_interval_s = min_interval_s
        self.freezes = 0
        """Freezes done so far (the first one included)."""
        self.last: Freeze | None = None
        self._saved: tuple[int, int, int] | None = None
        self._pending: str | None = None
        self._wanted = trio.Event()
        self._changed = trio.Event()
        self._done = trio.Event()

    # ------------------------------------------------------------------ lifecycle

    def apply(self) -> None:
        """Set the thresholds (``tuned``) and log the policy in one line."""
        if not self.enabled:
            log.info("gc policy: stock", thresholds=list(gc.get_threshold()))
            return
        if self._saved is None:
            self._saved = gc.get_threshold()
        gc.set_threshold(*self.thresholds)
        log.info(
            "gc policy: tuned",
            thresholds=list(self.thresholds),
            freeze="once the fleet has settled, again after each change",
            min_interval_s=self.min_interval_s,
        )

    def restore(self) -> None:
        """Put back the thresholds :meth:`apply` found; unfreeze what was frozen."""
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None
        if self.freezes:
            gc.unfreeze()

    def request_freeze(self, reason: str) -> None:
        """Ask :meth:`run` for a (re)freeze once the fleet has settled."""
        if not self.enabled:
            return
        if self._pending is None:
            self._pending = reason
        self._wanted.set()

    def on_transition(self, old: SessionState | None, new: SessionState) -> None:
        """Registry listener: wakes the settle wait; a run that ended asks for a refreeze."""
        self._changed.set()
        if self.freezes and new in _RUN_ENDED:
            self.request_freeze("session ended")

    async def wait_freezes(self, count: int) -> Freeze:
        """Wait until at least ``count`` freezes happened; the latest one (for tests)."""
        while self.freezes < count:
            await self._done.wait()
        assert self.last is not None
        return self.last

    # ------------------------------------------------------------------ the task

    async def run(self, registry: Registry) -> None:
        """Serve freeze requests until cancelled: settle, then (re)freeze, rate-limited."""
        if not self.enabled:
            return
        registry.listeners.append(self.on_transition)
        last_at: float | None = None
        try:
            while True:
                await self._wanted.wait()
                if last_at is not None:
                    await trio.sleep_until(last_at + self.min_interval_s)
                await self._settle(registry)
                reason = self._pending or "requested"
                self._pending = None
                self._wanted = trio.Event()
                self.freeze(reason)
                last_at = trio.current_time()
        finally:
            registry.listeners.remove(self.on_transition)

    async def _settle(self, registry: Registry) -> None:
        with trio.move_on_after(self.settle_timeout_s):
            while True:
                self._changed = trio.Event()
                if not any(row.state in _UNSETTLED for row in registry.rows.values()):
                    return
                await self._changed.wait()
                await trio.sleep(_SETTLE_POLL_S)
        log.warning(
            "gc: fleet not settled; freezing anyway",
            unsettled=sum(1 for row in registry.rows.values() if row.state in _UNSETTLED),
            waited_s=self.settle_timeout_s,
        )

    def freeze(self, reason: str) -> Freeze:
        """Unfreeze, collect everything, freeze what is left. One full-collection pause."""
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        pause_s = time.perf_counter() - started
        done = Freeze(reason, collected, gc.get_freeze_count(), pause_s)
        self.freezes += 1
        self.last = done
        self._done.set()
        self._done = trio.Event()
        log.info(
            "gc frozen",
            reason=reason,
            collected=collected,
            frozen=done.frozen,
            pause_ms=round(pause_s * 1000, 1),
        )
        return done

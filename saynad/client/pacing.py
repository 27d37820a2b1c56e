"""Timed sleeps that stay cheap when thousands of tasks pace real-time audio.

Streaming audio at real-time pace means one timed sleep per chunk and per session: 50
a second for 20 ms chunks, 50,000 a second for 1,000 sessions. :func:`trio.sleep_until`
builds a cancel scope per call and wakes the sleeper by cancelling it (an exception
raised and caught), about 15 µs of CPU each on a 2020s core — as much as sending the
chunk. :func:`sleep_until` here has the same contract (a checkpoint, cancellable,
wakes at or after ``deadline`` on trio's clock) and costs a heap push and a plain
reschedule: one timer task per trio run, started on first use, sleeps until the
earliest deadline and wakes every sleeper that is due.

::

    from saynad.client.pacing import sleep_until

    start = trio.current_time()
    for i, chunk in enumerate(chunks):
        await sleep_until(start + i * 0.020)
        await session.send_audio(chunk)

Precision is trio's: the timer wakes through trio's I/O wait, like
:func:`trio.sleep_until`.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any, Final

import trio

__all__ = ["sleep", "sleep_until"]


class _Timer:
    """The per-run timer: a heap of ``[deadline, seq, task]`` (task ``None`` once the
    sleeper was cancelled) and the system task that wakes them."""

    __slots__ = ("_heap", "_seq", "_task", "_waiting", "_wake_at")

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._task: trio.lowlevel.Task | None = None
        self._wake_at = math.inf  # the deadline the timer task is parked until
        self._waiting = False  # parked in wait_task_rescheduled, may be poked

    def add(self, deadline: float) -> list[Any]:
        """Register the current task to be woken at ``deadline``; returns its entry."""
        entry = [deadline, next(self._seq), trio.lowlevel.current_task()]
        heapq.heappush(self._heap, entry)
        if deadline < self._wake_at and self._waiting:
            # The timer sleeps past this deadline: wake it to re-arm.
            self._waiting = False
            assert self._task is not None
            trio.lowlevel.reschedule(self._task)
        return entry

    async def run(self) -> None:
        """Wake due sleepers; park until the next deadline or a poke. Never raises
        (a system task must not) except ``Cancelled`` when the run ends."""
        heap = self._heap
        reschedule = trio.lowlevel.reschedule
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                task = heapq.heappop(heap)[2]
                if task is not None:
                    reschedule(task)
            self._wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._wake_at):
                self._waiting = True
                await trio.lowlevel.wait_task_rescheduled(self._on_deadline)
            self._waiting = False

    def _on_deadline(self, _: Any) -> trio.lowlevel.Abort:
        self._waiting = False
        return trio.lowlevel.Abort.SUCCEEDED


_TIMER: Final[trio.lowlevel.RunVar[_Timer]] = trio.lowlevel.RunVar("saynad_pacing_timer")


def _timer() -> _Timer:
    try:
        return _TIMER.get()
    except LookupError:
        timer = _Timer()
        timer._task = trio.lowlevel.spawn_system_task(timer.run, name="saynad-pacing-timer")
        _TIMER.set(timer)
        return timer


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on trio's clock (:func:`trio.current_time`).

    Like :func:`trio.sleep_until`: a checkpoint even when ``deadline`` has passed, and
    cancellable; far cheaper when many tasks sleep at once (see the module docstring).
    """
    if deadline != deadline:  # NaN
        raise ValueError("deadline must not be NaN")
    if deadline <= trio.current_time():
        await trio.lowlevel.checkpoint()
        return
    entry = _timer().add(deadline)

    def abort(_: Any) -> trio.lowlevel.Abort:
        entry[2] = None  # left in the heap, skipped when due
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds`` (like :func:`trio.sleep`, on the shared timer)."""
    if seconds < 0:
        raise ValueError("duration must be non-negative")
    await sleep_until(trio.current_time() + seconds)

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

A sleep whose deadline has already passed (a stream that fell behind) is a cancellation
point but takes a schedule point only every :data:`LATE_SCHEDULE_EVERY` calls: catching
up sends the overdue chunks back to back instead of paying a scheduler round trip for
each, and a task that is always late still lets the others run every few calls.

The same timer also runs short synchronous callbacks at a deadline
(:func:`call_at`): :meth:`saynad.client.session.Session.stream_audio` uses it to
write each due audio frame from the timer itself, without waking the streaming task.

Applications import all of this as :mod:`saynad.client.pacing`; it lives here, below
the client, because the emulator paces its audio on the same timer.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

__all__ = [
    "LATE_SCHEDULE_EVERY",
    "OnSent",
    "StreamProgress",
    "TimerEntry",
    "call_at",
    "sleep",
    "sleep_until",
    "stream_by_sleeping",
]

LATE_SCHEDULE_EVERY: Final = 16
"""Overdue :func:`sleep_until` calls between two schedule points."""

TimerEntry = list[Any]
"""``[deadline, seq, target]``: ``target`` is a sleeping task, a callback, or ``None``
once cancelled (left in the heap and skipped when due)."""


class _Timer:
    """The per-run timer: a heap of :data:`TimerEntry` and the system task that wakes
    sleepers and runs callbacks when they are due."""

    __slots__ = ("_heap", "_seq", "_task", "_waiting", "_wake_at")

    def __init__(self) -> None:
        self._heap: list[TimerEntry] = []
        self._seq = itertools.count()
        self._task: trio.lowlevel.Task | None = None
        self._wake_at = math.inf  # the deadline the timer task is parked until
        self._waiting = False  # parked in wait_task_rescheduled, may be poked

    def add(self, deadline: float, target: object, reuse: TimerEntry | None = None) -> TimerEntry:
        """Register ``target`` (a task to wake or a callback to run) at ``deadline``,
        in ``reuse`` (an entry that has run) when given, else in a new entry."""
        if reuse is None:
            entry = [deadline, next(self._seq), target]
        else:
            entry = reuse
            entry[0] = deadline
            entry[1] = next(self._seq)
            entry[2] = target
        heapq.heappush(self._heap, entry)
        if deadline < self._wake_at and self._waiting:
            # The timer sleeps past this deadline: wake it to re-arm.
            self._waiting = False
            assert self._task is not None
            trio.lowlevel.reschedule(self._task)
        return entry

    async def run(self) -> None:
        """Wake due sleepers and run due callbacks; park until the next deadline or a
        poke. Never raises (a system task must not) except ``Cancelled`` when the run
        ends.

        Each pass takes what is due when it starts; an entry a callback adds during the
        pass (even one already due) waits for the next pass, after other tasks ran.
        """
        heap = self._heap
        reschedule = trio.lowlevel.reschedule
        task_type = trio.lowlevel.Task
        due: list[object] = []
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                target = heapq.heappop(heap)[2]
                if target is not None:
                    due.append(target)
            for target in due:
                if type(target) is task_type:
                    reschedule(target)
                else:
                    target()  # type: ignore[operator]
            due.clear()
            self._wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._wake_at):
                self._waiting = True
                await trio.lowlevel.wait_task_rescheduled(self._on_deadline)
            self._waiting = False

    def _on_deadline(self, _: Any) -> trio.lowlevel.Abort:
        self._waiting = False
        if trio.current_time() >= self._wake_at:
            # Our own deadline: wake with a plain reschedule. (Letting trio deliver the
            # Cancelled instead creates, throws and catches an exception per wake-up,
            # the very cost this module saves its sleepers.)
            assert self._task is not None
            trio.lowlevel.reschedule(self._task)
            return trio.lowlevel.Abort.FAILED
        return trio.lowlevel.Abort.SUCCEEDED  # the run is ending


_TIMER: Final[trio.lowlevel.RunVar[_Timer]] = trio.lowlevel.RunVar("saynad_pacing_timer")


def _timer() -> _Timer:
    try:
        return _TIMER.get()
    except LookupError:
        timer = _Timer()
        timer._task = trio.lowlevel.spawn_system_task(timer.run, name="saynad-pacing-timer")
        _TIMER.set(timer)
        return timer


_late_returns = 0


async def _late() -> None:
    """A sleep whose deadline has passed: a cancellation point, and a schedule point
    only every :data:`LATE_SCHEDULE_EVERY` calls."""
    global _late_returns
    await trio.lowlevel.checkpoint_if_cancelled()
    _late_returns += 1
    if _late_returns >= LATE_SCHEDULE_EVERY:
        _late_returns = 0
        await trio.lowlevel.cancel_shielded_checkpoint()


async def sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on trio's clock (:func:`trio.current_time`).

    Like :func:`trio.sleep_until`: a checkpoint even when ``deadline`` has passed, and
    cancellable; far cheaper when many tasks sleep at once (see the module docstring).
    """
    if deadline != deadline:  # NaN
        raise ValueError("deadline must not be NaN")
    if deadline <= trio.current_time():
        await _late()
        return
    entry = _timer().add(deadline, trio.lowlevel.current_task())

    def abort(_: Any) -> trio.lowlevel.Abort:
        entry[2] = None  # left in the heap, skipped when due
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds`` (like :func:`trio.sleep`, on the shared timer)."""
    if seconds < 0:
        raise ValueError("duration must be non-negative")
    await sleep_until(trio.current_time() + seconds)


def call_at(
    deadline: float, callback: Callable[[], object], reuse: TimerEntry | None = None
) -> TimerEntry:
    """Run ``callback()`` in the timer task once ``deadline`` (trio's clock) has come.

    For short, synchronous work that must not raise: the callback runs inside trio's
    system task, where an exception would end the whole run. To cancel, set the
    returned entry's last item to ``None``. Must be called from inside a trio run.

    ``reuse``: an entry this function returned earlier whose callback has run (so it
    has left the timer's heap). A callback that re-arms itself every few milliseconds
    passes its entry back instead of allocating one per call: short-lived containers
    that happen to be alive at each collection are what pushes the garbage collector
    into full collections of the whole process.
    """
    if deadline != deadline:  # NaN
        raise ValueError("deadline must not be NaN")
    return _timer().add(deadline, callback, reuse)


OnSent = Callable[[int, float], object]
"""``on_sent(index, lag_s)``: chunk ``index`` was written ``lag_s`` after its due time."""


class StreamProgress:
    """What a paced stream has written so far (filled in as it goes, also on failure)."""

    __slots__ = ("bytes", "frames")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0


async def stream_by_sleeping(
    send_bytes: Callable[[bytes], Awaitable[None]],
    chunks: Sequence[bytes],
    interval_s: float,
    *,
    start: float,
    on_sent: OnSent | None = None,
    progress: StreamProgress | None = None,
) -> None:
    """Send ``chunks[i]`` with ``send_bytes`` at ``start + i * interval_s``: the plain
    loop (a :func:`sleep_until` and a send per chunk), for transports that cannot write
    from the timer."""
    progress = progress if progress is not None else StreamProgress()
    for index, chunk in enumerate(chunks):
        due = start + index * interval_s
        await sleep_until(due)
        await send_bytes(chunk)
        progress.frames += 1
        progress.bytes += len(chunk)
        if on_sent is not None:
            on_sent(index, trio.current_time() - due)

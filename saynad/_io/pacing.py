"""Timed sleeps that stay cheap when thousands of tasks pace real-time audio.

Streaming audio at real-time pace means one timed sleep per chunk and per session: 50
a second for 20 ms chunks, 50,000 a second for 1,000 sessions. :func:`trio.sleep_until`
builds a cancel scope per call and wakes the sleeper by cancelling it (an exception
raised and caught), about 15 µs of CPU each on a 2020s core — as much as sending the
chunk. :func:`sleep_until` here has the same contract (a checkpoint, cancellable,
wakes at or after ``deadline`` on trio's clock) and costs a heap push and a plain
reschedule: one timer per trio run, started on first use, wakes every sleeper that is
due right after trio's I/O wait (a trio instrument's ``after_io_wait`` hook, so a timer
pass costs no task step; a system task parked until the earliest deadline keeps trio's
wait short enough and makes the passes the hook cannot).

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
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

__all__ = [
    "LATE_SCHEDULE_EVERY",
    "OnSent",
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


class _Timer(trio.abc.Instrument):
    """The per-run timer: a heap of :data:`TimerEntry`, served right after trio's I/O
    wait (this instrument's ``after_io_wait`` hook), with a system task as the fallback.

    The task parks in a cancel scope whose deadline is the earliest entry, so that
    trio's I/O wait ends in time. Right after that wait, before trio looks at its
    deadlines, the hook makes the pass: it runs what is due and moves the scope's
    deadline on, so the scope does not fire and no task steps for the pass (a task
    step is a sixth of the CPU of a wake-up at small fleets). The task makes the pass
    when the hook did not: an entry added during a pass and already due (see
    :meth:`_pass`) wakes it directly, and if the scope fires after all (the clock moved
    past the deadline between the hook and trio's check) it makes the pass itself.
    """

    __slots__ = (
        "_due",
        "_error",
        "_heap",
        "_parked",
        "_scope",
        "_seq",
        "_task",
        "_wake_at",
        "now",
        "passes",
    )

    def __init__(self) -> None:
        self._heap: list[TimerEntry] = []
        self._seq = 0
        self._task: trio.lowlevel.Task | None = None
        self._scope: trio.CancelScope | None = None
        # The scope's deadline (the earliest entry), or -inf while a pass is pending.
        self._wake_at = math.inf
        self._parked = False  # the task waits in its scope and may be woken
        self._due: list[object] = []
        self._error: BaseException | None = None  # raised by a callback in the hook
        self.passes = 0
        """Timer passes so far."""
        self.now: Callable[[], float] = trio.lowlevel.current_clock().current_time
        """:func:`trio.current_time` of the run the timer belongs to, one call instead
        of three: the timer reads the clock several times per pass, and a paced stream
        once or twice per frame."""

    def add(self, deadline: float, target: object, reuse: TimerEntry | None = None) -> TimerEntry:
        """Register ``target`` (a task to wake or a callback to run) at ``deadline``,
        in ``reuse`` (an entry that has run) when given, else in a new entry."""
        seq = self._seq
        self._seq = seq + 1
        if reuse is None:
            entry = [deadline, seq, target]
        else:
            entry = reuse
            entry[0] = deadline
            entry[1] = seq
            entry[2] = target
        heapq.heappush(self._heap, entry)
        if deadline < self._wake_at:
            self._arm(deadline)
        return entry

    def _arm(self, deadline: float) -> None:
        """Have the earliest entry, due at ``deadline``, served in time."""
        if deadline <= self.now():
            # Already due. A deadline in the past would have trio fire the scope (and
            # sleep no longer in the meantime only if something else is runnable):
            # wake the task, which makes the pass in the next batch unless the hook
            # made it first.
            self._wake_at = -math.inf
            deadline = math.inf
            self._wake()
        else:
            self._wake_at = deadline
        scope = self._scope
        if scope is not None:
            scope.deadline = deadline

    def _wake(self) -> None:
        if self._parked:
            self._parked = False
            assert self._task is not None
            trio.lowlevel.reschedule(self._task)

    def after_io_wait(self, timeout: float) -> None:
        """trio's hook after each I/O wait: the pass, when something is due.

        Never raises: trio would only log the error and remove the instrument. A
        callback's error goes to the task instead, which raises it (and so ends the
        run, as it would have in the task's own pass)."""
        heap = self._heap
        if not heap or self._error is not None:
            return
        now = self.now()
        if heap[0][0] <= now:
            try:
                self._pass(now)
            except BaseException as exc:  # handed to the task, which raises it
                self._error = exc
                self._wake_at = -math.inf
                self._wake()

    def _pass(self, now: float | None = None) -> None:
        """Wake due sleepers and run due callbacks, then re-arm (``now``: the clock,
        when the caller has just read it).

        What comes due while the pass runs is served too, but an entry added during
        the pass (a callback re-arming itself, even already due) waits for the next
        pass, after other tasks ran.
        """
        heap = self._heap
        due = self._due
        added = self._seq  # entries numbered from here on are added during this pass
        held: list[TimerEntry] | None = None
        self.passes += 1
        task_type = trio.lowlevel.Task
        reschedule = trio.lowlevel.reschedule
        clock = self.now
        try:
            for sweep in range(_SWEEPS):
                if sweep or now is None:
                    now = clock()
                while heap and heap[0][0] <= now:
                    entry = heapq.heappop(heap)
                    if entry[1] >= added:
                        if held is None:
                            held = []
                        held.append(entry)
                    elif entry[2] is not None:
                        due.append(entry[2])
                if not due:
                    break
                for target in due:
                    if type(target) is task_type:
                        reschedule(target)
                    else:
                        target()  # type: ignore[operator]
                due.clear()
        finally:
            due.clear()
            if held is not None:
                for entry in held:
                    heapq.heappush(heap, entry)
        self._arm(heap[0][0] if heap else math.inf)

    async def run(self) -> None:
        """The task's part (see the class docstring). Raises only ``Cancelled`` when
        the run ends, and what a callback raised (a system task's error ends the run:
        callbacks must not raise)."""
        while True:
            with trio.CancelScope() as scope:
                self._scope = scope
                self._arm(self._heap[0][0] if self._heap else math.inf)
                while not scope.cancel_called:
                    if self._wake_at == -math.inf:
                        # Due already (or failed): serve it after a schedule point.
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    else:
                        self._parked = True
                        await trio.lowlevel.wait_task_rescheduled(self._on_abort)
                    if self._error is not None:
                        raise self._error
                    self._pass()
            self._scope = None

    def _on_abort(self, _: Any) -> trio.lowlevel.Abort:
        self._parked = False
        scope = self._scope
        if scope is not None and scope.cancel_called:
            # Our own deadline: wake with a plain reschedule. (Letting trio deliver the
            # Cancelled instead creates, throws and catches an exception, the very cost
            # this module saves its sleepers.)
            assert self._task is not None
            trio.lowlevel.reschedule(self._task)
            return trio.lowlevel.Abort.FAILED
        return trio.lowlevel.Abort.SUCCEEDED  # the run is ending


_SWEEPS: Final = 4
"""How often one pass looks again for entries that came due while it ran."""

_TIMER: Final[trio.lowlevel.RunVar[_Timer]] = trio.lowlevel.RunVar("saynad_pacing_timer")


def _timer() -> _Timer:
    try:
        return _TIMER.get()
    except LookupError:
        timer = _Timer()
        timer._task = trio.lowlevel.spawn_system_task(timer.run, name="saynad-pacing-timer")
        trio.lowlevel.add_instrument(timer)
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


def current_timer() -> _Timer:
    """This run's timer, started on first use. ``timer.add(deadline, callback, reuse)``
    is :func:`call_at` without the lookup of the run's timer on every call, for a
    caller that keeps the timer and re-arms thousands of times a second (a paced
    stream); that caller makes sure ``deadline`` is never NaN."""
    return _timer()


def call_at(
    deadline: float, callback: Callable[[], object], reuse: TimerEntry | None = None
) -> TimerEntry:
    """Run ``callback()`` on the timer once ``deadline`` (trio's clock) has come.

    For short, synchronous work that must not raise: the callback runs outside any
    task (right after trio's I/O wait, or in the timer's system task), so it may
    reschedule tasks but not await or ask for the current task, and an exception ends
    the whole run. To cancel, set the returned entry's last item to ``None``. Must be
    called from inside a trio run.

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


async def stream_by_sleeping(
    send_bytes: Callable[[bytes], Awaitable[None]],
    chunks: Sequence[bytes],
    interval_s: float,
    *,
    start: float,
    on_sent: OnSent | None = None,
) -> None:
    """Send ``chunks[i]`` with ``send_bytes`` at ``start + i * interval_s``: the plain
    loop (a :func:`sleep_until` and a send per chunk), for transports that cannot write
    from the timer."""
    for index, chunk in enumerate(chunks):
        due = start + index * interval_s
        await sleep_until(due)
        await send_bytes(chunk)
        if on_sent is not None:
            on_sent(index, trio.current_time() - due)

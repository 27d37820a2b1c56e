"""The jsonl sink on a failing disk, in virtual time: a fake file that runs out of space
stands in for the disk, so the retry schedule, the exact accounting and the rate-limited
error log are checked to the millisecond (the real disk: tests/lifecycle/test_disk_full.py).
"""

from __future__ import annotations

import errno
import itertools
import json
import random
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from saynad.actors.behaviour import SessionCounters
from saynad.actors.behaviours.transcripts import (
    ERROR_LOG_INTERVAL_S,
    WRITE_RETRY_MAX_S,
    Entry,
    Journal,
    JsonlFile,
    JsonlSink,
    open_jsonl_file,
)
from saynad.actors.session import RunTally
from saynad.client.session import SessionStats
from saynad.observability.metrics import DaemonSnapshot, Metrics
from saynad.protocol.backoff import Backoff
from tests.actors.behaviours.fakes import identity


@dataclass
class FakeDisk:
    """A disk with ``space`` bytes left (``None``: unlimited) holding one file.

    ``append`` behaves like ``os.write`` in a loop: it writes what fits and returns the
    count, and raises ``ENOSPC`` when nothing fits. ``attempts`` records every call.
    """

    space: int | None = None
    content: bytearray = field(default_factory=bytearray)
    attempts: list[tuple[float, str]] = field(default_factory=list)  # (time, outcome)
    fail_sync: bool = False
    fail_open: bool = False
    syncs: int = 0
    closed: bool = False

    @property
    def failed_at(self) -> list[float]:
        """When each failed call happened (a short write is progress, not a failure)."""
        return [t for t, outcome in self.attempts if outcome in ("ENOSPC", "open failed")]

    @property
    def failures(self) -> int:
        return len(self.failed_at)

    async def open(self, path: Path) -> JsonlFile:
        await trio.lowlevel.checkpoint()
        if self.fail_open:
            self.attempts.append((trio.current_time(), "open failed"))
            raise OSError(errno.ENOSPC, "No space left on device")
        return _FakeFile(self)

    def lines(self) -> list[dict[str, Any]]:
        text = bytes(self.content).decode()
        assert text.endswith("\n") or not text, f"a torn last line: {text[-60:]!r}"
        return [json.loads(line) for line in text.splitlines()]


class _FakeFile:
    def __init__(self, disk: FakeDisk) -> None:
        self.disk = disk

    async def append(self, data: memoryview) -> int:
        await trio.lowlevel.checkpoint()
        disk = self.disk
        fits = len(data) if disk.space is None else min(len(data), disk.space)
        if fits == 0:
            disk.attempts.append((trio.current_time(), "ENOSPC"))
            raise OSError(errno.ENOSPC, "No space left on device")
        disk.content += data[:fits]
        if disk.space is not None:
            disk.space -= fits
        disk.attempts.append((trio.current_time(), "ok" if fits == len(data) else "short"))
        return fits

    async def sync(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.disk.fail_sync:
            raise OSError(errno.EIO, "Input/output error")
        self.disk.syncs += 1

    async def aclose(self) -> None:
        self.disk.closed = True


def line_size(journal: Journal, text: str) -> int:
    """The bytes of the line an entry recorded by ``journal`` (``ts=1.0``) takes."""
    who = journal.identity
    entry = Entry(
        ts=1.0,
        session=who.name,
        role="user",
        text=text,
        room=who.room,
        stream_id=who.stream_id,
        caller=who.caller,
    )
    return len(msgspec.json.encode(entry)) + 1


async def until(predicate: Callable[[], bool], *, step_s: float = 0.01) -> None:
    """Poll a condition in virtual time (bounded)."""
    for _ in range(100_000):
        if predicate():
            return
        await trio.sleep(step_s)
    raise AssertionError("condition never became true")


def make(disk: FakeDisk, **options: Any) -> tuple[Journal, JsonlSink, Any]:
    journal = Journal(identity("s1"), SessionCounters())
    sink = JsonlSink("unused/{session}.jsonl", opener=disk.open, rng=random.Random(7), **options)
    queue = journal.add_queue(sink.name, options.get("queue_size", sink.queue_size))
    return journal, sink, queue


def texts(disk: FakeDisk) -> list[str]:
    return [line["text"] for line in disk.lines()]


async def test_a_full_disk_keeps_the_batch_and_resumes_within_the_backoff_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk()
    journal, sink, queue = make(disk)
    # Room for one and a half lines: the second line is cut by the full disk.
    disk.space = int(1.5 * line_size(journal, "line 0"))
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, journal.identity, queue, journal.counters)
            for i in range(4):
                journal.record("user", f"line {i}", ts=1.0)
            await trio.sleep(30)  # 30 s of a full disk
            assert journal.counters.sink_errors == disk.failures >= 10
            assert sink.written == 1  # one whole line made it; the second is cut
            assert journal.counters.sink_dropped == 0
            returned = trio.current_time()
            disk.space = None  # space returns
            await until(lambda: sink.written == 4)
            resumed = trio.current_time() - returned
            journal.close()
    assert resumed <= WRITE_RETRY_MAX_S, f"resumed {resumed:.3f} s after space returned"
    # Everything is there exactly once, and the cut line was completed, not repeated.
    assert texts(disk) == ["line 0", "line 1", "line 2", "line 3"]
    counters = journal.counters
    assert (counters.sink_written, counters.sink_dropped) == (4, 0)
    assert counters.sink_errors == sink.errors == disk.failures
    assert disk.closed
    errors = [e for e in logs if e["event"] == "transcript write failed"]
    assert len(errors) == 1  # 30 s < one minute
    assert errors[0]["log_level"] == "error"
    assert errors[0]["op"] == "write"
    assert "No space left" in errors[0]["error"]
    [resumed_line] = [e for e in logs if e["event"] == "transcript writes resumed"]
    assert resumed_line["errors"] == disk.failures


async def test_retries_follow_the_jittered_backoff_capped_at_two_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk(space=0)
    journal, sink, queue = make(disk)
    journal.record("user", "waiting")
    with trio.move_on_after(20):
        await sink.run(journal.identity, queue, journal.counters)
    times = [t for t, _ in disk.attempts]
    expected = Backoff(sink.retry_initial_s, sink.retry_max_s, rng=random.Random(7))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([expected.next_delay() for _ in gaps])
    assert max(gaps) <= WRITE_RETRY_MAX_S
    # The teardown deadline came while the disk was full: the entry is dropped, counted.
    assert journal.counters.sink_dropped == 1
    assert journal.counters.sink_errors == len(times)


async def test_at_most_one_error_line_per_minute_with_the_count_of_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk(space=0)
    journal, sink, queue = make(disk)
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, journal.identity, queue, journal.counters)
            journal.record("user", "waiting")
            await trio.sleep(150)  # two and a half minutes of a full disk
            disk.space = None
            await until(lambda: sink.written == 1)
            journal.close()
    errors = [e for e in logs if e["event"] == "transcript write failed"]
    # The first failure, then each first failure a minute or more after the last line
    # logged: `errors` is the count of failures so far, `not_logged` those in between.
    failed_at = disk.failed_at
    logged = [0]
    for i, t in enumerate(failed_at):
        if t - failed_at[logged[-1]] >= ERROR_LOG_INTERVAL_S:
            logged.append(i)
    assert len(logged) == 3  # 150 s: at 0 s, after 60 s, after 120 s
    assert [e["errors"] for e in errors] == [i + 1 for i in logged]
    assert [e["not_logged"] for e in errors] == [0, logged[1] - 1, logged[2] - logged[1] - 1]
    assert journal.counters.sink_errors == disk.failures
    [resumed] = [e for e in logs if e["event"] == "transcript writes resumed"]
    assert resumed["errors"] == disk.failures
    assert resumed["outage_s"] >= 150


async def test_overflow_while_the_disk_is_full_drops_the_oldest_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk(space=0)
    journal, sink, queue = make(disk, queue_size=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, journal.identity, queue, journal.counters)
        journal.record("user", "e0")  # taken at once: the batch being retried
        await trio.sleep(1)
        for i in range(1, 20):
            journal.record("user", f"e{i}")
            await trio.sleep(0.5)
        disk.space = None
        journal.close()
    # Held: the batch in flight (e0) and the 5 newest; e1..e14 were dropped oldest-first.
    assert texts(disk) == ["e0", "e15", "e16", "e17", "e18", "e19"]
    counters = journal.counters
    assert (counters.sink_written, counters.sink_dropped) == (6, 14)
    assert counters.sink_written + counters.sink_dropped == journal.received == 20
    assert counters.sink_errors == disk.failures


async def test_a_session_ending_on_a_full_disk_counts_whole_lines_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk(space=0)
    journal, sink, queue = make(disk)
    for i in range(4):
        journal.record("user", f"line {i}", ts=1.0)
    disk.space = line_size(journal, "line 0") + 20  # the first line and part of the second
    journal.close()
    with trio.move_on_after(5):  # the session's teardown deadline
        await sink.run(journal.identity, queue, journal.counters)
    counters = journal.counters
    assert (counters.sink_written, counters.sink_dropped) == (1, 3)
    assert counters.sink_errors == disk.failures >= 1
    first, partial = bytes(disk.content).split(b"\n")
    assert json.loads(first)["text"] == "line 0"
    assert partial  # a cut line, counted as dropped
    assert not partial.endswith(b"}")
    assert disk.closed


async def test_a_file_that_cannot_be_opened_is_retried_and_opened_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk(fail_open=True)
    journal, sink, queue = make(disk)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run, journal.identity, queue, journal.counters)
        journal.record("user", "early")
        await trio.sleep(10)
        assert sink.errors == disk.failures >= 5
        disk.fail_open = False
        journal.record("user", "later")
        journal.close()
    assert texts(disk) == ["early", "later"]
    assert journal.counters.sink_dropped == 0


async def test_a_failed_fsync_is_counted_and_logged_but_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    disk = FakeDisk(fail_sync=True)
    journal, sink, queue = make(disk, fsync="always")
    with structlog.testing.capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run, journal.identity, queue, journal.counters)
            journal.record("user", "one")
            await trio.sleep(1)
            journal.record("user", "two")
            await trio.sleep(1)
            journal.close()
    assert texts(disk) == ["one", "two"]
    counters = journal.counters
    assert (counters.sink_written, counters.sink_dropped) == (2, 0)
    # One fsync per batch and one at close, each failing.
    assert counters.sink_errors == 3
    errors = [e for e in logs if e["event"] == "transcript write failed"]
    assert [e["op"] for e in errors] == ["fsync"]


async def test_the_real_file_writes_what_fits_then_raises_efbig(tmp_path: Path) -> None:
    """``open_jsonl_file`` under a file-size limit (``RLIMIT_FSIZE``; Python ignores
    ``SIGXFSZ``): a short count first, then ``EFBIG``; the rest once the limit is gone."""
    path = tmp_path / "a" / "b.jsonl"
    file = await open_jsonl_file(path)  # creates the directories
    data = memoryview(b"0123456789" * 3)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (12, hard))
    try:
        assert await file.append(data) == 12
        with pytest.raises(OSError) as failed:  # noqa: PT011 - its errno is checked
            await file.append(data[12:])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert failed.value.errno == errno.EFBIG
    assert await file.append(data[12:]) == 18
    await file.sync()
    await file.aclose()
    assert path.read_bytes() == bytes(data)


def test_the_catalog_exports_sink_entries_and_errors_summed_over_runs() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(
        registry,
        snapshot=lambda: DaemonSnapshot(
            sessions_by_state={}, replay_cache_size=3, replay_cache_capacity=10_000
        ),
    )
    runs = [RunTally("config", SessionStats(), SessionCounters()) for _ in range(2)]
    for i, run in enumerate(runs):
        run.counters.sink_written, run.counters.sink_dropped = 10 + i, 2
        run.counters.sink_errors = 3
        metrics.run_started(run)
    metrics.run_ended(runs[0])  # ended runs keep counting in the totals
    text = generate_latest(registry).decode()
    assert 'saynad_transcript_sink_entries_total{outcome="written"} 21.0' in text
    assert 'saynad_transcript_sink_entries_total{outcome="dropped"} 4.0' in text
    assert "saynad_transcript_sink_errors_total 6.0" in text
    assert "saynad_webhook_replay_cache_entries 3.0" in text
    assert "saynad_webhook_replay_cache_capacity 10000.0" in text

"""Transcript queues and sinks: bounded, drop-oldest, exact accounting; the HTTP sink's
batching, retries and backoff under the autojump clock; the jsonl sink on disk."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from saynad.actors.behaviour import SessionCounters
from saynad.actors.behaviours.transcripts import (
    Entry,
    EntryQueue,
    HttpSink,
    Journal,
    JsonlSink,
    render_path,
)
from tests.actors.behaviours.fakes import identity


def entry(i: int) -> Entry:
    return Entry(ts=float(i), session="s", role="user", text=f"line {i}")


def test_queue_drops_the_oldest_and_counts_exactly() -> None:
    counters = SessionCounters()
    queue = EntryQueue("q", 3, counters)
    for i in range(5):
        queue.put(entry(i))
        assert len(queue) <= 3
    assert [e.text for e in queue._items] == ["line 2", "line 3", "line 4"]
    assert queue.dropped == counters.sink_dropped == 2
    queue.close()
    queue.put(entry(9))  # after close: dropped, never queued
    assert queue.dropped == 3
    assert queue.discard() == 3
    assert queue.received == 6 == queue.dropped


async def test_next_batch_fills_or_lingers(autojump_clock: trio.testing.MockClock) -> None:
    queue = EntryQueue("q", 10, SessionCounters())

    async def producer() -> None:
        queue.put(entry(0))
        await trio.sleep(0.3)
        queue.put(entry(1))
        await trio.sleep(5)
        for i in range(2, 6):
            queue.put(entry(i))
        queue.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        first = await queue.next_batch(5, linger_s=1.0)
        assert [e.text for e in first] == ["line 0", "line 1"]
        assert trio.current_time() == pytest.approx(1.0)  # the timer flushed it
        second = await queue.next_batch(3, linger_s=1.0)
        assert len(second) == 3  # full: no lingering
        assert trio.current_time() == pytest.approx(5.3)
        assert [e.text for e in await queue.next_batch(3, linger_s=1.0)] == ["line 5"]
        assert await queue.next_batch(3) == []


class Endpoint:
    """An httpx mock endpoint answering from a list of statuses (the last repeats)."""

    def __init__(self, *statuses: int | Exception) -> None:
        self.statuses = statuses
        self.calls: list[tuple[float, list[dict[str, object]]]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((trio.current_time(), json.loads(request.content)["entries"]))
        status = self.statuses[min(len(self.calls) - 1, len(self.statuses) - 1)]
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


async def run_sink(sink: HttpSink, feed: list[tuple[float, int]], end_at: float) -> Journal:
    """Record entries at the given times, close the journal at ``end_at``, run the sink."""
    journal = Journal(identity(), SessionCounters())
    queue = journal.add_queue(sink.name, sink.queue_size)
    peak = 0

    async def producer() -> None:
        nonlocal peak
        for at, i in feed:
            await trio.sleep_until(at)
            journal.record("user", f"line {i}")
            peak = max(peak, len(queue))
        await trio.sleep_until(end_at)
        journal.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await sink.run(journal.identity, queue, journal.counters)
    assert peak <= sink.queue_size
    return journal


async def test_http_sink_batches_by_size_and_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = Endpoint(200)
    sink = HttpSink(
        "http://sink.test/t", batch_size=3, flush_interval_s=1.0, transport=endpoint.transport()
    )
    feed = [(0.0, 0), (0.0, 1), (0.0, 2), (0.0, 3), (2.0, 4), (2.1, 5)]
    journal = await run_sink(sink, feed, end_at=10)
    batches = [(round(t, 3), [e["text"] for e in b]) for t, b in endpoint.calls]
    assert batches == [
        (0.0, ["line 0", "line 1", "line 2"]),
        (1.0, ["line 3"]),
        (3.0, ["line 4", "line 5"]),
    ]
    first = endpoint.calls[0][1][0]
    assert (first["session"], first["caller"], first["role"]) == ("s", "+15550001", "user")
    assert sink.written == journal.counters.sink_written == 6
    assert journal.dropped == 0


async def test_http_sink_retries_with_backoff_then_delivers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = Endpoint(503, httpx.ConnectError("refused"), 200)
    sink = HttpSink(
        "http://sink.test/t",
        batch_size=10,
        flush_interval_s=0.5,
        max_retries=3,
        transport=endpoint.transport(),
        rng=random.Random(1),
    )
    journal = await run_sink(sink, [(0.0, 0)], end_at=60)
    times = [t for t, _ in endpoint.calls]
    assert len(times) == 3
    assert 0 <= times[1] - times[0] <= 0.5  # first delay ≤ initial ceiling
    assert 0 <= times[2] - times[1] <= 1.0  # then ≤ doubled ceiling
    assert sink.written == 1
    assert sink.errors == journal.counters.sink_errors == 2
    assert journal.dropped == 0


async def test_http_sink_down_keeps_the_bound_and_counts_every_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = Endpoint(503)
    sink = HttpSink(
        "http://sink.test/t",
        batch_size=2,
        flush_interval_s=0.1,
        queue_size=5,
        max_retries=2,
        transport=endpoint.transport(),
        rng=random.Random(2),
    )
    feed = [(i * 0.05, i) for i in range(40)]
    journal = await run_sink(sink, feed, end_at=30)
    counters = journal.counters
    assert sink.written == 0
    assert journal.received == 40
    assert counters.sink_dropped == 40  # every entry accounted for, none delivered
    assert counters.sink_errors == len(endpoint.calls) == sink.errors
    assert all(len(batch) <= 2 for _, batch in endpoint.calls)


async def test_http_sink_client_errors_drop_the_batch_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = Endpoint(400, 200)
    sink = HttpSink("http://sink.test/t", batch_size=1, transport=endpoint.transport())
    journal = await run_sink(sink, [(0.0, 0), (1.0, 1)], end_at=5)
    assert len(endpoint.calls) == 2  # no retry of the rejected batch
    assert sink.written == 1
    assert journal.counters.sink_dropped == 1


async def test_http_sink_cancelled_mid_retry_counts_what_it_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    endpoint = Endpoint(503)
    sink = HttpSink(
        "http://sink.test/t",
        batch_size=2,
        queue_size=10,
        max_retries=100,
        transport=endpoint.transport(),
    )
    journal = Journal(identity(), SessionCounters())
    queue = journal.add_queue(sink.name, sink.queue_size)
    for i in range(5):
        journal.record("user", f"line {i}")
    with trio.move_on_after(3):  # the teardown deadline of a session
        await sink.run(journal.identity, queue, journal.counters)
    assert journal.counters.sink_dropped == 5
    assert len(queue) == 0


async def test_jsonl_sink_appends_lines_shared_by_sessions(tmp_path: Path) -> None:
    sink_template = str(tmp_path / "t" / "{date}" / "all.jsonl")
    for name in ("a", "b"):
        journal = Journal(identity(name), SessionCounters())
        sink = JsonlSink(sink_template, fsync="always")
        queue = journal.add_queue(sink.name, sink.queue_size)
        journal.record("user", f"hello from {name}")
        journal.record("agent", "hi", interrupted=True)
        journal.close()
        await sink.run(journal.identity, queue, journal.counters)
        assert journal.counters.sink_written == 2
    path = render_path(sink_template, identity())
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["session"], r["role"], r["text"]) for r in lines] == [
        ("a", "user", "hello from a"),
        ("a", "agent", "hi"),
        ("b", "user", "hello from b"),
        ("b", "agent", "hi"),
    ]
    assert lines[1]["interrupted"] is True
    assert "interrupted" not in lines[0]
    assert lines[0]["caller"] == "+15550001"


async def test_jsonl_sink_that_cannot_open_its_file_drops_and_counts(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    journal = Journal(identity(), SessionCounters())
    sink = JsonlSink(str(blocker / "x.jsonl"))
    queue = journal.add_queue(sink.name, sink.queue_size)
    journal.record("user", "lost")
    journal.close()
    with trio.move_on_after(5):  # it retries until the session's teardown deadline
        await sink.run(journal.identity, queue, journal.counters)
    assert journal.counters.sink_errors == sink.errors >= 1
    assert journal.counters.sink_dropped == 1

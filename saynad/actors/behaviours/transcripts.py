"""Transcript journal and sinks.

Behaviours :meth:`Journal.record` what was said — final user transcripts, agent replies,
greeting and goodbye lines — and each configured sink gets every entry through its own
bounded :class:`EntryQueue`. Recording never blocks the session: it is a synchronous
append. Overflow policy: when a sink's queue is full the **oldest** queued entry is
dropped and counted (``SessionCounters.sink_dropped``), so a sink that comes back after
an outage delivers the most recent part of the conversation.

Accounting is exact: for every sink, entries recorded = ``written`` + ``dropped`` once
the session has ended (entries still queued or in flight when the teardown deadline
expires count as dropped).

Sinks:

- :class:`JsonlSink` appends JSON lines with one ``write`` per batch (``O_APPEND``, so
  several sessions may share one file without interleaving lines) in a worker thread;
- :class:`HttpSink` POSTs batches ``{"entries": [...]}`` with retries, jittered
  exponential backoff and a bounded queue.

A sink that fails (a disk error, an endpoint that is down) never fails its session: the
failure is counted and logged, and the entries are dropped.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import msgspec
import structlog
import trio
import trio.lowlevel

from saynad.actors.behaviour import BehaviourContext, SessionCounters, SessionIdentity
from saynad.client.session import SessionEvent
from saynad.protocol.backoff import Backoff
from saynad.protocol.messages import STTResult

__all__ = [
    "Entry",
    "EntryQueue",
    "HttpSink",
    "Journal",
    "JsonlSink",
    "Recorder",
    "Sink",
    "render_path",
]

log = structlog.get_logger("saynad.transcripts")

JSONL_QUEUE_SIZE: Final = 10_000
"""Queue bound of a jsonl sink (entries waiting for the disk)."""

_RETRY_STATUSES: Final = frozenset({408, 425, 429})


class Entry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of a transcript.

    ``ts``: wall-clock seconds since the epoch (UTC) when it was said; ``role``:
    ``user`` (a final transcript) or ``agent`` (greeting, reply, fallback, goodbye);
    ``interrupted``: an agent reply cut by the caller (``text`` is then the part the
    caller heard).
    """

    ts: float
    session: str
    role: str
    text: str
    room: str | None = None
    stream_id: str | None = None
    caller: str | None = None
    interrupted: bool = False


_encoder: Final = msgspec.json.Encoder()


class EntryQueue:
    """A bounded FIFO of entries for one sink; full → drop the oldest (counted).

    One producer (the journal, synchronous) and one consumer (the sink task).
    """

    def __init__(self, name: str, size: int, counters: SessionCounters) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.name = name
        self.size = size
        self.received = 0
        self.dropped = 0
        self._items: deque[Entry] = deque()
        self._counters = counters
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, entry: Entry) -> None:
        """Append ``entry``; never blocks. After :meth:`close` the entry is dropped."""
        self.received += 1
        if self._closed:
            self.drop(1)
            return
        if len(self._items) >= self.size:
            self._items.popleft()
            self.drop(1)
        self._items.append(entry)
        self._lot.unpark_all()

    def drop(self, n: int) -> None:
        """Count ``n`` entries of this sink as lost."""
        self.dropped += n
        self._counters.sink_dropped += n

    def close(self) -> None:
        """No more entries will come: the consumer takes what is left, then gets ``[]``."""
        self._closed = True
        self._lot.unpark_all()

    def discard(self) -> int:
        """Drop (and count) everything still queued; return how many."""
        n = len(self._items)
        self._items.clear()
        if n:
            self.drop(n)
        return n

    async def next_batch(self, max_n: int, linger_s: float = 0.0) -> list[Entry]:
        """Up to ``max_n`` entries, oldest first; ``[]`` once closed and empty.

        Waits for the first entry; then, if fewer than ``max_n`` are queued and the queue
        is open, waits up to ``linger_s`` for more (a batch fills or the timer flushes).
        """
        while not self._items:
            if self._closed:
                return []
            await self._lot.park()
        if linger_s > 0 and len(self._items) < max_n and not self._closed:
            with trio.move_on_after(linger_s):
                while len(self._items) < max_n and not self._closed:
                    await self._lot.park()
        n = min(max_n, len(self._items))
        return [self._items.popleft() for _ in range(n)]


@dataclass
class Journal:
    """Fan-out of transcript entries to the session's sink queues."""

    identity: SessionIdentity
    counters: SessionCounters = field(default_factory=SessionCounters)
    queues: list[EntryQueue] = field(default_factory=list)
    received: int = 0

    def add_queue(self, name: str, size: int) -> EntryQueue:
        queue = EntryQueue(name, size, self.counters)
        self.queues.append(queue)
        return queue

    def record(
        self, role: str, text: str, *, interrupted: bool = False, ts: float | None = None
    ) -> None:
        """Queue one entry for every sink (synchronous; never blocks)."""
        identity = self.identity
        entry = Entry(
            ts=_now() if ts is None else ts,
            session=identity.name,
            role=role,
            text=text,
            room=identity.room,
            stream_id=identity.stream_id,
            caller=identity.caller,
            interrupted=interrupted,
        )
        self.received += 1
        log.debug("transcript", role=role, text=text, interrupted=interrupted)
        for queue in self.queues:
            queue.put(entry)

    @property
    def dropped(self) -> int:
        return sum(q.dropped for q in self.queues)

    def close(self) -> None:
        """No more entries: sinks drain what they hold, then finish."""
        for queue in self.queues:
            queue.close()


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def render_path(template: str, identity: SessionIdentity) -> Path:
    """Expand ``{session}``, ``{template}``, ``{date}`` (UTC), ``{stream_id}``, ``{room}``."""
    values: dict[str, Any] = {
        "session": identity.name,
        "template": identity.template,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "stream_id": identity.stream_id or "none",
        "room": identity.room or "none",
    }
    return Path(template.format_map(values))


class Sink(Protocol):
    """A transcript sink: drains its queue until it is closed and empty."""

    name: str
    queue_size: int

    async def run(
        self, identity: SessionIdentity, queue: EntryQueue, counters: SessionCounters
    ) -> None: ...


@dataclass
class JsonlSink:
    """Append entries as JSON lines. ``fsync``: ``never`` | ``always`` | ``interval``."""

    path_template: str
    fsync: str = "never"
    fsync_interval_s: float = 1.0
    queue_size: int = JSONL_QUEUE_SIZE
    name: str = "jsonl"
    written: int = 0
    errors: int = 0

    async def run(
        self, identity: SessionIdentity, queue: EntryQueue, counters: SessionCounters
    ) -> None:
        path = render_path(self.path_template, identity)
        try:
            fd = await trio.to_thread.run_sync(_open_append, path)
        except OSError as exc:
            self.errors += 1
            counters.sink_errors += 1
            log.error("transcript file cannot be opened", path=str(path), error=str(exc))
            await _drain_dropping(queue)
            return
        last_sync = trio.current_time()
        batch: list[Entry] = []
        try:
            while batch := await queue.next_batch(queue.size):
                data = b"".join(_encoder.encode(e) + b"\n" for e in batch)
                sync = self.fsync == "always" or (
                    self.fsync == "interval"
                    and trio.current_time() - last_sync >= self.fsync_interval_s
                )
                try:
                    await trio.to_thread.run_sync(_write_all, fd, data, sync)
                except OSError as exc:
                    self.errors += 1
                    counters.sink_errors += 1
                    queue.drop(len(batch))
                    log.warning("transcript write failed", path=str(path), error=str(exc))
                else:
                    if sync:
                        last_sync = trio.current_time()
                    self.written += len(batch)
                    counters.sink_written += len(batch)
                batch = []
        finally:
            if batch:  # cancelled while writing: the thread may or may not have finished
                queue.drop(len(batch))
            queue.discard()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_close, fd, self.fsync != "never")


async def _drain_dropping(queue: EntryQueue) -> None:
    """A sink that cannot work still accounts for every entry: all are dropped."""
    while batch := await queue.next_batch(queue.size):
        queue.drop(len(batch))


def _open_append(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


def _write_all(fd: int, data: bytes, sync: bool) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    if sync:
        os.fsync(fd)


def _close(fd: int, sync: bool) -> None:
    try:
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class HttpSink:
    """POST batches of entries to ``url`` as ``{"entries": [...]}``.

    A batch is sent when ``batch_size`` entries are queued or ``flush_interval_s`` after
    its first entry. Transport errors, timeouts, 408/425/429 and 5xx answers are retried
    up to ``max_retries`` times with jittered exponential backoff (0.5 s doubling up to
    30 s; the backoff carries over between batches while the endpoint stays down and
    resets on success); other 4xx answers drop the batch at once. Dropped batches are
    counted, never retried later. The queue holds ``queue_size`` entries (plus the batch
    in flight); beyond that the oldest are dropped.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 50
    flush_interval_s: float = 1.0
    queue_size: int = 1000
    max_retries: int = 3
    timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    rng: random.Random | None = None
    name: str = "http"
    written: int = 0
    errors: int = 0
    _down: bool = False

    async def run(
        self, identity: SessionIdentity, queue: EntryQueue, counters: SessionCounters
    ) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s, rng=self.rng)
        headers = {"content-type": "application/json", **self.headers}
        batch: list[Entry] = []
        async with httpx.AsyncClient(
            transport=self.transport, timeout=self.timeout_s, headers=headers
        ) as client:
            try:
                while batch := await queue.next_batch(self.batch_size, self.flush_interval_s):
                    await self._deliver(client, batch, queue, counters, backoff)
                    batch = []
            finally:
                if batch:  # cancelled mid-delivery (teardown deadline)
                    queue.drop(len(batch))
                queue.discard()

    async def _deliver(
        self,
        client: httpx.AsyncClient,
        batch: list[Entry],
        queue: EntryQueue,
        counters: SessionCounters,
        backoff: Backoff,
    ) -> None:
        body = _encoder.encode({"entries": batch})
        attempt = 0
        while True:
            try:
                response = await client.post(self.url, content=body)
            except httpx.HTTPError as exc:
                problem, retry = f"{type(exc).__name__}: {exc}", True
            else:
                status = response.status_code
                if status < 300:
                    self.written += len(batch)
                    counters.sink_written += len(batch)
                    backoff.reset()
                    if self._down:
                        self._down = False
                        log.info("transcript endpoint recovered", url=self.url)
                    return
                problem = f"HTTP {status}"
                retry = status >= 500 or status in _RETRY_STATUSES
            self.errors += 1
            counters.sink_errors += 1
            if not self._down:
                self._down = True
                log.warning("transcript endpoint failing", url=self.url, error=problem)
            if not retry or attempt >= self.max_retries:
                queue.drop(len(batch))
                return
            attempt += 1
            await trio.sleep(backoff.next_delay())


@dataclass
class Recorder:
    """Record every non-empty final transcript into the journal as the user's words."""

    journal: Journal
    name: str = "transcripts"

    def wants(self, event: SessionEvent) -> bool:
        return type(event) is STTResult and event.is_final

    async def run(self, ctx: BehaviourContext) -> None:
        async for event in ctx.events:
            assert isinstance(event, STTResult)
            text = event.transcript.strip()
            if text:
                ctx.counters.transcripts += 1
                self.journal.record("user", text)

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
  on a disk error it keeps the batch and retries with backoff (nothing is lost while
  the queue has room);
- :class:`HttpSink` POSTs batches ``{"entries": [...]}`` with retries, jittered
  exponential backoff and a bounded queue.

A sink that fails (a disk error, an endpoint that is down) never fails its session: the
failure is counted (``SessionCounters.sink_errors``), logged at a bounded rate, and the
entries it finally cannot deliver are dropped and counted.
"""

from __future__ import annotations

import bisect
import datetime as dt
import errno
import itertools
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import httpx
import msgspec
import structlog
import trio
import trio.lowlevel

from saynad._io.httpclient import async_client
from saynad.actors.behaviour import BehaviourContext, SessionCounters, SessionIdentity
from saynad.client.session import SessionEvent
from saynad.paths import expand_path_template, open_regular
from saynad.protocol.backoff import Backoff
from saynad.protocol.messages import STTResult

__all__ = [
    "Entry",
    "EntryQueue",
    "ErrorLog",
    "HttpSink",
    "Journal",
    "JsonlFile",
    "JsonlSink",
    "Recorder",
    "Sink",
    "open_jsonl_file",
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
        self.received += 1
        if not self.queues:
            return
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
    """Expand ``{session}``, ``{template}``, ``{date}`` (UTC), ``{stream_id}``, ``{room}``.

    Every value is reduced to a safe file-name component first, and the result must stay
    under the template's fixed directory prefix (:mod:`saynad.paths`): a ``stream_id``
    or room chosen by the server never leaves the configured directory.
    """
    return expand_path_template(
        template,
        {
            "session": identity.name,
            "template": identity.template,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
            "stream_id": identity.stream_id,
            "room": identity.room,
        },
    )


class Sink(Protocol):
    """A transcript sink: drains its queue until it is closed and empty."""

    name: str
    queue_size: int

    async def run(
        self, identity: SessionIdentity, queue: EntryQueue, counters: SessionCounters
    ) -> None: ...


class JsonlFile(Protocol):
    """An open transcript file as :class:`JsonlSink` uses it (tests inject fakes).

    The default, :func:`open_jsonl_file`, does each call in a worker thread.
    """

    async def append(self, data: memoryview) -> int:
        """Append as much of ``data`` as fits; return how many bytes were written.

        Raises :class:`OSError` only when nothing could be written (a disk that filled up
        mid-way returns the short count; the next call raises).
        """
        ...

    async def sync(self) -> None:
        """``fsync``."""
        ...

    async def aclose(self) -> None:
        """Close the file (no sync)."""
        ...


class _OsFile:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def append(self, data: memoryview) -> int:
        return await trio.to_thread.run_sync(_append, self._fd, data)

    async def sync(self) -> None:
        await trio.to_thread.run_sync(os.fsync, self._fd)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(os.close, self._fd)


async def open_jsonl_file(path: Path) -> JsonlFile:
    """Open ``path`` for appending (``O_APPEND``, mode 0640), creating its directories."""
    return _OsFile(await trio.to_thread.run_sync(_open_append, path))


WRITE_RETRY_INITIAL_S: Final = 0.1
WRITE_RETRY_MAX_S: Final = 2.0
"""A failing jsonl sink retries after a jittered backoff from 0.1 s doubling to 2 s, so
writing resumes at most ~2 s after the disk has room again."""

ERROR_LOG_INTERVAL_S: Final = 60.0
"""A failing sink logs at most one error line per this interval."""


class ErrorLog:
    """At most one error line per ``interval_s`` (time passed in); counts the rest."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_at: float | None = None
        self.suppressed = 0

    def due(self, now: float) -> bool:
        """Whether an error at ``now`` is logged; if not, it is counted as suppressed."""
        if self.last_at is None or now - self.last_at >= self.interval_s:
            self.last_at = now
            return True
        self.suppressed += 1
        return False


class _Pending:
    """One encoded batch and how much of it is on disk (byte-exact, line-counted)."""

    def __init__(self, batch: list[Entry]) -> None:
        lines = [_encoder.encode(e) + b"\n" for e in batch]
        self.data = memoryview(b"".join(lines))
        self.ends = list(itertools.accumulate(len(line) for line in lines))
        self.done = 0  # bytes written
        self.complete = 0  # entries whose whole line is written

    @property
    def finished(self) -> bool:
        return self.done >= len(self.data)

    @property
    def incomplete(self) -> int:
        return len(self.ends) - self.complete

    def advance(self, n: int) -> int:
        """``n`` more bytes were written: return how many more lines are complete."""
        self.done += n
        complete = bisect.bisect_right(self.ends, self.done)
        newly, self.complete = complete - self.complete, complete
        return newly


@dataclass
class JsonlSink:
    """Append entries as JSON lines. ``fsync``: ``never`` | ``always`` | ``interval``.

    Disk errors (a full disk, a file-size limit, a missing directory, EIO) never end the
    session and lose nothing while the queue has room: the failed batch is kept, and
    retried — from the first unwritten byte, so a line cut by a full disk is completed,
    never repeated — after a jittered backoff (:data:`WRITE_RETRY_INITIAL_S` doubling to
    :data:`WRITE_RETRY_MAX_S`), while new entries wait in the queue (drop-oldest,
    counted, beyond ``queue_size``). The sink holds at most ``queue_size`` entries plus
    the batch being retried. Every failed attempt (open, write, fsync, close) counts in
    ``errors`` and ``SessionCounters.sink_errors``; at most one error line is logged per
    :data:`ERROR_LOG_INTERVAL_S` (with how many were not logged since), and one info
    line when writing resumes. A failed ``fsync`` is counted and logged but not retried
    (the data was written). Entries count as ``written`` line by line, once their whole
    line is on disk; when the session ends before the disk recovers, the rest of the
    batch and the queue are ``dropped`` (a line cut mid-way may then stay incomplete).
    """

    path_template: str
    fsync: str = "never"
    fsync_interval_s: float = 1.0
    queue_size: int = JSONL_QUEUE_SIZE
    opener: Callable[[Path], Awaitable[JsonlFile]] = open_jsonl_file
    retry_initial_s: float = WRITE_RETRY_INITIAL_S
    retry_max_s: float = WRITE_RETRY_MAX_S
    error_log_interval_s: float = ERROR_LOG_INTERVAL_S
    rng: random.Random | None = None
    name: str = "jsonl"
    written: int = 0
    errors: int = 0

    async def run(
        self, identity: SessionIdentity, queue: EntryQueue, counters: SessionCounters
    ) -> None:
        path = render_path(self.path_template, identity)
        failing = _Failing(self, path, counters)
        backoff = Backoff(self.retry_initial_s, self.retry_max_s, rng=self.rng)
        file: JsonlFile | None = None
        pending: _Pending | None = None
        last_sync = trio.current_time()
        try:
            while True:
                if pending is None:
                    batch = await queue.next_batch(queue.size)
                    if not batch:
                        break
                    pending = _Pending(batch)
                try:
                    if file is None:
                        file = await self.opener(path)
                    while not pending.finished:
                        # Shielded: the thread cannot be interrupted anyway, and knowing
                        # how much it wrote keeps the accounting exact on cancellation.
                        with trio.CancelScope(shield=True):
                            n = await file.append(pending.data[pending.done :])
                        if n <= 0:
                            raise OSError(errno.EIO, "the write made no progress")
                        newly = pending.advance(n)
                        self.written += newly
                        counters.sink_written += newly
                except OSError as exc:
                    failing.failed("open" if file is None else "write", exc)
                    await trio.sleep(backoff.next_delay())
                    continue
                pending = None
                backoff.reset()
                failing.recovered()
                now = trio.current_time()
                if self.fsync == "always" or (
                    self.fsync == "interval" and now - last_sync >= self.fsync_interval_s
                ):
                    last_sync = now
                    try:
                        await file.sync()
                    except OSError as exc:
                        failing.failed("fsync", exc)
        finally:
            if pending is not None:  # the session ended before the disk recovered
                queue.drop(pending.incomplete)
            queue.discard()
            if file is not None:
                with trio.CancelScope(shield=True):
                    await _close(file, self.fsync != "never", failing)


class _Failing:
    """The error accounting and rate-limited logging of one jsonl sink run."""

    def __init__(self, sink: JsonlSink, path: Path, counters: SessionCounters) -> None:
        self.sink = sink
        self.path = path
        self.counters = counters
        self.log = ErrorLog(sink.error_log_interval_s)
        self.since: float | None = None  # when the current run of failures started
        self.errors = 0  # failures since then

    def failed(self, op: str, exc: OSError) -> None:
        self.sink.errors += 1
        self.counters.sink_errors += 1
        now = trio.current_time()
        if self.since is None:
            self.since = now
        self.errors += 1
        if self.log.due(now):
            log.error(
                "transcript write failed",
                sink=self.sink.name,
                path=str(self.path),
                op=op,
                error=str(exc),
                errors=self.errors,
                not_logged=self.log.suppressed,
            )
            self.log.suppressed = 0

    def recovered(self) -> None:
        if self.since is None:
            return
        log.info(
            "transcript writes resumed",
            sink=self.sink.name,
            path=str(self.path),
            errors=self.errors,
            outage_s=round(trio.current_time() - self.since, 3),
        )
        self.since = None
        self.errors = 0


async def _close(file: JsonlFile, sync: bool, failing: _Failing) -> None:
    try:
        if sync:
            try:
                await file.sync()
            except OSError as exc:
                failing.failed("fsync", exc)
    finally:
        try:
            await file.aclose()
        except OSError as exc:
            failing.failed("close", exc)


def _open_append(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


def _append(fd: int, data: memoryview) -> int:
    """Write all of ``data`` or as much as fits: the count; OSError only if none fit."""
    done = 0
    while done < len(data):
        try:
            n = os.write(fd, data[done:])
        except OSError:
            if done:
                return done
            raise
        if n <= 0:
            break
        done += n
    return done


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
        async with async_client(
            transport=self.transport, timeout=httpx.Timeout(self.timeout_s), headers=headers
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
        try:
            async for event in ctx.events:
                self._record(ctx, event)
        finally:
            # Cancelled because the session is ending (say, the connection broke): the
            # transcripts the reader already handed over were received all the same, so
            # they are recorded too (no checkpoint here; the sinks still take entries).
            while True:
                try:
                    event = ctx.events.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                self._record(ctx, event)

    def _record(self, ctx: BehaviourContext, event: SessionEvent) -> None:
        assert isinstance(event, STTResult)
        text = event.transcript.strip()
        if text:
            ctx.counters.transcripts += 1
            self.journal.record("user", text)

"""Transcript journal and sinks.

Behaviours :meth:`Journal.record` what was said (final user transcripts, agent replies);
each configured sink gets every entry through its own bounded queue. Recording never
blocks the session: when a sink's queue is full the entry is dropped for that sink and
the drop is counted (``Journal.dropped``). The jsonl sink writes batches in a worker
thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio

from saynad.actors.behaviour import BehaviourContext, SessionIdentity
from saynad.client.session import SessionEvent
from saynad.protocol.messages import STTResult

__all__ = ["Entry", "Journal", "JsonlSink", "Recorder", "render_path"]

log = structlog.get_logger("saynad.transcripts")


class Entry(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line of a transcript."""

    ts: float
    session: str
    role: str  # user | agent
    text: str
    room: str | None = None
    stream_id: str | None = None
    caller: str | None = None


_encoder = msgspec.json.Encoder()


@dataclass
class _Queue:
    name: str
    send: trio.MemorySendChannel[Entry]
    receive: trio.MemoryReceiveChannel[Entry]
    dropped: int = 0


@dataclass
class Journal:
    """Fan-out of transcript entries to the session's sinks."""

    identity: SessionIdentity
    queues: list[_Queue] = field(default_factory=list)
    received: int = 0

    def add_queue(self, name: str, size: int) -> trio.MemoryReceiveChannel[Entry]:
        send, receive = trio.open_memory_channel[Entry](size)
        self.queues.append(_Queue(name, send, receive))
        return receive

    def record(self, role: str, text: str) -> None:
        entry = Entry(
            ts=_now(),
            session=self.identity.name,
            role=role,
            text=text,
            room=self.identity.room,
            stream_id=self.identity.stream_id,
            caller=self.identity.caller,
        )
        self.received += 1
        log.info("transcript", role=role, text=text)
        for queue in self.queues:
            try:
                queue.send.send_nowait(entry)
            except trio.WouldBlock:
                queue.dropped += 1

    @property
    def dropped(self) -> int:
        return sum(q.dropped for q in self.queues)

    async def aclose(self) -> None:
        """No more entries: sinks drain what they hold, then finish."""
        for queue in self.queues:
            await queue.send.aclose()


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def render_path(template: str, identity: SessionIdentity) -> Path:
    """Expand ``{session}``, ``{template}``, ``{date}``, ``{stream_id}``, ``{room}``."""
    values: dict[str, Any] = {
        "session": identity.name,
        "template": identity.template,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "stream_id": identity.stream_id or "none",
        "room": identity.room or "none",
    }
    return Path(template.format_map(values))


@dataclass
class JsonlSink:
    """Append entries as JSON lines. ``fsync``: never | always | interval."""

    path_template: str
    fsync: str = "never"
    fsync_interval_s: float = 1.0
    written: int = 0
    errors: int = 0

    async def run(
        self, identity: SessionIdentity, entries: trio.MemoryReceiveChannel[Entry]
    ) -> None:
        path = render_path(self.path_template, identity)
        await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
        fd = await trio.to_thread.run_sync(
            lambda: os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        )
        last_sync = trio.current_time()
        try:
            async with entries:
                while True:
                    try:
                        batch = [await entries.receive()]
                    except trio.EndOfChannel:
                        break
                    while True:  # take whatever else is already queued
                        try:
                            batch.append(entries.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    data = b"".join(_encoder.encode(e) + b"\n" for e in batch)
                    sync = self.fsync == "always" or (
                        self.fsync == "interval"
                        and trio.current_time() - last_sync >= self.fsync_interval_s
                    )
                    await trio.to_thread.run_sync(_write_all, fd, data, sync)
                    if sync:
                        last_sync = trio.current_time()
                    self.written += len(batch)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_close, fd, self.fsync != "never")


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

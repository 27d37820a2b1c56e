"""A WebSocket-aware TCP proxy that injects hostile frames into chosen sessions.

It forwards bytes between saynad and a Sayna server (the emulator) and parses the
frames on the way: the first client text frame (``config``) tells which session a
connection belongs to (its ``stream_id``), and server frames are forwarded whole, so a
hostile frame can be slipped in *between* two of them without breaking the framing.
It also counts the ``stt_result`` frames each session receives, which is how a test
measures a session's transcript rate from outside the daemon.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field

import trio

from saynad.protocol.framing import BINARY, FIN, TEXT, read_frame


@dataclass
class _Frame:
    fin: bool
    opcode: int
    payload: bytes
    raw: bytes


def _parse_frame(buffer: bytearray) -> _Frame | None:
    """Take one complete frame off the front of ``buffer`` (``None``: not complete yet)."""
    frame = read_frame(buffer)
    if frame is None:
        return None
    first, payload, end = frame
    raw = bytes(buffer[:end])
    del buffer[:end]
    return _Frame(fin=bool(first & FIN), opcode=first & 0x0F, payload=payload, raw=raw)


@dataclass
class FrameInjector:
    """Proxy ``127.0.0.1:port`` → ``upstream``; sessions whose ``stream_id`` is in
    ``targets`` get one hostile frame (cycling through ``hostile``) after every data
    frame the server sends them, while ``injecting`` is set."""

    upstream_port: int
    hostile: list[bytes]
    targets: set[str] = field(default_factory=set)
    injecting: bool = False
    port: int = 0
    stt_results: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.hostile)
        self._changed = trio.Event()

    async def wait_for_transcripts(self, count: int, *sessions: str) -> None:
        """Until each of ``sessions`` has received ``count`` stt_result frames."""
        while min(self.stt_results[name] for name in sessions) < count:
            await self._changed.wait()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        session: list[str] = []  # the stream_id, once the config frame went by
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._up, client, upstream, session, nursery.cancel_scope)
                nursery.start_soon(self._down, upstream, client, session, nursery.cancel_scope)
        finally:
            await trio.aclose_forcefully(upstream)
            await trio.aclose_forcefully(client)

    async def _up(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        session: list[str],
        scope: trio.CancelScope,
    ) -> None:
        buffer = bytearray()
        in_head = True
        try:
            async for data in source:
                await sink.send_all(data)
                if session:
                    continue  # identified: no more parsing
                buffer += data
                if in_head:
                    _, sep, rest = bytes(buffer).partition(b"\r\n\r\n")
                    if not sep:
                        continue
                    buffer = bytearray(rest)
                    in_head = False
                while (frame := _parse_frame(buffer)) is not None:
                    if frame.opcode == TEXT:
                        stream_id = json.loads(frame.payload).get("stream_id", "?")
                        session.append(str(stream_id))
                        break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _down(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        session: list[str],
        scope: trio.CancelScope,
    ) -> None:
        buffer = bytearray()
        in_head = True
        try:
            async for data in source:
                buffer += data
                if in_head:
                    head, sep, rest = bytes(buffer).partition(b"\r\n\r\n")
                    if not sep:
                        continue
                    await sink.send_all(head + sep)
                    buffer = bytearray(rest)
                    in_head = False
                await self._forward_frames(buffer, sink, session)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _forward_frames(
        self, buffer: bytearray, sink: trio.SocketStream, session: list[str]
    ) -> None:
        out: list[bytes] = []
        name = session[0] if session else "?"
        while (frame := _parse_frame(buffer)) is not None:
            out.append(frame.raw)
            if frame.opcode == TEXT and b'"type":"stt_result"' in frame.payload:
                self.stt_results[name] += 1
            data_frame = frame.opcode in (TEXT, BINARY) and frame.fin
            if data_frame and self.injecting and name in self.targets:
                out.append(next(self._next))
                self.injected[name] += 1
        if out:
            await sink.send_all(b"".join(out))
            self._changed.set()
            self._changed = trio.Event()

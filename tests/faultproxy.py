"""A TCP fault proxy on loopback, for tests and benchmarks.

:class:`FaultProxy` sits between saynad and a Sayna server (the emulator) and forwards
bytes both ways. Per connection, or for a fraction of the live connections, it can:

- ``reset``: abort both sides with a TCP RST (a server that vanished without a close frame);
- ``stall``: stop forwarding in both directions while keeping the sockets open;
- ``latency``: delay every chunk by ``latency_s``;
- ``slice``: forward in ``slice_bytes`` pieces, one scheduling round apart;
- ``half_close``: end the server→client direction (EOF) but keep the socket open;
- ``corrupt``: flip the bits of the server→client bytes.

When the upstream server goes away, the proxy resets the client side, so the client
sees what it would see from a server that was SIGKILLed. Everything runs in the
proxy's own nursery; :meth:`FaultProxy.run` reports the bound port via ``task_status``.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import random
import socket
import struct
from dataclasses import dataclass, field

import trio
import trio.lowlevel

__all__ = ["Fault", "FaultProxy", "ProxyConnection"]


class Fault(enum.StrEnum):
    NONE = "none"
    RESET = "reset"
    STALL = "stall"
    LATENCY = "latency"
    SLICE = "slice"
    HALF_CLOSE = "half_close"
    CORRUPT = "corrupt"


_ids = itertools.count(1)


@dataclass(eq=False)
class ProxyConnection:
    """One proxied connection and the fault currently applied to it."""

    client: trio.SocketStream
    id: int = field(default_factory=lambda: next(_ids))
    fault: Fault = Fault.NONE
    upstream: trio.SocketStream | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def set_fault(self, fault: Fault) -> None:
        self.fault = fault
        self.changed.set()
        self.changed = trio.Event()


def _abort(stream: trio.SocketStream | None) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    if stream is None:
        return
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError, trio.ClosedResourceError):
        stream.socket.close()


class FaultProxy:
    """Forward ``127.0.0.1:port`` → ``upstream_host:upstream_port`` with injectable faults."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency_s: float = 0.2,
        slice_bytes: int = 1,
        chunk_bytes: int = 65536,
        rng: random.Random | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.latency_s = latency_s
        self.slice_bytes = slice_bytes
        self.chunk_bytes = chunk_bytes
        self.default_fault = Fault.NONE
        self.connections: dict[int, ProxyConnection] = {}
        self.accepted = 0
        self.upstream_failures = 0
        self.port = 0
        self._rng = rng or random.Random()

    # ------------------------------------------------------------------ control

    def apply(self, fault: Fault, *, fraction: float = 1.0) -> list[ProxyConnection]:
        """Apply ``fault`` to ``fraction`` of the live connections (at least one if any)."""
        live = list(self.connections.values())
        if not live:
            return []
        count = max(1, round(len(live) * fraction))
        chosen = self._rng.sample(live, min(count, len(live)))
        for conn in chosen:
            self.apply_to(conn, fault)
        return chosen

    def apply_to(self, conn: ProxyConnection, fault: Fault) -> None:
        if fault is Fault.RESET:
            conn.fault = fault
            _abort(conn.client)
            _abort(conn.upstream)
            conn.scope.cancel()
        else:
            conn.set_fault(fault)

    def heal(self) -> None:
        """Remove every fault from live connections (a stall resumes forwarding)."""
        for conn in self.connections.values():
            if conn.fault is not Fault.NONE:
                conn.set_fault(Fault.NONE)

    # ------------------------------------------------------------------ serving

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(port)``."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        conn = ProxyConnection(client=client, fault=self.default_fault)
        self.connections[conn.id] = conn
        try:
            with conn.scope:
                try:
                    conn.upstream = await trio.open_tcp_stream(
                        self.upstream_host, self.upstream_port
                    )
                except OSError:
                    self.upstream_failures += 1
                    _abort(client)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, conn, client, conn.upstream, True)
                    nursery.start_soon(self._pump, conn, conn.upstream, client, False)
        finally:
            self.connections.pop(conn.id, None)
            _abort(conn.upstream)
            _abort(client)

    async def _pump(
        self,
        conn: ProxyConnection,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        upward: bool,
    ) -> None:
        try:
            while True:
                data = await source.receive_some(self.chunk_bytes)
                if not data:
                    if upward:
                        with contextlib.suppress(
                            trio.BrokenResourceError, trio.ClosedResourceError
                        ):
                            await sink.send_eof()
                        return
                    # The server went away: the client sees a reset, as after a SIGKILL.
                    conn.scope.cancel()
                    return
                await self._forward(conn, sink, data, upward)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.scope.cancel()

    async def _forward(
        self, conn: ProxyConnection, sink: trio.SocketStream, data: bytes, upward: bool
    ) -> None:
        while conn.fault is Fault.STALL:
            await conn.changed.wait()
        fault = conn.fault
        if upward:
            conn.bytes_up += len(data)
        else:
            conn.bytes_down += len(data)
        if fault is Fault.LATENCY:
            await trio.sleep(self.latency_s)
        elif fault is Fault.HALF_CLOSE and not upward:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await sink.send_eof()
            while conn.fault is Fault.HALF_CLOSE:
                await conn.changed.wait()
            return
        elif fault is Fault.CORRUPT and not upward:
            data = bytes(b ^ 0xFF for b in data)
        if fault is Fault.SLICE:
            for offset in range(0, len(data), self.slice_bytes):
                await sink.send_all(data[offset : offset + self.slice_bytes])
                await trio.lowlevel.checkpoint()
        else:
            await sink.send_all(data)

"""A TCP listener that can step aside from a port it shares with others (``SO_REUSEPORT``).

Several processes on one host bind the same port with ``SO_REUSEPORT``; the kernel
hands each new connection to one of the listening sockets by a hash of its addresses.
A process that cannot take more work closes its socket: from then on the kernel hands
new connections to the others. It opens a new socket on the same port once it has room
again.

Closing has one trap: connections the kernel has already queued on the socket (the
handshake done, not yet accepted) are reset when it closes, unless the kernel migrates
them to another socket of the group (``net.ipv4.tcp_migrate_req = 1``, Linux 5.14+).
:meth:`ReusePortListener.close` therefore accepts every queued connection first (no
checkpoint between that and the close, so nothing is queued in between) and hands them
back to be served; with migration on, it closes at once and the kernel moves them.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Final

import trio

__all__ = ["MIGRATE_SYSCTL", "ReusePortListener", "kernel_migrates"]

MIGRATE_SYSCTL: Final = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def kernel_migrates(sysctl: Path = MIGRATE_SYSCTL) -> bool:
    """Whether the kernel moves the queued connections of a closing ``SO_REUSEPORT``
    socket to another of its group (``net.ipv4.tcp_migrate_req``)."""
    try:
        return sysctl.read_text().strip() == "1"
    except OSError:
        return False


class ReusePortListener:
    """A listening TCP socket on ``host:port`` that can be closed and opened again.

    ``reuse_port``: bind with ``SO_REUSEPORT`` (share the port). ``migrate``: whether
    the kernel migrates queued connections on close (default: ask the kernel at each
    close). Not thread-safe; one task accepts.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        reuse_port: bool,
        backlog: int = 1024,
        migrate: bool | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.backlog = backlog
        self.migrate = migrate
        self._sock: socket.socket | None = None
        self._opened = trio.Event()

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    @property
    def address(self) -> tuple[str, int]:
        """The bound address (host, port); the port is the one bound when 0 was asked."""
        return self.host, self.port

    def open(self) -> None:
        """Bind and listen (OSError when the port cannot be had). A no-op when open."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        self._opened.set()

    def close(self) -> list[socket.socket]:
        """Stop listening; return the connections that were queued on the socket (to be
        served: closing would have reset them), none when the kernel migrates them."""
        sock = self._sock
        if sock is None:
            return []
        self._sock = None
        self._opened = trio.Event()
        queued: list[socket.socket] = []
        migrate = kernel_migrates() if self.migrate is None else self.migrate
        if not migrate:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:  # BlockingIOError: the queue is empty
                    break
                queued.append(conn)
        trio.lowlevel.notify_closing(sock)
        sock.close()
        return queued

    async def accept(self) -> socket.socket:
        """The next connection; waits while closed. A connection accepted here is
        non-blocking."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            sock = self._sock
            if sock is None:
                await self._opened.wait()
                continue
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                # Closed meanwhile: wait for it to open again.
                with contextlib.suppress(trio.ClosedResourceError):
                    await trio.lowlevel.wait_readable(sock)
                continue
            conn.setblocking(False)
            # Let other tasks run between two connections of a burst (shielded: the
            # connection is ours now and must reach the caller).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return conn

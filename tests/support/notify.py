"""A stand-in for systemd's notify socket: a bound AF_UNIX datagram socket.

Read it one datagram at a time (:meth:`NotifySocket.receive`, :meth:`next_with`), or run
:meth:`NotifySocket.receive_forever` as a task, which stamps each datagram with
``trio.current_time()`` as it arrives (so a test can time a signal → datagram delay),
and look at :attr:`received` (:meth:`with_key`, :meth:`wait_for`).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.timing import HANG_S


@dataclass
class Datagram:
    at: float  # trio.current_time() when it was received
    fields: dict[str, str]


def _fields(data: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)


@dataclass
class NotifySocket:
    raw: socket.socket
    sock: trio.socket.SocketType
    address: str
    """What ``NOTIFY_SOCKET`` is set to (``@name`` for an abstract socket)."""
    received: list[Datagram] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def receive(self, *, within_s: float = HANG_S) -> dict[str, str]:
        """The next datagram's fields."""
        with trio.fail_after(within_s):
            data = await self.sock.recv(65536)
        datagram = Datagram(trio.current_time(), _fields(data))
        self.received.append(datagram)
        return datagram.fields

    async def next_with(self, key: str, *, within_s: float = HANG_S) -> dict[str, str]:
        """Read datagrams until one carries ``key``; its fields."""
        with trio.fail_after(within_s):
            while True:
                fields = await self.receive(within_s=within_s)
                if key in fields:
                    return fields

    async def receive_forever(self) -> None:
        """Receive and stamp every datagram (a task)."""
        while True:
            data = await self.sock.recv(65536)
            self.received.append(Datagram(trio.current_time(), _fields(data)))
            self._changed.set()
            self._changed = trio.Event()

    def take_nowait(self) -> list[dict[str, str]]:
        """Datagrams queued in the socket, without waiting (for a sender that has exited)."""
        taken = []
        while True:
            try:
                data = self.raw.recv(65536)  # trio made the socket non-blocking
            except BlockingIOError:
                return taken
            taken.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def with_key(self, key: str, *, since: int = 0) -> list[Datagram]:
        """The datagrams received (from index ``since``) that carry ``key``."""
        return [d for d in self.received[since:] if key in d.fields]

    async def wait_for(self, key: str, *, since: int = 0, within_s: float = HANG_S) -> Datagram:
        """The first datagram from index ``since`` carrying ``key`` (needs
        :meth:`receive_forever` running)."""
        with trio.fail_after(within_s):
            while not (found := self.with_key(key, since=since)):
                await self._changed.wait()
        return found[0]


@contextmanager
def notify_socket(*, abstract: bool = False) -> Iterator[NotifySocket]:
    """A notify socket in a fresh directory under /tmp (AF_UNIX paths are short), or
    in the abstract namespace."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    directory = tempfile.mkdtemp(prefix="sdn", dir="/tmp")
    try:
        if abstract:
            name = f"saynad-test-{os.getpid()}-{os.path.basename(directory)}"
            raw.bind("\0" + name)
            address = "@" + name
        else:
            address = os.path.join(directory, "notify")
            raw.bind(address)
        yield NotifySocket(raw, trio.socket.from_stdlib_socket(raw), address)
    finally:
        raw.close()
        Path(directory, "notify").unlink(missing_ok=True)
        os.rmdir(directory)

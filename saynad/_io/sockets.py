"""A trio stream straight over a connected non-blocking socket.

:class:`trio.SocketStream` reaches the system call through five layers (a conflict
detector, an error-translating context manager, a memoryview, the async socket wrapper
and its ``_try_sync`` helper); at 50 frames per second per session that bookkeeping
costs more than the ``send`` itself. :class:`FastSocketStream` does the same with one
layer: each call checks for cancellation first (a cancelled call sends and receives
nothing), waits go through trio's I/O manager, and :func:`trio.lowlevel.notify_closing`
wakes blocked callers with :class:`trio.ClosedResourceError`. The WebSocket code above
it (the client transport, the emulator's server) already serialises senders and has a
single reader, so there is no conflict detector.

One deliberate difference from trio's streams: ``send_all`` takes a schedule point
(lets other tasks run) when it has to wait for the socket, and otherwise only every
:data:`SEND_SCHEDULE_EVERY` calls, not on every call; ``receive_some`` likewise when it
has to wait for data, and otherwise every :data:`RECEIVE_SCHEDULE_EVERY` calls. A
schedule point costs about as much CPU as the system call; a real-time audio stream
already yields in the sleep between chunks, and a task that sends or reads in a tight
loop still lets others run every few calls. A read that finds its data at once is
handled in the same scheduler pass: in a busy process a pass can last tens of
milliseconds, and a reply already waiting (the first audio of a ``speak``) is not held
back for another one.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import trio

__all__ = [
    "RECEIVE_BYTES",
    "RECEIVE_SCHEDULE_EVERY",
    "SEND_SCHEDULE_EVERY",
    "FastSocketStream",
    "open_fast_tcp_stream",
]

RECEIVE_BYTES = 64 * 1024
"""Bytes asked of the socket per read (and by default): a burst of TTS chunks, or of
audio frames, in one system call."""
SEND_SCHEDULE_EVERY = 16
"""``send_all`` calls completed without waiting between two schedule points."""
RECEIVE_SCHEDULE_EVERY = 16
"""``receive_some`` calls answered without waiting between two schedule points."""


class FastSocketStream(trio.abc.HalfCloseableStream):
    """:class:`trio.abc.Stream` over a connected stdlib socket (made non-blocking)."""

    __slots__ = ("_closed", "_drained", "_reads_unscheduled", "_sends_unscheduled", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._closed = False
        self._sends_unscheduled = 0
        self._reads_unscheduled = 0
        # The last read took less than it asked for: the socket was empty then, and a
        # read at once would most likely fail (a wasted system call); wait first.
        self._drained = False

    def _error(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self._closed:
            return trio.ClosedResourceError("the stream was closed")
        return trio.BrokenResourceError(f"socket error: {exc}")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        sent = self.try_send(data)
        if sent == len(data):
            self._sends_unscheduled += 1
            if self._sends_unscheduled >= SEND_SCHEDULE_EVERY:
                self._sends_unscheduled = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._sends_unscheduled = 0
        await self.send_rest(data, sent)

    async def send_rest(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        """Wait for room in the kernel buffer and send ``data[sent:]`` (the rest of a
        write that :meth:`try_send` or :meth:`send_all` started).

        Cancelled after part of ``data`` went out, the stream is closed: the peer holds
        a torn write (half a WebSocket frame) that nothing could follow.
        """
        sock = self._sock
        total = len(data)
        with memoryview(data) as view:
            while sent < total:
                try:
                    await trio.lowlevel.wait_writable(sock)
                except trio.Cancelled:
                    if sent:
                        self._abort_torn_write()
                    raise
                try:
                    sent += sock.send(view[sent:])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise self._error(exc) from exc

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the kernel buffer takes now, without waiting: the number of bytes
        sent (0 when the buffer is full). Raises like :meth:`send_all`. Whoever gets a
        short count must finish with :meth:`send_rest` before anything else is sent."""
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._error(exc) from exc

    def try_receive(self, max_bytes: int = RECEIVE_BYTES) -> bytes | None:
        """What the kernel buffer holds now, without waiting: up to ``max_bytes``,
        ``b""`` at the end of the stream, ``None`` when there is nothing to read yet.
        Raises like :meth:`receive_some`. For a caller that waits for readability
        itself (one epoll set for many sockets)."""
        try:
            return self._sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._error(exc) from exc

    def fileno(self) -> int:
        """The socket's file descriptor (-1 once closed)."""
        return self._sock.fileno()

    def _abort_torn_write(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise self._error(exc) from exc
        await trio.lowlevel.cancel_shielded_checkpoint()

    def peer_and_local_addresses(self) -> tuple[object, object]:
        """``getpeername()`` and ``getsockname()`` of the socket."""
        return self._sock.getpeername(), self._sock.getsockname()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = RECEIVE_BYTES if max_bytes is None else max_bytes
        if not self._drained:
            await trio.lowlevel.checkpoint_if_cancelled()
            data = self._try_receive(size)
            if data is not None:
                self._reads_unscheduled += 1
                if self._reads_unscheduled >= RECEIVE_SCHEDULE_EVERY:
                    self._reads_unscheduled = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return data
        self._reads_unscheduled = 0
        # Data that came since the last read makes the socket readable at once: the wait
        # (a checkpoint) then costs one pass of the scheduler, the price of a wasted
        # read saved (see expect_data for when looking first is worth it).
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            data = self._try_receive(size)
            if data is not None:
                return data

    def expect_data(self) -> None:
        """Data is likely to be waiting by the next read (a request just went out): that
        read tries the socket before it waits, even when the last one emptied it."""
        self._drained = False

    def _try_receive(self, size: int) -> bytes | None:
        """One ``recv``: the bytes (empty at EOF), or ``None`` when there is nothing yet."""
        try:
            data = self._sock.recv(size)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._error(exc) from exc
        self._drained = 0 < len(data) < size
        return data

    def close(self) -> None:
        """Close the socket at once (closing a plain socket never blocks); a task
        blocked on it gets :class:`trio.ClosedResourceError`. :meth:`aclose` is this
        and a checkpoint."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


async def open_fast_tcp_stream(host: str, port: int) -> FastSocketStream:
    """Connect like :func:`trio.open_tcp_stream` (DNS, happy eyeballs, ``TCP_NODELAY``).

    An IP address (the usual case for a Sayna server next to saynad) has one candidate,
    so happy eyeballs has nothing to race: the socket connects directly, without the
    nursery and task per attempt that :func:`trio.open_tcp_stream` spends on it.
    """
    try:
        infos = socket.getaddrinfo(
            host,
            port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
        )
    except (socket.gaierror, UnicodeError):
        infos = []
    if len(infos) == 1:
        family, kind, proto, _, address = infos[0]
        return FastSocketStream(await _connect(socket.socket(family, kind, proto), address))
    stream = await trio.open_tcp_stream(host, port)
    fd = stream.socket.detach()
    try:
        sock = socket.socket(fileno=fd)
    except BaseException:
        os.close(fd)
        raise
    return FastSocketStream(sock)


async def _connect(sock: socket.socket, address: Any) -> socket.socket:
    """Connect the non-blocking ``sock`` to ``address``; closes it on any failure."""
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sock.connect(address)
        except BlockingIOError:  # EINPROGRESS: wait for the outcome
            await trio.lowlevel.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error)) from None
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return sock
    except BaseException:
        sock.close()
        raise

"""The emulator's front door: WebSocket sessions served directly, REST through hypercorn.

Benchmarks drive thousands of sessions, each sending 50 audio frames a second, through
one emulator process. Behind hypercorn every inbound frame becomes an ASGI message
dict that crosses a memory channel into the application's task: a task switch and
several allocations per frame, about 6–8 ms of emulator CPU per benchmark session. So
the listener here reads each connection's request head itself (h11) and:

- serves a well-formed WebSocket upgrade on its own: the application sees the same
  :class:`~saynad.emulator.asgi.WebSocket` interface and the same scope, but
  :class:`DirectWebSocket` parses frames
  (:class:`~saynad.protocol.framing.ClientFrameParser`, sans-IO) straight out of 64 KiB
  reads, over the thin :class:`~saynad._io.sockets.FastSocketStream`, and writes each
  outgoing frame with one ``send_all``. Accepts are batched (everything queued per
  wake-up);
- reads every session's socket from one task, the :class:`_Reader`: one epoll set of
  its own (each socket registered once, level-triggered) wakes it for all the sockets
  that became readable, and each binary frame goes to the session's
  :attr:`~saynad.emulator.asgi.WebSocket.binary_sink` right there. A streamed audio
  frame therefore costs one ``recv`` and the parse; the session's task only wakes for
  what it must handle itself (text frames, audio that completes a transcript, pings,
  the close), and its socket is left unread meanwhile, so frames are still handled
  strictly in order and a session that cannot keep up is not read (TCP backpressure),
  as before. A task per socket waiting on trio's I/O manager cost one ``epoll_ctl``,
  one futile ``recv`` and two task switches per audio frame: about three quarters of
  the emulator's CPU in the scale benchmark;
- hands every other connection (REST, malformed upgrades, anything hypercorn should
  judge) to hypercorn, listening on an internal loopback port, by relaying its bytes
  unchanged. REST therefore behaves exactly as under hypercorn alone.

``serve_emulator(..., server="hypercorn")`` bypasses this and lets hypercorn serve
everything, WebSocket included.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final
from urllib.parse import unquote

import h11
import trio
from wsproto.utilities import generate_accept_token

from saynad._io.sockets import RECEIVE_BYTES, FastSocketStream
from saynad.emulator.asgi import Response, Scope, WebSocket
from saynad.protocol.framing import (
    ABNORMAL_CLOSURE,
    BINARY_FRAME,
    CLOSE_FRAME,
    NORMAL_CLOSURE,
    PONG_FRAME,
    TEXT_FRAME,
    ClientFrameParser,
    ProtocolViolation,
    close_payload,
    unmasked_frame,
)

__all__ = ["DirectWebSocket", "serve_front"]

MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024  # as configured for hypercorn
CLOSE_WAIT_S: Final = 1.0  # how long to wait for the client's answer to our Close frame
LISTEN_BACKLOG: Final = 4096  # benchmarks open thousands of connections at once
ACCEPT_BATCH: Final = 512  # connections accepted per wake-up of the accept loop
READ_BATCH: Final = 1024  # readable sockets handled per wake-up of the reader
_ACCEPT_RESOURCE_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)


_Control = tuple[object, ...] | ProtocolViolation
_END_OF_STREAM: Final = ("eof",)  # the peer went away without a Close frame


class DirectWebSocket(WebSocket):
    """:class:`~saynad.emulator.asgi.WebSocket` over a socket stream and the frame codec.

    The :class:`_Reader` reads the socket while ``receive`` waits and hands what it read to
    :meth:`take`; writes (the session's writer, plus Pong and Close answers from
    ``receive``) are serialised by a lock.
    """

    def __init__(
        self,
        scope: Scope,
        stream: FastSocketStream,
        http: h11.Connection,
        request: h11.Request,
        reader: _Reader,
    ) -> None:
        super().__init__(scope, _no_receive, _no_send)
        self._stream = stream
        self._http = http  # has read the upgrade request; writes our answer
        self._request = request
        self._reader = reader
        self._parser: ClientFrameParser | None = None  # set by accept()
        # What one read left to the session's task: its messages, and the control
        # frames (or the end) it carried, which are answered before those messages.
        self._messages: deque[str | bytes] = deque()
        self._controls: deque[_Control] = deque()
        self._wakeup: trio.Event | None = None  # set while receive() waits
        self._pending = b""
        self._close_sent = False
        self._peer_closed = False
        self._write_lock = trio.StrictFIFOLock()
        self.answered = False  # an HTTP answer (101 or a rejection) went out

    # ------------------------------------------------------------------ handshake

    async def accept(self) -> None:
        key = _header(self._request, b"sec-websocket-key") or b""
        response = h11.InformationalResponse(
            status_code=101,
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", generate_accept_token(key)),
            ],
        )
        self.answered = True
        await self._write(self._http.send(response) or b"")
        self._parser = ClientFrameParser(MAX_MESSAGE_BYTES)
        trailing, _ = self._http.trailing_data
        self._pending = bytes(trailing)  # frames sent right behind the upgrade request

    async def reject(self, response: Response) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        headers.append((b"connection", b"close"))
        http = self._http
        data = http.send(h11.Response(status_code=response.status, headers=headers)) or b""
        data += http.send(h11.Data(data=response.body)) or b""
        data += http.send(h11.EndOfMessage()) or b""
        self.answered = True
        self.closed = True
        await self._write(data)

    # ------------------------------------------------------------------ frames

    async def receive(self) -> str | bytes | None:
        messages, controls = self._messages, self._controls
        while True:
            while controls:
                await self._answer(controls.popleft())
            if messages:
                return messages.popleft()
            if self.closed:
                return None
            await self._wait()

    async def _wait(self) -> None:
        """Until the reader has left something to this task."""
        assert self._parser is not None, "receive() before accept()"
        pending, self._pending = self._pending, b""
        if pending and self.take(pending):
            return
        self._wakeup = wakeup = trio.Event()
        try:
            self._reader.watch(self)
            await wakeup.wait()
        finally:
            self._wakeup = None

    def take(self, data: bytes) -> bool:
        """Parse what was read from the socket (``b""``: the end of the stream); whether
        it left anything to the session's task (then the socket must not be read until
        that task has handled it all).

        A binary frame goes to :attr:`binary_sink` while nothing is left before it;
        the first one the sink declines, and everything after it, stays for the task.
        """
        messages, controls = self._messages, self._controls
        if not data:
            controls.append(_END_OF_STREAM)
            return True
        assert self._parser is not None
        try:
            items = self._parser.feed(data)
        except ProtocolViolation as exc:
            controls.append(exc)
            return True
        sink = self.binary_sink
        for item in items:
            kind = type(item)
            if kind is bytes:
                if sink is None or messages or not sink(item):  # type: ignore[arg-type]
                    messages.append(item)  # type: ignore[arg-type]
            elif kind is str:
                messages.append(item)  # type: ignore[arg-type]
            else:
                controls.append(item)  # type: ignore[arg-type]
        return bool(messages or controls)

    def wake(self) -> None:
        """The reader left something: let ``receive`` go on."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def _answer(self, control: _Control) -> None:
        if isinstance(control, ProtocolViolation):
            self.close_code = control.code
            self.closed = self._peer_closed = True
            await self._send_close(control.code, control.reason)
        elif control is _END_OF_STREAM:
            self.close_code = ABNORMAL_CLOSURE  # gone without a Close frame
            self.closed = self._peer_closed = True
        elif control[0] == "ping":
            if not self._close_sent:
                await self._write(unmasked_frame(PONG_FRAME, control[1]))  # type: ignore[arg-type]
        else:
            # ("close", code, reason): echo it (without code for 1005), stop reading.
            code, reason = control[1], control[2]
            self.close_code = code  # type: ignore[assignment]
            self.closed = self._peer_closed = True
            await self._send_close(code, reason)  # type: ignore[arg-type]

    async def send_text(self, text: str) -> None:
        await self._send_frame(TEXT_FRAME, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        await self._send_frame(BINARY_FRAME, data)

    async def _send_frame(self, first_byte: int, payload: bytes) -> None:
        if self._parser is None or self._close_sent:
            return  # as hypercorn does: messages after the close are ignored
        # If the peer is gone, the read loop sees it and ends the session.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._write(unmasked_frame(first_byte, payload))

    async def _send_close(self, code: int | None, reason: str = "") -> None:
        """Send our Close frame once: ``None`` or 1005 means without a status code."""
        if self._close_sent or self._parser is None:
            return
        self._close_sent = True
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._write(unmasked_frame(CLOSE_FRAME, close_payload(code, reason)))

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        await self._send_close(code, reason)

    async def finish(self) -> None:
        """After the application returned: complete the closing handshake (bounded)."""
        if self._parser is None:
            return
        self._reader.forget(self)
        await self._send_close(NORMAL_CLOSURE)
        if any(type(c) is not tuple or c[0] != "ping" for c in self._controls):
            return  # the reader already saw the peer's Close frame, or the end
        with trio.move_on_after(CLOSE_WAIT_S):
            while not self._peer_closed:
                try:
                    data = await self._stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                try:
                    items = self._parser.feed(data)
                except ProtocolViolation:
                    return
                if any(type(item) is tuple and item[0] == "close" for item in items):
                    return

    async def _write(self, data: bytes) -> None:
        lock = self._write_lock
        # A free lock is taken without the schedule point of ``acquire`` (trio hands a
        # released lock straight to its next waiter, so a free one has nobody waiting);
        # ``send_all`` is a cancellation point itself.
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self._stream.send_all(data)
        finally:
            lock.release()


class _Reader:
    """Reads every direct WebSocket's socket from one task (see the module's docstring).

    A socket is in the epoll set (level-triggered) while its session waits in
    ``receive`` with nothing left to handle, and out of it from the read that left it
    something until the session waits again — out, not merely asking for no events:
    epoll reports a hang-up whatever it was asked, and a level-triggered report of a
    socket nobody reads would wake the reader on every pass. Linux only (epoll), as
    saynad.
    """

    def __init__(self, interval_s: float = 0.0) -> None:
        self._interval_s = interval_s  # the shortest time between two passes
        self._epoll = select.epoll()
        self._sockets: dict[int, DirectWebSocket] = {}  # the set: fd → its socket
        self._fds: dict[DirectWebSocket, int] = {}  # and back

    def watch(self, ws: DirectWebSocket) -> None:
        """Read ``ws`` until a read leaves its session something to handle."""
        if ws in self._fds:
            return
        try:
            fd = ws._stream.fileno()
            self._epoll.register(fd, select.EPOLLIN)
        except (OSError, ValueError):  # closed behind our back: the end of the stream
            ws.take(b"")
            ws.wake()
            return
        self._sockets[fd] = ws
        self._fds[ws] = fd

    def forget(self, ws: DirectWebSocket) -> None:
        """Stop reading ``ws`` (until it is watched again)."""
        fd = self._fds.pop(ws, None)
        # The kernel drops a closed socket from the set by itself, and its number may
        # have been given to a newer socket since: that one stays.
        if fd is not None and self._sockets.get(fd) is ws:
            del self._sockets[fd]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def _read(self, fd: int) -> None:
        ws = self._sockets.get(fd)
        if ws is None:
            return
        try:
            data = ws._stream.try_receive(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if data is None or not ws.take(data):
            return
        self.forget(ws)
        ws.wake()

    async def run(self) -> None:
        """Read until cancelled; closes the epoll set on the way out."""
        epoll = self._epoll
        read = self._read
        interval_s = self._interval_s
        with epoll:
            while True:
                await trio.lowlevel.wait_readable(epoll)
                for fd, _ in epoll.poll(0, READ_BATCH):
                    read(fd)
                if interval_s > 0:
                    await trio.sleep(interval_s)


async def _no_receive() -> dict[str, object]:
    raise RuntimeError("DirectWebSocket does not use ASGI receive")


async def _no_send(message: object) -> None:
    raise RuntimeError("DirectWebSocket does not use ASGI send")


def _header(request: h11.Request, name: bytes) -> bytes | None:
    for key, value in request.headers:
        if key == name:
            return bytes(value)
    return None


def _is_websocket_upgrade(request: h11.Request) -> bool:
    """A well-formed upgrade, which the direct path serves; anything doubtful goes to
    hypercorn, which answers it as it would have."""
    if request.method != b"GET":
        return False
    upgrade = (_header(request, b"upgrade") or b"").lower()
    connection = [t.strip().lower() for t in (_header(request, b"connection") or b"").split(b",")]
    return (
        upgrade == b"websocket"
        and b"upgrade" in connection
        and _header(request, b"sec-websocket-version") == b"13"
        and bool(_header(request, b"sec-websocket-key"))
        and _header(request, b"sec-websocket-extensions") is None
    )


def _scope(request: h11.Request, stream: FastSocketStream) -> Scope:
    raw_path, _, query = bytes(request.target).partition(b"?")
    client, server = stream.peer_and_local_addresses()
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": unquote(raw_path.decode("ascii", "replace")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(bytes(k), bytes(v)) for k, v in request.headers],
        "client": (client[0], client[1]),  # type: ignore[index]
        "server": (server[0], server[1]),  # type: ignore[index]
        "subprotocols": [],
        "extensions": {},
    }


WebSocketHandler = Callable[[WebSocket], Awaitable[None]]


async def _relay(
    source: trio.abc.Stream, sink: trio.abc.HalfCloseableStream, done: trio.CancelScope
) -> None:
    """Copy bytes one way until EOF (then half-close the other side) or an error."""
    try:
        while data := await source.receive_some(RECEIVE_BYTES):
            await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        done.cancel()


async def _to_hypercorn(stream: FastSocketStream, head: bytes, port: int) -> None:
    try:
        upstream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return
    async with upstream:
        try:
            await upstream.send_all(head)
        except trio.BrokenResourceError:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_relay, stream, upstream, nursery.cancel_scope)
            nursery.start_soon(_relay, upstream, stream, nursery.cancel_scope)


async def _read_head(stream: FastSocketStream, http: h11.Connection, head: bytearray) -> object:
    """Read until h11 has the request head and, for an upgrade, its (empty) body.

    Returns the :class:`h11.Request` of a request that may be a WebSocket upgrade, or
    ``None`` for anything else (including garbage: hypercorn answers it). Every byte
    read is appended to ``head``.
    """
    request: object = None
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError:
            return None
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return None
            head += data
            http.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            if not _is_websocket_upgrade(event):
                return None
            request = event
        elif isinstance(event, h11.EndOfMessage):
            continue
        elif event is h11.PAUSED and request is not None:
            return request  # waiting for our answer to the upgrade proposal
        else:
            return None  # a body on an upgrade request, or EOF


async def _connection(
    handler: WebSocketHandler, hypercorn_port: int, reader: _Reader, stream: FastSocketStream
) -> None:
    async with stream:
        http = h11.Connection(h11.SERVER)
        head = bytearray()
        try:
            request = await _read_head(stream, http, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        if not isinstance(request, h11.Request):
            if head:
                await _to_hypercorn(stream, bytes(head), hypercorn_port)
            return
        socket = DirectWebSocket(_scope(request, stream), stream, http, request, reader)
        try:
            await handler(socket)
            if not socket.answered:
                await socket.reject(Response(500))
            await socket.finish()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            reader.forget(socket)


async def _accept_all(
    listener: socket.socket,
    handler: Callable[[FastSocketStream], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    """Accept connections in batches: everything queued on the listener per wake-up.

    :func:`trio.serve_listeners` accepts one connection per scheduler pass; when a
    client opens thousands at once while earlier sessions stream audio, each pass is
    long and the handshakes queue for seconds.
    """
    while True:
        await trio.lowlevel.wait_readable(listener)
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                    # Out of file descriptors or memory: let connections finish.
                    await trio.sleep(0.1)
                    break
                continue  # the peer gave up before we accepted (ECONNABORTED, ...)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(handler, FastSocketStream(conn))
        await trio.lowlevel.checkpoint()


async def serve_front(
    handler: WebSocketHandler,
    hypercorn_port: int,
    *,
    host: str,
    port: int,
    read_interval_s: float = 0.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0: any free port, reported through ``task_status``);
    serve WebSocket upgrades with ``handler``, relay the rest to ``hypercorn_port``.
    ``read_interval_s``: the shortest time between two passes of the frame reader
    (:attr:`~saynad.emulator.options.EmulatorOptions.read_interval_ms`)."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)
    sockets = [socket.socket(fileno=listener.socket.detach()) for listener in listeners]
    try:
        for sock in sockets:
            sock.setblocking(False)
        async with trio.open_nursery() as nursery:
            reader = _Reader(read_interval_s)
            nursery.start_soon(reader.run, name="emulator-ws-reader")
            for sock in sockets:
                nursery.start_soon(
                    _accept_all,
                    sock,
                    partial(_connection, handler, hypercorn_port, reader),
                    nursery,
                )
            task_status.started(sockets[0].getsockname()[1])
    finally:
        for sock in sockets:
            trio.lowlevel.notify_closing(sock)
            sock.close()

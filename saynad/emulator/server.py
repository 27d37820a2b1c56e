"""The emulator's front door: WebSocket sessions served directly, REST through hypercorn.

Benchmarks drive thousands of sessions, each sending 50 audio frames a second, through
one emulator process. Behind hypercorn every inbound frame becomes an ASGI message
dict that crosses a memory channel into the application's task: a task switch and
several allocations per frame, about 6–8 ms of emulator CPU per benchmark session. So
the listener here reads each connection's request head itself (h11) and:

- serves a well-formed WebSocket upgrade on its own: the application sees the same
  :class:`~saynad.emulator.asgi.WebSocket` interface and the same scope, but
  :class:`DirectWebSocket` parses frames (wsproto) straight out of 64 KiB reads in the
  session's own read loop and writes each outgoing frame with one ``send_all``;
- hands every other connection (REST, malformed upgrades, anything hypercorn should
  judge) to hypercorn, listening on an internal loopback port, by relaying its bytes
  unchanged. REST therefore behaves exactly as under hypercorn alone.

``serve_emulator(..., server="hypercorn")`` bypasses this and lets hypercorn serve
everything, WebSocket included.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final
from urllib.parse import unquote

import h11
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import generate_accept_token

from saynad.emulator.asgi import Response, Scope, WebSocket

__all__ = ["DirectWebSocket", "serve_front"]

RECEIVE_BYTES: Final = 64 * 1024
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024  # as configured for hypercorn
CLOSE_WAIT_S: Final = 1.0  # how long to wait for the client's answer to our Close frame
LISTEN_BACKLOG: Final = 4096  # benchmarks open thousands of connections at once
ACCEPT_BATCH: Final = 512  # connections accepted per wake-up of the accept loop
_ACCEPT_RESOURCE_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)
_HEADER_16: Final = struct.Struct("!BH")
_HEADER_64: Final = struct.Struct("!BQ")


def _frame(first_byte: int, payload: bytes) -> bytes:
    """A complete unmasked server frame (FIN set)."""
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 0x10000:
        return bytes((first_byte,)) + _HEADER_16.pack(126, n) + payload
    return bytes((first_byte,)) + _HEADER_64.pack(127, n) + payload


class DirectWebSocket(WebSocket):
    """:class:`~saynad.emulator.asgi.WebSocket` over a trio stream and wsproto.

    ``receive`` reads the socket only when its queue of parsed messages is empty, in
    the caller's task. Writes (the session's writer, plus Pong and Close answers from
    ``receive``) are serialised by a lock.
    """

    def __init__(
        self, scope: Scope, stream: trio.abc.Stream, http: h11.Connection, request: h11.Request
    ) -> None:
        super().__init__(scope, _no_receive, _no_send)
        self._stream = stream
        self._http = http  # has read the upgrade request; writes our answer
        self._request = request
        self._conn: Connection | None = None
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self._parts_size = 0
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
        trailing, _ = self._http.trailing_data
        self._conn = Connection(ConnectionType.SERVER, trailing_data=bytes(trailing))

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
        messages = self._messages
        while True:
            if messages:
                return messages.popleft()
            if self.closed:
                return None
            await self._read()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None, "receive() before accept()"
        try:
            data = await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        conn.receive_data(bytes(data) if data else None)
        for event in conn.events():
            if isinstance(event, TextMessage | BytesMessage):
                if not self._on_data(event.data, event.message_finished):
                    await self._disconnect(
                        CloseConnection(
                            code=CloseReason.MESSAGE_TOO_BIG,
                            reason=f"Exceeded maximum message size: {MAX_MESSAGE_BYTES} bytes",
                        )
                    )
                    return
            elif isinstance(event, CloseConnection):
                await self._disconnect(event)
                return
            elif isinstance(event, Ping) and conn.state is ConnectionState.OPEN:
                await self._write(conn.send(event.response()))

    def _on_data(self, chunk: str | bytes | bytearray, finished: bool) -> bool:
        data = bytes(chunk) if isinstance(chunk, bytearray) else chunk
        if finished and not self._parts:
            if len(data) > MAX_MESSAGE_BYTES:
                return False
            self._messages.append(data)
            return True
        self._parts_size += len(data)
        if self._parts_size > MAX_MESSAGE_BYTES:
            return False
        self._parts.append(data)
        if finished:
            parts = self._parts
            self._messages.append("".join(parts) if type(data) is str else b"".join(parts))  # type: ignore[arg-type]
            self._parts = []
            self._parts_size = 0
        return True

    async def _disconnect(self, event: CloseConnection) -> None:
        """The client closed (or broke, or sent garbage): answer, end ``receive``."""
        conn = self._conn
        assert conn is not None
        self.close_code = int(event.code)
        self.closed = True
        if conn.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._write(conn.send(event.response()))

    async def send_text(self, text: str) -> None:
        await self._send_frame(0x81, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        await self._send_frame(0x82, data)

    async def _send_frame(self, first_byte: int, payload: bytes) -> None:
        conn = self._conn
        if conn is None or conn.state is not ConnectionState.OPEN:
            return  # as hypercorn does: messages after the close are ignored
        # If the peer is gone, the read loop sees it and ends the session.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._write(_frame(first_byte, payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        conn = self._conn
        if conn is None or conn.state is not ConnectionState.OPEN:
            return
        # wsproto omits the status code only for the NO_STATUS_RCVD member itself.
        close_code = CloseReason.NO_STATUS_RCVD if code == CloseReason.NO_STATUS_RCVD else code
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._write(conn.send(CloseConnection(code=close_code, reason=reason or None)))

    async def finish(self) -> None:
        """After the application returned: complete the closing handshake (bounded)."""
        conn = self._conn
        if conn is None:
            return
        if conn.state is ConnectionState.OPEN:
            await self.close(1000)
        with trio.move_on_after(CLOSE_WAIT_S):
            while conn.state is ConnectionState.LOCAL_CLOSING:
                try:
                    data = await self._stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                conn.receive_data(bytes(data) if data else None)
                for _ in conn.events():
                    pass
                if not data:
                    return

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            await self._stream.send_all(data)


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


def _scope(request: h11.Request, stream: trio.SocketStream) -> Scope:
    raw_path, _, query = bytes(request.target).partition(b"?")
    sock = stream.socket
    client = sock.getpeername()
    server = sock.getsockname()
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
        "client": (client[0], client[1]),
        "server": (server[0], server[1]),
        "subprotocols": [],
        "extensions": {},
    }


WebSocketHandler = Callable[[WebSocket], Awaitable[None]]


async def _relay(source: trio.abc.Stream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    """Copy bytes one way until EOF (then half-close the other side) or an error."""
    try:
        while data := await source.receive_some(RECEIVE_BYTES):
            await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        done.cancel()


async def _to_hypercorn(stream: trio.SocketStream, head: bytes, port: int) -> None:
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


async def _read_head(stream: trio.SocketStream, http: h11.Connection, head: bytearray) -> object:
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
    handler: WebSocketHandler, hypercorn_port: int, stream: trio.SocketStream
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
        socket = DirectWebSocket(_scope(request, stream), stream, http, request)
        try:
            await handler(socket)
            if not socket.answered:
                await socket.reject(Response(500))
            await socket.finish()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _accept_all(
    listener: socket.socket,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
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
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
            nursery.start_soon(handler, stream)
        await trio.lowlevel.checkpoint()


async def serve_front(
    handler: WebSocketHandler,
    hypercorn_port: int,
    *,
    host: str,
    port: int,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``host:port`` (0: any free port, reported through ``task_status``);
    serve WebSocket upgrades with ``handler``, relay the rest to ``hypercorn_port``."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)
    sockets = [socket.socket(fileno=listener.socket.detach()) for listener in listeners]
    try:
        for sock in sockets:
            sock.setblocking(False)
        async with trio.open_nursery() as nursery:
            for sock in sockets:
                nursery.start_soon(
                    _accept_all, sock, partial(_connection, handler, hypercorn_port), nursery
                )
            task_status.started(sockets[0].getsockname()[1])
    finally:
        for sock in sockets:
            trio.lowlevel.notify_closing(sock)
            sock.close()

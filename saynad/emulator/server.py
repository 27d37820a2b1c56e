"""The emulator's front door: WebSocket sessions served directly, REST through hypercorn.

Benchmarks drive thousands of sessions, each sending 50 audio frames a second, through
one emulator process. Behind hypercorn every inbound frame becomes an ASGI message
dict that crosses a memory channel into the application's task: a task switch and
several allocations per frame, about 6–8 ms of emulator CPU per benchmark session. So
the listener here reads each connection's request head itself (h11) and:

- serves a well-formed WebSocket upgrade on its own: the application sees the same
  :class:`~saynad.emulator.asgi.WebSocket` interface and the same scope, but
  :class:`DirectWebSocket` parses frames (:class:`ClientFrameParser`, sans-IO) straight
  out of 64 KiB reads in the session's own read loop, over the thin
  :class:`~saynad.client._socket.FastSocketStream`, and writes each outgoing frame with
  one ``send_all``. Accepts are batched (everything queued per wake-up);
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
from wsproto.utilities import generate_accept_token

from saynad.client._socket import FastSocketStream
from saynad.client._wsproto import mask_payload
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


class ProtocolViolation(Exception):
    """The client broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# Close codes a peer may send (RFC 6455 §7.4): the defined ones, 3000–4999.
_PEER_CLOSE_CODES: Final = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
_HEADER_CLOSE: Final = struct.Struct("!H")


class ClientFrameParser:
    """Sans-IO parser of the frames a client sends (masked, RFC 6455 §5).

    :meth:`feed` returns complete messages (``str`` for text, ``bytes`` for binary,
    fragments reassembled), ``("ping", payload)`` and ``("close", code, reason)``
    tuples, in order; it raises :class:`ProtocolViolation` for anything a server must
    refuse (unmasked or reserved-bit frames, bad control frames, invalid UTF-8, a
    message over ``max_message_bytes``...). wsproto does the same job with a generator
    and several copies per frame; this is the emulator's hottest loop.
    """

    __slots__ = ("_buffer", "_kind", "_max", "_parts", "_parts_size")

    def __init__(self, max_message_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._kind = 0  # opcode of the fragmented message in progress (0: none)
        self._parts: list[bytes] = []
        self._parts_size = 0

    def feed(self, data: bytes) -> list[str | bytes | tuple[object, ...]]:
        buf = self._buffer
        buf += data
        out: list[str | bytes | tuple[object, ...]] = []
        pos = 0
        end_of_data = len(buf)
        while end_of_data - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolViolation(1002, "reserved bits set")
            if not b1 & 0x80:
                raise ProtocolViolation(1002, "client frames must be masked")
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if end_of_data - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = pos + 4
            elif length == 127:
                if end_of_data - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = pos + 10
            if opcode >= 8:
                if not b0 & 0x80 or length > 125:
                    raise ProtocolViolation(1002, "fragmented or oversized control frame")
            elif self._parts_size + length > self._max:
                raise ProtocolViolation(1009, f"Exceeded maximum message size: {self._max} bytes")
            end = head + 4 + length
            if end > end_of_data:
                break
            payload = mask_payload(buf[head + 4 : end], buf[head : head + 4])
            pos = end
            if opcode >= 8:
                if opcode == 8:
                    out.append(_close_frame(payload))
                    break  # nothing after a Close frame counts
                if opcode == 9:
                    out.append(("ping", payload))
                elif opcode != 10:
                    raise ProtocolViolation(1002, f"unknown opcode {opcode}")
                continue
            if opcode == 0:
                if not self._kind:
                    raise ProtocolViolation(1002, "continuation without a message")
            elif opcode in (1, 2):
                if self._kind:
                    raise ProtocolViolation(1002, "new message inside a fragmented one")
                self._kind = opcode
            else:
                raise ProtocolViolation(1002, f"unknown opcode {opcode}")
            if not b0 & 0x80:
                self._parts.append(payload)
                self._parts_size += length
                continue
            if self._parts:
                self._parts.append(payload)
                payload = b"".join(self._parts)
                self._parts = []
                self._parts_size = 0
            if self._kind == 1:
                try:
                    out.append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    raise ProtocolViolation(1007, "invalid UTF-8 in a text message") from None
            else:
                out.append(payload)
            self._kind = 0
        del buf[:pos]
        return out


def _close_frame(payload: bytes) -> tuple[object, ...]:
    if not payload:
        return ("close", 1005, "")
    if len(payload) == 1:
        raise ProtocolViolation(1002, "CLOSE with 1 byte payload")
    (code,) = _HEADER_CLOSE.unpack_from(payload)
    if not (code in _PEER_CLOSE_CODES or 3000 <= code <= 4999):
        raise ProtocolViolation(1002, f"CLOSE with invalid code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(1007, "invalid UTF-8 in the close reason") from None
    return ("close", code, reason)


class DirectWebSocket(WebSocket):
    """:class:`~saynad.emulator.asgi.WebSocket` over a trio stream and wsproto.

    ``receive`` reads the socket only when its queue of parsed messages is empty, in
    the caller's task. Writes (the session's writer, plus Pong and Close answers from
    ``receive``) are serialised by a lock.
    """

    def __init__(
        self, scope: Scope, stream: FastSocketStream, http: h11.Connection, request: h11.Request
    ) -> None:
        super().__init__(scope, _no_receive, _no_send)
        self._stream = stream
        self._http = http  # has read the upgrade request; writes our answer
        self._request = request
        self._parser: ClientFrameParser | None = None  # set by accept()
        self._messages: deque[str | bytes] = deque()
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
        messages = self._messages
        while True:
            if messages:
                return messages.popleft()
            if self.closed:
                return None
            await self._read()

    async def _read(self) -> None:
        parser = self._parser
        assert parser is not None, "receive() before accept()"
        data, self._pending = self._pending, b""
        if not data:
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
        if not data:
            self.close_code = 1006  # gone without a Close frame
            self.closed = self._peer_closed = True
            return
        try:
            items = parser.feed(data)
        except ProtocolViolation as exc:
            self.close_code = exc.code
            self.closed = self._peer_closed = True
            await self._send_close(exc.code, exc.reason)
            return
        for item in items:
            if type(item) is tuple:
                if item[0] == "ping":
                    if not self._close_sent:
                        await self._write(_frame(0x8A, item[1]))  # type: ignore[arg-type]
                    continue
                # ("close", code, reason): echo it (without code for 1005), stop reading.
                code, reason = item[1], item[2]
                self.close_code = code  # type: ignore[assignment]
                self.closed = self._peer_closed = True
                await self._send_close(code, reason)  # type: ignore[arg-type]
                return
            self._messages.append(item)  # type: ignore[arg-type]

    async def send_text(self, text: str) -> None:
        await self._send_frame(0x81, text.encode())

    async def send_bytes(self, data: bytes) -> None:
        await self._send_frame(0x82, data)

    async def _send_frame(self, first_byte: int, payload: bytes) -> None:
        if self._parser is None or self._close_sent:
            return  # as hypercorn does: messages after the close are ignored
        # If the peer is gone, the read loop sees it and ends the session.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._write(_frame(first_byte, payload))

    async def _send_close(self, code: int | None, reason: str = "") -> None:
        """Send our Close frame once: ``None`` or 1005 means without a status code."""
        if self._close_sent or self._parser is None:
            return
        self._close_sent = True
        if code is None or code == 1005:
            payload = b""
        else:
            payload = _HEADER_CLOSE.pack(code) + reason.encode()[:123]
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._write(_frame(0x88, payload))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        await self._send_close(code, reason)

    async def finish(self) -> None:
        """After the application returned: complete the closing handshake (bounded)."""
        if self._parser is None:
            return
        await self._send_close(1000)
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
    handler: WebSocketHandler, hypercorn_port: int, stream: FastSocketStream
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

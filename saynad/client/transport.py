"""The WebSocket connection under a session, behind one small interface.

:class:`WebSocketTransport` is everything :mod:`saynad.client.session` needs from a
WebSocket: send text, send bytes, receive a message, close. :func:`connect_websocket`
opens one. Two implementations sit behind it:

- ``"wsproto"`` (the default): :mod:`saynad.client._wsproto`, a thin trio shell over
  wsproto's sans-IO protocol: no background task, reads on demand, one ``send_all`` per
  frame. It exists because trio-websocket's per-frame machinery (a reader task and a
  channel hop per message, a lock and three payload copies per send) cost several times
  the official asyncio SDK's CPU per session; ``docs/benchmarks.md`` has the figures.
- ``"trio-websocket"``: the same interface over trio-websocket, kept for comparison
  (``make bench``) and as a fallback.

Errors are translated once, here and in :mod:`saynad.client._wsproto`:

- the upgrade answered with an HTTP status → :class:`~saynad.errors.HandshakeRejectedError`
  (``status_code``, ``body``, ``error`` = the JSON body's ``error`` field, if any);
- refused connection, DNS failure, TLS failure, a peer that hangs up or answers garbage
  during the handshake, or a handshake slower than ``connect_timeout_s`` →
  :class:`~saynad.errors.TransportError`;
- the connection closed (by either side) → :class:`~saynad.errors.ConnectionClosedError`
  with the close code: the peer's code, ``1005`` when its Close frame carried none,
  ``1006`` when the connection broke without a Close frame.

Buffers (overflow policy: block): the default transport reads only while the consumer
waits in ``receive``, so it holds at most one 64 KiB read plus one partial message
ahead of it; trio-websocket reads ahead at most ``receive_queue_size`` messages. When
the consumer stops reading, TCP back-pressure reaches the server. A message larger than
``max_message_bytes`` closes the connection with code 1009.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Literal, NoReturn, Protocol
from urllib.parse import urlsplit

import msgspec
import trio
import trio_websocket

from saynad._groups import cause_of, raise_bare
from saynad._io import pacing
from saynad._io.sockets import RECEIVE_BYTES, open_fast_tcp_stream
from saynad.client import _wsproto
from saynad.errors import (
    ConnectionClosedError,
    HandshakeRejectedError,
    TransportError,
    ValidationError,
)
from saynad.protocol import upgrade
from saynad.protocol.framing import ABNORMAL_CLOSURE

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_RECEIVE_QUEUE_SIZE",
    "Implementation",
    "WebSocketTransport",
    "connect_websocket",
]

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest message accepted from the server. TTS cache hits arrive as one large binary
frame (16 MiB ≈ 5.8 min of 24 kHz s16 mono); the server itself accepts up to 64 MiB."""

DEFAULT_RECEIVE_QUEUE_SIZE = 16
"""Messages read ahead of the consumer before the reader blocks."""

DEFAULT_CLOSE_TIMEOUT_S = 2.0
"""How long to wait for the server to answer our Close frame (it may never do so)."""


class WebSocketTransport(Protocol):
    """One open WebSocket connection, as a session sees it.

    Sends may come from several tasks at once (the implementation serialises them);
    ``receive`` has a single consumer.
    """

    async def send_text(self, data: str | bytes) -> None:
        """Send a text frame. ``bytes`` must be UTF-8 (encoded JSON)."""
        ...

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        ...

    async def stream_bytes(
        self,
        chunks: Sequence[bytes],
        interval_s: float,
        *,
        start: float,
        on_sent: pacing.OnSent | None = None,
    ) -> None:
        """Send ``chunks[i]`` as a binary frame at ``start + i * interval_s`` (trio's
        clock), never early; overdue frames go out back to back. Calls
        ``on_sent(i, lag_s)`` after each."""
        ...

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text frames, ``bytes`` for binary ones.

        Messages the peer sent before closing are delivered first; then this raises
        :class:`~saynad.errors.ConnectionClosedError`.
        """
        ...

    async def aclose(self, code: int = 1000) -> None:
        """Send a Close frame with ``code``, wait briefly for the answer, drop the
        connection. Idempotent."""
        ...

    # Keepalive (see saynad.client.session): the session's keepalive task pings an idle
    # connection and aborts it when no answer comes in time.

    last_activity: float
    """``trio.current_time()`` when bytes last arrived from the peer (or the connection
    opened)."""

    async def ping(self) -> None:
        """Send a Ping frame (the answer shows up as activity)."""
        ...

    async def wait_activity(self) -> None:
        """Return once more bytes arrived from the peer (a reader must be reading)."""
        ...

    async def abort(self, reason: str) -> None:
        """Drop the connection at once: a blocked or later ``receive`` raises
        :class:`~saynad.errors.ConnectionClosedError` (1006, ``reason``)."""
        ...


class _TrioWebSocketTransport:
    """:class:`WebSocketTransport` over a ``trio_websocket.WebSocketConnection``."""

    __slots__ = ("_abort_reason", "_close_timeout_s", "_stream", "_ws", "last_activity")

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        stream: trio.abc.Stream,
        close_timeout_s: float,
    ) -> None:
        self._ws = ws
        self._stream = stream
        self._close_timeout_s = close_timeout_s
        self._abort_reason: str | None = None
        # trio-websocket reads in its own task; activity is known only through pongs.
        self.last_activity = trio.current_time()

    async def ping(self) -> None:
        # trio-websocket's ping() returns once the matching pong arrived.
        try:
            await self._ws.ping()
        except trio_websocket.ConnectionClosed as exc:
            raise _closed_error(exc) from None
        self.last_activity = trio.current_time()

    async def wait_activity(self) -> None:
        await trio.sleep_forever()  # ping() itself waits for the answer

    async def abort(self, reason: str) -> None:
        self._abort_reason = reason
        await trio.aclose_forcefully(self._stream)

    async def send_text(self, data: str | bytes) -> None:
        # trio-websocket decides the frame type from the Python type, so JSON bytes
        # must become str to go out as a text frame.
        message = data.decode() if isinstance(data, bytes) else data
        try:
            await self._ws.send_message(message)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed_error(exc) from None

    async def send_bytes(self, data: bytes) -> None:
        try:
            await self._ws.send_message(data)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed_error(exc) from None

    async def stream_bytes(
        self,
        chunks: Sequence[bytes],
        interval_s: float,
        *,
        start: float,
        on_sent: pacing.OnSent | None = None,
    ) -> None:
        await pacing.stream_by_sleeping(
            self.send_bytes, chunks, interval_s, start=start, on_sent=on_sent
        )

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            if self._abort_reason is not None:
                raise ConnectionClosedError(ABNORMAL_CLOSURE, self._abort_reason) from None
            raise _closed_error(exc) from None

    async def aclose(self, code: int = 1000) -> None:
        # The server may never answer our Close frame (§2.6): bound the wait. When the
        # deadline hits, trio-websocket still closes the TCP stream on its way out.
        try:
            with trio.move_on_after(self._close_timeout_s):
                await self._ws.aclose(code)
        finally:
            # After a close started by the peer, trio-websocket's aclose() returns at once
            # and never closes the socket: close it ourselves (idempotent).
            await trio.aclose_forcefully(self._stream)


def _closed_error(exc: trio_websocket.ConnectionClosed) -> ConnectionClosedError:
    reason = exc.reason
    if reason is None:
        return ConnectionClosedError(ABNORMAL_CLOSURE, None)
    # wsproto hands out IntEnum members; callers compare and log plain ints.
    return ConnectionClosedError(int(reason.code), reason.reason)


def _broken(exc: BaseException) -> TransportError:
    return TransportError(f"connection broken during the WebSocket handshake: {exc}")


class _HandshakeGuard(trio.abc.Stream):
    """Passes bytes through, but during the opening handshake turns a peer that hangs
    up into an exception.

    trio-websocket's reader task ends quietly when the stream breaks before the upgrade
    response, leaving the opener waiting until its timeout. Raising from the stream
    instead makes the reader task fail, which aborts the handshake at once.
    """

    __slots__ = ("_inner", "handshaking")

    def __init__(self, inner: trio.abc.Stream) -> None:
        self._inner = inner
        self.handshaking = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self.handshaking:
            await self._inner.send_all(data)
            return
        try:
            await self._inner.send_all(data)
        except trio.BrokenResourceError as exc:
            raise TransportError(
                f"connection broken during the WebSocket handshake: {exc}"
            ) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self.handshaking:
            return await self._inner.receive_some(max_bytes)
        try:
            data = await self._inner.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            raise TransportError(
                f"connection broken during the WebSocket handshake: {exc}"
            ) from exc
        if not data:
            raise TransportError("the server closed the connection during the WebSocket handshake")
        return data

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Target(msgspec.Struct, frozen=True):
    host: str
    port: int
    resource: str
    tls: bool
    host_header: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValidationError(f"not a WebSocket URL: {url!r}")
    tls = scheme == "wss"
    default_port = 443 if tls else 80
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValidationError(f"invalid port in {url!r}") from exc
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default_port else f"{shown}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(host, port, resource, tls, host_header)


async def _open_stream(
    target: _Target, ssl_context: ssl.SSLContext | None, *, fast: bool = True
) -> trio.abc.Stream:
    """TCP (and TLS, handshake included) so that these failures surface here, at once."""
    try:
        if not target.tls:
            if fast:
                return await open_fast_tcp_stream(target.host, target.port)
            return await trio.open_tcp_stream(target.host, target.port)
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        stream = await trio.open_ssl_over_tcp_stream(
            target.host, target.port, ssl_context=context, https_compatible=True
        )
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream
    except OSError as exc:
        raise TransportError(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
    except trio.BrokenResourceError as exc:
        # trio reports TLS failures as BrokenResourceError caused by ssl.SSLError.
        cause = exc.__cause__ or exc
        raise TransportError(
            f"TLS handshake with {target.host}:{target.port} failed: {cause}"
        ) from exc


async def _abandon_handshake(
    stream: trio.abc.Stream | None,
    exc: BaseException,
    target: _Target,
    connect_timeout_s: float,
) -> NoReturn:
    """Close ``stream`` (if it was opened) after the opening handshake failed with
    ``exc``, and raise ``exc``; running out of ``connect_timeout_s`` becomes a
    :class:`~saynad.errors.TransportError`."""
    if stream is not None:
        await trio.aclose_forcefully(stream)
    if isinstance(exc, trio.TooSlowError):
        raise TransportError(
            f"WebSocket handshake with {target.host}:{target.port} "
            f"took longer than {connect_timeout_s} s"
        ) from None
    raise exc


def _rejected(exc: trio_websocket.ConnectionRejected) -> HandshakeRejectedError:
    return _wsproto.rejection_error(exc.status_code, exc.body or b"")


def _translate(exc: BaseException) -> BaseException:
    """Map one trio-websocket / network exception to saynad's hierarchy."""
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return _rejected(exc)
    if isinstance(exc, trio_websocket.ConnectionClosed):
        return _closed_error(exc)
    if isinstance(exc, trio_websocket.HandshakeError | OSError):
        return TransportError(f"WebSocket connection failed: {exc!r}")
    return exc


def _header_bytes(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """``headers`` as HTTP/1.1 writes them (Latin-1); :class:`ValidationError` names the
    header whose name or value does not fit, never the value (it may be a secret)."""
    encoded = []
    for name, value in headers.items():
        try:
            encoded.append((name.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise ValidationError(
                f"header {name[:40]!r} holds characters outside Latin-1"
            ) from None
    return encoded


Implementation = Literal["wsproto", "trio-websocket"]
"""Which WebSocket implementation :func:`connect_websocket` uses."""


def connect_websocket(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    connect_timeout_s: float,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    receive_queue_size: int = DEFAULT_RECEIVE_QUEUE_SIZE,
    close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
    ssl_context: ssl.SSLContext | None = None,
    implementation: Implementation = "wsproto",
) -> AbstractAsyncContextManager[WebSocketTransport]:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) for the ``async with`` block.

    ``headers`` go on the upgrade request. ``connect_timeout_s`` bounds TCP, TLS and the
    upgrade together. On exit the connection is closed with code 1000 (waiting at most
    ``close_timeout_s`` for the server's answer). Exceptions raised inside the block
    come out unchanged (never wrapped in an exception group). ``receive_queue_size``
    applies to the trio-websocket implementation only (the default one reads on
    demand and queues no more than one read).

    Raises :class:`~saynad.errors.ValidationError` at once (nothing connects) for an
    unknown ``implementation`` or a header that cannot go on the wire.
    """
    target = _target(url)
    extra_headers = _header_bytes(headers or {})
    try:
        upgrade.check_request(target.host_header, target.resource, extra_headers)
    except ValueError as exc:  # its message quotes no header value (an API key)
        raise ValidationError(f"cannot send the upgrade request: {exc}") from None
    if implementation == "trio-websocket":
        return _connect_trio_websocket(
            target,
            extra_headers,
            connect_timeout_s=connect_timeout_s,
            max_message_bytes=max_message_bytes,
            receive_queue_size=receive_queue_size,
            close_timeout_s=close_timeout_s,
            ssl_context=ssl_context,
        )
    if implementation != "wsproto":
        raise ValidationError(f"unknown WebSocket implementation {implementation!r}")
    return _WsprotoConnection(
        target, extra_headers, connect_timeout_s, max_message_bytes, close_timeout_s, ssl_context
    )


class _WsprotoConnection:
    """:func:`connect_websocket` over saynad's own transport. A class rather than an
    ``@asynccontextmanager`` generator: a session holds it for its whole life, and the
    generator, its frame and its wrapper would be three more objects for the garbage
    collector to walk."""

    __slots__ = (
        "_close_timeout_s",
        "_connect_timeout_s",
        "_extra_headers",
        "_max_message_bytes",
        "_ssl_context",
        "_target",
        "_ws",
    )

    def __init__(
        self,
        target: _Target,
        extra_headers: list[tuple[bytes, bytes]],
        connect_timeout_s: float,
        max_message_bytes: int,
        close_timeout_s: float,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._target = target
        self._extra_headers = extra_headers
        self._connect_timeout_s = connect_timeout_s
        self._max_message_bytes = max_message_bytes
        self._close_timeout_s = close_timeout_s
        self._ssl_context = ssl_context
        self._ws: _wsproto.WsprotoTransport | None = None

    async def __aenter__(self) -> WebSocketTransport:
        if self._ws is not None:
            raise RuntimeError("a connect_websocket() context is entered once")
        target = self._target
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self._connect_timeout_s):
                stream = await _open_stream(target, self._ssl_context)
                self._ws = await _wsproto.handshake(
                    stream,
                    host=target.host_header,
                    resource=target.resource,
                    extra_headers=self._extra_headers,
                    max_message_bytes=self._max_message_bytes,
                    close_timeout_s=self._close_timeout_s,
                )
        except BaseException as exc:
            await _abandon_handshake(stream, exc, target, self._connect_timeout_s)
        return self._ws

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._ws is not None
        await self._ws.aclose()


@asynccontextmanager
async def _connect_trio_websocket(
    target: _Target,
    extra_headers: list[tuple[bytes, bytes]],
    *,
    connect_timeout_s: float,
    max_message_bytes: int,
    receive_queue_size: int,
    close_timeout_s: float,
    ssl_context: ssl.SSLContext | None,
) -> AsyncIterator[WebSocketTransport]:
    """:func:`connect_websocket` over trio-websocket (its hidden nursery unwrapped)."""
    try:
        async with trio.open_nursery() as nursery:
            stream: _HandshakeGuard | None = None
            try:
                with trio.fail_after(connect_timeout_s):
                    stream = _HandshakeGuard(await _open_stream(target, ssl_context, fast=False))
                    ws = await trio_websocket.wrap_client_stream(
                        nursery,
                        stream,  # type: ignore[arg-type]  # any trio Stream works
                        target.host_header,
                        target.resource,
                        extra_headers=extra_headers,
                        message_queue_size=receive_queue_size,
                        max_message_size=max_message_bytes,
                        # One read per typical TTS chunk instead of several 4 KiB ones.
                        receive_buffer_size=RECEIVE_BYTES,
                    )
            except BaseException as exc:
                # trio-websocket leaves the socket open when the handshake fails
                # (rejection, timeout, cancellation).
                await _abandon_handshake(stream, exc, target, connect_timeout_s)
            stream.handshaking = False
            transport = _TrioWebSocketTransport(ws, stream, close_timeout_s)
            try:
                yield transport
            finally:
                await transport.aclose()
    except BaseExceptionGroup as group:
        # The hidden nursery wraps everything; unwrap the single real exception (from
        # the block, or from trio-websocket's reader task) and translate it.
        cause = cause_of(group)
        if cause is group:
            raise
        translated = _translate(cause)
        if translated is cause:
            raise_bare(cause)
        raise translated from cause

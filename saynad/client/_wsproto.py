"""A thin WebSocket client over a trio stream and wsproto: the default transport.

The I/O shell is as small as the protocol allows, because a saynad process holds
thousands of sessions and pays this code on every 20 ms audio chunk:

- **no background task**: :meth:`WsprotoTransport.receive` reads the socket itself, in
  64 KiB reads, only while its caller waits; everything a read brought in is parsed at
  once and handed out from a deque;
- **one write per frame** (or one for several, below): outbound data frames are built
  by the sans-IO codec (:func:`saynad.protocol.framing.masked_frame`: header, fresh
  masking key, masked payload) in one buffer and written with one ``send_all``;
  concurrent senders are serialised by a flag, and only a contended send parks (FIFO
  hand-off);
- **paced audio from the timer**: :meth:`WsprotoTransport.stream_bytes` writes each due
  frame from the pacing timer (:func:`saynad._io.pacing.call_at`) straight to the
  socket (a stream behind schedule writes its overdue frames together, in one write);
  the streaming task sleeps until the stream ends and wakes only when a write cannot
  finish at once (another writer holds the socket, or the kernel buffer is full);
- **inbound frames**: whole text and binary frames are cut out of each read by
  :func:`saynad.protocol.framing.cut_frames`; every other frame goes through wsproto's
  sans-IO :class:`~wsproto.connection.Connection` (reassembly, UTF-8 checks, close
  codes); pings are answered inline by the reader;
- **closing**: :meth:`WsprotoTransport.aclose` writes its Close frame itself and reads
  the answer without wsproto; once saynad's Close frame is out, nothing else goes out
  (the peer's Close frame ends the handshake, every other frame is dropped);
- the opening handshake is :mod:`saynad.protocol.upgrade` (request and ``101`` in a few
  operations; a refusal is read by wsproto's h11-based ``H11Handshake``), without the
  permessage-deflate offer (audio does not compress, and inflating costs CPU).

Everything here speaks trio and saynad's error types;
:func:`saynad.client.transport.connect_websocket` opens the stream and owns the timeout.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, NoReturn

import msgspec
import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from saynad._io import pacing
from saynad._io.sockets import RECEIVE_BYTES, FastSocketStream
from saynad.errors import (
    ConnectionClosedError,
    HandshakeRejectedError,
    TransportError,
)
from saynad.protocol import upgrade
from saynad.protocol.framing import (
    ABNORMAL_CLOSURE,
    BINARY,
    BINARY_FRAME,
    CLOSE,
    CLOSE_FRAME,
    CONTINUATION,
    FIN,
    MESSAGE_TOO_BIG,
    TEXT,
    TEXT_FRAME,
    Taker,
    close_payload,
    cut_frames,
    masked_frame,
)

__all__ = ["WsprotoTransport", "handshake", "rejection_error"]

MAX_REJECTION_BODY_BYTES: Final = 64 * 1024
"""How much of a refused upgrade's body is kept for :class:`HandshakeRejectedError`."""

_KEY_POOL_BYTES: Final = 256


class _Dropped:
    """Where whole messages go once the connection is closing: nowhere."""

    def append(self, message: str | bytes, /) -> None:
        pass


_DROPPED: Final = _Dropped()


async def _park(transport: WsprotoTransport, lot_name: str) -> None:
    """Park in ``transport``'s parking lot ``lot_name``, making it on first use. (Only
    parking needs the lot; ``if lot: lot.unpark()`` is false for ``None`` as for an
    empty lot.)"""
    lot = getattr(transport, lot_name)
    if lot is None:
        lot = trio.lowlevel.ParkingLot()
        setattr(transport, lot_name, lot)
    await lot.park()


class WsprotoTransport:
    """An open client WebSocket over a trio stream (see the module docstring).

    Implements :class:`saynad.client.transport.WebSocketTransport`. ``receive`` has one
    consumer; sends may come from any number of tasks; :meth:`aclose` may run while
    another task is blocked in ``receive``.

    Buffers: complete messages are parsed out of each read and queued; the socket is
    read again only when that queue is empty and someone waits in ``receive``. So at
    most one read (:data:`RECEIVE_BYTES` of wire data) plus one partial message of at
    most ``max_message_bytes`` is held ahead of the consumer; when the consumer stops,
    reading stops and TCP back-pressure reaches the server (overflow policy: block).
    """

    __slots__ = (
        "_activity_lot",
        "_close_error",
        "_close_timeout_s",
        "_conn",
        "_fast",
        "_fragmented",
        "_inbox",
        "_key_offset",
        "_key_pool",
        "_local_close",
        "_max_message_bytes",
        "_messages",
        "_parts",
        "_parts_size",
        "_peer_closed",
        "_reader_lot",
        "_reading",
        "_stream",
        "_stream_closed",
        "_write_lot",
        "_writing",
        "last_activity",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: Connection | None = None,
        *,
        max_message_bytes: int,
        close_timeout_s: float,
        received: bytes = b"",
    ) -> None:
        self._stream = stream
        # wsproto's state machine, for everything but whole data frames: made on first
        # use (see _protocol), since most connections need it only to close, and it is
        # ten objects for the garbage collector to walk while the session lasts.
        self._conn = conn
        # Bytes read but not yet parsed into frames (a partial frame at most, between
        # reads); see _parse.
        self._inbox = bytearray(received)
        self._fragmented = False  # wsproto is in the middle of a fragmented message
        self._max_message_bytes = max_message_bytes
        self._close_timeout_s = close_timeout_s
        self._messages: deque[str | bytes] = deque()
        # The message being reassembled (wsproto hands out partial frames).
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        # Set once the connection is over for this side; receive and sends raise it.
        self._close_error: ConnectionClosedError | None = None
        self._local_close = False  # aclose() started the close
        self._peer_closed = False  # the closing handshake is over (or the peer is gone)
        self._stream_closed = False
        # Parking lots are made on first use (see _park): most connections never need
        # one, and each is three objects for the garbage collector to walk.
        self._reading = False
        self._reader_lot: trio.lowlevel.ParkingLot | None = None  # aclose() awaits a reader
        self._writing = False
        self._write_lot: trio.lowlevel.ParkingLot | None = None  # senders awaiting their turn
        # The plain-TCP stream can write without awaiting, which frames sent from the
        # pacing timer need; other streams (TLS) stream by sleeping instead.
        self._fast = stream if isinstance(stream, FastSocketStream) else None
        self._key_pool = b""
        self._key_offset = _KEY_POOL_BYTES
        # Keepalive: when bytes last arrived, and who waits for the next ones.
        self.last_activity = trio.current_time()
        self._activity_lot: trio.lowlevel.ParkingLot | None = None

    def _protocol(self) -> Connection:
        """wsproto's client-side connection state (made on first use)."""
        conn = self._conn
        if conn is None:
            conn = self._conn = Connection(ConnectionType.CLIENT)
        return conn

    # ------------------------------------------------------------------ sending

    async def send_text(self, data: str | bytes) -> None:
        if self._close_error is not None:
            raise self._closed()
        payload = data.encode() if isinstance(data, str) else data
        await self._write(masked_frame(TEXT_FRAME, payload, self._masking_key()))
        if self._fast is not None:
            # A command is usually answered (a speak's first audio): the next read looks
            # before it waits, and finds the answer in the same scheduler pass.
            self._fast.expect_data()

    async def send_bytes(self, data: bytes) -> None:
        # The per-chunk audio path: one coroutine layer above _write().
        if self._close_error is not None:
            raise self._closed()
        await self._write(masked_frame(BINARY_FRAME, data, self._masking_key()))

    def _closed(self) -> ConnectionClosedError:
        """The error for a call on a connection that is over (a fresh copy of the close)."""
        error = self._close_error
        assert error is not None
        return ConnectionClosedError(error.code, error.reason)

    def _masking_key(self) -> bytes:
        """A fresh masking key from the OS's CSPRNG, drawn 64 at a time (one system
        call per 64 frames instead of one per frame)."""
        offset = self._key_offset
        if offset >= _KEY_POOL_BYTES:
            self._key_pool = os.urandom(_KEY_POOL_BYTES)
            offset = 0
        self._key_offset = offset + 4
        return self._key_pool[offset : offset + 4]

    async def _write(self, data: bytes) -> None:
        """Write ``data`` whole; concurrent writers take turns in FIFO order.

        Uncontended, this is one ``send_all`` and nothing else (a lock would add a
        scheduler round trip per frame). A writer that finishes hands the right to
        write directly to the next parked one.
        """
        if self._writing:
            await _park(self, "_write_lot")
        else:
            self._writing = True
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost() from exc
        finally:
            self._release_write()

    def _release_write(self) -> None:
        """End a write: hand the right to write to the next parked sender, if any."""
        if self._write_lot:
            self._write_lot.unpark()
        else:
            self._writing = False

    async def stream_bytes(
        self,
        chunks: Sequence[bytes],
        interval_s: float,
        *,
        start: float,
        on_sent: pacing.OnSent | None = None,
    ) -> None:
        """Send ``chunks[i]`` as a binary frame at ``start + i * interval_s``.

        The frames are written by the pacing timer (see :class:`_PacedFrames`); this
        task sleeps and wakes only to finish a write the timer could not. Returns once
        the last frame is written; raises :class:`ConnectionClosedError` when the
        connection ends first. Cancelling it stops the stream after the frame being
        written, if any.
        """
        if self._close_error is not None:
            raise self._closed()
        if self._fast is None:
            await pacing.stream_by_sleeping(
                self.send_bytes,
                chunks,
                interval_s,
                start=start,
                on_sent=on_sent,
            )
            return
        if not chunks:
            await trio.lowlevel.checkpoint()
            return
        paced = _PacedFrames(self, self._fast, chunks, interval_s, start, on_sent)
        try:
            await paced.run()
        finally:
            paced.cancel()

    # ------------------------------------------------------------------ receiving

    async def receive(self) -> str | bytes:
        messages = self._messages
        while True:
            if messages and not self._local_close:
                return messages.popleft()
            error = self._close_error
            # After our own Close frame, keep reading (and dropping) until the peer
            # answers, so that a concurrent aclose() sees the handshake complete.
            if error is not None and (self._peer_closed or not self._local_close):
                raise ConnectionClosedError(error.code, error.reason)
            await self._read_or_wait()

    async def _read_or_wait(self) -> None:
        """Read once, or, while another task reads (aclose() and a blocked receive()
        may overlap), wait for that read to finish."""
        if self._reading:
            await _park(self, "_reader_lot")
        else:
            await self._read()

    async def _read(self) -> None:
        """One read from the socket, fully processed: messages queued, pings answered,
        a Close frame answered and recorded."""
        self._reading = True
        try:
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost()
                return
            if data:
                self.last_activity = trio.current_time()
                if self._activity_lot:
                    self._activity_lot.unpark_all()
                pos = 0
                if not (self._inbox or self._fragmented or self._close_error is not None):
                    # The usual read: it starts on a frame boundary and holds whole data
                    # frames, cut where they lie without a coroutine call.
                    pos = cut_frames(data, 0, self._messages, False, self._max_message_bytes)[0]
                if pos < len(data):
                    await self._parse(data, pos)
            else:
                # EOF: wsproto reports it as a close with 1006.
                self._protocol().receive_data(None)
                await self._process_events()
        finally:
            self._reading = False
            if self._reader_lot:
                self._reader_lot.unpark_all()

    async def _parse(self, data: bytes | bytearray, pos: int = 0) -> None:
        """Take every complete frame out of the inbox followed by ``data[pos:]`` (``pos``
        is past frames already taken, so the inbox is then empty).

        The frames a Sayna server sends are almost all whole, unfragmented text and
        binary frames: :func:`~saynad.protocol.framing.cut_frames` cuts those out of
        the buffer, in a few operations each. Everything else — control frames (ping,
        close), fragments, and anything malformed (a masked or reserved-bit frame, an
        over-long length encoding, text that is not UTF-8) — goes to wsproto as one
        complete frame, so that wsproto answers pings, runs the closing handshake and
        reports protocol errors with the right close code. (After saynad's own Close
        frame, written by :meth:`aclose`, the peer's Close frame ends the handshake
        here and every other frame is dropped.) wsproto never holds a
        partial frame, and while a fragmented message is open every frame goes to it,
        so the two never disagree on where a frame starts.

        A read that starts on a frame boundary (the inbox is empty: the usual case) is
        parsed where it lies; only an unfinished frame is copied into the inbox.
        """
        inbox = self._inbox
        buf: bytes | bytearray
        if inbox:
            inbox += data
            buf = inbox
        else:
            buf = data
        size = len(buf)
        limit = self._max_message_bytes
        into: Taker | None
        while not self._peer_closed:
            if self._fragmented:
                into = None  # every frame to wsproto until the message is complete
            elif self._close_error is not None:
                into = _DROPPED  # closing: late messages are dropped
            else:
                into = self._messages
            pos, head, end = cut_frames(buf, pos, into, False, limit)
            if head < 0:  # INCOMPLETE
                break
            if end - head > limit:
                reason = f"Exceeded maximum message size: {limit} bytes"
                await self._fail(CloseConnection(code=MESSAGE_TOO_BIG, reason=reason))
                break
            if end > size:
                break  # the rest of this frame is still on its way
            first = buf[pos]
            opcode = first & 0x0F
            if self._local_close:
                # Our Close frame is out (aclose). The peer's Close frame ends the
                # handshake, whatever its payload; every other frame, well-formed or
                # not, is dropped (nothing may be sent after a Close).
                pos = end
                if opcode == CLOSE:
                    self._peer_closed = True
                    await self._close_stream()
                continue
            if opcode in (CONTINUATION, TEXT, BINARY) and not (
                first in (TEXT_FRAME, BINARY_FRAME) and not buf[pos + 1] & 0x80
            ):
                self._fragmented = not first & FIN
            self._protocol().receive_data(bytes(buf[pos:end]))
            pos = end
            await self._process_events()
        if buf is inbox:
            del inbox[:pos]
        elif pos < size:
            inbox += buf[pos:]

    async def _process_events(self) -> None:
        for event in self._protocol().events():
            if isinstance(event, TextMessage | BytesMessage):
                if not self._on_data(event.data, event.message_finished):
                    reason = f"Exceeded maximum message size: {self._max_message_bytes} bytes"
                    await self._fail(CloseConnection(code=MESSAGE_TOO_BIG, reason=reason))
                    return
            elif isinstance(event, CloseConnection):
                await self._fail(event)
                return
            elif isinstance(event, Ping) and self._protocol().state is ConnectionState.OPEN:
                await self._write(self._protocol().send(event.response()))
            # Pong: nothing to do (saynad sends no pings).

    def _on_data(self, chunk: str | bytes | bytearray, finished: bool) -> bool:
        """Queue a (part of a) message; ``False`` when it grows past the limit."""
        if self._close_error is not None:
            return True  # closing: late messages are dropped
        # wsproto hands out bytes today; its type hints allow bytearray.
        data = bytes(chunk) if isinstance(chunk, bytearray) else chunk
        # The limit is in bytes on the wire: wsproto has already decoded text to str.
        size = len(data) if type(data) is bytes or data.isascii() else len(data.encode())  # type: ignore[union-attr]
        parts = self._parts
        if finished and not parts:
            if size > self._max_message_bytes:
                return False
            self._messages.append(data)
            return True
        size += self._parts_size
        if size > self._max_message_bytes:
            return False
        parts.append(data)
        self._parts_size = size
        if finished:
            self._messages.append(
                "".join(parts) if type(data) is str else b"".join(parts)  # type: ignore[arg-type]
            )
            self._parts = []
            self._parts_size = 0
        return True

    async def _fail(self, event: CloseConnection) -> None:
        """The connection ends from the reading side: record the close, send the Close
        frame that is due, drop the TCP connection.

        Nothing is due after our own Close frame (nothing more may go out; the peer's
        answer ends the handshake in _parse, so only EOF or an oversized frame gets
        here then). Otherwise, in wsproto's state after the event: ``CLOSED`` — EOF
        (code 1006); ``REMOTE_CLOSING`` — the peer started the close: echo its code;
        ``OPEN`` — a protocol error or an oversized message: report it.
        """
        code = int(event.code)
        self._record_close(code, None if code == ABNORMAL_CLOSURE else event.reason or None)
        self._peer_closed = True
        if not self._local_close and self._protocol().state is not ConnectionState.CLOSED:
            with contextlib.suppress(ConnectionClosedError):
                # event.response() keeps wsproto's NO_STATUS_RCVD member, which it sends
                # as a Close frame without code (1005 itself may not go on the wire).
                await self._write(self._protocol().send(event.response()))
        await self._close_stream()

    # ------------------------------------------------------------------ keepalive

    async def ping(self) -> None:
        if self._close_error is not None:
            raise self._closed()
        await self._write(self._protocol().send(Ping(b"saynad")))

    async def wait_activity(self) -> None:
        await _park(self, "_activity_lot")

    async def abort(self, reason: str) -> None:
        self._record_close(ABNORMAL_CLOSURE, reason)
        self._peer_closed = True
        await self._close_stream()

    # ------------------------------------------------------------------ closing

    async def aclose(self, code: int = 1000) -> None:
        if self._stream_closed:
            return
        try:
            # The server may never answer our Close frame, and against a stalled peer
            # even writing it can block behind a full send buffer: bound both.
            with trio.move_on_after(self._close_timeout_s):
                if self._close_error is None:
                    self._local_close = True
                    self._close_error = ConnectionClosedError(code, None)
                    # Written here and answered in _parse, without wsproto.
                    frame = masked_frame(CLOSE_FRAME, close_payload(code), self._masking_key())
                    with contextlib.suppress(ConnectionClosedError):
                        await self._write(frame)
                while not self._peer_closed:
                    await self._read_or_wait()
        finally:
            await self._close_stream()

    async def _close_stream(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            stream = self._stream
            if type(stream) is FastSocketStream:
                # A plain socket closes at once. trio.aclose_forcefully would close it
                # inside a cancelled scope, whose checkpoint raises and catches a
                # Cancelled: an exception per connection, 3–4 % of a benchmark
                # session's CPU at N = 2000.
                stream.close()
            else:
                await trio.aclose_forcefully(stream)

    def _record_close(self, code: int, reason: str | None) -> None:
        if self._close_error is None:
            self._close_error = ConnectionClosedError(code, reason)

    def _lost(self) -> ConnectionClosedError:
        """The connection broke, or this side closed the stream under a blocked call."""
        self._record_close(ABNORMAL_CLOSURE, None)
        self._peer_closed = True
        error = self._close_error
        assert error is not None
        return ConnectionClosedError(error.code, error.reason)


# --------------------------------------------------------------------------- paced frames


class _PacedFrames:
    """One :meth:`WsprotoTransport.stream_bytes` call.

    :meth:`run` first writes, from the streaming task itself, every frame already due
    when the stream starts (chunk 0, and the backlog of a stream whose ``start`` has
    passed), so a stream started while the process is busy loses no scheduler pass
    before its first frame. After that, :meth:`__call__` runs on the pacing timer
    (outside any task) at each due time: it writes every frame that is due (at most
    :data:`_BURST` per pass, so a stream far behind schedule catches up without holding
    the timer; frames due together go out in one write, up to :data:`_BURST_BYTES`) and
    re-arms the timer for the next one. It never awaits and never raises; what it
    cannot do, it leaves to the streaming task (:meth:`run`), which it wakes with one
    of:

    - ``_DONE``: every frame is written;
    - ``_OWNER``: the next frame needs an ``await``: another writer holds the socket
      (the frame then waits its turn like any send), or the kernel took only part of it
      (the write flag stays held and the rest is sent before anything else);
    - ``_FAILED``: the connection broke, or ``on_sent`` raised.
    """

    __slots__ = (
        "_chunks",
        "_entry",
        "_error",
        "_fast",
        "_interval_s",
        "_on_sent",
        "_owner",
        "_parked",
        "_partial",
        "_spent",
        "_start",
        "_state",
        "_timer",
        "_transport",
        "index",
    )

    def __init__(
        self,
        transport: WsprotoTransport,
        fast: FastSocketStream,
        chunks: Sequence[bytes],
        interval_s: float,
        start: float,
        on_sent: pacing.OnSent | None,
    ) -> None:
        self._transport = transport
        self._fast = fast
        self._chunks = chunks
        self._interval_s = interval_s
        if not (math.isfinite(start) and math.isfinite(interval_s)):
            raise ValueError("start and interval_s must be finite")
        self._start = start
        self._timer = pacing.current_timer()  # kept: re-armed after every frame
        self._on_sent = on_sent
        self.index = 0  # the next chunk to write
        self._entry: pacing.TimerEntry | None = None  # armed, in the timer's heap
        self._spent: pacing.TimerEntry | None = None  # the entry to re-arm, once run
        self._owner: trio.lowlevel.Task | None = None
        self._parked = False  # the owner waits in _wait() (else _wake only sets the state)
        self._state = _WAITING
        self._error: BaseException | None = None
        # (frames, bytes already sent, the index after the last frame in them)
        self._partial: tuple[bytes, int, int] | None = None

    async def run(self) -> None:
        transport = self._transport
        await trio.lowlevel.checkpoint_if_cancelled()
        self._owner = trio.lowlevel.current_task()
        # What is due now goes out now (the timer's next pass may be a whole scheduler
        # batch away); the rest is armed on the timer.
        self._write_due()
        waited = False
        while True:
            if self._state is _WAITING:
                await self._wait()
                waited = True
            state = self._state
            if state is _DONE:
                if not waited:  # everything was due at once: still a schedule point
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return
            if state is _FAILED:
                assert self._error is not None
                raise self._error
            # _OWNER: the next frame needs this task.
            index = self.index
            partial = self._partial
            if partial is not None:
                self._partial = None
                data, sent, end = partial
                try:
                    await self._fast.send_rest(data, sent)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise transport._lost() from exc
                finally:
                    transport._release_write()
                self._sent_all(index, end)
            else:
                await transport.send_bytes(self._chunks[index])
                self._sent(index, self._start + index * self._interval_s)
            waited = True  # the send above was a checkpoint
            self._write_due()  # what came due meanwhile, then the timer

    def cancel(self) -> None:
        if self._entry is not None:
            self._entry[2] = None
            self._entry = None

    def __call__(self) -> None:
        """The timer's part (see the class docstring). The object itself is the timer
        callback, and its timer entry is reused: nothing is allocated per frame but the
        frame. Nothing may escape into the timer (it would end the whole trio run), so
        anything unexpected fails the stream instead."""
        self._entry = None
        try:
            self._write_due()
        except Exception as exc:
            self._error = exc
            self._wake(_FAILED)

    def _write_due(self) -> None:
        transport = self._transport
        chunks = self._chunks
        count = len(chunks)
        start = self._start
        interval_s = self._interval_s
        now = self._timer.now()
        written = 0
        while True:
            index = self.index
            if index >= count:
                self._wake(_DONE)
                return
            due = start + index * interval_s
            if due > now:
                self._arm(due)
                return
            if written >= _BURST:
                self._arm(now)  # more is overdue: the next timer pass, after other tasks ran
                return
            if transport._writing or transport._close_error is not None:
                self._wake(_OWNER)  # send_bytes waits its turn, or raises the close
                return
            end = index + 1
            if end < count and start + end * interval_s <= now:
                # Behind schedule: the frames due by now go out in one write (within
                # this pass's _BURST and _BURST_BYTES of audio), one system call and one
                # TCP segment for them all. A frame on schedule (the usual case) skips
                # this: it is the per-frame path.
                last = min(count, index + _BURST - written)
                size = len(chunks[index])
                while end < last and start + end * interval_s <= now:
                    size += len(chunks[end])
                    if size > _BURST_BYTES:
                        break
                    end += 1
            key = transport._masking_key
            if end == index + 1:
                data = masked_frame(BINARY_FRAME, chunks[index], key())
            else:
                data = b"".join(
                    [masked_frame(BINARY_FRAME, chunks[i], key()) for i in range(index, end)]
                )
            try:
                sent = self._fast.try_send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._error = transport._lost()
                self._wake(_FAILED)
                return
            if sent < len(data):
                transport._writing = True  # nothing may go out before the rest
                self._partial = (data, sent, end)
                self._wake(_OWNER)
                return
            # on_sent's error ends the stream (__call__)
            if end == index + 1:
                self._sent(index, due)
            else:
                self._sent_all(index, end)
            written += end - index

    def _sent(self, index: int, due: float) -> None:
        self.index = index + 1
        if self._on_sent is not None:
            self._on_sent(index, self._timer.now() - due)

    def _sent_all(self, index: int, end: int) -> None:
        """Frames ``index`` to ``end - 1`` went out in one write: count each of them
        (``on_sent`` is called for every one, even after it raised for an earlier one:
        they are on the wire), then raise the first error, if any."""
        error: Exception | None = None
        for i in range(index, end):
            try:
                self._sent(i, self._start + i * self._interval_s)
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def _arm(self, deadline: float) -> None:
        self._state = _WAITING
        self._entry = self._spent = self._timer.add(deadline, self, self._spent)

    def _wake(self, state: object) -> None:
        self._state = state
        if self._parked:
            self._parked = False
            assert self._owner is not None
            trio.lowlevel.reschedule(self._owner)

    async def _wait(self) -> None:
        def abort(_: Any) -> trio.lowlevel.Abort:
            self._parked = False
            self.cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        self._parked = True
        await trio.lowlevel.wait_task_rescheduled(abort)


_WAITING: Final = object()
_DONE: Final = object()
_OWNER: Final = object()
_FAILED: Final = object()
_BURST: Final = 16
"""Frames one stream writes per timer pass when it is behind schedule."""
_BURST_BYTES: Final = 64 * 1024
"""Payload bytes past which overdue frames no longer join one write (big chunks are
not copied into an ever bigger buffer; each still goes out in its own write)."""


# --------------------------------------------------------------------------- handshake


def rejection_error(status_code: int, body: bytes) -> HandshakeRejectedError:
    """The error for an upgrade answered with ``status_code`` and ``body``."""
    text = body.decode("utf-8", "replace")
    error: str | None = None
    try:
        decoded = msgspec.json.decode(text) if text else None
    except (msgspec.DecodeError, RecursionError):  # nesting past msgspec's limit
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        error = decoded["error"]
    return HandshakeRejectedError(status_code, text, error=error)


async def handshake(
    stream: trio.abc.Stream,
    *,
    host: str,
    resource: str,
    extra_headers: list[tuple[bytes, bytes]],
    max_message_bytes: int,
    close_timeout_s: float,
) -> WsprotoTransport:
    """Send the upgrade request on ``stream`` and read the answer.

    Returns the open transport on a valid ``101``; raises :class:`HandshakeRejectedError`
    for any other status (with the body, read until its end, the connection's end, or
    :data:`MAX_REJECTION_BODY_BYTES`), :class:`TransportError` when the peer hangs up or
    answers something that is not a valid upgrade. The caller has checked the request's
    parts (:func:`saynad.protocol.upgrade.check_request`, as
    :func:`~saynad.client.transport.connect_websocket` does before it connects), bounds
    the time and closes ``stream`` on failure.

    The request and a ``101`` answer are written and checked by
    :mod:`saynad.protocol.upgrade`; a refusal's status and body are read by wsproto's
    HTTP/1.1 parser (h11).
    """
    key = upgrade.new_key()
    try:
        await stream.send_all(upgrade.checked_request(host, resource, extra_headers, key))
    except trio.BrokenResourceError as exc:
        raise TransportError(f"connection broken during the WebSocket handshake: {exc}") from exc
    head = bytearray()
    while True:
        data = await _handshake_read(stream)
        if not data:
            raise TransportError("the server closed the connection during the WebSocket handshake")
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end >= 0:
            break
        if len(head) > upgrade.MAX_ANSWER_HEAD_BYTES:
            raise TransportError(
                "invalid WebSocket handshake answer: no end of its head "
                f"within {upgrade.MAX_ANSWER_HEAD_BYTES} bytes"
            )
    try:
        accepted = upgrade.check_answer(bytes(head[:end]), key)
    except upgrade.UpgradeError as exc:
        raise TransportError(f"invalid WebSocket handshake answer: {exc}") from None
    if not accepted:
        await _refused(stream, host, resource, extra_headers, bytes(head))
    # What follows the head of a 101 answer is WebSocket frames, for the transport's
    # own parser (see WsprotoTransport._parse).
    transport = WsprotoTransport(
        stream,
        max_message_bytes=max_message_bytes,
        close_timeout_s=close_timeout_s,
        received=bytes(head[end + 4 :]),
    )
    # Frames that came in the same read as the 101 answer.
    await transport._parse(b"")
    return transport


async def _handshake_read(stream: trio.abc.Stream) -> bytes | bytearray:
    try:
        return await stream.receive_some(RECEIVE_BYTES)
    except trio.BrokenResourceError as exc:
        raise TransportError(f"connection broken during the WebSocket handshake: {exc}") from exc


async def _refused(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    extra_headers: list[tuple[bytes, bytes]],
    received: bytes,
) -> NoReturn:
    """Read an answer that is not a ``101`` (``received`` so far) with h11 and raise:
    :class:`HandshakeRejectedError` for an HTTP refusal, :class:`TransportError` for
    anything that is not HTTP."""
    parser = H11Handshake(ConnectionType.CLIENT)
    # Puts the parser in the state of a sent request (the bytes already went out).
    parser.send(Request(host=host, target=resource, extra_headers=extra_headers))
    rejection: RejectConnection | None = None
    body = bytearray()
    data: bytes | bytearray = received
    while True:
        try:
            parser.receive_data(bytes(data) if data else None)
            events = list(parser.events())
        except RemoteProtocolError as exc:
            raise TransportError(f"invalid WebSocket handshake answer: {exc}") from exc
        for event in events:
            if isinstance(event, RejectConnection):
                rejection = event
                if not event.has_body:
                    raise rejection_error(event.status_code, b"")
            elif isinstance(event, RejectData):
                assert rejection is not None
                room = MAX_REJECTION_BODY_BYTES - len(body)
                body += event.data[:room]
                if event.body_finished or room <= len(event.data):
                    raise rejection_error(rejection.status_code, bytes(body))
            else:  # a 101 is never handed here
                raise TransportError("invalid WebSocket handshake answer")
        if not data:
            if rejection is None:
                raise TransportError(
                    "the server closed the connection during the WebSocket handshake"
                )
            raise rejection_error(rejection.status_code, bytes(body))
        data = await _handshake_read(stream)  # an empty read (EOF) is handled above

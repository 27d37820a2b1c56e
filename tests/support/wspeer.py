"""A scripted WebSocket peer: the server end of one connection, driven by a test.

What the client sends is read through wsproto (the opening handshake, text and binary
messages, Close); what the peer sends (:meth:`~ScriptedPeer.send`) is either a wsproto
event or raw bytes, made with saynad's frame codec (:func:`encode_frame`,
:meth:`~ScriptedPeer.send_text`, :meth:`~ScriptedPeer.close`),
so it can send what no well-behaved server would: invalid UTF-8, reserved opcodes or
RSV bits, masked server frames, a Close without a code, oversized frames.

The peer works on any trio stream: :func:`memory_peer` gives a client stream and a
peer on a memory stream pair (no sockets, fit for the autojump clock);
:func:`ws_server` serves a script over TCP on ``127.0.0.1:0`` and yields its URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Event, Request, TextMessage

from saynad.protocol.framing import CLOSE, FIN, TEXT, close_payload, masked_frame, unmasked_frame

__all__ = ["Script", "ScriptedPeer", "encode_frame", "memory_peer", "ws_server"]


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """One frame as RFC 6455 §5.2 lays it out; ``mask`` masks it (servers must not)."""
    first = (FIN if fin else 0) | (rsv << 4) | opcode
    if mask is None:
        return unmasked_frame(first, payload)
    return masked_frame(first, payload, mask)


class ScriptedPeer:
    """The server side of one WebSocket connection over ``stream``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.pending: list[Event] = []
        self._eof = False

    async def next_event(self) -> Event:
        """The next thing the client did, as a wsproto event. The client's hang-up is a
        ``CloseConnection`` (code 1006) first, then ``trio.BrokenResourceError``."""
        while not self.pending:
            data = await self.stream.receive_some(65536)
            if not data:
                if self._eof:
                    raise trio.BrokenResourceError("the client went away")
                self._eof = True
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    async def accept(self) -> Request:
        """Wait for the upgrade request and accept it."""
        while True:
            event = await self.next_event()
            if isinstance(event, Request):
                await self.send(AcceptConnection())
                return event

    async def receive_text(self) -> str:
        """The next text message (whatever else arrives first is dropped)."""
        while True:
            event = await self.next_event()
            if isinstance(event, TextMessage):
                return event.data

    async def message(self) -> str | bytes:
        """The next event, which must be a whole text or binary message."""
        event = await self.next_event()
        assert isinstance(event, TextMessage | BytesMessage), event
        assert event.message_finished
        return event.data if isinstance(event.data, str) else bytes(event.data)

    async def send(self, what: bytes | Event) -> None:
        """Raw bytes, as they are, or a wsproto event (which updates wsproto's state)."""
        await self.stream.send_all(what if isinstance(what, bytes) else self.ws.send(what))

    async def send_text(self, text: str) -> None:
        await self.send(encode_frame(TEXT, text.encode()))

    async def close(self, code: int | None = 1000, reason: str = "") -> None:
        """A Close frame with ``code`` and ``reason`` (``None``: a Close without code)."""
        await self.send(encode_frame(CLOSE, close_payload(code, reason)))

    async def drain_until_closed(self) -> None:
        """Read (and drop) what the client sends until it hangs up."""
        while await self.stream.receive_some():
            pass


Script = Callable[[ScriptedPeer], Awaitable[None]]


def memory_peer() -> tuple[trio.abc.Stream, ScriptedPeer]:
    """A client stream and the peer at the other end of a memory stream pair."""
    client, server = trio.testing.memory_stream_pair()
    return client, ScriptedPeer(server)


@asynccontextmanager
async def ws_server(script: Script, *, linger_s: float = 2.0) -> AsyncIterator[str]:
    """Serve ``script`` after the handshake and the client's ``config``; yields the URL.

    The script's peer is dropped once the script returns and the client hung up (or
    after ``linger_s`` at most, so a misbehaving client cannot hold the test).
    """

    async def handler(stream: trio.SocketStream) -> None:
        peer = ScriptedPeer(stream)
        try:
            await peer.accept()
            await peer.receive_text()
            await script(peer)
            with trio.move_on_after(linger_s):
                await peer.drain_until_closed()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"
        nursery.cancel_scope.cancel()

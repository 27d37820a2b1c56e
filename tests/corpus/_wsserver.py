"""A WebSocket server on 127.0.0.1:0 that sends exactly the bytes a corpus item asks for.

The opening handshake and the client's ``config`` frame go through wsproto; after that
the server writes frames with saynad's frame codec, which encodes whatever header byte
it is given, so it can send what no well-behaved library would: invalid UTF-8 in a
text frame, reserved opcodes or RSV bits, masked server frames, frames over the
client's size limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from saynad.protocol.framing import (
    BINARY,
    CLOSE,
    CONTINUATION,
    FIN,
    TEXT,
    close_payload,
    masked_frame,
    unmasked_frame,
)
from tests.corpus._corpus import expand


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


def item_frames(item: dict[str, Any]) -> list[bytes]:
    """The wire bytes of the item's frame (several when it is fragmented)."""
    if "payload_hex" in item:
        payload = bytes.fromhex(item["payload_hex"])
    elif "size" in item:
        payload = b"a" * item["size"]
    else:
        payload = expand(item["text"], item.get("expand")).encode()
    opcode = item.get("opcode", BINARY if item.get("binary") else TEXT)
    mask = b"\x01\x02\x03\x04" if item.get("masked") else None
    count = item.get("fragments", 1)
    step = max(1, -(-len(payload) // count))
    parts = [payload[i : i + step] for i in range(0, len(payload), step)] or [b""]
    return [
        encode_frame(
            opcode if index == 0 else CONTINUATION,
            part,
            fin=item.get("fin", True) and index == len(parts) - 1,
            rsv=item.get("rsv", 0),
            mask=mask,
        )
        for index, part in enumerate(parts)
    ]


class RawPeer:
    """The server side of one connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._ws = WSConnection(ConnectionType.SERVER)

    async def _events(self) -> list[object]:
        data = await self.stream.receive_some()
        if not data:
            raise trio.BrokenResourceError("the client went away")
        self._ws.receive_data(data)
        return list(self._ws.events())

    async def accept(self) -> None:
        while True:
            for event in await self._events():
                if isinstance(event, Request):
                    await self.stream.send_all(self._ws.send(AcceptConnection()))
                    return

    async def receive_text(self) -> str:
        while True:
            for event in await self._events():
                if isinstance(event, TextMessage):
                    return event.data

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_text(self, text: str) -> None:
        await self.send(encode_frame(TEXT, text.encode()))

    async def close(self, code: int = 1000) -> None:
        await self.send(encode_frame(CLOSE, close_payload(code)))

    async def drain_until_closed(self) -> None:
        """Read (and drop) what the client sends until it hangs up."""
        while await self.stream.receive_some():
            pass


Script = Callable[[RawPeer], Awaitable[None]]


@asynccontextmanager
async def raw_ws_server(script: Script) -> AsyncIterator[str]:
    """Serve ``script`` after the handshake and the client's ``config``; yields the URL.

    The script's peer is dropped once the script returns and the client hung up (or
    after two seconds at most, so a misbehaving client cannot hold the test).
    """

    async def handler(stream: trio.SocketStream) -> None:
        peer = RawPeer(stream)
        try:
            await peer.accept()
            await peer.receive_text()
            await script(peer)
            with trio.move_on_after(2):
                await peer.drain_until_closed()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"
        nursery.cancel_scope.cancel()

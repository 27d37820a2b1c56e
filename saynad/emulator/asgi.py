"""Small typed wrappers over ASGI ``scope``/``receive``/``send`` for the emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from saynad._io.asgi import Receive, Scope, Send

__all__ = ["Receive", "Request", "Response", "Scope", "Send", "WebSocket", "json_response"]


_json = msgspec.json.Encoder()


class Request:
    """An HTTP request whose body has been read."""

    def __init__(self, scope: Scope, body: bytes) -> None:
        # WebSocket scopes carry no method; their upgrade request is always a GET.
        self.method: str = scope.get("method", "GET")
        self.path: str = scope["path"]
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        self.headers: dict[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.query: list[tuple[str, str]] = parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        self.body = body

    @classmethod
    async def read(cls, scope: Scope, receive: Receive, *, limit: int) -> Request | None:
        """Read the whole body; ``None`` when it exceeds ``limit`` bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return cls(scope, b"".join(chunks))


class Response:
    """An HTTP response to send."""

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers: dict[str, str] = {}
        if content_type is not None:
            self.headers["content-type"] = content_type
        if headers:
            self.headers.update(headers)

    async def send(self, send: Send) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(status: int, obj: Any, *, headers: dict[str, str] | None = None) -> Response:
    """A compact-JSON response, as the server writes them."""
    return Response(status, _json.encode(obj), content_type="application/json", headers=headers)


class WebSocket:
    """One accepted ASGI WebSocket. ``receive`` returns ``None`` once the peer is gone."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.closed = False
        self.close_code: int | None = None
        self.binary_sink: Callable[[bytes], bool] | None = None
        """Where a server that reads many sockets in one task may hand binary messages
        synchronously, as they are parsed, instead of returning them from
        :meth:`receive`: it returns whether it handled the message (``False``: the
        message, and everything after it, comes from :meth:`receive`). Only ever called
        while :meth:`receive` waits; ignored behind hypercorn."""

    async def accept(self) -> None:
        await self._send({"type": "websocket.accept"})

    async def reject(self, response: Response) -> None:
        """Refuse the upgrade with a plain HTTP response (the server's 401 path)."""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        await self._send(
            {"type": "websocket.http.response.start", "status": response.status, "headers": headers}
        )
        await self._send({"type": "websocket.http.response.body", "body": response.body})
        self.closed = True

    async def receive(self) -> str | bytes | None:
        while not self.closed:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    return str(text)
                return bytes(message.get("bytes") or b"")
            if kind == "websocket.disconnect":
                self.closed = True
                self.close_code = message.get("code")
                return None
        return None

    async def send_text(self, text: str) -> None:
        await self._send({"type": "websocket.send", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

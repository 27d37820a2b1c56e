"""Small HTTP servers for the agent and sink tests: raw trio on 127.0.0.1, port 0.

A handler gets the parsed :class:`Request` and a :class:`Responder`; it may stream its
answer slowly. While it runs, a watcher reads the socket: the client closing the
connection sets ``request.disconnected`` and cancels the handler — how the barge-in
tests see that an agent request was abandoned. Every answer is ``Connection: close``
without a length, so the body ends when the server closes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

_REASONS = {200: "OK", 204: "No Content", 404: "Not Found", 500: "Internal Server Error"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    disconnected: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)

    def json(self) -> Any:
        return json.loads(self.body)


class Responder:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream

    async def start(self, status: int = 200, content_type: str = "text/plain") -> None:
        reason = _REASONS.get(status, "Status")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
            "connection: close\r\n\r\n"
        )
        await self._stream.send_all(head.encode())

    async def send(self, data: str | bytes) -> None:
        await self._stream.send_all(data.encode() if isinstance(data, str) else data)

    async def reply(self, status: int, body: str | bytes, content_type: str = "text/plain") -> None:
        await self.start(status, content_type)
        await self.send(body)


Handler = Callable[[Request, Responder], Awaitable[None]]


@dataclass
class HttpServer:
    url: str
    requests: list[Request] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    async def wait_requests(self, n: int) -> list[Request]:
        while len(self.requests) < n:
            self.arrived = trio.Event()
            await self.arrived.wait()
        return self.requests


async def _read_request(stream: trio.SocketStream) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        body += chunk
    return Request(method, path, headers, body)


@asynccontextmanager
async def serve_http(handler: Handler) -> AsyncIterator[HttpServer]:
    """Serve ``handler`` on 127.0.0.1:<free port> for the duration of the block."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    server = HttpServer(url=f"http://127.0.0.1:{port}")

    async def connection(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                request = await _read_request(stream)
            except trio.BrokenResourceError:
                return
            if request is None:
                return
            server.requests.append(request)
            server.arrived.set()
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    try:
                        while await stream.receive_some(65536):
                            pass
                    except trio.BrokenResourceError:
                        pass
                    request.disconnected.set()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                try:
                    await handler(request, Responder(stream))
                except trio.BrokenResourceError:
                    request.disconnected.set()
                request.finished.set()
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, connection, listeners)
        yield server
        nursery.cancel_scope.cancel()


def sse(content: str) -> str:
    """One chat-completions stream event carrying ``content``."""
    chunk = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n"


SSE_DONE = "data: [DONE]\n\n"

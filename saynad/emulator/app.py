"""The emulator's ASGI application, served by hypercorn's trio worker.

One port carries REST and the ``/ws`` WebSocket, as on the real server. Authentication
follows the server exactly (token from ``Authorization: Bearer …``, else the first
non-blank ``api_key`` query parameter; 401 JSON bodies with the server's codes), and
runs on the WebSocket upgrade too.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from saynad._io.asgi import serve_lifespan
from saynad.emulator import rest, ws
from saynad.emulator.asgi import Receive, Request, Response, Scope, Send, WebSocket, json_response
from saynad.emulator.audio import prepare_tone
from saynad.emulator.context import Context
from saynad.emulator.options import EmulatorOptions
from saynad.emulator.server import serve_front
from saynad.emulator.state import EmulatorState

__all__ = ["Emulator", "EmulatorApp", "open_emulator", "serve_emulator"]

# The server's framework limit for JSON bodies (§6.1).
MAX_BODY_BYTES = 2 * 1024 * 1024

_MISSING = json_response(
    401,
    {
        "error": "missing_auth_header",
        "message": "Missing authentication token (Authorization header or api_key query parameter)",
    },
)
_INVALID_HEADER = json_response(
    401,
    {
        "error": "invalid_auth_header",
        "message": "Invalid Authorization header format (expected 'Bearer {token}') "
        "and missing api_key query parameter",
    },
)
_UNAUTHORIZED = json_response(
    401, {"error": "unauthorized", "message": "Unauthorized: Invalid API secret"}
)


class EmulatorApp:
    """ASGI entry point: authentication, then REST or WebSocket."""

    def __init__(self, options: EmulatorOptions, state: EmulatorState | None = None) -> None:
        self.options = options
        self.state = state if state is not None else EmulatorState()
        prepare_tone(ws.DEFAULT_TTS_SAMPLE_RATE)

    def authenticate(self, headers: dict[str, str], query: list[tuple[str, str]]) -> str | Response:
        """Return the tenant id (``""`` when auth is off) or the 401 response to send."""
        if not self.options.auth_required:
            return ""
        token: str | None = None
        header = headers.get("authorization")
        if header is not None and header.isascii() and header.startswith("Bearer "):
            candidate = header[len("Bearer ") :]
            if candidate:
                token = candidate
        if token is None:
            token = next((v.strip() for k, v in query if k == "api_key" and v.strip()), None)
        if token is None:
            return _INVALID_HEADER if header is not None else _MISSING
        for tenant in self.options.tenants:
            if hmac.compare_digest(token.encode(), tenant.secret.encode()):
                return tenant.id
        return _UNAUTHORIZED

    def context(self, tenant: str) -> Context:
        return Context(self.state, self.options, tenant.strip() or None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await serve_lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = await Request.read(scope, receive, limit=MAX_BODY_BYTES)
        if request is None:
            await Response(413, b"Failed to buffer the request body: length limit exceeded").send(
                send
            )
            return
        public = (request.method, request.path) in {("GET", "/"), ("POST", "/livekit/webhook")}
        tenant = "" if public else self.authenticate(request.headers, request.query)
        if isinstance(tenant, Response):
            await tenant.send(send)
            return
        response = await rest.handle(request, self.context(tenant))
        await response.send(send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.websocket(WebSocket(scope, receive, send))

    async def websocket(self, socket: WebSocket) -> None:
        """Serve one WebSocket upgrade (from hypercorn's ASGI calls or the direct
        server): authenticate, accept, run the session."""
        scope = socket.scope
        if scope["path"] != "/ws":
            await socket.reject(Response(404))
            return
        request = Request(scope, b"")
        tenant = self.authenticate(request.headers, request.query)
        if isinstance(tenant, Response):
            await socket.reject(tenant)
            return
        refuse = self.options.chaos.refuse_handshake
        if refuse is not None:
            await socket.reject(json_response(refuse, {"error": "chaos: handshake refused"}))
            return
        await socket.accept()
        self.state.connections_total += 1
        self.state.connections_open += 1
        try:
            await ws.serve_session(socket, self.context(tenant))
        finally:
            self.state.connections_open -= 1


@dataclass
class Emulator:
    """A running emulator: ``url`` is ``http://127.0.0.1:PORT``."""

    url: str
    state: EmulatorState
    options: EmulatorOptions

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"


def _hypercorn_config(host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    config.websocket_max_message_size = 64 * 1024 * 1024
    config.keep_alive_timeout = 75
    # Benchmarks and fleets connect thousands of sessions at once; the default (100)
    # would turn a burst into SYN retries.
    config.backlog = 4096
    return config


async def serve_emulator(
    options: EmulatorOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state: EmulatorState | None = None,
    server: Literal["direct", "hypercorn"] = "direct",
    task_status: trio.TaskStatus[Emulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the emulator until cancelled; ``task_status.started`` gets the bound URL.

    ``server="direct"`` (the default) serves WebSocket sessions directly over wsproto
    and relays REST to hypercorn on an internal loopback port (see
    :mod:`saynad.emulator.server`: several times less CPU per audio frame);
    ``"hypercorn"`` lets hypercorn serve everything.
    """
    chosen = options or EmulatorOptions()
    app = EmulatorApp(chosen, state)

    def report(bound_port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        task_status.started(
            Emulator(url=f"http://{shown}:{bound_port}", state=app.state, options=chosen)
        )

    if server == "hypercorn":

        class _ReportURL:
            """Turns hypercorn's ``started(binds)`` into ours: an :class:`Emulator`."""

            def started(self, binds: list[str]) -> None:
                task_status.started(Emulator(url=binds[0], state=app.state, options=chosen))

        await serve(app, _hypercorn_config(host, port), task_status=_ReportURL())  # type: ignore[arg-type]
        return

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(_serve_hypercorn, app, _hypercorn_config("127.0.0.1", 0))
        )
        internal_port = int(binds[0].rsplit(":", 1)[1])
        bound = await nursery.start(
            partial(
                serve_front,
                app.websocket,
                internal_port,
                host=host,
                port=port,
                read_interval_s=chosen.read_interval_ms / 1000,
            )
        )
        report(bound)


async def _serve_hypercorn(
    app: EmulatorApp,
    config: HypercornConfig,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]


@asynccontextmanager
async def open_emulator(
    options: EmulatorOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    state: EmulatorState | None = None,
) -> AsyncIterator[Emulator]:
    """Run an emulator on loopback for the duration of the ``async with`` block
    (``state``: its world, e.g. one built with a smaller ``wire_log_size``)."""
    async with trio.open_nursery() as nursery:
        emulator: Emulator = await nursery.start(
            lambda task_status: serve_emulator(
                options, host=host, port=port, state=state, task_status=task_status
            )
        )
        try:
            yield emulator
        finally:
            nursery.cancel_scope.cancel()

"""The emulator's WebSocket session (§2–§4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from saynad.emulator.asgi import WebSocket

if TYPE_CHECKING:
    from saynad.emulator.app import Context


async def serve_session(socket: WebSocket, ctx: Context) -> None:
    while (frame := await socket.receive()) is not None:
        if isinstance(frame, str):
            ctx.state.wire_log.append(frame)

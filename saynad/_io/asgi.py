"""The ASGI types and the lifespan protocol both HTTP servers of saynad speak (private).

The daemon's own server (:mod:`saynad.http`) and the emulator's
(:mod:`saynad.emulator.app`) are plain ASGI applications under hypercorn; neither needs
anything at start-up or shutdown, so both answer the lifespan messages the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Message", "Receive", "Scope", "Send", "serve_lifespan"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge ``lifespan.startup`` and ``lifespan.shutdown``; return after the
    shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

"""REST handlers of the emulator (§6)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from saynad.emulator.asgi import Request, Response, json_response

if TYPE_CHECKING:
    from saynad.emulator.app import Context


async def handle(request: Request, ctx: Context) -> Response:
    if request.method == "GET" and request.path == "/":
        return json_response(200, {"status": "OK"})
    return Response(404)

"""saynad's HTTP clients (``saynad._io.httpclient.async_client``): request bodies sent
whole, and a send cut short leaves nothing for the garbage collector to report."""

from __future__ import annotations

import ast
import gc
import json
import warnings
from pathlib import Path

import httpx
import trio
import trio.testing

from saynad._io.httpclient import async_client
from tests.actors.behaviours.servers import Request, Responder, serve_http

SAYNAD = Path(__file__).resolve().parents[2] / "saynad"


async def test_a_body_cut_short_leaves_no_unfinished_generator() -> None:
    # A peer that accepts and never reads: the body fills the kernel's buffers and the
    # send blocks, until a deadline cancels it (as a session's teardown deadline does).
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list[trio.SocketStream] = []

    async def accept_and_never_read() -> None:
        stream = await listeners[0].accept()
        assert isinstance(stream, trio.SocketStream)
        accepted.append(stream)

    async def post(client: httpx.AsyncClient) -> None:
        await client.post(f"http://127.0.0.1:{port}/t", content=b"x" * (64 << 20))

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with (
                async_client(timeout=httpx.Timeout(None)) as client,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(accept_and_never_read)
                nursery.start_soon(post, client)
                await trio.testing.wait_all_tasks_blocked()
                assert accepted  # the send is under way, blocked on the full socket
                nursery.cancel_scope.cancel()
            gc.collect()
            await trio.testing.wait_all_tasks_blocked()  # any finaliser it scheduled ran
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    finally:
        for stream in accepted:
            await stream.aclose()
        for listener in listeners:
            await listener.aclose()


async def test_bodies_arrive_whole_with_their_length() -> None:
    received: list[tuple[str | None, bytes]] = []

    async def collector(request: Request, respond: Responder) -> None:
        received.append((request.headers.get("content-length"), request.body))
        await respond.reply(200, "ok")

    async with serve_http(collector) as server, async_client(timeout=httpx.Timeout(5)) as client:
        assert (await client.post(f"{server.url}/a", content=b"hello")).status_code == 200
        assert (await client.post(f"{server.url}/b", json={"n": 1})).status_code == 200
        async with client.stream("POST", f"{server.url}/c", content=b"") as response:
            assert response.status_code == 200
        # A stream handed to the request whole (never read into it) is sent as it is.
        whole = httpx.Request(
            "POST",
            f"{server.url}/d",
            stream=httpx.ByteStream(b"as given"),
            headers={"host": server.url.removeprefix("http://"), "content-length": "8"},
        )
        assert (await client.send(whole)).status_code == 200
    assert [length for length, _ in received] == [str(len(body)) for _, body in received]
    bodies = [received[0][1], json.loads(received[1][1]), received[2][1], received[3][1]]
    assert bodies == [b"hello", {"n": 1}, b"", b"as given"]


def test_saynad_makes_every_async_client_through_async_client() -> None:
    # A client made another way would bring the unfinished generators back.
    makers = []
    for path in SAYNAD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and "AsyncClient" in (
                getattr(node.func, "attr", None),
                getattr(node.func, "id", None),
            ):
                makers.append(str(path.relative_to(SAYNAD)))
    assert makers == ["_io/httpclient.py"]

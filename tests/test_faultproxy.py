"""The fault proxy against a real echo server on loopback."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable

import pytest
import trio

from saynad.client.session import open_session
from saynad.emulator import Emulator
from saynad.errors import ConnectionClosedError
from tests.faultproxy import Fault, FaultProxy
from tests.support.samples import STT_CONFIG, TTS_CONFIG
from tests.timing import HANG_S


class Echo:
    def __init__(self) -> None:
        self.received = 0
        self.port = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            async for data in stream:
                self.received += len(data)
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    server = Echo()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, server.handle, 0)
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    fp = FaultProxy("127.0.0.1", echo.port, latency_s=0.3, slice_bytes=3, rng=random.Random(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(fp.run)
        yield fp
        nursery.cancel_scope.cancel()


OPEN: list[trio.SocketStream] = []


@pytest.fixture(autouse=True)
async def close_streams() -> AsyncIterator[None]:
    yield
    while OPEN:
        await OPEN.pop().aclose()


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for state that other tasks change as real socket I/O happens."""
    with trio.fail_after(HANG_S):
        while not predicate():  # noqa: ASYNC110 - no event exists for kernel-side progress
            await trio.sleep(0.001)


async def connect(proxy: FaultProxy) -> trio.SocketStream:
    expected = proxy.accepted + 1
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    OPEN.append(stream)
    # Wait until the proxy registered it, so faults can target it.
    await until(lambda: proxy.accepted >= expected)
    return stream


async def roundtrip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        chunk = await stream.receive_some()
        if not chunk:
            break
        got += chunk
    return got


async def test_forwards_both_ways(proxy: FaultProxy) -> None:
    stream = await connect(proxy)
    with trio.fail_after(HANG_S):
        assert await roundtrip(stream, b"hello") == b"hello"
    conn = next(iter(proxy.connections.values()))
    assert (conn.bytes_up, conn.bytes_down) == (5, 5)


async def test_reset_aborts_the_client_with_a_rst(proxy: FaultProxy) -> None:
    stream = await connect(proxy)
    assert len(proxy.apply(Fault.RESET)) == 1
    with trio.fail_after(HANG_S):
        await trio.sleep(0.05)  # let the RST arrive
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()


async def test_stall_holds_bytes_until_healed(proxy: FaultProxy, echo: Echo) -> None:
    stream = await connect(proxy)
    proxy.apply(Fault.STALL)
    await stream.send_all(b"held")
    with trio.move_on_after(0.2) as waited:
        await stream.receive_some()
    assert waited.cancelled_caught
    assert echo.received == 0
    proxy.heal()
    with trio.fail_after(HANG_S):
        assert await stream.receive_some() == b"held"


async def test_latency_delays_each_chunk(proxy: FaultProxy) -> None:
    stream = await connect(proxy)
    proxy.apply(Fault.LATENCY)
    started = trio.current_time()
    with trio.fail_after(HANG_S):
        assert await roundtrip(stream, b"slow") == b"slow"
    assert trio.current_time() - started >= 0.6  # both directions


async def test_slice_keeps_the_bytes_intact(proxy: FaultProxy) -> None:
    stream = await connect(proxy)
    proxy.apply(Fault.SLICE)
    with trio.fail_after(HANG_S):
        assert await roundtrip(stream, bytes(range(200))) == bytes(range(200))


async def test_corrupt_flips_server_to_client_bytes(proxy: FaultProxy, echo: Echo) -> None:
    stream = await connect(proxy)
    proxy.apply(Fault.CORRUPT)
    with trio.fail_after(HANG_S):
        assert await roundtrip(stream, b"\x00\x0f") == b"\xff\xf0"
    assert echo.received == 2  # the upward direction is untouched


async def test_half_close_ends_only_the_downward_direction(proxy: FaultProxy, echo: Echo) -> None:
    stream = await connect(proxy)
    proxy.apply(Fault.HALF_CLOSE)
    await stream.send_all(b"ping")
    with trio.fail_after(HANG_S):
        assert await stream.receive_some() == b""
    await stream.send_all(b"more")  # the socket is still open upward
    await until(lambda: echo.received >= 8)


async def test_fraction_picks_that_share_of_live_connections(proxy: FaultProxy) -> None:
    for _ in range(10):
        await connect(proxy)
    chosen = proxy.apply(Fault.STALL, fraction=0.3)
    assert len(chosen) == 3
    assert sum(c.fault is Fault.STALL for c in proxy.connections.values()) == 3


async def test_dead_upstream_resets_clients() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    fp = FaultProxy("127.0.0.1", dead)
    async with trio.open_nursery() as nursery:
        await nursery.start(fp.run)
        stream = await trio.open_tcp_stream("127.0.0.1", fp.port)
        OPEN.append(stream)
        await until(lambda: fp.upstream_failures == 1)
        with trio.fail_after(HANG_S), pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        nursery.cancel_scope.cancel()


async def test_a_reset_sayna_session_raises_1006(emulator: Emulator) -> None:
    port = int(emulator.url.rsplit(":", 1)[1])
    fp = FaultProxy("127.0.0.1", port)
    async with trio.open_nursery() as nursery:
        await nursery.start(fp.run)
        async with open_session(
            f"http://127.0.0.1:{fp.port}", stt=STT_CONFIG, tts=TTS_CONFIG
        ) as session:
            fp.apply(Fault.RESET)
            with trio.fail_after(HANG_S), pytest.raises(ConnectionClosedError) as info:
                async for _ in session.events():
                    pass
            assert info.value.code == 1006
        nursery.cancel_scope.cancel()

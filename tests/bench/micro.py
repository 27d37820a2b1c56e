"""Per-operation costs behind the session benchmark: ``python -m tests.bench.micro``.

Each figure is CPU time per operation in one process pinned to core 0 (best of 3):

- ``paced sleeps``: 1,000 tasks, each sleeping until 100 deadlines 20 ms apart, with
  ``trio.sleep_until``, ``saynad.client.pacing.sleep_until`` and ``asyncio.sleep``;
- ``send one 640-byte audio frame``: a client sending 20,000 binary frames to a server
  process (core 1) that only drains the socket, through saynad's default transport,
  saynad over trio-websocket, and aiohttp (the official SDK's WebSocket);
- ``stream 640-byte audio frames from the pacing timer``: the same 20,000 frames through
  ``stream_bytes``, all overdue, so the pacing timer writes them (16 per timer pass,
  in one write);
- ``receive one 640-byte audio frame``: a server process (core 1) writes 20,000 binary
  frames back to back, the default transport receives them;
- ``take one 640-byte frame out of socket reads``: the frame parsers alone, the
  transport's read path (server frames, from a stream that hands out the same bytes at
  once) and the emulator's parser (masked client frames), on reads of one frame (most
  of a session's) and of 100 (about 64 KiB);
- ``scheduler round trip``: ``trio.lowlevel.checkpoint()`` vs ``asyncio.sleep(0)``;
- ``wake up an idle process``: a callback re-armed 1 ms ahead 2,000 times, on saynad's
  pacing timer, on asyncio's loop, and ``time.sleep(0.001)`` for the kernel's own part;
- ``opening handshake``: writing the upgrade request and accepting a ``101``, no I/O,
  with :mod:`saynad.protocol.upgrade` and with wsproto's ``H11Handshake``;
- ``mask 640 bytes``: saynad's frame encoder (``saynad.protocol.framing``, websockets' C
  masking), its pure-Python fallback (big-integer XOR) and wsproto's table method.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import timeit
from collections.abc import Awaitable, Callable
from typing import Any, Literal

CHUNK = b"\x01\x00" * 320
FRAMES = 20_000
TASKS, SLEEPS = 1000, 100

# A WebSocket "server" that accepts one upgrade and then only drains the socket.
DRAIN_SERVER = r"""
import base64, hashlib, socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
data = b""
while b"\r\n\r\n" not in data:
    data += c.recv(65536)
key = [l.split(b":", 1)[1].strip() for l in data.split(b"\r\n")
       if l.lower().startswith(b"sec-websocket-key")][0]
accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
while c.recv(1 << 20):
    pass
"""

# The same, but it writes FRAMES binary frames of CHUNK after the upgrade, then drains.
FLOOD_SERVER = DRAIN_SERVER.replace(
    "while c.recv(1 << 20):",
    "import sys\nframe = bytes((0x82, 126)) + (640).to_bytes(2, 'big') + b'\\x01\\x00' * 320\n"
    "c.sendall(frame * int(sys.argv[1]))\nwhile c.recv(1 << 20):",
)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best(measure: Callable[[], float], repeat: int = 3) -> float:
    return min(measure() for _ in range(repeat))


def _drain_server(script: str = DRAIN_SERVER) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(FRAMES)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(proc.pid, {1})
    return proc, port


def paced_sleeps(kind: str) -> float:
    """CPU per sleep, µs."""
    import trio

    from saynad.client import pacing

    async def trio_main(sleep_until: Callable[[float], Any]) -> None:
        async def one() -> None:
            start = trio.current_time()
            for i in range(SLEEPS):
                await sleep_until(start + i * 0.02)

        async with trio.open_nursery() as nursery:
            for _ in range(TASKS):
                nursery.start_soon(one)

    async def asyncio_main() -> None:
        loop = asyncio.get_running_loop()

        async def one() -> None:
            start = loop.time()
            for i in range(SLEEPS):
                delay = start + i * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

        await asyncio.gather(*(one() for _ in range(TASKS)))

    before = _cpu()
    if kind == "trio.sleep_until":
        trio.run(trio_main, trio.sleep_until)
    elif kind == "saynad pacing.sleep_until":
        trio.run(trio_main, pacing.sleep_until)
    else:
        asyncio.run(asyncio_main())
    return (_cpu() - before) / (TASKS * SLEEPS) * 1e6


def _over_transport(
    work: Callable[[Any], Awaitable[None]],
    *,
    script: str = DRAIN_SERVER,
    implementation: Literal["wsproto", "trio-websocket"] = "wsproto",
) -> float:
    """CPU per frame of ``work(transport)``, over saynad's transport to a server process
    running ``script``, µs."""
    import trio

    from saynad.client.transport import connect_websocket

    proc, port = _drain_server(script)

    async def main() -> float:
        async with connect_websocket(
            f"ws://127.0.0.1:{port}/ws",
            connect_timeout_s=5,
            close_timeout_s=0.01,
            implementation=implementation,
        ) as transport:
            before = _cpu()
            await work(transport)
            return _cpu() - before

    try:
        spent = trio.run(main)
    finally:
        proc.kill()
        proc.wait()
    return spent / FRAMES * 1e6


def send_frames(kind: str) -> float:
    """CPU per frame sent, µs."""
    if kind != "aiohttp (sdk)":

        async def send(transport: Any) -> None:
            for _ in range(FRAMES):
                await transport.send_bytes(CHUNK)

        return _over_transport(
            send, implementation="trio-websocket" if "trio-websocket" in kind else "wsproto"
        )

    import aiohttp

    proc, port = _drain_server()

    async def aio() -> float:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/ws")
            before = _cpu()
            for _ in range(FRAMES):
                await ws.send_bytes(CHUNK)
            return _cpu() - before

    try:
        spent = asyncio.run(aio())
    finally:
        proc.kill()
        proc.wait()
    return spent / FRAMES * 1e6


def stream_frames(kind: str) -> float:
    """CPU per frame written by the pacing timer, µs."""
    import trio

    async def stream(transport: Any) -> None:
        await transport.stream_bytes([CHUNK] * FRAMES, 0.0, start=trio.current_time())

    return _over_transport(stream)


def receive_frames(kind: str) -> float:
    """CPU per frame received, µs."""

    async def receive(transport: Any) -> None:
        for _ in range(FRAMES):
            await transport.receive()

    return _over_transport(receive, script=FLOOD_SERVER)


READS = 20_000


def read_frames(kind: str) -> float:
    """CPU per frame taken out of socket reads, µs: ``kind`` says whose parser and how
    many 640-byte frames each read holds (a session's reads mostly hold one)."""
    per_read = 1 if kind.endswith("1 per read") else 100
    if kind.startswith("emulator"):
        from saynad.protocol.framing import ClientFrameParser, masked_frame

        data = masked_frame(0x82, CHUNK, os.urandom(4)) * per_read
        parser = ClientFrameParser(64 * 1024 * 1024)
        before = _cpu()
        for _ in range(READS):
            parser.feed(data)
        return (_cpu() - before) / (READS * per_read) * 1e6

    import trio
    from wsproto.connection import Connection, ConnectionType

    from saynad.client._wsproto import WsprotoTransport
    from saynad.protocol.framing import unmasked_frame

    class Reads(trio.abc.Stream):
        """A stream whose every read returns the same bytes at once."""

        def __init__(self, data: bytes) -> None:
            self.data = data

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            return self.data

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            pass

        async def wait_send_all_might_not_block(self) -> None:
            pass

        async def aclose(self) -> None:
            pass

    data = unmasked_frame(0x82, CHUNK) * per_read

    async def read() -> float:
        transport = WsprotoTransport(
            Reads(data),
            Connection(ConnectionType.CLIENT),
            max_message_bytes=16 * 1024 * 1024,
            close_timeout_s=1.0,
        )
        messages = transport._messages
        before = _cpu()
        for _ in range(READS):
            await transport._read()
            messages.clear()
        return _cpu() - before

    return trio.run(read) / (READS * per_read) * 1e6


def round_trip(kind: str) -> float:
    """CPU per scheduler round trip, µs."""
    n = 50_000
    if kind == "trio checkpoint()":
        import trio

        async def loop() -> float:
            before = _cpu()
            for _ in range(n):
                await trio.lowlevel.checkpoint()
            return _cpu() - before

        return trio.run(loop) / n * 1e6

    async def aloop() -> float:
        before = _cpu()
        for _ in range(n):
            await asyncio.sleep(0)
        return _cpu() - before

    return asyncio.run(aloop()) / n * 1e6


WAKES = 2_000


def wake_up(kind: str) -> float:
    """CPU per wake-up of an otherwise idle process, one every millisecond, µs: what a
    timer pass costs when nothing else is due (the floor of small fleets)."""
    import time

    if kind.startswith("time.sleep"):
        before = _cpu()
        for _ in range(WAKES):
            time.sleep(0.001)
        return (_cpu() - before) / WAKES * 1e6
    if kind.startswith("asyncio"):

        async def amain() -> float:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            count = 0
            t0 = loop.time() + 0.01

            def tick() -> None:
                nonlocal count
                count += 1
                if count < WAKES:
                    loop.call_at(t0 + count * 0.001, tick)
                else:
                    done.set_result(None)

            loop.call_at(t0, tick)
            before = _cpu()
            await done
            return _cpu() - before

        return asyncio.run(amain()) / WAKES * 1e6
    import trio

    from saynad.client import pacing

    async def tmain() -> float:
        done = trio.Event()
        count = 0
        t0 = trio.current_time() + 0.01
        entry: list[Any] | None = None

        def tick() -> None:
            nonlocal count, entry
            count += 1
            if count < WAKES:
                entry = pacing.call_at(t0 + count * 0.001, tick, entry)
            else:
                done.set()

        entry = pacing.call_at(t0, tick)
        before = _cpu()
        await done.wait()
        return _cpu() - before

    return trio.run(tmain) / WAKES * 1e6


def upgrade(kind: str) -> float:
    """CPU to write an upgrade request and accept its 101 answer (no I/O), µs."""
    from wsproto import ConnectionType
    from wsproto.events import AcceptConnection, Request
    from wsproto.handshake import H11Handshake

    from saynad.protocol import upgrade as handshake

    headers = [(b"Authorization", b"Bearer k")]

    def answer(key: bytes) -> bytes:
        return (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade"
            b"\r\nSec-WebSocket-Accept: " + handshake.accept_value(key)
        )

    def ours() -> None:
        key = handshake.new_key()
        handshake.upgrade_request("127.0.0.1:8000", "/ws", headers, key)
        assert handshake.check_answer(answer(key), key)

    def wsprotos() -> None:
        shake = H11Handshake(ConnectionType.CLIENT)
        request = shake.send(Request(host="127.0.0.1:8000", target="/ws", extra_headers=headers))
        key = request.split(b"Sec-WebSocket-Key: ", 1)[1].split(b"\r\n", 1)[0]
        shake.receive_data(answer(key) + b"\r\n\r\n")
        assert isinstance(next(iter(shake.events())), AcceptConnection)

    run = ours if kind.startswith("saynad") else wsprotos
    # Both build the accept value of the answer the same way: the difference is theirs.
    return min(timeit.repeat(run, number=2_000, repeat=3)) / 2_000 * 1e6


def mask(kind: str) -> float:
    """Time to mask one 640-byte payload, µs."""
    from wsproto.frame_protocol import XorMaskerSimple

    from saynad.protocol.framing import mask_in_python, masked_frame

    key = os.urandom(4)
    if kind.startswith("saynad masked_frame"):
        run = lambda: masked_frame(0x82, CHUNK, key)  # noqa: E731  (whole frame)
    elif kind.startswith("saynad"):
        run = lambda: mask_in_python(CHUNK, key)  # noqa: E731
    else:
        run = lambda: XorMaskerSimple(bytearray(key)).process(bytearray(CHUNK))  # noqa: E731
    return min(timeit.repeat(run, number=20_000, repeat=3)) / 20_000 * 1e6


def run() -> list[dict[str, Any]]:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    rows = []
    for group, fn, kinds in (
        (
            f"paced sleep ({TASKS} tasks × {SLEEPS} sleeps, 20 ms apart)",
            paced_sleeps,
            ("trio.sleep_until", "saynad pacing.sleep_until", "asyncio.sleep"),
        ),
        (
            "send one 640-byte audio frame (loopback, server drains)",
            send_frames,
            ("saynad transport", "saynad over trio-websocket", "aiohttp (sdk)"),
        ),
        (
            "stream 640-byte audio frames from the pacing timer (loopback, server drains)",
            stream_frames,
            ("saynad transport",),
        ),
        (
            "receive one 640-byte audio frame (loopback, server floods)",
            receive_frames,
            ("saynad transport",),
        ),
        (
            "take one 640-byte frame out of socket reads (parsing only)",
            read_frames,
            (
                "client transport, 1 per read",
                "client transport, 100 per read",
                "emulator, 1 per read",
                "emulator, 100 per read",
            ),
        ),
        ("scheduler round trip", round_trip, ("trio checkpoint()", "asyncio.sleep(0)")),
        (
            f"wake up an idle process, every 1 ms ({WAKES:,} times)",
            wake_up,
            (
                "saynad pacing timer (call_at)",
                "asyncio loop.call_at",
                "time.sleep (the kernel's part alone)",
            ),
        ),
        (
            "opening handshake: write the request, accept the 101 (no I/O)",
            upgrade,
            ("saynad.protocol.upgrade", "wsproto H11Handshake (h11)"),
        ),
        (
            "mask a 640-byte payload",
            mask,
            (
                "saynad masked_frame (whole frame, websockets' C mask)",
                "saynad pure-Python fallback (big-integer XOR)",
                "wsproto XorMaskerSimple",
            ),
        ),
    ):
        for kind in kinds:
            cost = _best(lambda fn=fn, kind=kind: fn(kind))
            rows.append({"operation": group, "how": kind, "us": cost})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| operation | how | CPU per operation (µs) |\n|---|---|---:|\n"
    return head + "".join(f"| {r['operation']} | {r['how']} | {r['us']:.2f} |\n" for r in rows)


if __name__ == "__main__":
    print(markdown(run()))

"""Inbound calls across two real shards sharing one webhook port (``SO_REUSEPORT``):
the kernel spreads the calls between them, and a full shard steps aside so that every
call goes to the shard that still has room: nothing is refused while the two together
have room."""

from __future__ import annotations

import socket
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio

from saynad._io.listener import ReusePortListener
from tests.support.daemon import daemon_in_process, wait_until
from tests.support.http import metric_value
from tests.support.processes import daemon_process, shared_port
from tests.support.samples import daemon_config, signed_call
from tests.timing import HANG_S

SMALL, LARGE = 60, 200
"""The two shards' ``max_sessions``: the fleet holds 260 calls."""


async def call(client: httpx.AsyncClient, url: str, number: int) -> int:
    headers, body = signed_call(f"sip-room-{number}", f"EV_shared_{number:04d}")
    return (await client.post(url, headers=headers, content=body)).status_code


async def inbound(url: str) -> int:
    async with httpx.AsyncClient(timeout=HANG_S) as client:
        rows = (await client.get(f"{url}/sessions")).json()["sessions"]
    return sum(1 for row in rows if row["origin"] == "inbound")


async def test_two_shards_on_one_webhook_port_take_every_call_the_fleet_has_room_for(
    tmp_path: Path,
) -> None:
    with shared_port() as port:
        hooks = f'{{listen: "127.0.0.1:{port}", reuse_port: true}}'
        url = f"http://127.0.0.1:{port}/webhooks/sip"
        async with AsyncExitStack() as stack:
            shards = []
            for name, cap in (("small", SMALL), ("large", LARGE)):
                config = tmp_path / f"{name}.yaml"
                config.write_text(daemon_config(sessions=(), max_sessions=cap, webhooks=hooks))
                process = await stack.enter_async_context(daemon_process(config))
                assert (await process.event("webhook listener listening"))["url"].endswith(
                    f":{port}"
                )
                shards.append(process)
            small, large = shards
            client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=HANG_S, limits=httpx.Limits(max_keepalive_connections=0))
            )

            # 60 calls, 8 at a time: the kernel spreads them over both shards.
            statuses: Counter[int] = Counter()
            limit = trio.CapacityLimiter(8)

            async def one(number: int) -> None:
                async with limit:
                    statuses[await call(client, url, number)] += 1

            async with trio.open_nursery() as nursery:
                for number in range(60):
                    nursery.start_soon(one, number)
            assert statuses == {202: 60}
            first = [await inbound(small.url), await inbound(large.url)]
            assert sum(first) == 60
            assert min(first) > 0, first

            # 140 more, one at a time (as they come in): the small shard fills up, steps
            # aside, and every further call goes to the large one. Not one is refused.
            for number in range(60, 200):
                assert await call(client, url, number) == 202, number
            assert [await inbound(small.url), await inbound(large.url)] == [SMALL, 200 - SMALL]
            async with httpx.AsyncClient(timeout=HANG_S) as plain:
                ready = await plain.get(f"{small.url}/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"]["admission_open"] is False
                metrics = (await plain.get(f"{small.url}/metrics")).text
                assert metric_value(metrics, "saynad_webhook_listener_open") == 0
                assert (
                    metric_value(metrics, "saynad_webhook_requests_total", 'outcome="saturated"')
                    == 0
                )
                metrics = (await plain.get(f"{large.url}/metrics")).text
                assert metric_value(metrics, "saynad_webhook_listener_open") == 1
                # The webhook is served on its own listener only.
                assert (await plain.post(f"{large.url}/webhooks/sip")).status_code == 404


async def test_closing_the_listener_hands_back_the_connections_queued_on_it() -> None:
    """Connections the kernel queued on a listener (handshake done, never accepted) are
    accepted by ``close`` and stay usable: closing alone would have reset them."""
    listener = ReusePortListener("127.0.0.1", 0, reuse_port=True, migrate=False)
    listener.open()
    clients = [socket.create_connection(listener.address, timeout=HANG_S) for _ in range(3)]
    queued: list[socket.socket] = []
    try:
        queued = listener.close()
        assert not listener.is_open
        assert len(queued) == 3
        for conn in queued:
            conn.setblocking(True)
            conn.sendall(b"still here")
        for client in clients:
            assert client.recv(100) == b"still here"
    finally:
        for sock in clients + queued:
            sock.close()


async def test_a_full_shard_listens_again_when_a_call_ends_and_steps_aside_when_draining(
    tmp_path: Path,
) -> None:
    with shared_port() as port:
        url = f"http://127.0.0.1:{port}/webhooks/sip"
        config = tmp_path / "saynad.yaml"
        config.write_text(
            daemon_config(
                sessions=(),
                max_sessions=2,
                max_duration_s=1,
                webhooks=f'{{listen: "127.0.0.1:{port}", reuse_port: true}}',
            )
        )

        def listening() -> float | None:
            return daemon.metrics_registry.get_sample_value("saynad_webhook_listener_open")

        async with (
            daemon_in_process(config) as daemon,
            httpx.AsyncClient(timeout=HANG_S) as client,
            trio.open_nursery() as nursery,
        ):
            assert daemon.webhook_url == f"http://127.0.0.1:{port}"
            assert [await call(client, url, 1), await call(client, url, 2)] == [202, 202]
            # Full: nothing listens on the port any more (this shard is alone on it).
            assert listening() == 0
            with pytest.raises(httpx.ConnectError):
                await call(client, url, 3)
            # The calls end (max_duration_s): the shard listens again and takes the next.
            await wait_until(lambda: listening() == 1)
            assert await call(client, url, 4) == 202
            # Draining, with that call still on: the listener closes at once.
            nursery.start_soon(daemon.drain)
            await wait_until(lambda: daemon.draining)
            assert listening() == 0
            with pytest.raises(httpx.ConnectError):
                await call(client, url, 5)

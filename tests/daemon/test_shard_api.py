"""The call control API of a sharded fleet: two real ``saynad run`` shards
(``http.port_per_shard``) on one emulator process. A call placed through shard 1's API
runs on shard 1 and is followed and controlled there (``saynad call``, ``saynad say``,
``saynad status``, ``saynad hangup``); shard 0 answers 404 naming itself, and each shard's
listing says which shard answered."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio

from saynad.cli import main
from tests.support.http import samples
from tests.support.processes import DaemonProcess, daemon_process, emulator_process
from tests.support.samples import OPERATOR_TOKEN, daemon_config
from tests.timing import HANG_S

OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
CALLEE = "+15551234567"


def sharded_api_config(emulator_url: str, count: int) -> str:
    """:func:`daemon_config` with the API (no webhook) on the emulator at ``emulator_url``,
    ``count`` shards each on its own port. ``http.listen`` keeps port 0 (every shard
    binds a free port and logs it; port 0 stays 0 with ``port_per_shard``): the port
    arithmetic is tested in test_shards.py."""
    text = daemon_config(api=True, inbound=False, sessions=("desk-a", "desk-b", "desk-c"))
    text, replaced = re.subn(r"(?m)^  emulator: \{.*\}$", f"  url: {emulator_url}", text)
    assert replaced == 1
    text = text.replace("http:\n", "http:\n  port_per_shard: true\n", 1)
    return text + f"sharding:\n  count: {count}\n"


async def poll(
    client: httpx.AsyncClient, path: str, done: Callable[[httpx.Response], bool]
) -> dict[str, object]:
    with trio.fail_after(HANG_S):
        while not done(response := await client.get(path, headers=OPERATOR)):  # noqa: ASYNC110 - another process
            await trio.sleep(0.05)
    body: dict[str, object] = response.json()
    return body


async def test_a_call_placed_on_shard_1_is_followed_and_controlled_there_and_404_on_shard_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    config = tmp_path / "saynad.yaml"
    async with AsyncExitStack() as stack:
        emulator_url, _ = await stack.enter_async_context(emulator_process())
        config.write_text(sharded_api_config(emulator_url, 2))
        shards: list[DaemonProcess] = [
            await stack.enter_async_context(
                daemon_process(config, env={"SAYNAD_SHARD": f"{index}/2"}, stop_s=HANG_S)
            )
            for index in range(2)
        ]
        assert shards[0].url != shards[1].url
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=s.url, timeout=HANG_S))
            for s in shards
        ]

        def cli(shard: int, *argv: str) -> int:
            common = ["--url", shards[shard].url, "--token-file", str(token_file)]
            return main([argv[0], *common, *argv[1:]])

        async def saynad(shard: int, *argv: str) -> tuple[int, str, str]:
            code = await trio.to_thread.run_sync(cli, shard, *argv)
            out, err = capsys.readouterr()
            return code, out, err

        # Each shard's listing names it.
        for index, client in enumerate(clients):
            for path in ("/sessions", "/v1/sessions"):
                listing = (await client.get(path, headers=OPERATOR)).json()
                assert listing["shard"] == {"index": index, "count": 2}, path

        # Place the call through shard 1's API.
        code, out, err = await saynad(1, "call", CALLEE, "--template", "call")
        assert code == 0, err
        name = out.strip()
        assert name.startswith("call-")
        row = await poll(
            clients[1],
            f"/v1/sessions/{name}",
            lambda r: (
                r.status_code == 200
                and r.json()["state"] == "ready"
                and r.json()["call"]["state"] == "answered"
            ),
        )
        assert (row["origin"], row["room"]) == ("outbound", name)

        # Shard 0 does not know it, and says which shard answered.
        unknown = await clients[0].get(f"/v1/sessions/{name}", headers=OPERATOR)
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "not_found"
        assert unknown.json()["detail"].startswith("no such session on shard 0 of 2")
        old = await clients[0].get(f"/sessions/{name}", headers=OPERATOR)
        assert old.status_code == 404
        assert old.json()["error"].startswith("no such session on shard 0 of 2")
        code, _, err = await saynad(0, "say", name, "hello from shard 0")
        assert code == 1
        assert err.startswith("saynad say: 404 not_found: no such session on shard 0 of 2")
        code, _, err = await saynad(0, "hangup", name)
        assert (code, err.split(":")[1].strip()) == (1, "404 not_found")

        # saynad status: the call is on shard 1's table only.
        code, out, _ = await saynad(1, "status")
        assert code == 0
        assert name in out
        assert re.search(r"^\d+ sessions on shard 1 of 2: ", out.splitlines()[-1])
        code, out, _ = await saynad(0, "status")
        assert code == 0
        assert name not in out
        assert "on shard 0 of 2: " in out.splitlines()[-1]

        # Live control on shard 1: say, then hang up with a goodbye.
        spoken = samples((await clients[1].get("/metrics")).text, "saynad_ws_frames_total")
        speaks = spoken.get((("direction", "out"), ("type", "speak")), 0)
        code, _, err = await saynad(1, "say", name, "your order has shipped")
        assert code == 0, err

        async def spoke() -> float:
            text = (await clients[1].get("/metrics")).text
            frames = samples(text, "saynad_ws_frames_total")
            return frames.get((("direction", "out"), ("type", "speak")), 0)

        with trio.fail_after(HANG_S):
            while await spoke() <= speaks:  # noqa: ASYNC110 - another process
                await trio.sleep(0.05)
        code, _, err = await saynad(1, "hangup", name, "--text", "goodbye from shard 1")
        assert code == 0, err
        ended = await poll(
            clients[1],
            f"/v1/sessions/{name}",
            lambda r: r.status_code == 200 and r.json()["state"] == "stopped",
        )
        assert isinstance(ended["call"], dict)
        assert ended["call"]["state"] == "ended"
        gone = await shards[1].wait_for(
            lambda line: line.get("event") == "session ended" and line.get("session") == name
        )
        assert gone["reason"] == "hangup"

        # The API's counts are per shard: shard 1 accepted the call, shard 0 refused.
        counted = [
            samples((await c.get("/metrics")).text, "saynad_api_requests_total") for c in clients
        ]
        assert counted[1][(("outcome", "accepted"), ("route", "calls"))] == 1
        assert counted[0][(("outcome", "accepted"), ("route", "calls"))] == 0
        assert counted[0][(("outcome", "not_found"), ("route", "speak"))] == 1
        assert counted[0][(("outcome", "not_found"), ("route", "hangup"))] == 1

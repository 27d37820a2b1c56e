"""A sharded fleet of real ``saynad run`` processes started from one configuration file:
every always-on session runs exactly once across the shards; SIGKILLing one shard
leaves the others' sessions alone and its own come back with it; going from 3 to 4
shards (``sharding.count`` in the file, a reload) moves only the sessions rendezvous
hashing moves, and nothing else restarts."""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from saynad.cli import main
from saynad.sharding import assign
from tests.support.daemon import daemon_in_process
from tests.support.processes import DaemonProcess, daemon_process, free_port
from tests.support.samples import greeting_fleet
from tests.timing import HANG_S

NAMES = tuple(f"desk-{i:02d}" for i in range(24))

Rows = dict[str, dict[str, object]]


def write(path: Path, count: int) -> None:
    """The fleet of :data:`NAMES`, ``count`` shards (each process's index from
    ``SAYNAD_SHARD``)."""
    fleet = greeting_fleet(dict.fromkeys(NAMES, "hello"))
    path.write_text(fleet + f"sharding:\n  count: {count}\n")


async def sessions(url: str) -> tuple[dict[str, object], Rows]:
    async with httpx.AsyncClient(timeout=HANG_S) as client:
        body = (await client.get(f"{url}/sessions")).json()
    return body["shard"], {row["name"]: row for row in body["sessions"]}


async def settled(url: str, expected: set[str]) -> Rows:
    """The rows of ``url`` once exactly ``expected`` are there and ready."""
    found: Rows = {}

    async def check() -> bool:
        nonlocal found
        _, found = await sessions(url)
        return set(found) == expected and all(r["state"] == "ready" for r in found.values())

    with trio.fail_after(HANG_S):
        while not await check():  # noqa: ASYNC110 - another process
            await trio.sleep(0.05)
    return found


@asynccontextmanager
async def shard(config: Path, index: int) -> AsyncIterator[DaemonProcess]:
    async with daemon_process(config, env={"SAYNAD_SHARD": str(index)}) as process:
        yield process


def owned(count: int, index: int) -> set[str]:
    return owned_of(NAMES, count, index)


async def test_three_shards_cover_the_fleet_survive_a_kill_and_reshard_to_four(
    tmp_path: Path,
) -> None:
    config = tmp_path / "saynad.yaml"
    write(config, 3)
    async with AsyncExitStack() as stack:
        shards = [await stack.enter_async_context(shard(config, i)) for i in range(3)]
        rows = [await settled(p.url, owned(3, i)) for i, p in enumerate(shards)]
        # Every session exactly once, where the table (saynad shards) puts it.
        seen = [name for part in rows for name in part]
        assert sorted(seen) == sorted(NAMES)
        for index, process in enumerate(shards):
            placement, _ = await sessions(process.url)
            assert placement == {"index": index, "count": 3}

        # SIGKILL shard 1: the others' sessions are untouched (the same runs: same
        # start time, no restart); shard 1's sessions come back with a new process.
        before = [rows[0], rows[2]]
        shards[1].signal(signal.SIGKILL)
        await shards[1].process.wait()
        assert [await settled(shards[i].url, owned(3, i)) for i in (0, 2)] == before
        shards[1] = await stack.enter_async_context(shard(config, 1))
        await settled(shards[1].url, owned(3, 1))
        assert [await settled(shards[i].url, owned(3, i)) for i in (0, 2)] == before

        # 3 → 4: the file's count changes, every shard reloads, shard 3 starts. A
        # session moves only to the new shard, and only when hashing says so; every
        # other session keeps its run.
        running = [await settled(p.url, owned(3, i)) for i, p in enumerate(shards)]
        write(config, 4)
        for process in shards:
            process.signal(signal.SIGHUP)
        shards.append(await stack.enter_async_context(shard(config, 3)))
        new = [await settled(p.url, owned(4, i)) for i, p in enumerate(shards)]
        assert sorted(name for part in new for name in part) == sorted(NAMES)
        moved = set(NAMES) - {n for i in range(3) for n in owned(3, i) & owned(4, i)}
        assert moved == owned(4, 3)
        assert 0 < len(moved) < len(NAMES) // 2
        for index in range(3):
            for name, row in new[index].items():
                assert row["since"] == running[index][name]["since"], name
                assert row["restarts"] == 0
        for process in shards[:3]:
            changed = await process.event("shard changed")
            assert changed["configured"].endswith("/4")


def test_saynad_shards_prints_the_table_and_what_moves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "saynad.yaml"
    write(config, 3)
    assert main(["shards", "--config", str(config), "--count", "4", "--previous", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in out[1 : len(NAMES) + 1]}
    assert {name: int(row[0]) for name, row in rows.items()} == assign(NAMES, 4)
    moves = {name for name, row in rows.items() if row[-1:] == ["moves"]}
    assert moves == owned(4, 3)
    assert out[-1] == f"{len(moves)} of {len(NAMES)} move going from 3 to 4 shards"
    assert main(["shards", "--config", str(config), "--count", "0"]) == 1


def test_saynad_check_shows_the_shard_and_says_which_source_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "saynad.yaml"
    write(config, 3)
    assert main(["check", "--config", str(config), "--shard", "2/3"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    mine = sorted(owned(3, 2))
    assert (
        line
        == f"  shard:     2/3 (from --shard): runs {len(mine)} of 24 always-on: " + ", ".join(mine)
    )
    monkeypatch.setenv("SAYNAD_SHARD", "1")  # the index; the count is the file's
    assert main(["check", "--config", str(config)]) == 0
    assert "shard:     1/3 (from SAYNAD_SHARD)" in capsys.readouterr().out
    monkeypatch.setenv("SAYNAD_SHARD", "3")
    assert main(["check", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("saynad: SAYNAD_SHARD with sharding.count")
    assert main(["check", "--config", str(config), "--shard", "0/2"]) == 0  # CLI wins
    assert "shard:     0/2 (from --shard)" in capsys.readouterr().out


def free_port_pair() -> int:
    """A loopback port ``base`` such that ``base`` and ``base + 1`` were both free a
    moment ago (both bound at once, then released)."""
    while True:
        base = free_port()
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", base))
                second.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base


async def test_port_per_shard_puts_shard_i_on_the_base_port_plus_i(tmp_path: Path) -> None:
    base = free_port_pair()
    config = tmp_path / "saynad.yaml"
    text = greeting_fleet(dict.fromkeys(NAMES[:4], "hello"), listen=f"127.0.0.1:{base}")
    config.write_text(text.replace("http:\n", "http:\n  port_per_shard: true\n", 1))
    async with daemon_in_process(config, shard_override=(1, 2)) as daemon:
        assert daemon.http_urls[0] == f"http://127.0.0.1:{base + 1}"
        assert daemon.placement() == {"index": 1, "count": 2}
        assert set(daemon.always_on(daemon.config)) == owned_of(NAMES[:4], 2, 1)
        metrics = daemon.metrics_registry.get_sample_value(
            "saynad_shard_info", {"index": "1", "count": "2"}
        )
        assert metrics == 1


def owned_of(names: tuple[str, ...], count: int, index: int) -> set[str]:
    return {name for name, owner in assign(names, count).items() if owner == index}

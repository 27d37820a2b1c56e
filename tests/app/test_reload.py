"""Reload in-process: a changed session reconnects, unchanged ones keep their sockets."""

from __future__ import annotations

from pathlib import Path

import trio

from saynad.app import Daemon
from saynad.config import load_config
from tests.support.daemon import wait_ready
from tests.support.samples import write_fleet


async def test_reload_reconnects_exactly_the_changed_session(tmp_path: Path) -> None:
    path = tmp_path / "saynad.yaml"
    write_fleet(path, {f"s{i}": "hello" for i in range(5)})
    daemon = Daemon(config_path=path, config=load_config(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await wait_ready(daemon, {f"s{i}" for i in range(5)})
        assert daemon.emulator is not None
        state = daemon.emulator.state
        before = state.connections_total
        streams = {r.name: r.stream_id for r in daemon.registry.snapshot()}
        listen = next(line for line in path.read_text().splitlines() if "listen:" in line)
        write_fleet(path, {**{f"s{i}": "hello" for i in range(5)}, "s3": "changed"})
        path.write_text(
            "\n".join(
                listen if "listen:" in line else line for line in path.read_text().splitlines()
            )
        )
        outcome = await daemon.reload()
        assert (outcome.ok, outcome.changed, outcome.added, outcome.removed) == (True, 1, 0, 0)
        await wait_ready(daemon, {f"s{i}" for i in range(5)})
        assert state.connections_total == before + 1
        after = {r.name: r.stream_id for r in daemon.registry.snapshot()}
        assert {n for n in streams if streams[n] != after[n]} == {"s3"}

        path.write_text("sessions: [oops\n")
        broken = await daemon.reload()
        assert not broken.ok
        assert broken.error is not None
        assert str(path) in broken.error
        assert state.connections_total == before + 1
        assert daemon.reloads == {"ok": 1, "error": 1}
        nursery.cancel_scope.cancel()

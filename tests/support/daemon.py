"""An in-process daemon for tests: :class:`saynad.app.Daemon` on a sample configuration,
its HTTP server on a port the system picked (``Daemon.http_urls``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from saynad.actors.registry import SessionState
from saynad.app import Daemon
from saynad.config import load_config
from tests.support.samples import ENV, daemon_config
from tests.timing import HANG_S


@asynccontextmanager
async def daemon_in_process(
    path: Path, *, env: Mapping[str, str] = ENV, **daemon: Any
) -> AsyncIterator[Daemon]:
    """A :class:`Daemon` running the configuration file at ``path`` (``daemon``: more
    of its fields, e.g. ``metrics_cache_s``); cancelled at the end."""
    environ = dict(env)
    config = load_config(path, env=environ)
    instance = Daemon(config_path=path, config=config, env=environ, **daemon)
    async with trio.open_nursery() as nursery:
        await nursery.start(instance.run)
        yield instance
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def running_daemon(
    tmp_path: Path, *, fields: Mapping[str, Any] | None = None, **options: Any
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    """A daemon on :func:`~tests.support.samples.daemon_config` (``options``) and an
    HTTP client on the address it bound; ``fields``: more of the :class:`Daemon`'s
    fields, as for :func:`daemon_in_process`."""
    path = tmp_path / "saynad.yaml"
    path.write_text(daemon_config(**options))
    async with (
        daemon_in_process(path, **(fields or {})) as daemon,
        httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=HANG_S) as client,
    ):
        yield daemon, client


async def wait_until(predicate: Callable[[], object], *, within_s: float = HANG_S) -> None:
    """Poll ``predicate`` (cheap, in-process state) until true; fail after ``within_s``."""
    with trio.fail_after(within_s):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


def states(daemon: Daemon) -> dict[str, SessionState]:
    """Every supervised session's state, by name."""
    return {row.name: row.state for row in daemon.registry.snapshot()}


async def wait_ready(daemon: Daemon, names: set[str]) -> None:
    """Wait (bounded) until exactly ``names`` are ready, woken by registry transitions."""
    changed = trio.Event()

    def on_transition(old: SessionState | None, new: SessionState) -> None:
        changed.set()

    daemon.registry.listeners.append(on_transition)
    try:
        with trio.fail_after(HANG_S):
            while {
                r.name for r in daemon.registry.snapshot() if r.state is SessionState.READY
            } != names:
                await changed.wait()
                changed = trio.Event()
    finally:
        daemon.registry.listeners.remove(on_transition)

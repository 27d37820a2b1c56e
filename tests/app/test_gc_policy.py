"""The daemon's GC policy (``runtime.gc``): thresholds at start, a freeze once the fleet
has settled, a refreeze (unfreeze, collect, freeze) after reloads and ended runs."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from saynad.actors.registry import Registry, SessionState
from saynad.app import Daemon
from saynad.config import load_config
from saynad.runtime_gc import MIN_INTERVAL_S, SETTLE_TIMEOUT_S, THRESHOLDS, Freeze, GcPolicy
from tests.support.daemon import wait_ready
from tests.support.samples import write_fleet
from tests.timing import HANG_S


@pytest.fixture(autouse=True)
def gc_state() -> Iterator[tuple[int, int, int]]:
    """The collector as the test found it; put back whatever a failing test left."""
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)
    gc.unfreeze()


class Cycle:
    """A reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


class Recording(GcPolicy):
    """Records the session states at each freeze."""

    def __init__(self, registry: Registry, *, min_interval_s: float) -> None:
        super().__init__(min_interval_s=min_interval_s)
        self.registry = registry
        self.states: list[set[SessionState]] = []

    def freeze(self, reason: str) -> Freeze:
        self.states.append({row.state for row in self.registry.rows.values()})
        return super().freeze(reason)


def rewrite_fleet(path: Path, names: dict[str, str]) -> None:
    """Write a new fleet into ``path``, keeping its ``http.listen`` line."""
    listen = next(line for line in path.read_text().splitlines() if "listen:" in line)
    write_fleet(path, names)
    path.write_text(
        "\n".join(listen if "listen:" in line else line for line in path.read_text().splitlines())
    )


async def test_the_daemon_freezes_the_settled_fleet_and_refreezes_after_a_reload(
    tmp_path: Path, gc_state: tuple[int, int, int]
) -> None:
    path = tmp_path / "saynad.yaml"
    names = {f"s{i}": "hello" for i in range(4)}
    write_fleet(path, names)
    config = load_config(path)
    assert config.runtime.gc == "tuned"
    registry = Registry()
    policy = Recording(registry, min_interval_s=0.0)
    daemon = Daemon(config_path=path, config=config, registry=registry, gc_policy=policy)
    gc.unfreeze()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert gc.get_threshold() == THRESHOLDS
        # An object that dies after the first freeze: only a refreeze can reclaim it.
        doomed = Cycle()
        dead = weakref.ref(doomed)
        await wait_ready(daemon, set(names))
        with trio.fail_after(HANG_S):
            first = await policy.wait_freezes(1)
        assert first.reason == "fleet started"
        assert policy.states[0] == {SessionState.READY}  # frozen only once all were ready
        assert 0 < gc.get_freeze_count() <= first.frozen  # (some die by reference count)

        del doomed
        gc.collect()
        assert dead() is not None  # frozen: the collector does not see it

        rewrite_fleet(path, {**names, "added": "hi"})
        outcome = await daemon.reload()
        assert (outcome.ok, outcome.added) == (True, 1)
        with trio.fail_after(HANG_S):
            second = await policy.wait_freezes(2)
        assert second.reason == "reload"
        assert policy.states[1] == {SessionState.READY}  # the added session too
        assert dead() is None  # unfrozen and collected before freezing again
        assert second.collected > 0
        assert gc.get_freeze_count() > 0
        nursery.cancel_scope.cancel()
    # The daemon puts the collector back as it found it.
    assert gc.get_threshold() == gc_state
    assert gc.get_freeze_count() == 0


async def test_a_session_run_that_ends_asks_for_a_refreeze(tmp_path: Path) -> None:
    path = tmp_path / "saynad.yaml"
    write_fleet(path, {"a": "hello", "b": "hello"})
    registry = Registry()
    policy = Recording(registry, min_interval_s=0.0)
    daemon = Daemon(config_path=path, config=load_config(path), registry=registry, gc_policy=policy)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.fail_after(HANG_S):
            await policy.wait_freezes(1)
        assert await daemon.restart_session("a")
        with trio.fail_after(HANG_S):
            second = await policy.wait_freezes(2)
        assert second.reason == "session ended"
        assert policy.states[1] == {SessionState.READY}
        nursery.cancel_scope.cancel()


async def test_stock_leaves_the_collector_alone(
    tmp_path: Path, gc_state: tuple[int, int, int]
) -> None:
    path = tmp_path / "saynad.yaml"
    write_fleet(path, {"a": "hello"})
    path.write_text(path.read_text() + "runtime:\n  gc: stock\n")
    config = load_config(path)
    assert config.runtime.gc == "stock"
    daemon = Daemon(config_path=path, config=config)
    assert daemon.gc_policy is not None
    assert not daemon.gc_policy.enabled
    gc.unfreeze()
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await wait_ready(daemon, {"a"})
        assert (await daemon.reload()).ok
        await wait_ready(daemon, {"a"})
        await trio.testing.wait_all_tasks_blocked(0.2)
        assert gc.get_threshold() == gc_state
        assert gc.get_freeze_count() == 0
        assert daemon.gc_policy.freezes == 0
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ the policy alone


async def test_the_freeze_waits_for_the_fleet_to_settle() -> None:
    registry = Registry()
    registry.add("a", origin="config", template="t")
    registry.set_state("a", SessionState.CONNECTING)
    policy = GcPolicy()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run, registry)
        policy.request_freeze("fleet started")
        await trio.testing.wait_all_tasks_blocked(0.1)
        assert policy.freezes == 0  # still connecting
        registry.set_state("a", SessionState.READY)
        with trio.fail_after(HANG_S):
            done = await policy.wait_freezes(1)
        assert done.reason == "fleet started"
        nursery.cancel_scope.cancel()
    policy.restore()
    assert gc.get_freeze_count() == 0


async def test_an_unsettled_fleet_is_frozen_after_the_settle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = Registry()
    registry.add("stuck", origin="config", template="t")  # starting, forever
    policy = GcPolicy()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run, registry)
        start = trio.current_time()
        policy.request_freeze("fleet started")
        await policy.wait_freezes(1)
        assert trio.current_time() - start == pytest.approx(SETTLE_TIMEOUT_S)
        nursery.cancel_scope.cancel()
    policy.restore()


async def test_refreezes_are_rate_limited_and_coalesced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = Registry()
    registry.add("a", origin="config", template="t")
    registry.set_state("a", SessionState.READY)
    policy = GcPolicy()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run, registry)
        policy.request_freeze("fleet started")
        await policy.wait_freezes(1)
        first_at = trio.current_time()
        for _ in range(5):  # a burst of reloads and ended runs ...
            policy.request_freeze("reload")
            registry.set_state("a", SessionState.BACKOFF)
            registry.set_state("a", SessionState.READY)
        second = await policy.wait_freezes(2)
        assert trio.current_time() - first_at == pytest.approx(MIN_INTERVAL_S)
        assert second.reason == "reload"  # ... is one refreeze, a minute later
        await trio.testing.wait_all_tasks_blocked()
        assert policy.freezes == 2
        nursery.cancel_scope.cancel()
    policy.restore()


def test_apply_and_restore_the_thresholds(gc_state: tuple[int, int, int]) -> None:
    policy = GcPolicy(thresholds=(5000, 20, 5))
    policy.apply()
    assert gc.get_threshold() == (5000, 20, 5)
    policy.restore()
    assert gc.get_threshold() == gc_state
    stock = GcPolicy(enabled=False)
    stock.apply()
    stock.request_freeze("ignored")
    assert gc.get_threshold() == gc_state

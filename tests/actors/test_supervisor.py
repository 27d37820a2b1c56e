"""Supervisor semantics under trio's MockClock (autojump): no real time passes."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
import trio
import trio.testing

from saynad.actors.registry import Registry, SessionState
from saynad.actors.supervisor import (
    Child,
    ChildControl,
    Policy,
    Reload,
    ReloadPlan,
    Restart,
    RestartPolicy,
    Start,
    Stop,
    Supervisor,
    plan_reload,
)


class Crash(Exception):
    pass


class Script:
    """A runner whose behaviour per session name is scripted by the test."""

    def __init__(self) -> None:
        self.starts: Counter[str] = Counter()
        self.start_times: dict[str, list[float]] = {}
        self.mode: dict[str, str] = {}  # crash | exit | forever | ignore-drain

    async def __call__(self, child: Child, control: ChildControl) -> None:
        self.starts[child.name] += 1
        self.start_times.setdefault(child.name, []).append(trio.current_time())
        control.connecting()
        control.ready(room=None, stream_id=f"{child.name}-{self.starts[child.name]}")
        mode = self.mode.get(child.name, "forever")
        if mode == "crash":
            await trio.sleep(0.01)
            raise Crash(f"{child.name} crashed")
        if mode == "crash-late":
            await trio.sleep(40)
            raise Crash(f"{child.name} crashed late")
        if mode == "exit":
            await trio.sleep(0.01)
            return
        if mode == "ignore-drain":
            await trio.sleep_forever()
        await control.drain_requested.wait()


def child(name: str, **policy: object) -> Child:
    return Child(name=name, spec=(name, "v1"), policy=Policy(**policy))  # type: ignore[arg-type]


async def start_supervisor(nursery: trio.Nursery, script: Script, **kwargs: object) -> Supervisor:
    supervisor = Supervisor(script, Registry(), rng=random.Random(7), **kwargs)  # type: ignore[arg-type]
    await nursery.start(supervisor.run)
    return supervisor


async def test_permanent_session_restarts_with_growing_jittered_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script()
    script.mode["flaky"] = "crash"
    failures: list[str] = []
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(
            nursery, script, on_failure=lambda c, r: failures.append(c.name)
        )
        await sup.send(
            Start(
                child(
                    "flaky", backoff_initial_s=1.0, backoff_max_s=8.0, max_restarts=6, window_s=1000
                )
            )
        )
        await trio.sleep(500)
        starts = script.start_times["flaky"]
        # 1 first run + 6 restarts, then failed and left down.
        assert len(starts) == 7
        gaps = [b - a - 0.01 for a, b in itertools.pairwise(starts)]
        caps = [min(8.0, 1.0 * 2**i) for i in range(len(gaps))]
        for gap, cap in zip(gaps, caps, strict=True):
            assert -1e-6 <= gap <= cap + 1e-6
        info = sup.registry.get("flaky")
        assert info is not None
        assert info.state is SessionState.FAILED
        assert info.restarts == 6
        assert "crashed" in (info.last_error or "")
        assert failures == ["flaky"]
        nursery.cancel_scope.cancel()


async def test_intensity_window_forgets_old_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script()
    script.mode["slow-flaky"] = "crash-late"
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        # Each run lasts 40 s and the window is 30 s: at most one restart falls in any
        # window, so 3 allowed restarts never trip it however long this goes on.
        await sup.send(
            Start(
                child(
                    "slow-flaky",
                    backoff_initial_s=20,
                    backoff_max_s=20,
                    backoff_multiplier=1.0,
                    max_restarts=3,
                    window_s=30,
                )
            )
        )
        await trio.sleep(2000)
        info = sup.registry.get("slow-flaky")
        assert info is not None
        assert info.state is not SessionState.FAILED
        assert script.starts["slow-flaky"] > 30
        nursery.cancel_scope.cancel()


async def test_policies(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    script.mode.update(
        {"t-exit": "exit", "t-crash": "crash", "tmp-crash": "crash", "p-exit": "exit"}
    )
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        await sup.send(Start(child("t-exit", restart=RestartPolicy.TRANSIENT)))
        await sup.send(Start(child("t-crash", restart=RestartPolicy.TRANSIENT, max_restarts=2)))
        await sup.send(Start(child("tmp-crash", restart=RestartPolicy.TEMPORARY)))
        await sup.send(Start(child("p-exit", restart=RestartPolicy.PERMANENT, max_restarts=2)))
        await trio.sleep(600)
        assert script.starts["t-exit"] == 1  # normal exit: not restarted
        assert sup.registry.get("t-exit") is None
        assert script.starts["t-crash"] == 3  # restarted after errors, then failed
        assert sup.registry.get("t-crash").state is SessionState.FAILED  # type: ignore[union-attr]
        assert script.starts["tmp-crash"] == 1  # temporary: never restarted
        assert sup.registry.get("tmp-crash") is None
        assert script.starts["p-exit"] == 3  # permanent: restarted even after a normal exit
        nursery.cancel_scope.cancel()


async def test_failure_is_contained_to_its_session(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    script.mode["bad"] = "crash"
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        await sup.send(Start(child("good")))
        await sup.send(Start(child("bad", max_restarts=1)))
        await trio.sleep(100)
        assert sup.registry.get("bad").state is SessionState.FAILED  # type: ignore[union-attr]
        good = sup.registry.get("good")
        assert good is not None
        assert good.state is SessionState.READY
        assert script.starts["good"] == 1
        nursery.cancel_scope.cancel()


async def test_reload_touches_only_what_changed(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        for name in ("keep", "change", "drop"):
            await sup.send(Start(child(name)))
        await trio.sleep(1)
        keep_stream = sup.registry.get("keep").stream_id  # type: ignore[union-attr]
        new = {
            "keep": child("keep"),
            "change": Child(name="change", spec=("change", "v2")),
            "add": child("add"),
        }
        await sup.send(Reload(new))
        await trio.sleep(1)
        assert set(sup.children()) == {"keep", "change", "add"}
        assert script.starts == Counter({"keep": 1, "change": 2, "drop": 1, "add": 1})
        assert sup.registry.get("keep").stream_id == keep_stream  # type: ignore[union-attr]
        assert sup.children()["change"].spec == ("change", "v2")
        assert sup.registry.get("drop") is None
        nursery.cancel_scope.cancel()


async def test_reload_returns_the_plan_it_applied_against_what_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script()
    script.mode["ended"] = "exit"
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        first = {
            "keep": child("keep"),
            "change": child("change"),
            "drop": child("drop"),
            "ended": child("ended", restart=RestartPolicy.TRANSIENT),
        }
        plan = await sup.reload(first)
        assert plan == ReloadPlan(added=("keep", "change", "drop", "ended"))
        await trio.sleep(1)
        assert not sup.running("ended")  # transient, ended normally: not restarted
        second = {
            "keep": child("keep"),
            "change": Child(name="change", spec=("change", "v2")),
            "ended": child("ended", restart=RestartPolicy.TRANSIENT),
            "add": child("add"),
        }
        # Planned against what runs, not against the previous set: the session that
        # ended is started again, and counted as added.
        plan = await sup.reload(second)
        assert plan == ReloadPlan(
            added=("ended", "add"), removed=("drop",), changed=("change",), unchanged=("keep",)
        )
        assert plan == plan_reload(
            {"keep": first["keep"], "change": first["change"], "drop": first["drop"]}, second
        )
        assert set(sup.children()) == {"keep", "change", "ended", "add"}
        nursery.cancel_scope.cancel()


async def test_stop_and_restart_commands(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        await sup.send(Start(child("a")))
        await trio.sleep(1)
        await sup.send(Restart("a"))
        await trio.sleep(1)
        assert script.starts["a"] == 2
        assert sup.registry.get("a").state is SessionState.READY  # type: ignore[union-attr]
        await sup.send(Stop("a"))
        await trio.sleep(1)
        assert not sup.running("a")
        assert sup.registry.get("a") is None
        nursery.cancel_scope.cancel()


async def test_drain_is_two_phase(autojump_clock: trio.testing.MockClock) -> None:
    script = Script()
    script.mode["stubborn"] = "ignore-drain"
    async with trio.open_nursery() as nursery:
        sup = await start_supervisor(nursery, script)
        await sup.send(Start(child("polite")))
        await sup.send(Start(child("stubborn")))
        await trio.sleep(1)
        started = trio.current_time()
        await sup.drain(5.0)
        # The polite one left at once; the stubborn one was cancelled at the deadline.
        assert trio.current_time() - started == pytest.approx(5.0)
        assert sup.children() == {}
        assert not sup.admitting
        await sup.send(Start(child("late")))
        await trio.sleep(1)
        assert not sup.running("late")
        nursery.cancel_scope.cancel()

"""Fast tests for the soak scenario's pieces: the sequence rule, the config-frame decoder,
the trio task gauge and the supervision rule the soak exposed (a healthy run ends an
incident)."""

from __future__ import annotations

import json
import random

import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from saynad.actors.registry import Registry, SessionState
from saynad.actors.supervisor import Child, ChildControl, Policy, Start, Supervisor
from saynad.observability.metrics import Metrics, trio_task_count
from saynad.protocol.framing import TEXT_FRAME, masked_frame
from tests.soak.scenario import _config_stream_id, check_sequences


def _line(text: str, role: str = "user") -> str:
    return json.dumps({"role": role, "text": text})


def test_sequence_rule_splits_runs_at_one_and_counts_gaps_and_duplicates() -> None:
    lines = [_line(f"{i}: hi") for i in (1, 2, 3, 1, 2, 4, 4, 5)] + [_line("hello", "agent")]
    assert check_sequences(lines) == (8, 2, 1, 1)


def test_config_stream_id_reads_the_first_masked_frame() -> None:
    payload = json.dumps({"type": "config", "stream_id": "s0007"}).encode()
    frame = masked_frame(TEXT_FRAME, payload, bytes([1, 2, 3, 4]))
    request = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _config_stream_id(request + frame[:5]) is None  # incomplete: wait for more
    assert _config_stream_id(request + frame) == "s0007"


async def test_trio_tasks_gauge_counts_the_task_tree() -> None:
    before = trio_task_count()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(trio.sleep_forever)
        await trio.testing.wait_all_tasks_blocked()
        assert trio_task_count() == before + 3
        text = generate_latest(Metrics(CollectorRegistry()).registry).decode()
        assert f"saynad_trio_tasks {float(before + 3)}" in text
        nursery.cancel_scope.cancel()
    assert trio_task_count() == before


def test_trio_tasks_gauge_outside_trio_is_zero() -> None:
    assert trio_task_count() == 0


async def test_a_healthy_run_resets_backoff_and_intensity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A server that restarts every 30 s never leaves a session failed or slow to return."""
    starts: list[float] = []

    async def runner(child: Child, control: ChildControl) -> None:
        starts.append(trio.current_time())
        control.connecting()
        # Every 30 s the server goes away for 3 s: the run that finds it down fails
        # before ready, the first one after it serves until the next restart.
        if trio.current_time() % 30 < 3:
            raise ConnectionRefusedError("down")
        control.ready()
        await trio.sleep(30 - trio.current_time() % 30)
        raise ConnectionResetError("server killed")

    registry = Registry()
    policy = Policy(max_restarts=5, window_s=60, backoff_initial_s=0.5, backoff_max_s=30)
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(runner, registry, rng=random.Random(3))
        await nursery.start(supervisor.run)
        await supervisor.send(Start(Child(name="s", spec="s", policy=policy)))
        await trio.sleep(600)
        assert registry.get("s") is not None
        assert registry.get("s").state is not SessionState.FAILED  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    # Served again in every cycle: the delays restart from 0.5 s, never near the 30 s cap.
    served = {int(t // 30) for t in starts if 3 <= t % 30 < 15}
    assert len(served) >= 19

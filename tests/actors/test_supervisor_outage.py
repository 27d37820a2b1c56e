"""Outages are not crashes: a session whose peer is unreachable backs off (capped) for as
long as the outage lasts and is never marked failed; crash loops still are.

Under trio's MockClock (autojump): no real time passes, except in the last two tests,
which check what the real client raises (a refused connect, a rejected handshake).
"""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing

from saynad.actors.registry import Registry, SessionState
from saynad.actors.supervisor import (
    Child,
    ChildControl,
    Policy,
    Start,
    Supervisor,
    is_unreachable,
)
from saynad.client.session import open_session
from saynad.emulator import EmulatorOptions, Tenant, open_emulator
from saynad.errors import HandshakeRejectedError, TransportError
from tests.support.processes import closed_port

DEFAULTS = Policy()
"""The defaults a configuration without ``backoff``/``intensity`` gets: 0.5–30 s, 5 in 60 s."""


class Crash(Exception):
    pass


class Server:
    """A runner against a scripted server: ``down`` until ``up_at``; then ``answer``."""

    def __init__(self, *, up_at: float, answer: str = "serve") -> None:
        self.up_at = up_at
        self.answer = answer  # serve | reject | crash-after-ready
        self.attempts: list[float] = []

    async def __call__(self, child: Child, control: ChildControl) -> None:
        self.attempts.append(trio.current_time())
        control.connecting()
        if trio.current_time() < self.up_at:
            raise TransportError("cannot connect to 127.0.0.1:3001: connection refused")
        if self.answer == "reject":
            raise HandshakeRejectedError(401, "", error="invalid_api_key")
        control.ready()
        if self.answer == "crash-after-ready":
            await trio.sleep(0.01)
            raise Crash("behaviour raised")
        await control.drain_requested.wait()


class Watch:
    """Every state a session went through, and the supervisor's failure callbacks."""

    def __init__(self, registry: Registry) -> None:
        self.states: list[SessionState] = []
        self.failures: list[str] = []
        registry.listeners.append(lambda old, new: self.states.append(new))


async def supervise(
    nursery: trio.Nursery, runner: object, policy: Policy = DEFAULTS, **kwargs: object
) -> tuple[Supervisor, Watch]:
    registry = Registry()
    watch = Watch(registry)
    supervisor = Supervisor(
        runner,  # type: ignore[arg-type]
        registry,
        rng=random.Random(11),
        on_failure=lambda child, why: watch.failures.append(child.name),
        **kwargs,  # type: ignore[arg-type]
    )
    await nursery.start(supervisor.run)
    await supervisor.send(Start(Child(name="s", spec="s", policy=policy)))
    return supervisor, watch


def state(supervisor: Supervisor) -> SessionState:
    info = supervisor.registry.get("s")
    assert info is not None
    return info.state


async def state_after(runner: object, seconds: float) -> tuple[SessionState, Watch]:
    """Supervise ``runner`` for ``seconds`` of (autojump) time; its state then."""
    async with trio.open_nursery() as nursery:
        supervisor, watch = await supervise(nursery, runner)
        await trio.sleep(seconds)
        final = state(supervisor)
        nursery.cancel_scope.cancel()
    return final, watch


async def test_a_five_minute_outage_never_fails_the_session_and_delays_are_capped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server(up_at=300.0)
    async with trio.open_nursery() as nursery:
        supervisor, watch = await supervise(nursery, server)
        await trio.sleep(299)
        assert state(supervisor) is not SessionState.FAILED
        await trio.sleep(DEFAULTS.backoff_max_s + 2)
        # Back as soon as the server is: the next attempt (≤ 30 s later) got in.
        assert state(supervisor) is SessionState.READY
        nursery.cancel_scope.cancel()
    assert SessionState.FAILED not in watch.states
    assert watch.failures == []
    during = [t for t in server.attempts if t < 300]
    # Far more attempts than the intensity allows in its first window (5 in 60 s) …
    assert sum(1 for t in during if t < 60) > DEFAULTS.max_restarts + 1
    # … then spaced by the backoff, which grew to its cap and stayed there.
    gaps = [b - a for a, b in itertools.pairwise(server.attempts)]
    assert max(gaps) <= DEFAULTS.backoff_max_s + 1e-9
    assert max(gaps) > DEFAULTS.backoff_max_s / 2
    late = [t for t in during if t >= 120]
    assert len(late) < 180 / 2, "the delays did not grow: attempts every few seconds"
    assert len(server.attempts) == len(during) + 1


async def test_outages_do_not_mask_a_crash_loop_after_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Down for 100 s, then every run crashes right after ``ready``: failed after 5 restarts."""
    server = Server(up_at=100.0, answer="crash-after-ready")
    final, watch = await state_after(server, 400)
    assert final is SessionState.FAILED
    assert watch.failures == ["s"]
    # The outage alone had attempts enough to trip the intensity, uncounted …
    assert sum(1 for t in server.attempts if t < 60) > DEFAULTS.max_restarts + 1
    # … and it tripped on the crashes: the last 6 runs (5 restarts) fell within 60 s.
    crashed = [t for t in server.attempts if t >= 100]
    allowed = DEFAULTS.max_restarts
    assert len(crashed) >= allowed + 1
    assert crashed[-1] - crashed[-allowed - 1] < DEFAULTS.window_s


async def test_a_rejected_handshake_is_a_crash_not_an_outage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server answers (401): retrying cannot help, so the intensity applies."""
    server = Server(up_at=0.0, answer="reject")
    final, watch = await state_after(server, 120)
    assert final is SessionState.FAILED
    assert watch.failures == ["s"]
    assert len(server.attempts) == DEFAULTS.max_restarts + 1


async def test_an_unreachable_error_after_ready_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Only a run that never became ready is an outage: a behaviour whose own peer is
    unreachable, raising right after ``ready`` every time, is a crash loop."""

    async def runner(child: Child, control: ChildControl) -> None:
        control.connecting()
        control.ready()
        await trio.sleep(0.01)
        raise TransportError("POST http://agent.internal/reply: connection refused")

    final, watch = await state_after(runner, 120)
    assert final is SessionState.FAILED
    assert watch.failures == ["s"]


async def test_an_outage_does_not_reset_the_backoff_however_long_an_attempt_took(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each attempt hangs 10 s until its connect timeout, longer than ``backoff_max_s``:
    a run that long would reset the backoff, an unreachable attempt must not."""
    attempts: list[float] = []

    async def runner(child: Child, control: ChildControl) -> None:
        attempts.append(trio.current_time())
        control.connecting()
        await trio.sleep(10)
        raise TransportError("WebSocket handshake with 10.0.0.1:443 took longer than 10 s")

    policy = Policy(backoff_initial_s=0.5, backoff_max_s=8.0, max_restarts=1, window_s=600)
    async with trio.open_nursery() as nursery:
        supervisor, watch = await supervise(nursery, runner, policy)
        await trio.sleep(600)
        assert state(supervisor) is not SessionState.FAILED
        nursery.cancel_scope.cancel()
    assert watch.failures == []
    delays = [b - a - 10 for a, b in itertools.pairwise(attempts)]
    assert max(delays) <= 8.0 + 1e-9
    # Reset every time, the delays would all stay below 0.5 s.
    assert sum(1 for d in delays if d > 0.5) > len(delays) / 2


async def test_the_outage_predicate_is_the_supervisors_only_knowledge(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``is_outage`` decides; an exception group of unreachable errors is one by default."""

    async def refused(child: Child, control: ChildControl) -> None:
        control.connecting()
        raise ConnectionRefusedError("refused")

    async with trio.open_nursery() as nursery:
        counted, counted_watch = await supervise(nursery, refused)
        custom, custom_watch = await supervise(
            nursery, refused, is_outage=lambda exc: isinstance(exc, ConnectionRefusedError)
        )
        await trio.sleep(300)
        assert state(counted) is SessionState.FAILED  # an OSError is not marked unreachable
        assert state(custom) is not SessionState.FAILED
        nursery.cancel_scope.cancel()
    assert counted_watch.failures == ["s"]
    assert custom_watch.failures == []


def test_is_unreachable() -> None:
    refused = TransportError("refused")
    assert is_unreachable(refused)
    assert is_unreachable(ExceptionGroup("connect", [refused, TransportError("dns")]))
    assert is_unreachable(ExceptionGroup("outer", [ExceptionGroup("inner", [refused])]))
    assert not is_unreachable(ExceptionGroup("mixed", [refused, Crash("boom")]))
    assert not is_unreachable(HandshakeRejectedError(401, "", error="invalid_api_key"))
    assert not is_unreachable(Crash("boom"))
    assert not is_unreachable(ConnectionRefusedError("raw OSError: not translated"))


async def test_the_client_raises_an_unreachable_error_for_a_refused_connect() -> None:
    with closed_port() as port, pytest.raises(TransportError) as info:
        async with open_session(f"ws://127.0.0.1:{port}/ws", audio=False):
            pass
    assert is_unreachable(info.value)


async def test_the_client_raises_a_counted_error_for_a_rejected_handshake() -> None:
    options = EmulatorOptions(tenants=(Tenant(id="acme", secret="acme-secret-0123456789"),))
    async with open_emulator(options) as emulator:
        with pytest.raises(HandshakeRejectedError) as info:
            async with open_session(emulator.url, audio=False, api_key="wrong-key-0123456789"):
                pass
    assert info.value.status_code == 401
    assert not is_unreachable(info.value)

"""The composition root: :func:`run_daemon` wires configuration, supervisor and signals.

::

    run_daemon (root nursery)
    ├── signals         SIGTERM/SIGINT → drain (a second one: cancel at once); SIGHUP → reload
    ├── reloader        one reload at a time; a burst of SIGHUPs coalesces into ≤ 2 reloads
    ├── emulator        only when the configuration has no sayna.url
    └── Supervisor.run  the sessions

Reload: the file is read again; an invalid file keeps the running fleet (logged,
counted, ``READY=1`` re-sent); a valid one starts added sessions, stops removed ones and
restarts changed ones, leaving unchanged sessions and their sockets alone.

Drain: stop admitting, give sessions ``drain_timeout_s``, cancel the rest, return.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import structlog
import trio

from saynad.actors.plan import CallInfo, build_plan, child_for
from saynad.actors.registry import Registry, SessionState
from saynad.actors.session import run_session
from saynad.actors.supervisor import Child, ChildControl, Reload, Supervisor
from saynad.config import Config, Secret, SessionSpec, load_config
from saynad.emulator import Emulator, serve_emulator
from saynad.errors import ConfigError
from saynad.observability.logs import register_secrets
from saynad.systemd import Notifier

__all__ = ["Daemon", "ReloadOutcome", "iter_secrets", "run_daemon"]

log = structlog.get_logger("saynad.daemon")


def iter_secrets(obj: Any) -> Iterator[str]:
    """Every :class:`~saynad.config.Secret` value inside a configuration (for redaction)."""
    if isinstance(obj, Secret):
        yield obj.reveal()
    elif isinstance(obj, msgspec.Struct):
        for name in obj.__struct_fields__:
            yield from iter_secrets(getattr(obj, name))
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from iter_secrets(value)
    elif isinstance(obj, tuple | list):
        for value in obj:
            yield from iter_secrets(value)


@dataclass
class ReloadOutcome:
    ok: bool
    error: str | None = None
    added: int = 0
    removed: int = 0
    changed: int = 0


@dataclass
class Daemon:
    """The running daemon's state, shared by its tasks and the HTTP surface."""

    config_path: Path
    config: Config
    env: Mapping[str, str] | None = None
    notifier: Notifier = field(default_factory=Notifier)
    registry: Registry = field(default_factory=Registry)
    sayna_url: str = ""
    draining: bool = False
    supervisor: Supervisor | None = None
    emulator: Emulator | None = None
    calls: dict[str, CallInfo] = field(default_factory=dict)
    reloads: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0})
    reload_requested: trio.Event = field(default_factory=trio.Event)
    _root: trio.CancelScope | None = None

    # ------------------------------------------------------------------ sessions

    async def _runner(self, child: Child, control: ChildControl) -> None:
        spec = child.spec
        assert isinstance(spec, SessionSpec)
        api_key = self.config.sayna.api_key
        plan = build_plan(
            spec,
            url=self.sayna_url,
            api_key=api_key.reveal() if api_key is not None else None,
            call=self.calls.get(child.name),
            max_duration_s=(
                self.config.inbound.sip_webhook.max_duration_s
                if child.origin == "inbound" and self.config.inbound.sip_webhook is not None
                else None
            ),
        )
        try:
            await run_session(plan, control)
        finally:
            if child.origin == "inbound":
                self.calls.pop(child.name, None)

    def always_on(self, config: Config) -> dict[str, Child]:
        return {spec.name: child_for(spec) for spec in config.sessions}

    def status_line(self) -> str:
        rows = self.registry.snapshot()
        ready = sum(1 for r in rows if r.state is SessionState.READY)
        failed = sum(1 for r in rows if r.state is SessionState.FAILED)
        state = "draining" if self.draining else "running"
        return f"{state}: {len(rows)} sessions, {ready} ready, {failed} failed"

    # ------------------------------------------------------------------ reload

    async def reload(self) -> ReloadOutcome:
        """Load the file again and converge on it; a broken file changes nothing."""
        await self.notifier.reloading()
        try:
            new = await trio.to_thread.run_sync(lambda: load_config(self.config_path, env=self.env))
        except ConfigError as exc:
            self.reloads["error"] += 1
            log.error("reload failed; keeping the running configuration", problems=exc.problems)
            await self.notifier.ready(self.status_line())
            return ReloadOutcome(ok=False, error="\n".join(exc.problems))
        register_secrets(iter_secrets(new))
        old_children = self.always_on(self.config)
        new_children = self.always_on(new)
        outcome = ReloadOutcome(
            ok=True,
            added=sum(1 for n in new_children if n not in old_children),
            removed=sum(1 for n in old_children if n not in new_children),
            changed=sum(
                1 for n, c in new_children.items() if n in old_children and old_children[n] != c
            ),
        )
        self.config = new
        assert self.supervisor is not None
        applied = trio.Event()
        await self.supervisor.send(Reload(new_children, done=applied))
        await applied.wait()
        self.reloads["ok"] += 1
        log.info(
            "configuration reloaded",
            added=outcome.added,
            removed=outcome.removed,
            changed=outcome.changed,
        )
        await self.notifier.ready(self.status_line())
        return outcome

    async def _reloader(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested = trio.Event()
            await self.reload()

    # ------------------------------------------------------------------ drain

    async def drain(self) -> None:
        """Stop admitting, give sessions ``drain_timeout_s``, then cancel everything."""
        if self.draining:
            return
        self.draining = True
        await self.notifier.stopping()
        timeout = self.config.defaults.drain_timeout_s
        log.info("draining", sessions=len(self.registry.snapshot()), timeout_s=timeout)
        assert self.supervisor is not None
        await self.supervisor.drain(timeout)
        log.info("drained")
        if self._root is not None:
            self._root.cancel()

    async def _signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP: reload requested")
                    self.reload_requested.set()
                elif not self.draining:
                    log.info("signal: draining", signal=signal.Signals(signum).name)
                    nursery.start_soon(self.drain)
                else:
                    log.warning("second signal: stopping now", signal=signal.Signals(signum).name)
                    if self._root is not None:
                        self._root.cancel()

    # ------------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until drained or cancelled. ``task_status.started`` once sessions are starting."""
        register_secrets(iter_secrets(self.config))
        with trio.CancelScope() as root:
            self._root = root
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signals, nursery, name="signals")
                if self.config.sayna.url is None:
                    emulator = await nursery.start(
                        lambda task_status: serve_emulator(
                            self.config.sayna.emulator_options(), task_status=task_status
                        )
                    )
                    self.emulator = emulator
                    self.sayna_url = emulator.url
                    log.info("embedded emulator started", url=emulator.url)
                else:
                    self.sayna_url = self.config.sayna.url
                supervisor = Supervisor(self._runner, self.registry)
                self.supervisor = await nursery.start(supervisor.run)
                await supervisor.send(Reload(self.always_on(self.config)))
                nursery.start_soon(self._reloader, name="reloader")
                log.info(
                    "saynad running",
                    sessions=len(self.config.sessions),
                    sayna=self.sayna_url,
                    config=str(self.config_path),
                )
                await self.notifier.ready(self.status_line())
                task_status.started(self)
        self.notifier.close()


async def run_daemon(
    config_path: Path,
    config: Config,
    *,
    env: Mapping[str, str] | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon for ``config`` (loaded from ``config_path``) until drained."""
    daemon = Daemon(config_path=config_path, config=config, env=env)
    await daemon.run(task_status=task_status)

"""The composition root: :func:`run_daemon` wires configuration, supervisor and signals.

::

    run_daemon (root nursery)
    ├── signals         SIGTERM/SIGINT → drain (a second one: cancel at once); SIGHUP → reload
    ├── reloader        one reload at a time, ≥ 1 s apart: a burst of SIGHUPs makes ≤ 2 reloads
    ├── emulator        only when the configuration has no sayna.url
    ├── Supervisor.run  the sessions
    ├── http            /metrics /healthz /readyz /sessions, control routes, SIP webhook
    ├── watchdog        WATCHDOG=1 at half of WATCHDOG_USEC while the supervisor answers
    ├── status          STATUS= with session counts when they change (rate-limited)
    └── gc              freezes the settled fleet out of GC; refreezes after changes

Start-up order: the GC thresholds (``runtime.gc``), supervisor, then the HTTP server
(bound address logged), then the always-on sessions, then ``READY=1``; the first GC
freeze follows once those sessions have settled (:mod:`saynad.runtime_gc`).

Reload: the file is read again; an invalid file keeps the running fleet (logged,
counted, ``READY=1`` re-sent); a valid one starts added sessions, stops removed ones and
restarts changed ones, leaving unchanged sessions and their sockets alone; a GC
refreeze follows once the fleet has settled again.

Inbound calls: the daemon's :class:`~saynad.actors.admission.Admission` turns a verified
SIP webhook into a temporary session (capacity, duplicates, draining and the webhook
ids' claims across reloads, in that one place); the session's runner gets the call from
the ticket its child spec carries and releases the slot when the session ends.

Drain: stop admitting (``/readyz`` and the webhook answer 503 at once), give sessions
``drain_timeout_s``, cancel the rest, then shut the HTTP server down gracefully, return.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
import structlog
import trio
from prometheus_client import CollectorRegistry

from saynad import _early_signals as early_signals
from saynad._groups import cause_of
from saynad._io.listener import ReusePortListener
from saynad.actors.admission import Admission, Ticket, Verdict
from saynad.actors.behaviour import Behaviour
from saynad.actors.behaviours.dialler import Dialler
from saynad.actors.behaviours.remote import (
    DEFAULT_GOODBYE,
    Action,
    ActOutcome,
    Remote,
    Remotes,
)
from saynad.actors.behaviours.transcripts import Journal
from saynad.actors.plan import build_plan, child_for
from saynad.actors.registry import Registry, SessionState
from saynad.actors.session import run_session
from saynad.actors.supervisor import Child, ChildControl, Restart, Supervisor
from saynad.api import CallRequest, LiveKitAccess, SessionRequest
from saynad.client.rest import RestClient
from saynad.config import (
    ApiTokenSettings,
    Config,
    EmulatorSettings,
    SaynaSettings,
    Secret,
    SessionSpec,
    load_config,
)
from saynad.emulator import Emulator, EmulatorOptions, Tenant, serve_emulator
from saynad.errors import (
    ConfigError,
    ConnectionClosedError,
    HandshakeRejectedError,
    ProtocolError,
    ReadyTimeoutError,
    SaynadError,
    SessionConfigError,
    TransportError,
)
from saynad.http import METRICS_CACHE_S, HttpApp, ReloadOutcome, WebhookServer, serve_http
from saynad.observability.logs import register_secrets
from saynad.observability.metrics import DaemonSnapshot, Metrics
from saynad.protocol.webhooks import VerifiedSipWebhook, WebhookVerifier
from saynad.runtime_gc import GcPolicy
from saynad.sharding import Shard
from saynad.systemd import Notifier

__all__ = [
    "Daemon",
    "ReloadOutcome",
    "emulator_options",
    "failure_reason",
    "iter_secrets",
    "run_daemon",
]

EX_OK: Final = 0
EX_UNAVAILABLE: Final = 69
"""Exit status when the HTTP server cannot listen (address in use, no permission)."""

STATUS_INTERVAL_S: Final = 2.0
"""Shortest time between two ``STATUS=`` updates."""

RELOAD_MIN_INTERVAL_S: Final = 1.0
"""Shortest time between the starts of two signal-requested reloads (``SIGHUP``)."""

HTTP_GRACEFUL_TIMEOUT_S: Final = 5.0

REST_TIMEOUT_S: Final = 10.0
"""The daemon's REST requests to Sayna (a dial, a visitor's token) give up after this."""

STOP_GRACE_S: Final = 10.0
"""The bound on stopping: saynad exits within ``defaults.drain_timeout_s`` + this many
seconds of the first ``SIGTERM``/``SIGINT``, on every path. Sessions that have not
reported ``ready`` (starting, connecting, in backoff, failed) stop at once; serving ones
get ``drain_timeout_s`` to finish, then are cancelled and get at most 5 s to flush their
sinks; the HTTP server then finishes the requests in flight (at most 5 s). Whatever
still holds the process at the bound (a disk that does not answer) is abandoned: the
process exits with status 1 and an error line."""

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


def emulator_options(sayna: SaynaSettings) -> EmulatorOptions:
    """The embedded emulator's options from ``sayna.emulator`` (each unset option keeps
    the emulator's default). With a ``sayna.api_key``, the emulator requires that key."""
    settings = sayna.emulator or EmulatorSettings()
    options: dict[str, Any] = {
        name: value
        for name in settings.__struct_fields__
        if (value := getattr(settings, name)) is not None
    }
    if sayna.api_key is not None:
        options["tenants"] = (Tenant(id="saynad", secret=sayna.api_key.reveal()),)
    return EmulatorOptions(**options)


def failure_reason(exc: BaseException) -> str:
    """The bounded ``reason`` label of ``saynad_session_failures_total`` for ``exc``."""
    exc = cause_of(exc)
    if isinstance(exc, HandshakeRejectedError | TransportError):
        return "connect"
    if isinstance(exc, ReadyTimeoutError):
        return "ready_timeout"
    if isinstance(exc, SessionConfigError):
        return "config_rejected"
    if isinstance(exc, ConnectionClosedError):
        return "connection_lost"
    if isinstance(exc, ProtocolError):
        return "protocol"
    return "error"


@dataclass
class Daemon:
    """The running daemon's state, shared by its tasks and the HTTP surface.

    ``metrics_registry`` is where the catalog registers (a fresh one by default, never
    the global registry); ``/metrics`` serves it. ``gc_policy`` defaults to the one
    ``runtime.gc`` names.
    """

    config_path: Path
    config: Config
    env: Mapping[str, str] | None = None
    notifier: Notifier = field(default_factory=Notifier)
    registry: Registry = field(default_factory=Registry)
    metrics_registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    sayna_url: str = ""
    draining: bool = False
    supervisor: Supervisor | None = None
    emulator: Emulator | None = None
    reloads: dict[str, int] = field(default_factory=lambda: {"ok": 0, "error": 0})
    reload_requested: trio.Event = field(default_factory=trio.Event)
    http_urls: list[str] = field(default_factory=list)
    exit_code: int = EX_OK
    gc_policy: GcPolicy | None = None
    metrics_cache_s: float = METRICS_CACHE_S
    """How long a rendered ``/metrics`` answer is reused (0: render every scrape)."""
    shard_override: tuple[int, int | None] | None = None
    """``(index, count)`` from ``--shard`` or ``SAYNAD_SHARD`` (count None: the file's),
    taking precedence over the file's ``sharding`` at start and at every reload."""
    webhook_url: str | None = None
    """Where the listener of ``http.webhooks`` listens, once it does."""
    _root: trio.CancelScope | None = None
    _stop_deadline: float | None = None

    def __post_init__(self) -> None:
        if self.gc_policy is None:
            self.gc_policy = GcPolicy(enabled=self.config.runtime.gc == "tuned")
        self.shard = self.shard_for(self.config)
        self.metrics = Metrics(self.metrics_registry, snapshot=self._metrics_snapshot)
        self.metrics.shard(self.shard.index, self.shard.count)
        self.admission = Admission(self.config, on_outcome=self.metrics.outbound_call)
        self.admission.listeners.append(self._admission_changed)
        self._webhooks: WebhookServer | None = None
        self.remotes = Remotes()
        """The ready sessions' live-action handles (speak, transfer, hangup)."""
        self.rest: RestClient | None = None
        """The REST client of the Sayna server (outbound calls, visitors' tokens)."""
        self._reload_lock = trio.Lock()
        self._http_stop = trio.Event()
        self._http_done = trio.Event()
        self._http_started = False
        self._stopping = trio.Event()
        self._changed = trio.Event()
        self.registry.listeners.append(lambda old, new: self._changed.set())

    # ------------------------------------------------------------------ sessions

    async def _runner(self, child: Child, control: ChildControl) -> None:
        ticket = child.ticket if isinstance(child.ticket, Ticket) else None
        error: str | None = None
        try:
            spec = child.spec
            assert isinstance(spec, SessionSpec)
            api_key = self.config.sayna.api_key
            plan = build_plan(
                spec,
                url=self.sayna_url,
                api_key=api_key.reveal() if api_key is not None else None,
                call=ticket.call if ticket is not None else None,
                max_duration_s=ticket.max_duration_s if ticket is not None else None,
                extra=lambda journal: self._extra_behaviours(child, spec, ticket, journal),
            )
            plan = dataclasses.replace(plan, observer=self.metrics)
            await run_session(plan, control)
        except Exception as exc:
            error = failure_reason(exc)
            self.metrics.session_failed(child.origin, error)
            raise
        finally:
            if ticket is not None:
                row = self.registry.get(child.name)
                last = row.as_json() if row is not None else None
                if last is not None and error is not None:
                    last["last_error"] = error
                self.admission.release(child.name, row=last, error=error is not None)

    def _extra_behaviours(
        self, child: Child, spec: SessionSpec, ticket: Ticket | None, journal: Journal
    ) -> list[Behaviour]:
        """What the daemon adds to every run: live actions, and the dialler of a call."""
        end = spec.behaviours.end
        own_goodbye = end is not None and end.goodbye_text is not None
        made: list[Behaviour] = [
            Remote(
                self.remotes,
                journal=journal,
                goodbye_text=None if own_goodbye else DEFAULT_GOODBYE,
            )
        ]
        status = self.admission.call_status(child.name)
        if ticket is not None and ticket.dial is not None and status is not None:
            assert self.rest is not None
            made.append(Dialler(ticket.dial, status, self.rest))
        return made

    def shard_for(self, config: Config) -> Shard:
        """This process's shard under ``config`` (ValueError: the index is not below
        the count)."""
        index, count = self.shard_override or (None, None)
        return config.shard(index, count)

    def always_on(self, config: Config, shard: Shard | None = None) -> dict[str, Child]:
        """The always-on sessions of ``config`` this shard runs."""
        shard = self.shard if shard is None else shard
        return {spec.name: child_for(spec) for spec in config.sessions if shard.owns(spec.name)}

    def placement(self) -> dict[str, int]:
        """This process's shard, for ``/sessions``."""
        return {"index": self.shard.index, "count": self.shard.count}

    def status_line(self) -> str:
        rows = self.registry.snapshot()
        ready = sum(1 for r in rows if r.state is SessionState.READY)
        failed = sum(1 for r in rows if r.state is SessionState.FAILED)
        state = "draining" if self.draining else "running"
        if self.shard.sharded:
            state += f" shard {self.shard}"
        line = f"{state}: {len(rows)} sessions, {ready} ready, {failed} failed"
        admission = self.admission
        if admission.max_sessions is not None:
            line += f", {admission.active}/{admission.max_sessions} calls"
        return line

    async def restart_session(self, name: str) -> bool:
        """Ask the supervisor to restart ``name``; False when no such session runs."""
        if self.supervisor is None or not self.supervisor.running(name):
            return False
        await self.supervisor.send(Restart(name))
        return True

    # ------------------------------------------------------------------ inbound calls

    @property
    def inbound_active(self) -> int:
        """Sessions admitted from outside and not yet ended."""
        return self.admission.active

    @property
    def verifier(self) -> WebhookVerifier | None:
        """The SIP webhook verifier (None without ``inbound.sip_webhook``)."""
        return self.admission.verifier

    @property
    def webhook_path(self) -> str | None:
        """Where SIP webhooks are posted (None without ``inbound.sip_webhook``)."""
        hook = self.config.inbound.sip_webhook
        return hook.path if hook is not None else None

    async def admit_webhook(self, webhook: VerifiedSipWebhook) -> Verdict:
        """Start a temporary session for a verified SIP webhook, or say why not."""
        return await self.admission.admit_webhook(webhook)

    def webhook_room(self, undecided: int) -> bool:
        """Whether this shard can take ``undecided`` calls (accepted by the webhook
        listener, not answered yet) and one more: the listener of ``http.webhooks``
        stays open only while it can."""
        admission = self.admission
        limit = admission.max_sessions
        return (
            not self.draining
            and admission.accepting
            and (limit is None or admission.active + undecided < limit)
        )

    def _admission_changed(self) -> None:
        if self._webhooks is not None:
            self._webhooks.changed()

    # ------------------------------------------------------------------ health

    async def alive(self, timeout_s: float) -> bool:
        """True when the supervisor answers a ping within ``timeout_s``."""
        if self.supervisor is None:
            return False
        with trio.move_on_after(timeout_s):
            await self.supervisor.ping()
            return True
        return False

    def readiness(self) -> dict[str, bool]:
        """The ``/readyz`` checks; ready when every value is True."""
        return {
            "config_loaded": True,  # a Daemon only exists with a valid configuration
            "supervisor_up": self.supervisor is not None,
            "not_draining": not self.draining,
            "admission_open": self.admission.accepting,
        }

    def sessions(self) -> list[dict[str, object]]:
        """Every supervised session, by name, as JSON objects."""
        return [row.as_json() for row in sorted(self.registry.snapshot(), key=lambda r: r.name)]

    def session(self, name: str) -> dict[str, object] | None:
        """The session called ``name`` as a JSON object (None when there is none): the
        same as ``/v1/sessions/{name}`` (with its call, and ended admitted sessions)."""
        return self.api_session(name)

    # ------------------------------------------------------------------ the API

    def api_tokens(self) -> tuple[ApiTokenSettings, ...]:
        """The bearer tokens of the API (``http.tokens`` and ``http.control_token``)."""
        return self.config.http.api_tokens()

    @property
    def reads_need_token(self) -> bool:
        """Whether reading the sessions needs a ``read`` token."""
        return self.config.http.reads_need_token

    def api_session(self, name: str) -> dict[str, object] | None:
        """``/v1/sessions/{name}``: a running session with its call, or an admitted one
        that ended recently (state ``stopped``, with its call's outcome)."""
        row = self.registry.get(name)
        if row is None:
            return self.admission.ended(name)
        call = self.admission.call_status(name)
        return {**row.as_json(), "call": call.as_json() if call is not None else None}

    def api_sessions(self) -> list[dict[str, object]]:
        """``/v1/sessions``: every supervised session, with its call."""
        rows = []
        for row in sorted(self.registry.snapshot(), key=lambda r: r.name):
            call = self.admission.call_status(row.name)
            rows.append({**row.as_json(), "call": call.as_json() if call is not None else None})
        return rows

    async def admit_call(
        self, request: CallRequest, *, client: str, idempotency_key: str | None
    ) -> Verdict:
        """``POST /v1/calls``: admission decides; the session dials once ready."""
        return await self.admission.admit_call(
            request, client=client, idempotency_key=idempotency_key
        )

    async def admit_session(
        self, request: SessionRequest, *, client: str, idempotency_key: str | None
    ) -> Verdict:
        """``POST /v1/sessions``: admission decides; a visitor's token is minted after."""

        async def finish(verdict: Verdict) -> Verdict:
            visitor = request.visitor
            if visitor is None or verdict.room is None or verdict.session is None:
                return verdict
            assert self.rest is not None
            try:
                token = await self.rest.get_livekit_token(
                    verdict.room, visitor.name, visitor.identity
                )
            except SaynadError as exc:
                # The session is of no use without its visitor: it ends at once.
                if self.supervisor is not None:
                    self.supervisor.stop_now(verdict.session, reason="visitor token refused")
                log.warning(
                    "visitor token refused", session=verdict.session, error=type(exc).__name__
                )
                return Verdict(
                    False, "upstream", detail="Sayna did not mint the visitor's LiveKit token"
                )
            access = LiveKitAccess(
                token=token.token,
                url=token.livekit_url,
                room=token.room_name,
                identity=token.participant_identity,
            )
            return dataclasses.replace(verdict, livekit=access)

        return await self.admission.admit_session(
            request, client=client, idempotency_key=idempotency_key, finish=finish
        )

    def act(self, name: str, action: Action) -> ActOutcome:
        """Hand ``action`` to the ready session ``name`` without waiting (see
        :meth:`~saynad.actors.behaviours.remote.Remotes.act`)."""
        return self.remotes.act(name, action, known=self.registry.get(name) is not None)

    def origin_of(self, name: str) -> str | None:
        """Where the session ``name`` comes from (None: no such session)."""
        row = self.registry.get(name)
        return row.origin if row is not None else None

    def stop_session(self, name: str) -> bool:
        """End the session ``name`` at once (``DELETE``); False when none runs."""
        if self.supervisor is None:
            return False
        ok = self.supervisor.stop_now(name, reason="deleted")
        if ok:
            log.info("session deleted over http", session=name)
        return ok

    def _metrics_snapshot(self) -> DaemonSnapshot:
        counts = dict.fromkeys((state.value for state in SessionState), 0)
        for row in self.registry.rows.values():
            counts[row.state.value] += 1
        admission = self.admission
        verifier = admission.verifier
        replay = verifier.statistics() if verifier is not None else None
        return DaemonSnapshot(
            sessions_by_state=counts,
            inbound_active=admission.active,
            inbound_max=admission.max_sessions or 0,
            draining=self.draining,
            replay_cache_size=replay.replay_cache_size if replay is not None else 0,
            replay_cache_capacity=replay.replay_cache_capacity if replay is not None else 0,
        )

    # ------------------------------------------------------------------ reload

    async def reload(self) -> ReloadOutcome:
        """Load the file again and converge on it; a broken file changes nothing."""
        async with self._reload_lock:
            return await self._reload()

    async def _reload(self) -> ReloadOutcome:
        await self.notifier.reloading()
        try:
            # Reading and parsing happen in a worker thread, so a large file never
            # stalls sessions' audio or /healthz; abandoned (left to finish on its own)
            # when the daemon stops meanwhile, so it never delays the exit.
            new, new_shard, new_children, secrets = await trio.to_thread.run_sync(
                self._prepare_reload, abandon_on_cancel=True
            )
        except ConfigError as exc:
            self.reloads["error"] += 1
            self.metrics.reload_done(False)
            log.error("reload failed; keeping the running configuration", problems=exc.problems)
            await self.notifier.ready(self.status_line())
            return ReloadOutcome(ok=False, error="\n".join(exc.problems))
        register_secrets(secrets)
        if new_shard != self.shard:
            log.info("shard changed", running=str(self.shard), configured=str(new_shard))
            self.shard = new_shard
            self.metrics.shard(new_shard.index, new_shard.count)
        for key in ("port_per_shard", "webhooks"):
            if getattr(new.http, key) != getattr(self.config.http, key):
                log.warning("http setting changed; it applies at the next start", key=key)
        if new.http.listen != self.config.http.listen:
            log.warning(
                "http.listen changed; it applies at the next start",
                listening=self.config.http.listen,
                configured=new.http.listen,
            )
        if new.runtime.gc != self.config.runtime.gc:
            log.warning(
                "runtime.gc changed; it applies at the next start",
                running=self.config.runtime.gc,
                configured=new.runtime.gc,
            )
        self.admission.configure(new)
        self.config = new
        assert self.supervisor is not None
        plan = await self.supervisor.reload(new_children)
        outcome = ReloadOutcome(
            ok=True, added=len(plan.added), removed=len(plan.removed), changed=len(plan.changed)
        )
        assert self.gc_policy is not None
        self.gc_policy.request_freeze("reload")
        self.reloads["ok"] += 1
        self.metrics.reload_done(True)
        log.info(
            "configuration reloaded",
            added=outcome.added,
            removed=outcome.removed,
            changed=outcome.changed,
        )
        await self.notifier.ready(self.status_line())
        return outcome

    def _prepare_reload(self) -> tuple[Config, Shard, dict[str, Child], list[str]]:
        """Load the file (in a worker thread: touches no live state). What changes is
        planned once, by the supervisor, against what runs; ownership is computed again
        (the count may come from the file)."""
        new = load_config(self.config_path, env=self.env)
        try:
            shard = self.shard_for(new)
        except ValueError as exc:
            raise ConfigError([f"{new.source}: sharding: {exc}"]) from None
        return new, shard, self.always_on(new, shard), list(iter_secrets(new))

    async def _reloader(self) -> None:
        """Serve ``reload_requested``: one reload at a time, and at most one start per
        :data:`RELOAD_MIN_INTERVAL_S`, so a burst of ``SIGHUP`` signals (any number within
        one interval) makes at most two reloads: one at once, one for the rest. The
        second reads the file as it is then, so the last write always applies."""
        last_start: float | None = None
        while True:
            await self.reload_requested.wait()
            if last_start is not None:
                await trio.sleep_until(last_start + RELOAD_MIN_INTERVAL_S)
            self.reload_requested = trio.Event()
            last_start = trio.current_time()
            await self.reload()

    # ------------------------------------------------------------------ drain

    async def drain(self) -> None:
        """Stop admitting, give sessions ``drain_timeout_s``, then cancel everything.

        The HTTP server stays up meanwhile (``/readyz`` says 503, ``/metrics`` still
        answers) and shuts down gracefully once the sessions are gone. Safe at any point
        of start-up: what has not started yet is not started.
        """
        if self.draining:
            return
        self.draining = True
        self.admission.close()
        timeout = self.config.defaults.drain_timeout_s
        self._stop_deadline = trio.current_time() + timeout + STOP_GRACE_S
        self._stopping.set()
        self._changed.set()
        await self.notifier.stopping()
        log.info("draining", sessions=len(self.registry.snapshot()), timeout_s=timeout)
        if self.supervisor is not None:
            await self.supervisor.drain(timeout)
        log.info("drained")
        await self._stop_http()
        if self._root is not None:
            self._root.cancel()

    async def _stop_http(self) -> None:
        self._http_stop.set()
        if not self._http_started:
            return
        with trio.move_on_after(HTTP_GRACEFUL_TIMEOUT_S + 1.0):
            await self._http_done.wait()

    async def _stop_guard(self) -> None:
        """The last resort behind :data:`STOP_GRACE_S`: exit when stopping overruns it."""
        await self._stopping.wait()
        assert self._stop_deadline is not None
        await trio.sleep_until(self._stop_deadline)
        log.error(
            "stop overran its bound; exiting now",
            bound_s=self.config.defaults.drain_timeout_s + STOP_GRACE_S,
            sessions=len(self.registry.snapshot()),
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    async def _on_signal(self, signum: int, nursery: trio.Nursery) -> None:
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

    async def _signals(self, nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            # Signals that arrived while starting, before this receiver was open.
            for signum in early_signals.take():
                await self._on_signal(signum, nursery)
            async for signum in signals:
                await self._on_signal(signum, nursery)

    # ------------------------------------------------------------------ systemd

    async def _supervisor_answers(self) -> bool:
        assert self.supervisor is not None
        await self.supervisor.ping()
        return True

    async def _status(self) -> None:
        """``STATUS=`` when the counts change, at most every ``STATUS_INTERVAL_S``."""
        last = ""
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            line = self.status_line()
            if line != last:
                await self.notifier.status(line)
                last = line
            await trio.sleep(STATUS_INTERVAL_S)

    # ------------------------------------------------------------------ http

    @property
    def http_port(self) -> int:
        """The port of ``http.listen``, plus the shard index with ``port_per_shard``
        (port 0 stays 0: any free port)."""
        http = self.config.http
        if http.port_per_shard and http.port != 0:
            return http.port + self.shard.index
        return http.port

    async def _serve_http(self, *, task_status: trio.TaskStatus[list[str]]) -> None:
        http = self.config.http
        self._http_started = True
        routes: Literal["all", "all_but_webhook"] = (
            "all" if http.webhooks is None else "all_but_webhook"
        )
        try:
            await serve_http(
                HttpApp(self, metrics_cache_s=self.metrics_cache_s, routes=routes),
                http.host,
                self.http_port,
                shutdown_trigger=self._http_stop.wait,
                graceful_timeout_s=HTTP_GRACEFUL_TIMEOUT_S,
                task_status=task_status,
            )
        finally:
            self._http_done.set()

    async def _serve_webhooks(self, *, task_status: trio.TaskStatus[str]) -> None:
        """The listener of ``http.webhooks``: the SIP webhook alone, on a port every
        shard of the host may share; steps aside while this shard has no room (``when_full:
        close``)."""
        settings = self.config.http.webhooks
        assert settings is not None
        server = WebhookServer(
            HttpApp(self, routes="webhook"),
            ReusePortListener(settings.host, settings.port, reuse_port=settings.reuse_port),
            has_room=self.webhook_room if settings.close_when_full else None,
            graceful_timeout_s=HTTP_GRACEFUL_TIMEOUT_S,
            on_listening=lambda listening: self.metrics.webhook_listener_open.set(
                1 if listening else 0
            ),
        )
        self._webhooks = server
        try:
            await server.serve(shutdown_trigger=self._http_stop.wait, task_status=task_status)
        finally:
            self._webhooks = None

    # ------------------------------------------------------------------ run

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until drained or cancelled. ``task_status.started`` once serving.

        When the HTTP server cannot listen, logs why, sets ``exit_code`` and returns.
        """
        early_signals.defer()  # from here on, a signal is recorded for _signals
        register_secrets(iter_secrets(self.config))
        assert self.gc_policy is not None
        self.gc_policy.apply()
        try:
            async with trio.open_nursery() as guard:
                # Outside the root scope: cancelling the daemon never cancels the guard.
                guard.start_soon(self._stop_guard, name="stop-guard")
                await self._run(task_status)
                guard.cancel_scope.cancel()
        finally:
            self.gc_policy.restore()
            self.notifier.close()
            if self.rest is not None:
                with trio.CancelScope(shield=True):
                    await self.rest.aclose()

    async def _run(self, task_status: trio.TaskStatus[Daemon]) -> None:
        with trio.CancelScope() as root:
            self._root = root
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signals, nursery, name="signals")
                if self.config.sayna.url is None:
                    emulator = await nursery.start(
                        lambda task_status: serve_emulator(
                            emulator_options(self.config.sayna), task_status=task_status
                        )
                    )
                    self.emulator = emulator
                    self.sayna_url = emulator.url
                    log.info("embedded emulator started", url=emulator.url)
                else:
                    self.sayna_url = self.config.sayna.url
                api_key = self.config.sayna.api_key
                self.rest = RestClient(
                    self.sayna_url,
                    api_key.reveal() if api_key is not None else None,
                    timeout_s=REST_TIMEOUT_S,
                )
                supervisor = Supervisor(
                    self._runner,
                    self.registry,
                    on_start=lambda child: self.metrics.session_started(child.origin),
                    on_restart=lambda child, why: self.metrics.session_restarted(child.origin, why),
                    on_failure=lambda child, why: self.metrics.session_failed(
                        child.origin, "gave_up"
                    ),
                )
                self.supervisor = await nursery.start(supervisor.run)
                self.admission.open(supervisor)
                try:
                    self.http_urls = await nursery.start(self._serve_http, name="http")
                except OSError as exc:
                    log.error(
                        "cannot listen for http",
                        listen=f"{self.config.http.host}:{self.http_port}",
                        error=str(exc),
                    )
                    self.exit_code = EX_UNAVAILABLE
                    root.cancel()
                    return
                log.info("http server listening", url=self.http_urls[0], shard=str(self.shard))
                if self.config.http.webhooks is not None:
                    try:
                        self.webhook_url = await nursery.start(
                            self._serve_webhooks, name="webhooks"
                        )
                    except OSError as exc:
                        log.error(
                            "cannot listen for webhooks",
                            listen=self.config.http.webhooks.listen,
                            error=str(exc),
                        )
                        self.exit_code = EX_UNAVAILABLE
                        root.cancel()
                        return
                    log.info("webhook listener listening", url=self.webhook_url)
                # READY=1 (below) reports the fleet: wait until the supervisor holds it.
                owned = self.always_on(self.config)
                await supervisor.reload(owned)
                assert self.gc_policy is not None
                nursery.start_soon(self.gc_policy.run, self.registry, name="gc")
                self.gc_policy.request_freeze("fleet started")
                nursery.start_soon(self._reloader, name="reloader")
                nursery.start_soon(
                    self.notifier.watchdog, self._supervisor_answers, name="watchdog"
                )
                if self.notifier.enabled:
                    nursery.start_soon(self._status, name="status")
                log.info(
                    "saynad running",
                    sessions=len(owned),
                    shard=str(self.shard),
                    fleet_sessions=len(self.config.sessions),
                    sayna=self.sayna_url,
                    config=str(self.config_path),
                    http=self.http_urls[0],
                )
                await self.notifier.ready(self.status_line())
                task_status.started(self)


async def run_daemon(
    config_path: Path,
    config: Config,
    *,
    env: Mapping[str, str] | None = None,
    shard_override: tuple[int, int | None] | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the daemon for ``config`` (loaded from ``config_path``) until drained;
    ``shard_override``: :attr:`Daemon.shard_override`.

    Returns the process exit status (0, or ``EX_UNAVAILABLE`` when it could not listen).
    """
    daemon = Daemon(config_path=config_path, config=config, env=env, shard_override=shard_override)
    await daemon.run(task_status=task_status)
    return daemon.exit_code

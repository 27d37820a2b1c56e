"""The Prometheus metrics catalog, on an injected ``CollectorRegistry``.

Every name starts with ``saynad_``; no metric carries a per-session or per-room label
(``docs/operations.md`` lists the catalog with its labels and their bounded values).

Nothing here costs anything per WebSocket frame. Two kinds of metrics live side by side:

- **event counters and histograms** (starts, restarts, failures, webhooks, reloads,
  latencies) are updated when the event happens: each is rare
  compared with frames (a restart, a webhook, one ``speak``);
- **scrape-time sums** (frames, bytes, malformed frames, STT results, barge-ins,
  channel drops, transcript sink entries and errors, sessions by state) are computed
  by :class:`Metrics`' collector when Prometheus scrapes. Each running session
  registers its live counters once (:meth:`Metrics.run_started`, the session's own
  ``Session.stats`` and ``SessionCounters``, which the hot path updates anyway); when
  the run ends its final numbers are folded into running totals
  (:meth:`Metrics.run_ended`). A scrape adds the totals and the live runs, so the
  counters stay monotonic across session ends.

The layers below (actors, client) never import this module: the daemon hands a
:class:`Metrics` to them as a plain observer object or callback.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import trio.lowlevel
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from saynad._version import __version__

__all__ = [
    "AGENT_FAILURE_REASONS",
    "API_OUTCOMES",
    "API_ROUTES",
    "CALL_OUTCOMES",
    "FAILURE_REASONS",
    "WEBHOOK_OUTCOMES",
    "DaemonSnapshot",
    "Metrics",
    "RunLike",
    "trio_task_count",
]

WEBHOOK_OUTCOMES: Final = (
    "accepted",  # 202: a session was started
    "unauthorized",  # 401: missing, malformed or wrong signature
    "stale",  # 401: timestamp outside the tolerance window
    "bad_payload",  # 400
    "replay",  # 409: event id seen before
    "too_large",  # 413
    "saturated",  # 503: inbound.sip_webhook.max_sessions reached
    "draining",  # 503: the daemon is shutting down
    "method_not_allowed",  # 405
    "error",  # 500: a bug; logged with its traceback
)
"""Values of ``saynad_webhook_requests_total{outcome}``."""

API_ROUTES: Final = (
    "calls",  # POST /v1/calls
    "sessions",  # POST /v1/sessions
    "read",  # GET /v1/sessions, /v1/sessions/{name}, /sessions, /sessions/{name}
    "speak",
    "transfer",
    "hangup",
    "delete",
    "restart",  # POST /v1/sessions/{name}/restart, /sessions/{name}/restart
    "reload",  # POST /v1/reload, /reload
)
"""Values of ``saynad_api_requests_total{route}``."""

API_OUTCOMES: Final = (
    "accepted",  # 2xx
    "replayed",  # 202: an Idempotency-Key retry got the first answer
    "unauthorized",  # 401: no token, or an unknown one
    "forbidden",  # 403: the token lacks the route's scope
    "bad_request",  # 400: not JSON, not the schema, a bad Idempotency-Key
    "too_large",  # 413
    "unsupported_media",  # 415
    "invalid",  # 422: unknown template, not an outbound template, a bad phone number
    "not_found",  # 404: no such session
    "conflict",  # 409: not ready, room in use, key reused for another request
    "saturated",  # 503: max_sessions reached
    "draining",  # 503: the daemon is shutting down
    "busy",  # 503: the session's action inbox is full
    "upstream",  # 502: Sayna refused what the request needed
    "error",  # 500: a bug; logged with its traceback
)
"""Values of ``saynad_api_requests_total{outcome}``: every refusal is counted."""

CALL_OUTCOMES: Final = ("answered", "dial_failed", "no_answer", "cancelled", "session_failed")
"""Values of ``saynad_outbound_calls_total{outcome}`` (see
:data:`saynad.actors.behaviours.dialler.CALL_OUTCOMES`)."""

FAILURE_REASONS: Final = (
    "connect",  # the WebSocket could not be opened (refused, DNS, TLS, handshake)
    "ready_timeout",  # no ``ready`` within ready_timeout_s
    "config_rejected",  # the server refused the session's config
    "connection_lost",  # the socket broke after ``ready``
    "protocol",  # the server spoke something saynad could not follow
    "error",  # anything else
    "gave_up",  # restart intensity exceeded: the session is left ``failed``
)
"""Values of ``saynad_session_failures_total{reason}``."""

AGENT_FAILURE_REASONS: Final = (
    "timeout",  # no reply within the agent's timeout_s
    "status",  # the backend answered an HTTP error
    "transport",  # the backend could not be reached or the connection broke
    "bad_reply",  # the backend answered something that is not a reply
    "exception",  # a python agent raised
)
"""Values of ``saynad_agent_failures_total{reason}`` (``AgentError.reason``)."""

SPEAK_BUCKETS: Final = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
REPLY_BUCKETS: Final = (
    # The echo agent answers in about a millisecond (the target: p99 under 5 ms, see
    # docs/benchmarks-agent.md); model-backed agents take hundreds of milliseconds.
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    20.0,
)

_ORIGINS: Final = ("config", "inbound", "outbound", "on_demand")
_RESTART_REASONS: Final = ("error", "exit")
_CHANNELS: Final = ("behaviour_inbox", "pre_ready", "transcript_sink")


class StatsLike(Protocol):
    """What the collector reads of a ``saynad.client.session.SessionStats``."""

    @property
    def frames_in(self) -> int: ...
    @property
    def frames_out(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def unknown_types(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def in_by_kind(self) -> Mapping[str, int]: ...
    @property
    def out_by_kind(self) -> Mapping[str, int]: ...


class CountersLike(Protocol):
    """What the collector reads of a ``saynad.actors.behaviour.SessionCounters``."""

    @property
    def barge_ins(self) -> int: ...
    @property
    def behaviour_errors(self) -> int: ...
    @property
    def agent_requests(self) -> int: ...
    @property
    def agent_failures(self) -> int: ...
    @property
    def agent_failure_reasons(self) -> Mapping[str, int]: ...
    @property
    def dropped_events(self) -> int: ...
    @property
    def sink_dropped(self) -> int: ...
    @property
    def sink_written(self) -> int: ...
    @property
    def sink_errors(self) -> int: ...
    @property
    def audio_sink_errors(self) -> int: ...
    @property
    def audio_chunks_late(self) -> int: ...


class RunLike(Protocol):
    """What the collector reads of one running session (``saynad.actors.session.RunTally``)."""

    @property
    def stats(self) -> StatsLike: ...
    @property
    def counters(self) -> CountersLike: ...
    @property
    def stt_finals(self) -> int: ...


@dataclass(frozen=True)
class DaemonSnapshot:
    """The daemon's state as the collector reports it, built at scrape time."""

    sessions_by_state: Mapping[str, int]
    inbound_active: int = 0
    inbound_max: int = 0
    draining: bool = False
    replay_cache_size: int = 0
    replay_cache_capacity: int = 0


@dataclass
class _Totals:
    """Scrape-time sums: what ended runs left behind, plus (per scrape) the live runs."""

    frames: dict[tuple[str, str], int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    malformed: int = 0
    unknown_types: int = 0
    stt_results: int = 0
    stt_finals: int = 0
    barge_ins: int = 0
    behaviour_errors: int = 0
    agent_requests: int = 0
    agent_failures: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(AGENT_FAILURE_REASONS, 0)
    )
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_CHANNELS, 0))
    sink_written: int = 0
    sink_errors: int = 0
    audio_sink_errors: int = 0
    audio_chunks_late: int = 0

    def copy(self) -> _Totals:
        return _Totals(
            frames=dict(self.frames),
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            malformed=self.malformed,
            unknown_types=self.unknown_types,
            stt_results=self.stt_results,
            stt_finals=self.stt_finals,
            barge_ins=self.barge_ins,
            behaviour_errors=self.behaviour_errors,
            agent_requests=self.agent_requests,
            agent_failures=dict(self.agent_failures),
            drops=dict(self.drops),
            sink_written=self.sink_written,
            sink_errors=self.sink_errors,
            audio_sink_errors=self.audio_sink_errors,
            audio_chunks_late=self.audio_chunks_late,
        )

    def add(self, run: RunLike) -> None:
        stats = run.stats
        frames = self.frames
        for kind, count in stats.in_by_kind.items():
            key = ("in", kind)
            frames[key] = frames.get(key, 0) + count
        for kind, count in stats.out_by_kind.items():
            key = ("out", kind)
            frames[key] = frames.get(key, 0) + count
        self.bytes_in += stats.bytes_in
        self.bytes_out += stats.bytes_out
        self.malformed += stats.malformed
        self.unknown_types += stats.unknown_types
        self.stt_results += stats.in_by_kind.get("stt_result", 0)
        self.stt_finals += run.stt_finals
        counters = run.counters
        self.behaviour_errors += counters.behaviour_errors
        self.barge_ins += counters.barge_ins
        self.agent_requests += counters.agent_requests
        if counters.agent_failures:
            failures = self.agent_failures
            for reason, count in counters.agent_failure_reasons.items():
                failures[reason] = failures.get(reason, 0) + count
        drops = self.drops
        drops["behaviour_inbox"] += counters.dropped_events
        drops["pre_ready"] += stats.dropped
        drops["transcript_sink"] += counters.sink_dropped
        self.sink_written += counters.sink_written
        self.sink_errors += counters.sink_errors
        self.audio_sink_errors += counters.audio_sink_errors
        self.audio_chunks_late += counters.audio_chunks_late


class Metrics:
    """The catalog. Create one per daemon with the registry ``/metrics`` serves.

    ``snapshot`` returns the daemon's current :class:`DaemonSnapshot`; it is called at
    every scrape (by default: no sessions). ``runtime_collectors`` adds the client
    library's standard process and interpreter families to ``registry``
    (``process_resident_memory_bytes``, ``process_cpu_seconds_total``,
    ``process_open_fds``, ``process_start_time_seconds``, ``python_info``,
    ``python_gc_*``): what every Prometheus user expects of a daemon.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        snapshot: Callable[[], DaemonSnapshot] | None = None,
        clock: Callable[[], float] = time.time,
        runtime_collectors: bool = True,
    ) -> None:
        # ``*_created`` series would double the series count for no operational use.
        # (A process-wide switch; saynad has no other metrics.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        self._snapshot = snapshot or (lambda: DaemonSnapshot(sessions_by_state={}))
        self._clock = clock
        self._live: set[RunLike] = set()
        self._ended = _Totals()

        self.build_info = Gauge(
            "saynad_build_info",
            "Always 1; the labels carry the saynad and Python versions.",
            ["version", "python"],
            registry=registry,
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)
        self.shard_info = Gauge(
            "saynad_shard_info",
            "Always 1; the labels carry this process's place in a sharded fleet: shard "
            "index of count (0 of 1: not sharded).",
            ["index", "count"],
            registry=registry,
        )
        self.shard_info.labels(index="0", count="1").set(1)
        self.webhook_listener_open = Gauge(
            "saynad_webhook_listener_open",
            "1 while the SIP webhook listener of http.webhooks accepts calls; 0 while it has "
            "stepped aside (full or draining) and without http.webhooks.",
            registry=registry,
        )

        self.session_starts = Counter(
            "saynad_session_starts",
            "Sessions started (spawned by the supervisor), by origin (config, inbound, "
            "outbound, on_demand).",
            ["origin"],
            registry=registry,
        )
        self.session_restarts = Counter(
            "saynad_session_restarts",
            "Session restarts after backoff, by origin and why the previous run ended "
            "(error, exit).",
            ["origin", "reason"],
            registry=registry,
        )
        self.session_failures = Counter(
            "saynad_session_failures",
            "Session runs that ended abnormally, by origin and reason; reason gave_up counts "
            "sessions left failed after exceeding their restart intensity.",
            ["origin", "reason"],
            registry=registry,
        )
        self.speak_to_first_audio = Histogram(
            "saynad_speak_to_first_audio_seconds",
            "From sending a speak frame to the first TTS audio frame of the socket.",
            buckets=SPEAK_BUCKETS,
            registry=registry,
        )
        self.final_to_speak = Histogram(
            "saynad_final_transcript_to_speak_seconds",
            "From a final STT transcript to the next speak frame sent (agent reply latency).",
            buckets=REPLY_BUCKETS,
            registry=registry,
        )
        self.webhook_requests = Counter(
            "saynad_webhook_requests",
            "SIP webhook requests, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.api_requests = Counter(
            "saynad_api_requests",
            "HTTP API requests (/v1 and the older control routes), by route and outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.outbound_calls = Counter(
            "saynad_outbound_calls",
            "Outbound calls by outcome (answered, dial_failed, no_answer, cancelled, "
            "session_failed); counted once per call, when its outcome is known.",
            ["outcome"],
            registry=registry,
        )
        self.config_reloads = Counter(
            "saynad_config_reloads",
            "Configuration reloads, by outcome (ok, error).",
            ["outcome"],
            registry=registry,
        )
        self.reload_successful = Gauge(
            "saynad_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was tried), else 0.",
            registry=registry,
        )
        self.reload_success_time = Gauge(
            "saynad_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of the configuration (start or reload).",
            registry=registry,
        )
        self.reload_successful.set(1)
        self.reload_success_time.set(self._clock())

        # Every known label value exists from the start, so rate() and alerts see zeros.
        for origin in _ORIGINS:
            self.session_starts.labels(origin=origin)
            for reason in _RESTART_REASONS:
                self.session_restarts.labels(origin=origin, reason=reason)
            for reason in FAILURE_REASONS:
                self.session_failures.labels(origin=origin, reason=reason)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_requests.labels(outcome=outcome)
        for outcome in ("ok", "error"):
            self.config_reloads.labels(outcome=outcome)
        for route in API_ROUTES:
            for outcome in API_OUTCOMES:
                self.api_requests.labels(route=route, outcome=outcome)
        for outcome in CALL_OUTCOMES:
            self.outbound_calls.labels(outcome=outcome)

        registry.register(_LiveCollector(self))
        if runtime_collectors:
            # The same collectors prometheus_client puts in its global registry; saynad
            # serves its own registry, so it adds them here.
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)

    # ----------------------------------------------------------------- sessions

    def run_started(self, run: RunLike) -> None:
        """A session run is live: its counters are read at every scrape from now on."""
        self._live.add(run)

    def run_ended(self, run: RunLike) -> None:
        """A session run ended: fold its final counters into the totals."""
        if run in self._live:
            self._live.discard(run)
            self._ended.add(run)

    def observe_speak_to_audio(self, seconds: float) -> None:
        self.speak_to_first_audio.observe(seconds)

    def observe_final_to_speak(self, seconds: float) -> None:
        self.final_to_speak.observe(seconds)

    def session_started(self, origin: str) -> None:
        self.session_starts.labels(origin=origin).inc()

    def session_restarted(self, origin: str, reason: str) -> None:
        self.session_restarts.labels(origin=origin, reason=reason).inc()

    def session_failed(self, origin: str, reason: str) -> None:
        self.session_failures.labels(origin=origin, reason=reason).inc()

    # ----------------------------------------------------------------- daemon

    def shard(self, index: int, count: int) -> None:
        """This process is shard ``index`` of ``count`` (at start and after a reload)."""
        self.shard_info.clear()
        self.shard_info.labels(index=str(index), count=str(count)).set(1)

    def webhook(self, outcome: str) -> None:
        self.webhook_requests.labels(outcome=outcome).inc()

    def api_request(self, route: str, outcome: str) -> None:
        self.api_requests.labels(route=route, outcome=outcome).inc()

    def outbound_call(self, outcome: str) -> None:
        self.outbound_calls.labels(outcome=outcome).inc()

    def reload_done(self, ok: bool) -> None:
        self.config_reloads.labels(outcome="ok" if ok else "error").inc()
        self.reload_successful.set(1 if ok else 0)
        if ok:
            self.reload_success_time.set(self._clock())

    # ----------------------------------------------------------------- scrape

    def totals(self) -> _Totals:
        """The scrape-time sums: ended runs plus every live run (for tests and the collector)."""
        totals = self._ended.copy()
        for run in self._live:
            totals.add(run)
        return totals

    @property
    def live_runs(self) -> int:
        return len(self._live)

    def snapshot(self) -> DaemonSnapshot:
        return self._snapshot()


def trio_task_count() -> int:
    """Tasks alive in the calling thread's trio run (0 outside one).

    Walks the task tree from the root task through every child nursery. It costs one
    visit per task, paid only at scrape time; a count that grows across server restarts
    means something leaks tasks.
    """
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return 0
    if root is None:
        return 0
    count = 0
    stack = [root]
    while stack:  # bounded: every task is visited once (the tree has no cycles)
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


class _LiveCollector(Collector):
    """The scrape-time part of the catalog."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # Names only: lets the registry check for duplicates without a scrape.
        return list(self._families(None, None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._metrics.totals(), self._metrics.snapshot()))

    def _families(self, t: _Totals | None, snap: DaemonSnapshot | None) -> Iterator[Metric]:
        sessions = GaugeMetricFamily(
            "saynad_sessions", "Supervised sessions, by state.", labels=["state"]
        )
        inbound = GaugeMetricFamily(
            "saynad_inbound_sessions",
            "Sessions admitted from outside (SIP webhooks, outbound calls, sessions on "
            "demand) and not ended.",
        )
        inbound_max = GaugeMetricFamily(
            "saynad_inbound_max_sessions",
            "admission.max_sessions: the cap on sessions admitted from outside, every "
            "origin together.",
        )
        draining = GaugeMetricFamily("saynad_draining", "1 while the daemon drains, else 0.")
        frames = CounterMetricFamily(
            "saynad_ws_frames",
            "WebSocket frames, by direction (in, out) and frame type (audio and tts_audio "
            "are binary).",
            labels=["direction", "type"],
        )
        nbytes = CounterMetricFamily(
            "saynad_ws_bytes",
            "WebSocket payload bytes (characters for text frames), by direction.",
            labels=["direction"],
        )
        malformed = CounterMetricFamily(
            "saynad_ws_malformed_frames",
            "Incoming frames skipped: malformed (not JSON, bad fields) or unknown_type.",
            labels=["reason"],
        )
        stt = CounterMetricFamily(
            "saynad_stt_results",
            "STT results received, by finality (final: true, false).",
            labels=["final"],
        )
        barge = CounterMetricFamily(
            "saynad_barge_ins", "Agent replies interrupted because the caller spoke."
        )
        behaviour_errors = CounterMetricFamily(
            "saynad_behaviour_errors", "Behaviours that raised (each ends its session run)."
        )
        agent_requests = CounterMetricFamily(
            "saynad_agent_requests", "Caller turns handed to an agent backend."
        )
        agent_failures = CounterMetricFamily(
            "saynad_agent_failures",
            "Agent backend failures, by reason (timeout, status, transport, bad_reply, exception).",
            labels=["reason"],
        )
        drops = CounterMetricFamily(
            "saynad_channel_drops",
            "Items lost to a bounded channel's overflow policy, by channel "
            "(behaviour_inbox: media events, pre_ready: events before ready, "
            "transcript_sink: transcript entries).",
            labels=["channel"],
        )
        sink_entries = CounterMetricFamily(
            "saynad_transcript_sink_entries",
            "Transcript entries by outcome at their sinks: written (on disk or delivered), "
            "dropped (queue overflow, retries exhausted, unwritten when the session ended).",
            labels=["outcome"],
        )
        sink_errors = CounterMetricFamily(
            "saynad_transcript_sink_errors",
            "Failed transcript sink attempts (a jsonl open, write, fsync or close; an http "
            "POST); each is retried until its entries are written or dropped.",
        )
        audio_sink_errors = CounterMetricFamily(
            "saynad_audio_sink_errors",
            "TTS utterances an audio sink could not write (directory, disk or I/O error); "
            "each is lost, the session goes on.",
        )
        audio_late = CounterMetricFamily(
            "saynad_audio_chunks_late",
            "Audio chunks an audio source sent more than 50 ms after their real-time due "
            'time (an overloaded process); out of saynad_ws_frames{type="audio"}.',
        )
        replay_size = GaugeMetricFamily(
            "saynad_webhook_replay_cache_entries",
            "Webhook event ids remembered to refuse replays.",
        )
        replay_capacity = GaugeMetricFamily(
            "saynad_webhook_replay_cache_capacity",
            "Bound of the webhook replay cache (0 when inbound calls are not configured).",
        )
        tasks = GaugeMetricFamily(
            "saynad_trio_tasks",
            "Tasks alive in the daemon's trio run (the whole task tree, counted at scrape).",
        )
        if t is not None and snap is not None:
            for state, count in snap.sessions_by_state.items():
                sessions.add_metric([state], count)
            inbound.add_metric([], snap.inbound_active)
            inbound_max.add_metric([], snap.inbound_max)
            draining.add_metric([], 1 if snap.draining else 0)
            for (direction, kind), count in sorted(t.frames.items()):
                frames.add_metric([direction, kind], count)
            nbytes.add_metric(["in"], t.bytes_in)
            nbytes.add_metric(["out"], t.bytes_out)
            malformed.add_metric(["malformed"], t.malformed)
            malformed.add_metric(["unknown_type"], t.unknown_types)
            stt.add_metric(["true"], t.stt_finals)
            stt.add_metric(["false"], max(0, t.stt_results - t.stt_finals))
            barge.add_metric([], t.barge_ins)
            behaviour_errors.add_metric([], t.behaviour_errors)
            agent_requests.add_metric([], t.agent_requests)
            for reason, count in sorted(t.agent_failures.items()):
                agent_failures.add_metric([reason], count)
            for channel, count in t.drops.items():
                drops.add_metric([channel], count)
            sink_entries.add_metric(["written"], t.sink_written)
            sink_entries.add_metric(["dropped"], t.drops["transcript_sink"])
            sink_errors.add_metric([], t.sink_errors)
            audio_sink_errors.add_metric([], t.audio_sink_errors)
            audio_late.add_metric([], t.audio_chunks_late)
            replay_size.add_metric([], snap.replay_cache_size)
            replay_capacity.add_metric([], snap.replay_cache_capacity)
            tasks.add_metric([], trio_task_count())
        yield from (
            sessions,
            inbound,
            inbound_max,
            draining,
            frames,
            nbytes,
            malformed,
            stt,
            barge,
            behaviour_errors,
            agent_requests,
            agent_failures,
            drops,
            sink_entries,
            sink_errors,
            audio_sink_errors,
            audio_late,
            replay_size,
            replay_capacity,
            tasks,
        )

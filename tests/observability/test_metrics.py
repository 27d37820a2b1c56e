"""The metrics catalog: names, labels, scrape-time sums and the REST hook."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from saynad.actors.behaviour import SessionCounters
from saynad.client import RestClient
from saynad.client.session import SessionStats
from saynad.emulator import Emulator
from saynad.errors import NotFoundError, TransportError
from saynad.observability.metrics import (
    AGENT_FAILURE_REASONS,
    API_OUTCOMES,
    API_ROUTES,
    CALL_OUTCOMES,
    FAILURE_REASONS,
    DaemonSnapshot,
    Metrics,
)
from tests.support.daemon import running_daemon
from tests.timing import HANG_S

FORBIDDEN_LABELS = {"session", "room", "stream_id", "name", "caller", "callee"}


@dataclass(eq=False)
class Tally:
    stats: SessionStats = field(default_factory=SessionStats)
    counters: SessionCounters = field(default_factory=SessionCounters)
    stt_finals: int = 0
    origin: str = "config"


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def busy_tally(frames: int = 10) -> Tally:
    tally = Tally()
    s = tally.stats
    s.frames_in, s.frames_out, s.bytes_in, s.bytes_out = frames + 3, frames, 1000, 500
    s.in_by_kind.update({"ready": 1, "stt_result": frames, "tts_audio": 2})
    s.out_by_kind.update({"config": 1, "audio": frames - 1})
    s.malformed, s.unknown_types, s.dropped = 1, 2, 3
    tally.stt_finals = 4
    tally.counters.dropped_events = 5
    tally.counters.behaviour_errors = 1
    tally.counters.barge_ins = 2
    tally.counters.agent_requests = 6
    tally.counters.agent_failed("timeout")
    tally.counters.sink_dropped = 7
    return tally


def test_every_name_is_prefixed_and_no_label_identifies_a_session() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(
        registry, snapshot=lambda: DaemonSnapshot(sessions_by_state={"ready": 1, "failed": 0})
    )
    metrics.run_started(busy_tally())
    metrics.webhook("accepted")
    for family in registry.collect():
        # saynad's catalog, and the client library's standard process and Python families.
        assert family.name.startswith(("saynad_", "process_", "python_")), family.name
        for sample in family.samples:
            assert not FORBIDDEN_LABELS & set(sample.labels), sample
    names = {family.name for family in registry.collect()}
    assert {
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections",
    } <= names
    expected = {
        "saynad_build_info",
        "saynad_sessions",
        "saynad_session_starts",
        "saynad_session_restarts",
        "saynad_session_failures",
        "saynad_ws_frames",
        "saynad_ws_bytes",
        "saynad_ws_malformed_frames",
        "saynad_stt_results",
        "saynad_speak_to_first_audio_seconds",
        "saynad_final_transcript_to_speak_seconds",
        "saynad_barge_ins",
        "saynad_webhook_requests",
        "saynad_config_reloads",
        "saynad_channel_drops",
    }
    assert expected <= names
    text = generate_latest(registry).decode()
    assert "_created" not in text


def test_scrape_time_sums_stay_monotonic_when_runs_end() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    a, b = busy_tally(10), busy_tally(20)
    metrics.run_started(a)
    metrics.run_started(b)
    first = scrape(registry)
    frames = first["saynad_ws_frames_total"]
    assert frames[(("direction", "in"), ("type", "stt_result"))] == 30
    assert frames[(("direction", "out"), ("type", "audio"))] == 28
    assert first["saynad_ws_bytes_total"][(("direction", "in"),)] == 2000
    assert first["saynad_stt_results_total"] == {(("final", "true"),): 8, (("final", "false"),): 22}
    assert first["saynad_ws_malformed_frames_total"] == {
        (("reason", "malformed"),): 2,
        (("reason", "unknown_type"),): 4,
    }
    drops = first["saynad_channel_drops_total"]
    assert drops[(("channel", "behaviour_inbox"),)] == 10
    assert drops[(("channel", "pre_ready"),)] == 6
    assert drops[(("channel", "transcript_sink"),)] == 14
    assert first["saynad_barge_ins_total"][()] == 4
    assert first["saynad_behaviour_errors_total"][()] == 2
    assert first["saynad_agent_requests_total"][()] == 12
    assert first["saynad_agent_failures_total"] == {
        (("reason", reason),): 2 if reason == "timeout" else 0 for reason in AGENT_FAILURE_REASONS
    }

    # a keeps counting, then ends; b is still live. Nothing goes backwards.
    a.stats.in_by_kind["stt_result"] += 5
    metrics.run_ended(a)
    metrics.run_ended(a)  # idempotent
    b.stats.in_by_kind["stt_result"] += 1
    second = scrape(registry)
    assert second["saynad_ws_frames_total"][(("direction", "in"), ("type", "stt_result"))] == 36
    metrics.run_ended(b)
    third = scrape(registry)
    assert third["saynad_ws_frames_total"][(("direction", "in"), ("type", "stt_result"))] == 36
    assert metrics.live_runs == 0


def test_event_counters_and_histograms() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.session_started("inbound")
    metrics.session_restarted("config", "error")
    metrics.session_failed("config", "gave_up")
    metrics.observe_speak_to_audio(0.12)
    metrics.observe_final_to_speak(0.7)
    metrics.reload_done(False)
    values = scrape(registry)
    assert values["saynad_session_starts_total"][(("origin", "inbound"),)] == 1
    assert values["saynad_session_starts_total"][(("origin", "config"),)] == 0
    assert values["saynad_session_restarts_total"][(("origin", "config"), ("reason", "error"))] == 1
    assert (
        values["saynad_session_failures_total"][(("origin", "config"), ("reason", "gave_up"))] == 1
    )
    assert values["saynad_speak_to_first_audio_seconds_bucket"][(("le", "0.2"),)] == 1
    assert values["saynad_speak_to_first_audio_seconds_bucket"][(("le", "0.1"),)] == 0
    assert values["saynad_final_transcript_to_speak_seconds_count"][()] == 1
    assert values["saynad_final_transcript_to_speak_seconds_bucket"][(("le", "0.5"),)] == 0
    assert values["saynad_final_transcript_to_speak_seconds_bucket"][(("le", "0.75"),)] == 1
    assert values["saynad_config_last_reload_successful"][()] == 0
    assert values["saynad_webhook_requests_total"][(("outcome", "saturated"),)] == 0


def test_reply_latency_buckets_resolve_milliseconds() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for seconds in (0.0004, 0.0015, 0.0015, 0.004, 0.03):
        metrics.observe_final_to_speak(seconds)
    buckets = scrape(registry)["saynad_final_transcript_to_speak_seconds_bucket"]
    cumulative = {
        le: buckets[(("le", le),)] for le in ("0.0005", "0.001", "0.002", "0.005", "0.01", "0.05")
    }
    assert cumulative == {
        "0.0005": 1,
        "0.001": 1,
        "0.002": 3,
        "0.005": 4,
        "0.01": 4,
        "0.05": 5,
    }


def test_runtime_collectors_can_be_left_out() -> None:
    registry = CollectorRegistry()
    Metrics(registry, runtime_collectors=False)
    assert all(family.name.startswith("saynad_") for family in registry.collect())


def test_every_fixed_label_set_is_exported_at_zero_from_the_start() -> None:
    values = scrape(_fresh_registry())
    for reason in AGENT_FAILURE_REASONS:
        assert values["saynad_agent_failures_total"][(("reason", reason),)] == 0
    for outcome in ("written", "dropped"):
        assert values["saynad_transcript_sink_entries_total"][(("outcome", outcome),)] == 0
    assert values["saynad_transcript_sink_errors_total"][()] == 0
    for channel in ("behaviour_inbox", "pre_ready", "transcript_sink"):
        assert values["saynad_channel_drops_total"][(("channel", channel),)] == 0
    for reason in ("malformed", "unknown_type"):
        assert values["saynad_ws_malformed_frames_total"][(("reason", reason),)] == 0
    for origin in ("config", "inbound"):
        for reason in FAILURE_REASONS:
            labels = (("origin", origin), ("reason", reason))
            assert values["saynad_session_failures_total"][labels] == 0
    # What the alerts of the call control API and the shards read (alerts.yml).
    for outcome in CALL_OUTCOMES:
        assert values["saynad_outbound_calls_total"][(("outcome", outcome),)] == 0
    for route in API_ROUTES:
        for outcome in API_OUTCOMES:
            labels = (("outcome", outcome), ("route", route))
            assert values["saynad_api_requests_total"][labels] == 0
    assert values["saynad_audio_chunks_late_total"][()] == 0
    assert values["saynad_webhook_listener_open"][()] == 0
    assert values["saynad_shard_info"] == {(("count", "1"), ("index", "0")): 1}


def _fresh_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Metrics(registry)
    return registry


def test_two_thousand_live_sessions_sum_into_one_scrape() -> None:
    # How fast is the benchmark's business (docs/benchmarks-webhooks.md); this is the sum.
    registry = CollectorRegistry()
    states = {"ready": 2000, "failed": 0}
    metrics = Metrics(registry, snapshot=lambda: DaemonSnapshot(sessions_by_state=states))
    for _ in range(2000):
        metrics.run_started(busy_tally())
    values = scrape(registry)
    assert values["saynad_sessions"][(("state", "ready"),)] == 2000
    assert values["saynad_ws_bytes_total"][(("direction", "in"),)] == 2000 * 1000
    assert values["saynad_barge_ins_total"][()] == 2000 * 2


async def test_rest_client_reports_every_attempt_with_folded_endpoints(
    emulator: Emulator,
) -> None:
    attempts: list[tuple[str, int, float]] = []

    def record(endpoint: str, status: int, seconds: float) -> None:
        attempts.append((endpoint, status, seconds))

    async with RestClient(emulator.url, on_response=record) as rest:
        await rest.health()
        with pytest.raises(NotFoundError):
            await rest.get_livekit_room("sip-+1555/odd")
    refused = RestClient("http://127.0.0.1:9", on_response=record, max_retries=0)
    try:
        with pytest.raises(TransportError):
            await refused.health()
    finally:
        await refused.aclose()
    assert [(endpoint, status) for endpoint, status, _ in attempts] == [
        ("GET /", 200),
        ("GET /livekit/rooms/{room_name}", 404),
        ("GET /", 0),
    ]
    assert all(seconds >= 0 for _, _, seconds in attempts)


def test_rest_client_without_hook_is_unchanged() -> None:
    client = RestClient(
        "http://127.0.0.1:9", transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    assert client._on_response is None


async def test_a_talking_session_feeds_the_conversation_metrics(tmp_path: Path) -> None:
    """Caller audio → STT interim and final results → the echo agent speaks → audio:
    every step shows up in the catalog, read from the session's own counters."""
    async with running_daemon(tmp_path, sessions=("talker",), inbound=False, talk=True) as (
        _daemon,
        client,
    ):

        async def scraped() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
            text = (await client.get("/metrics")).text
            found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    key = tuple(sorted(sample.labels.items()))
                    found.setdefault(sample.name, {})[key] = sample.value
            return found

        with trio.fail_after(HANG_S):
            while True:
                values = await scraped()
                replies = values["saynad_final_transcript_to_speak_seconds_count"][()]
                if replies >= 2:
                    break
                await trio.sleep(0.1)
        stt = values["saynad_stt_results_total"]
        assert stt[(("final", "true"),)] >= 2
        assert stt[(("final", "false"),)] >= 1
        assert values["saynad_speak_to_first_audio_seconds_count"][()] >= 1
        frames = values["saynad_ws_frames_total"]
        assert frames[(("direction", "out"), ("type", "audio"))] > 10
        assert frames[(("direction", "in"), ("type", "tts_audio"))] >= 1
        assert values["saynad_ws_bytes_total"][(("direction", "out"),)] > 10_000

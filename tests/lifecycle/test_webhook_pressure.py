"""The webhook-pressure scenario of ``tests/bench/bench_webhook_pressure.py``, small
enough for the test suite (~10 s): 20 talking sessions, 50 valid webhooks a second, then
a flood of bad signatures. The full-size figures (200 sessions, a 60 s flood) are in
``docs/benchmarks-reliability.md``; here the targets are checked with margins a busy CI
machine keeps; and a flood of bad signatures is logged about once a second, not once per
request."""

from __future__ import annotations

from pathlib import Path

import trio
from structlog.testing import capture_logs

from saynad.http import REFUSAL_LOG_INTERVAL_S
from tests.bench.bench_webhook_pressure import Scenario, run_scenario
from tests.support.daemon import running_daemon
from tests.support.samples import signed_call

HOOK = "/webhooks/sip"

SMALL = Scenario(
    sessions=20,
    utterance_ms=250,
    rate=50.0,
    flood_rate=200.0,
    settle_s=1.0,
    baseline_s=2.0,
    webhook_s=2.0,
    flood_s=3.0,
    after_s=0.5,
    pin=False,
)


async def test_webhooks_under_pressure_leave_the_established_sessions_alone(
    tmp_path: Path,
) -> None:
    r = await run_scenario(SMALL, tmp_path)
    message = (
        f"[pressure] {SMALL.sessions} sessions, {SMALL.rate:g} webhooks/s then "
        f"{SMALL.flood_rate:g} bad/s: webhook p50 {r['webhook_p50_ms']:.1f} ms, "
        f"p99 {r['webhook_p99_ms']:.1f} ms; audio {r['audio_out_baseline']:.0f} → "
        f"{r['audio_out_flood']:.0f} frames/s ({r['audio_change_pct']:+.1f} %), finals "
        f"{r['finals_baseline']:.0f} → {r['finals_flood']:.0f}/s "
        f"({r['finals_change_pct']:+.1f} %); replay cache {r['replay_end']:.0f}/"
        f"{r['replay_capacity']:.0f}; STOPPING {r['stopping_ms']:.1f} ms"
    )
    print(message)
    sent = int(SMALL.rate * SMALL.webhook_s)
    assert r["webhook_statuses"] == {"202": sent}, message
    assert r["webhook_p50_ms"] < 100, message
    flood = int(SMALL.flood_rate * SMALL.flood_s)
    assert r["flood_statuses"] == {"401": flood}, message
    assert r["unauthorized_total"] == flood
    # The sessions keep their real-time pace under the flood (audio frames are sent on
    # a clock: any starvation of the daemon shows as a lower rate).
    assert abs(r["audio_change_pct"]) < 10, message
    # The replay cache holds exactly the accepted ids: bad signatures never enter it.
    accepted = sent + sum(v for k, v in r["probe_statuses"].items() if k == "202")
    assert r["accepted_total"] == r["replay_end"] == accepted, message
    assert r["replay_end"] <= r["replay_capacity"]
    assert (r["reconnects"], r["ended_before_stop"]) == (0, 0), message
    assert r["stopping_ms"] < 100, message
    assert r["exit_code"] == 0


async def test_a_flood_of_bad_signatures_logs_one_line_a_second_and_counts_all(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, sessions=()) as (daemon, client):
        headers, body = signed_call("sip-flood", "EV_flood", secret="x" * 32)
        with capture_logs() as logs:
            for _ in range(20):
                assert (await client.post(HOOK, headers=headers, content=body)).status_code == 401
            await trio.sleep(REFUSAL_LOG_INTERVAL_S)
            assert (await client.post(HOOK, headers=headers, content=body)).status_code == 401
        lines = [line for line in logs if line["event"] == "webhook rejected"]
        assert [(line["outcome"], line["not_logged"]) for line in lines] == [
            ("unauthorized", 0),
            ("unauthorized", 19),
        ]
        assert "signature" in lines[0]["reason"].lower()
        text = (await client.get("/metrics")).text
        assert 'saynad_webhook_requests_total{outcome="unauthorized"} 21.0' in text
        assert daemon.verifier is not None
        assert daemon.verifier.statistics().replay_cache_size == 0

"""Outbound-call benchmark against a real ``saynad run``: request → session ready.

::

    python -m tests.bench.bench_calls                # 3 runs → docs/benchmarks-calls.md
    python -m tests.bench.bench_calls --reps 1 --no-write

``--concurrent`` (200) ``POST /v1/calls`` requests sent at once over as many keep-alive
connections (opened before the clock starts) to a fresh daemon pinned to core 0, talking
to an emulator process pinned to core 1. For each call: from the client sending its
request to the session's ``ready`` transition, and to the dialler's ``call answered``
line (the emulator's callee answers at once), both read from the daemon's JSON log
timestamps (same host clock); and the 202's round trip. Medians over the runs of each
run's p50/p99. Run it under the shared lock: ``flock /tmp/saynad-heavy.lock …``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing

from tests.bench.bench_webhooks import _Connection, _machine, _median, _pct, _timestamp
from tests.bench.common import save_results
from tests.support.processes import DaemonProcess, daemon_process, emulator_process
from tests.support.samples import LISTEN_ANY, OPERATOR_TOKEN, STT_YAML, TTS_YAML

ROOT = Path(__file__).resolve().parents[2]


def _config(*, sayna: str, max_sessions: int) -> str:
    return (
        "\n".join(
            [
                f"sayna: {{url: {sayna}}}",
                "http:",
                f'  listen: "{LISTEN_ANY}"',
                "  tokens:",
                '    - {name: bench, token: "${env:SAYNAD_TEST_OPERATOR_TOKEN}", '
                "scopes: [calls, read, control]}",
                "logging: {level: info, format: json}",
                "defaults: {drain_timeout_s: 5, ready_timeout_s: 60}",
                f"admission: {{max_sessions: {max_sessions}}}",
                "outbound: {from_phone_number: '+15550000000'}",
                "templates:",
                "  reminder:",
                f"    stt: {STT_YAML}",
                f"    tts: {TTS_YAML}",
                "    livekit: {}",
                "    outbound: true",
                "    behaviours:",
                '      greeting: {text: "Hello, this is your reminder.", when: first_participant}',
                "      agent: {kind: echo}",
                "sessions: []",
            ]
        )
        + "\n"
    )


def _wanted(raw: bytes) -> bool:
    """Only the lines the benchmark reads are decoded."""
    return (b'"session state"' in raw and b'"ready"' in raw) or b'"call answered"' in raw


def _by_session(process: DaemonProcess, event: str, **match: str) -> dict[str, float]:
    seen: dict[str, float] = {}
    for line in process.lines:
        if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
            seen.setdefault(line["session"], _timestamp(line["timestamp"]))
    return seen


def _request(index: int) -> bytes:
    body = json.dumps({"template": "reminder", "to_phone_number": f"+1555{index:07d}"}).encode()
    head = [
        "POST /v1/calls HTTP/1.1",
        "Host: saynad",
        "Content-Type: application/json",
        f"Authorization: Bearer {OPERATOR_TOKEN}",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def _daemon(config_text: str, tmp: Path) -> AsyncIterator[DaemonProcess]:
    config = tmp / "saynad.yaml"
    config.write_text(config_text)
    async with daemon_process(config, cpu=0, parse=_wanted, keep_raw=False, stop_s=30) as process:
        yield process


async def calls(concurrent: int, tmp: Path) -> dict[str, Any]:
    sent_at: dict[int, float] = {}
    answers: dict[int, tuple[int, dict[str, Any], float]] = {}
    async with (
        emulator_process(cpu=1) as (sayna, _),
        _daemon(_config(sayna=sayna, max_sessions=concurrent), tmp) as daemon,
    ):
        connections = [await _Connection.open(daemon.url) for _ in range(concurrent)]
        requests = [_request(i) for i in range(concurrent)]
        go = trio.Event()

        async def send(index: int) -> None:
            await go.wait()
            sent_at[index] = time.time()
            connection = connections[index]
            status = await connection.request(requests[index])
            body = json.loads(connection.body)
            answers[index] = (status, body, time.time())

        async with trio.open_nursery() as nursery:
            for index in range(concurrent):
                nursery.start_soon(send, index)
            await trio.testing.wait_all_tasks_blocked()
            go.set()
        for connection in connections:
            await connection.stream.aclose()
        assert all(status == 202 for status, _, _ in answers.values()), "a call was refused"
        names = {index: body["session"] for index, (_, body, _) in answers.items()}
        with trio.fail_after(120):
            while not set(names.values()) <= _by_session(daemon, "call answered").keys():
                await daemon.changed()
        ready = _by_session(daemon, "session state", new="ready")
        answered = _by_session(daemon, "call answered")
    to_ready = [ready[names[i]] - sent_at[i] for i in names]
    to_answered = [answered[names[i]] - sent_at[i] for i in names]
    round_trip = [answers[i][2] - sent_at[i] for i in names]
    return {
        "concurrent": concurrent,
        "ready_p50_ms": _pct(to_ready, 50) * 1000,
        "ready_p99_ms": _pct(to_ready, 99) * 1000,
        "ready_max_ms": max(to_ready) * 1000,
        "answered_p50_ms": _pct(to_answered, 50) * 1000,
        "answered_p99_ms": _pct(to_answered, 99) * 1000,
        "accepted_p50_ms": _pct(round_trip, 50) * 1000,
        "accepted_p99_ms": _pct(round_trip, 99) * 1000,
    }


def markdown(results: dict[str, Any], reps: int) -> str:
    c = results["calls"]
    keys = (
        "ready_p50_ms",
        "ready_p99_ms",
        "ready_max_ms",
        "answered_p50_ms",
        "answered_p99_ms",
        "accepted_p50_ms",
        "accepted_p99_ms",
    )
    header = [
        "ready p50 (ms)",
        "ready p99 (ms)",
        "ready max (ms)",
        "answered p50 (ms)",
        "answered p99 (ms)",
        "202 p50 (ms)",
        "202 p99 (ms)",
    ]
    table = "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---:|" * len(header),
            "| " + " | ".join(f"{c[k]:.1f}" for k in keys) + " |",
        ]
    )
    return f"""# saynad outbound-call benchmark

Generated by `make bench` (`tests/bench/bench_calls.py`) on {results["when"]}.
Machine: {results["machine"]}; load average {results["load"]} when the run started
(1, 5, 15 min: anything above 0 is other work competing for the two cores). Loopback
only; the daemon (`saynad run`) is pinned to core 0, the emulator process to core 1, the
client is unpinned. Medians of {reps} runs, each on a fresh daemon.

## Request → session ready, {c["concurrent"]} outbound calls at once

{c["concurrent"]} `POST /v1/calls` requests sent at the same moment over as many
keep-alive connections (`admission.max_sessions: {c["concurrent"]}`). Each call's session
connects to Sayna, configures STT, TTS and its LiveKit room, reports `ready`, then asks
Sayna to dial (`POST /sip/call`); the emulator's callee answers at once. From the client
sending each request to the session's `ready` transition, and to its `call answered`
line (daemon log timestamps, same host clock); and the 202's round trip.

{table}
"""


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(args.tmp)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs = []
    for rep in range(args.reps):
        directory = base / f"calls-{rep}"
        directory.mkdir(parents=True, exist_ok=True)
        result = await calls(args.concurrent, directory)
        print(f"  calls #{rep + 1}: {result}", flush=True)
        runs.append(result)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "load": load,
        "runs": runs,
        "calls": _median(runs),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench_calls")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--tmp", default="/tmp/saynad-bench-calls")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-calls.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    print(f"outbound-call benchmark: concurrent={args.concurrent} reps={args.reps}", flush=True)
    results = trio.run(_run, args)
    document = None if args.no_write else args.out
    save_results(results, "calls.json", document, markdown(results, args.reps))
    return results


if __name__ == "__main__":
    main()

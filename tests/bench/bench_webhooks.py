"""Inbound-call and metrics benchmarks against a real ``saynad run``.

::

    python -m tests.bench.bench_webhooks             # 3 runs → docs/benchmarks-webhooks.md
    python -m tests.bench.bench_webhooks --reps 1 --no-write

Three measurements, each on a fresh daemon (pinned to core 0) talking to an emulator
process (pinned to core 1); the client runs unpinned and signs every webhook before the
clock starts:

1. **Admission throughput**: ``--accept`` signed webhooks (``max_sessions`` equal to it)
   posted by 32 concurrent senders; accepted per second until ``max_sessions`` is
   reached, then the rate at which the surplus is refused (503), and the time until
   every admitted call's session is ready.
2. **Webhook → session ready** with ``--concurrent`` calls arriving at once: from the
   moment the client sends each POST to the session's ``ready`` transition (the daemon's
   JSON log timestamp; same host clock), p50/p99; and the 202's round trip.
3. **Scrape time** of ``GET /metrics`` with ``--scrape-sessions`` ready sessions, measured
   by the client over HTTP (50 scrapes after one warm-up).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from saynad.protocol.webhooks import (
    SipWebhook,
    WebhookParticipant,
    WebhookRoom,
    encode_webhook_payload,
    sign_webhook,
)
from tests.bench.common import save_results
from tests.support.processes import DaemonProcess, daemon_process, emulator_process
from tests.support.samples import LISTEN_ANY, SECRET, STT_YAML, TTS_YAML

ROOT = Path(__file__).resolve().parents[2]
SENDERS = 32
SETTLE_S = 5.0


def _config(*, sayna: str, max_sessions: int, sessions: int = 0, level: str = "info") -> str:
    lines = [
        f"sayna: {{url: {sayna}}}",
        f'http: {{listen: "{LISTEN_ANY}"}}',
        f"logging: {{level: {level}, format: json}}",
        "defaults: {drain_timeout_s: 5, ready_timeout_s: 60}",
        "inbound:",
        "  sip_webhook:",
        "    template: call",
        "    secrets:",
        "      - ${env:SAYNAD_TEST_WEBHOOK_SECRET}",
        f"    max_sessions: {max_sessions}",
        "templates:",
        "  call:",
        f"    stt: {STT_YAML}",
        f"    tts: {TTS_YAML}",
        "    livekit: {}",
        "    behaviours:",
        '      greeting: {text: "Hello, how can I help?", when: first_participant}',
        "      agent: {kind: echo}",
        "  voice:",
        f"    stt: {STT_YAML}",
        f"    tts: {TTS_YAML}",
        "    behaviours:",
        '      greeting: {text: "hello"}',
        "sessions:" + ("" if sessions else " []"),
    ]
    lines += [f"  - {{name: s{i:05d}, template: voice}}" for i in range(sessions)]
    return "\n".join(lines) + "\n"


def _signed(i: int, tag: str) -> tuple[str, dict[str, str], bytes]:
    event_id = f"EV_{tag}{i:06d}"
    number = f"+1555{i:07d}"
    body = encode_webhook_payload(
        SipWebhook(
            participant=WebhookParticipant(name="", identity=f"sip_{number}", sid=f"PA_{i}"),
            room=WebhookRoom(name=f"sip-{tag}-{number}", sid=f"RM_{i}"),
            from_phone_number=number,
            to_phone_number="+15550000000",
            room_prefix="sip-",
            sip_host="sip.example.com",
            sip_headers={"x-to-ip": "sip.example.com"},
        )
    )
    headers = sign_webhook(SECRET, body, timestamp=int(time.time()), event_id=event_id)
    return f"sip-{event_id}", headers, body


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Daemon:
    """``saynad run`` as the benchmark sees it: its address, and when each session
    reported ``ready`` (wall clock, from its log line)."""

    def __init__(self, process: DaemonProcess) -> None:
        self.process = process

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ready_at(self) -> dict[str, float]:
        ready: dict[str, float] = {}
        for line in self.process.lines:
            if line.get("event") == "session state" and line.get("new") == "ready":
                ready.setdefault(line["session"], _timestamp(line["timestamp"]))
        return ready


def _ready_line(raw: bytes) -> bool:
    """Only the lines :attr:`Daemon.ready_at` reads are decoded."""
    return b'"session state"' in raw and b'"ready"' in raw


@asynccontextmanager
async def _daemon(config_text: str, tmp: Path) -> AsyncIterator[Daemon]:
    """``saynad run`` on core 0; SIGTERM at the end (SIGKILL 30 s later)."""
    config = tmp / "saynad.yaml"
    config.write_text(config_text)
    async with daemon_process(
        config, cpu=0, parse=_ready_line, keep_raw=False, stop_s=30
    ) as process:
        yield Daemon(process)


async def _wait_ready(daemon: Daemon, names: set[str], within_s: float) -> None:
    with trio.fail_after(within_s):
        while not names <= daemon.ready_at.keys():
            await daemon.process.changed()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class _Connection:
    """A keep-alive HTTP/1.1 connection sending pre-built requests: a lighter client than
    httpx, so the numbers describe the daemon rather than the benchmark's own parsing."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.body = b""
        """The body of the last answer."""

    @classmethod
    async def open(cls, url: str) -> _Connection:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(await trio.open_tcp_stream(host, int(port)))

    async def request(self, raw: bytes) -> int:
        await self.stream.send_all(raw)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self.stream.receive_some(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += await self.stream.receive_some(65536)
        self.body, self.buffer = rest[:length], rest[length:]
        return status

    async def aclose(self) -> None:
        await self.stream.aclose()


def _raw_post(headers: dict[str, str], body: bytes) -> bytes:
    lines = ["POST /webhooks/sip HTTP/1.1", "Host: saynad", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _post_all(
    url: str,
    calls: list[tuple[str, dict[str, str], bytes]],
    senders: int,
    on_sent: Callable[[str, float], None] | None = None,
) -> list[tuple[int, float, float]]:
    """POST every call over ``senders`` connections (opened before the first POST);
    returns (status, sent, answered) per call, wall-clock."""
    raw = [(name, _raw_post(headers, body)) for name, headers, body in calls]
    results: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * len(calls)
    connections = [await _Connection.open(url) for _ in range(min(senders, len(calls)))]
    queue = iter(enumerate(raw))
    go = trio.Event()

    async def sender(connection: _Connection) -> None:
        await go.wait()
        for index, (name, request) in queue:
            sent = time.time()
            if on_sent is not None:
                on_sent(name, sent)
            status = await connection.request(request)
            results[index] = (status, sent, time.time())

    try:
        async with trio.open_nursery() as nursery:
            for connection in connections:
                nursery.start_soon(sender, connection)
            await trio.testing.wait_all_tasks_blocked()
            go.set()
    finally:
        for connection in connections:
            await connection.aclose()
    return results


async def admission(accept: int, tmp: Path) -> dict[str, Any]:
    calls = [_signed(i, "a") for i in range(accept)]
    surplus = [_signed(i, "s") for i in range(200)]
    async with emulator_process(cpu=1) as (sayna, _):
        config = _config(sayna=sayna, max_sessions=accept)
        async with _daemon(config, tmp) as daemon:
            results = await _post_all(daemon.url, calls, SENDERS)
            first = min(sent for _, sent, _ in results)
            accepted_s = max(answered for _, _, answered in results) - first
            statuses = [status for status, _, _ in results]
            assert statuses.count(202) == accept, f"accepted {statuses.count(202)}/{accept}"
            refused = await _post_all(daemon.url, surplus, SENDERS)
            refused_s = max(a for _, _, a in refused) - min(sent for _, sent, _ in refused)
            assert all(status == 503 for status, _, _ in refused)
            await _wait_ready(daemon, {name for name, _, _ in calls}, within_s=300)
            all_ready_s = max(daemon.ready_at[name] for name, _, _ in calls) - first
    return {
        "accept": accept,
        "accepted_per_s": accept / accepted_s,
        "refused_per_s": len(surplus) / refused_s,
        "all_ready_s": all_ready_s,
    }


async def ready_latency(concurrent: int, tmp: Path) -> dict[str, Any]:
    calls = [_signed(i, "l") for i in range(concurrent)]
    sent_at: dict[str, float] = {}
    async with emulator_process(cpu=1) as (sayna, _):
        config = _config(sayna=sayna, max_sessions=concurrent)
        async with _daemon(config, tmp) as daemon:
            results = await _post_all(
                daemon.url, calls, concurrent, on_sent=lambda name, t: sent_at.__setitem__(name, t)
            )
            assert all(status == 202 for status, _, _ in results)
            await _wait_ready(daemon, set(sent_at), within_s=120)
    latency = [daemon.ready_at[name] - sent_at[name] for name in sent_at]
    answer = [answered - sent for _, sent, answered in results]
    return {
        "concurrent": concurrent,
        "ready_p50_ms": _pct(latency, 50) * 1000,
        "ready_p99_ms": _pct(latency, 99) * 1000,
        "ready_max_ms": max(latency) * 1000,
        "answer_p50_ms": _pct(answer, 50) * 1000,
        "answer_p99_ms": _pct(answer, 99) * 1000,
    }


async def scrape(sessions: int, tmp: Path) -> dict[str, Any]:
    names = {f"s{i:05d}" for i in range(sessions)}
    async with emulator_process(cpu=1) as (sayna, _):
        config = _config(sayna=sayna, max_sessions=10, sessions=sessions, level="info")
        async with _daemon(config, tmp) as daemon:
            await _wait_ready(daemon, names, within_s=300)
            # Let the connection storm settle (greetings spoken), so the scrapes measure
            # the scrape and not the backlog of 2,000 sessions starting at once.
            await trio.sleep(SETTLE_S)
            async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
                first = await client.get("/metrics")
                assert f'saynad_sessions{{state="ready"}} {sessions}.0' in first.text
                timings = []
                for _ in range(50):
                    started = time.perf_counter()
                    response = await client.get("/metrics")
                    timings.append(time.perf_counter() - started)
                    assert response.status_code == 200
    series = sum(1 for line in first.text.splitlines() if line and not line.startswith("#"))
    return {
        "sessions": sessions,
        "scrape_p50_ms": _pct(timings, 50) * 1000,
        "scrape_p99_ms": _pct(timings, 99) * 1000,
        "scrape_max_ms": max(timings) * 1000,
        "bytes": len(first.content),
        "series": series,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        key: statistics.median(run[key] for run in runs)
        if isinstance(runs[0][key], float)
        else runs[0][key]
        for key in runs[0]
    }


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _table(header: list[str], row: list[str]) -> str:
    return "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---:|" * len(header),
            "| " + " | ".join(row) + " |",
        ]
    )


def markdown(results: dict[str, Any], reps: int) -> str:
    a, lat, s = results["admission"], results["latency"], results["scrape"]
    return f"""# saynad inbound-call and metrics benchmarks

Generated by `make bench` (`tests/bench/bench_webhooks.py`) on {results["when"]}.
Machine: {results["machine"]}; load average {results["load"]} when the run started
(1, 5, 15 min: anything above 0 is other work competing for the two cores). Loopback
only; the daemon (`saynad run`) is pinned to
core 0, the emulator process to core 1, the client is unpinned and signs every webhook
before the clock starts. Medians of {reps} runs, each on a fresh daemon.

## Admission

{a["accept"]} signed SIP webhooks (`max_sessions: {a["accept"]}`), {SENDERS} concurrent
senders. Each accepted webhook starts a LiveKit call session (greeting + echo agent)
while the next ones arrive.

{
        _table(
            [
                "accepted/s (until max_sessions)",
                "refused/s (503 past it)",
                f"first POST → all {a['accept']} sessions ready (s)",
            ],
            [f"{a['accepted_per_s']:.0f}", f"{a['refused_per_s']:.0f}", f"{a['all_ready_s']:.2f}"],
        )
    }

## Webhook → session ready, {lat["concurrent"]} calls at once

From the client sending each POST to the session's `ready` transition (daemon log
timestamp, same host clock), and the 202's round trip.

{
        _table(
            ["ready p50 (ms)", "ready p99 (ms)", "ready max (ms)", "202 p50 (ms)", "202 p99 (ms)"],
            [
                f"{lat[k]:.1f}"
                for k in (
                    "ready_p50_ms",
                    "ready_p99_ms",
                    "ready_max_ms",
                    "answer_p50_ms",
                    "answer_p99_ms",
                )
            ],
        )
    }

## `/metrics` with {s["sessions"]} sessions

{s["sessions"]} ready WebSocket sessions, {SETTLE_S:g} s after the last one became ready;
50 scrapes over HTTP after one warm-up
({s["series"]} samples, {s["bytes"] / 1024:.1f} KiB). Target: under 50 ms.

{
        _table(
            ["scrape p50 (ms)", "scrape p99 (ms)", "max (ms)"],
            [f"{s[k]:.1f}" for k in ("scrape_p50_ms", "scrape_p99_ms", "scrape_max_ms")],
        )
    }
"""


def _directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    base = _directory(Path(args.tmp))
    # Other work on the machine skews the numbers: say how busy it was.
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs: dict[str, list[dict[str, Any]]] = {"admission": [], "latency": [], "scrape": []}
    for rep in range(args.reps):
        benches: list[tuple[str, Callable[[Path], Awaitable[dict[str, Any]]]]] = [
            ("admission", partial(admission, args.accept)),
            ("latency", partial(ready_latency, args.concurrent)),
            ("scrape", partial(scrape, args.scrape_sessions)),
        ]
        for kind, bench in benches:
            directory = _directory(base / f"{kind}-{rep}")
            result = await bench(directory)
            print(f"  {kind} #{rep + 1}: {result}", flush=True)
            runs[kind].append(result)
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "load": load,
        "runs": runs,
        **{kind: _median(values) for kind, values in runs.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench_webhooks")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--accept", type=int, default=500)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--scrape-sessions", type=int, default=2000)
    parser.add_argument("--tmp", default="/tmp/saynad-bench-webhooks")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-webhooks.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    print(
        f"webhook benchmark: accept={args.accept} concurrent={args.concurrent} "
        f"scrape_sessions={args.scrape_sessions} reps={args.reps}",
        flush=True,
    )
    results = trio.run(_run, args)
    document = None if args.no_write else args.out
    save_results(results, "webhooks.json", document, markdown(results, args.reps))
    return results


if __name__ == "__main__":
    main()

"""Scrapes that stall calls: audio pacing of a fleet under 1,000 concurrent ``GET /metrics``.

A real ``saynad run`` (pinned to core 0) supervises ``--sessions`` always-on sessions,
each streaming the bundled caller audio in real time in ``--chunk-ms`` chunks to a
minimal Sayna peer in this process (core 1) that answers ``ready`` and timestamps every
binary frame as it arrives. A flood client (another process, core 1) keeps
``--concurrency`` scrapes in flight at once — one per keep-alive connection, the next
sent as soon as the last answer is read — for ``--flood-s`` seconds.

The figure is the **audio stall**: how much later than its pace a frame arrives, i.e.
each gap between two frames of one session minus ``--chunk-ms`` (a source that fell
behind sends the late chunks at once, so a stall shows as one long gap). Percentiles
over every gap of every session, in a quiet baseline and during the flood, plus the
scrapes answered per second.

``--saynad-src DIR`` runs the daemon from another checkout (``PYTHONPATH``): how the
"before" figures are taken against the code before a change::

    git worktree add /tmp/saynad-before <commit>
    flock /tmp/saynad-heavy.lock .venv/bin/python -m tests.bench.bench_scrape_flood \\
        --saynad-src /tmp/saynad-before --label before
    flock /tmp/saynad-heavy.lock .venv/bin/python -m tests.bench.bench_scrape_flood --label after
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

ROOT = Path(__file__).resolve().parents[2]
CALLER_WAV = ROOT / "saynad" / "data" / "demo-caller.wav"
STT = (
    "{provider: deepgram, language: en-US, sample_rate: 16000, channels: 1, "
    "punctuation: true, encoding: linear16, model: nova-3}"
)
TTS = "{provider: deepgram, model: aura-2, voice_id: aura-asteria-en, sample_rate: 16000}"
READY = b'{"type":"ready","stream_id":"bench"}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(pid, {cpu})


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- the Sayna peer


@dataclass
class Peer:
    """Frame arrival times per connection (``time.monotonic()``)."""

    arrivals: list[list[float]] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        times: list[float] = []
        self.arrivals.append(times)
        ready_sent = False
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                now = time.monotonic()
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        await stream.send_all(ws.send(AcceptConnection()))
                    elif isinstance(event, TextMessage) and not ready_sent:
                        await stream.send_all(ws.send(TextMessage(READY.decode())))
                        ready_sent = True
                    elif isinstance(event, BytesMessage) and event.message_finished:
                        times.append(now)
                    elif isinstance(event, Ping):
                        await stream.send_all(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


def gaps_between(arrivals: list[list[float]], start: float, end: float) -> list[float]:
    """Every gap (s) between consecutive frames of one connection, both inside the window."""
    out: list[float] = []
    for times in arrivals:
        inside = [t for t in times if start <= t <= end]
        out.extend(b - a for a, b in itertools.pairwise(inside))
    return out


# --------------------------------------------------------------------------- the flood client


async def _scrape_loop(host: str, port: int, until: float, counts: list[int]) -> None:
    request = f"GET /metrics HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode()
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError:
        counts[1] += 1
        return
    async with stream:
        buffer = b""
        while time.monotonic() < until:
            await stream.send_all(request)
            while b"\r\n\r\n" not in buffer:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    counts[1] += 1
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    counts[1] += 1
                    return
                buffer += chunk
            buffer = buffer[length:]
            if head.startswith(b"HTTP/1.1 200"):
                counts[0] += 1
            else:
                counts[1] += 1


def flood_client(url: str, concurrency: int, duration_s: float) -> None:
    """Keep ``concurrency`` scrapes in flight for ``duration_s``; print the counts as JSON."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    counts = [0, 0]  # answered 200, failed

    async def run() -> None:
        until = time.monotonic() + duration_s
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(_scrape_loop, host, int(port), until, counts)

    started = time.monotonic()
    trio.run(run)
    print(json.dumps({"ok": counts[0], "failed": counts[1], "s": time.monotonic() - started}))


# --------------------------------------------------------------------------- one run


def config_text(args: argparse.Namespace, *, sayna: str, port: int) -> str:
    sessions = "".join(f"  - {{name: s{i}, template: voice}}\n" for i in range(args.sessions))
    return (
        f"sayna: {{url: {sayna!r}}}\n"
        f'http: {{listen: "127.0.0.1:{port}"}}\n'
        "logging: {level: warning, format: json}\n"
        "defaults: {backoff: {initial_s: 0.2, max_s: 1}}\n"
        "templates:\n"
        "  voice:\n"
        f"    stt: {STT}\n"
        f"    tts: {TTS}\n"
        "    behaviours:\n"
        f"      audio: {{source: {{path: {json.dumps(str(CALLER_WAV))}, loop: true, "
        f"chunk_ms: {args.chunk_ms}}}}}\n"
        f"sessions:\n{sessions}"
    )


async def one_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    peer = Peer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, peer.handle, 0)
        sayna = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"
        http_port = _free_port()
        config = tmp / "saynad.yaml"
        config.write_text(config_text(args, sayna=sayna, port=http_port))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.saynad_src:
            env["PYTHONPATH"] = args.saynad_src
        daemon = await trio.lowlevel.open_process(
            [sys.executable, "-m", "saynad", "run", "--config", str(config)],
            env=env,
            cwd=args.saynad_src or ROOT,
            stdout=subprocess.DEVNULL,
        )
        _pin(daemon.pid, 0)
        _pin(os.getpid(), 1)
        try:
            with trio.fail_after(60):
                # The daemon is another process: poll until every session streams.
                while sum(1 for times in peer.arrivals if len(times) > 10) < args.sessions:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            await trio.sleep(1.0)  # settle
            base_start = time.monotonic()
            await trio.sleep(args.baseline_s)
            base_end = time.monotonic()
            client = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "tests.bench.bench_scrape_flood",
                    "--flood-client",
                    f"http://127.0.0.1:{http_port}",
                    "--concurrency",
                    str(args.concurrency),
                    "--flood-s",
                    str(args.flood_s),
                ],
                capture_stdout=True,
                cwd=ROOT,
                preexec_fn=lambda: _pin(0, 1),
                check=True,
            )
            flood_end = time.monotonic()
            scrapes = json.loads(client.stdout)
        finally:
            daemon.terminate()
            with trio.CancelScope(shield=True):
                await daemon.wait()
            nursery.cancel_scope.cancel()
    period = args.chunk_ms / 1000
    baseline = [max(0.0, g - period) for g in gaps_between(peer.arrivals, base_start, base_end)]
    flood = [max(0.0, g - period) for g in gaps_between(peer.arrivals, base_end, flood_end)]
    return {
        "baseline_p50_ms": 1000 * _pct(baseline, 0.5),
        "baseline_p99_ms": 1000 * _pct(baseline, 0.99),
        "baseline_max_ms": 1000 * max(baseline, default=float("nan")),
        "flood_p50_ms": 1000 * _pct(flood, 0.5),
        "flood_p99_ms": 1000 * _pct(flood, 0.99),
        "flood_max_ms": 1000 * max(flood, default=float("nan")),
        "frames_baseline": len(baseline),
        "frames_flood": len(flood),
        "scrapes_ok": scrapes["ok"],
        "scrapes_failed": scrapes["failed"],
        "scrapes_per_s": scrapes["ok"] / scrapes["s"],
    }


def _machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_scrape_flood")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--chunk-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--baseline-s", type=float, default=5.0)
    parser.add_argument("--flood-s", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--saynad-src", default=None, help="run the daemon from this checkout")
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", default=None, help="append the results (JSON lines) here")
    parser.add_argument("--flood-client", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flood_client:
        flood_client(args.flood_client, args.concurrency, args.flood_s)
        return {}
    runs = []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="saynad-scrape-") as tmp:
            runs.append(trio.run(one_run, args, Path(tmp)))
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "label": args.label,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": _machine(),
        "sessions": args.sessions,
        "chunk_ms": args.chunk_ms,
        "concurrency": args.concurrency,
        "flood_s": args.flood_s,
        "runs": runs,
        "median": {key: statistics.median(r[key] for r in runs) for key in runs[0]},
    }
    print(json.dumps(result["median"]), flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
    return result


if __name__ == "__main__":
    main()

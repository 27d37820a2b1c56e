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

Each run is saved under its ``--label`` in ``bench-results/scrape-flood.json`` and the
section "Scrapes that stall calls" of docs/benchmarks-reliability.md is rewritten from
every saved label (``--report-only``: from the saved results alone). ``--saynad-src
DIR`` runs the daemon from another copy of the code (``PYTHONPATH``): how the "before"
figures are taken::

    git archive <commit before> | tar -x -C /tmp/saynad-before
    flock /tmp/saynad-heavy.lock .venv/bin/python -m tests.bench.bench_scrape_flood \\
        --saynad-src /tmp/saynad-before --label before
    flock /tmp/saynad-heavy.lock .venv/bin/python -m tests.bench.bench_scrape_flood
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
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

from tests.bench.bench_webhook_pressure import ROOT
from tests.bench.bench_webhook_pressure import _machine as machine
from tests.bench.bench_webhook_pressure import _pct as percentile
from tests.support.processes import daemon_process, pin
from tests.support.samples import CALLER_WAV, LISTEN_ANY, STT_YAML, TTS_YAML

READY = b'{"type":"ready","stream_id":"bench"}'


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


def config_text(args: argparse.Namespace, *, sayna: str, templates: int = 0) -> str:
    """The fleet; ``templates`` unused data-only templates make the file slow to load."""
    sessions = "".join(f"  - {{name: s{i}, template: voice}}\n" for i in range(args.sessions))
    unused = "".join(f"  t{i}: {{audio: false}}\n" for i in range(templates))
    return (
        f"sayna: {{url: {sayna!r}}}\n"
        f'http: {{listen: "{LISTEN_ANY}", control_token: "${{env:SAYNAD_BENCH_TOKEN}}"}}\n'
        # info: the line with the address the daemon bound (nothing logs per scrape)
        "logging: {level: info, format: json}\n"
        "defaults: {backoff: {initial_s: 0.2, max_s: 1}}\n"
        "templates:\n"
        "  voice:\n"
        f"    stt: {STT_YAML}\n"
        f"    tts: {TTS_YAML}\n"
        "    behaviours:\n"
        f"      audio: {{source: {{path: {json.dumps(str(CALLER_WAV))}, loop: true, "
        f"chunk_ms: {args.chunk_ms}}}}}\n"
        f"{unused}"
        f"sessions:\n{sessions}"
    )


TOKEN: Final = "bench-control-token-0123456789"


async def reload_once(config: Path, text: str, url: str) -> dict[str, Any]:
    """``POST /reload`` with ``text`` written (it answers once the reload is applied);
    ``/healthz`` is asked every 50 ms meanwhile."""
    health: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await trio.Path(config).write_text(text)

        async def probe() -> None:
            while True:
                asked = time.monotonic()
                await client.get("/healthz")
                health.append(time.monotonic() - asked)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            started = time.monotonic()
            response = await client.post("/reload", headers={"authorization": f"Bearer {TOKEN}"})
            took = time.monotonic() - started
            nursery.cancel_scope.cancel()
    assert response.status_code == 200, response.text
    return {"reload_s": took, "healthz": health}


async def one_run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    peer = Peer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, peer.handle, 0)
        sayna = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/ws"
        config = tmp / "saynad.yaml"
        config.write_text(config_text(args, sayna=sayna))
        env = {"SAYNAD_BENCH_TOKEN": TOKEN}
        if args.saynad_src:
            env["PYTHONPATH"] = args.saynad_src
        runner = daemon_process(
            config,
            env=env,
            cwd=Path(args.saynad_src) if args.saynad_src else ROOT,
            cpu=0,
            parse=lambda raw: False,  # only the address it bound is read
            keep_raw=False,
            stop_s=60,
        )
        async with runner as daemon:
            pin(os.getpid(), 1)
            url = daemon.url
            with trio.fail_after(60):
                # The daemon is another process: poll until every session streams.
                while sum(1 for times in peer.arrivals if len(times) > 10) < args.sessions:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            await trio.sleep(1.0)  # settle
            base_start = time.monotonic()
            await trio.sleep(args.baseline_s)
            base_end = time.monotonic()
            if args.reload_templates:
                # Reloads of a large file instead of a scrape flood.
                big = config_text(args, sayna=sayna, templates=args.reload_templates)
                small = config_text(args, sayna=sayna)
                health: list[float] = []
                took: list[float] = []
                for text in (big, small, big):
                    outcome = await reload_once(config, text, url)
                    health += outcome["healthz"]
                    took.append(outcome["reload_s"])
                flood_end = time.monotonic()
                scrapes = {"ok": 0, "failed": 0, "s": 1.0}
            else:
                flood_end, scrapes = await _flood(args, url)
        nursery.cancel_scope.cancel()
    period = args.chunk_ms / 1000
    baseline = [max(0.0, g - period) for g in gaps_between(peer.arrivals, base_start, base_end)]
    flood = [max(0.0, g - period) for g in gaps_between(peer.arrivals, base_end, flood_end)]
    result = {
        "baseline_p50_ms": 1000 * percentile(baseline, 50),
        "baseline_p99_ms": 1000 * percentile(baseline, 99),
        "baseline_max_ms": 1000 * max(baseline, default=float("nan")),
        "flood_p50_ms": 1000 * percentile(flood, 50),
        "flood_p99_ms": 1000 * percentile(flood, 99),
        "flood_max_ms": 1000 * max(flood, default=float("nan")),
        "frames_baseline": len(baseline),
        "frames_flood": len(flood),
        "scrapes_ok": scrapes["ok"],
        "scrapes_failed": scrapes["failed"],
        "scrapes_per_s": scrapes["ok"] / scrapes["s"],
    }
    if args.reload_templates:
        result["reload_s"] = statistics.median(took)
        result["healthz_max_ms"] = 1000 * max(health)
    return result


async def _flood(args: argparse.Namespace, url: str) -> tuple[float, dict[str, Any]]:
    """Run the flood client for ``--flood-s``; when it ended, and what it counted."""
    client = await trio.run_process(
        [
            sys.executable,
            "-m",
            "tests.bench.bench_scrape_flood",
            "--flood-client",
            url,
            "--concurrency",
            str(args.concurrency),
            "--flood-s",
            str(args.flood_s),
        ],
        capture_stdout=True,
        cwd=ROOT,
        preexec_fn=lambda: pin(0, 1),
        check=True,
    )
    return time.monotonic(), json.loads(client.stdout)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_scrape_flood")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--chunk-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--baseline-s", type=float, default=5.0)
    parser.add_argument("--flood-s", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--saynad-src",
        default=None,
        help="run the daemon from this checkout (one that accepts http.listen port 0)",
    )
    parser.add_argument("--label", default="after")
    parser.add_argument(
        "--reload-templates",
        type=int,
        default=0,
        help="instead of the flood: reload a file with this many extra templates (3 times)",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-reliability.md"))
    parser.add_argument("--no-write", action="store_true", help="do not touch --out")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the section from the saved results"
    )
    parser.add_argument("--flood-client", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flood_client:
        flood_client(args.flood_client, args.concurrency, args.flood_s)
        return {}
    saved: dict[str, Any] = json.loads(SAVED.read_text()) if SAVED.exists() else {}
    if args.report_only:
        write_section(Path(args.out), saved)
        return saved
    runs = []
    for _ in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="saynad-scrape-") as tmp:
            runs.append(trio.run(one_run, args, Path(tmp)))
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "label": args.label,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine() + "; load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "sessions": args.sessions,
        "chunk_ms": args.chunk_ms,
        "concurrency": args.concurrency,
        "flood_s": args.flood_s,
        "templates": args.reload_templates,
        "runs": runs,
        "median": {key: statistics.median(r[key] for r in runs) for key in runs[0]},
    }
    print(json.dumps(result["median"]), flush=True)
    saved[args.label] = result
    SAVED.parent.mkdir(exist_ok=True)
    SAVED.write_text(json.dumps(saved, indent=2))
    if not args.no_write:
        write_section(Path(args.out), saved)
    return result


# --------------------------------------------------------------------------- the document

SAVED: Final = ROOT / "bench-results" / "scrape-flood.json"
BEGIN: Final = "<!-- scrape-flood: written by tests/bench/bench_scrape_flood.py -->"
END: Final = "<!-- /scrape-flood -->"
HEADER: Final = (
    "| `/metrics` | stall p99, quiet (ms) | **stall p99, 1,000 concurrent scrapes (ms)** "
    "| stall max, flood (ms) | scrapes answered/s | measured |\n|---|---:|---:|---:|---:|---|"
)
RELOAD_HEADER: Final = (
    "| code | reload (s) | stall p99 during the reloads (ms) | stall max (ms) "
    "| `/healthz` max (ms) | measured |\n|---|---:|---:|---:|---:|---|"
)
RELOAD_NOTE: Final = (
    "Before, the parse ran in a worker thread but planning the reload and collecting its "
    "secrets ran on the event loop; now all of it runs in the thread. What remains comes "
    "from that thread sharing the interpreter with the event loop (not broken down "
    "further)."
)
LABELS: Final = {
    "before": "before (no cache, no bound)",
    "cache-only": "rendered once a second, unbounded",
    "limit-only": "rendered every scrape, 16 at a time",
    "after": "**rendered once a second, 16 at a time**",
}
REPRODUCE: Final = """```sh
git archive <commit before> | tar -x -C /tmp/saynad-before       # the code to compare with
B="flock /tmp/saynad-heavy.lock .venv/bin/python -m tests.bench.bench_scrape_flood"
$B --saynad-src /tmp/saynad-before --label before
$B --label after                                                  # also run by make bench
$B --reload-templates 30000 --label reload-after                  # and reload-before
```"""


def section(saved: dict[str, Any]) -> str:
    """The document's section for the saved results (one row per label)."""
    flood = {k: v for k, v in saved.items() if not k.startswith("reload-")}
    reload = {k: v for k, v in saved.items() if k.startswith("reload-")}
    if not flood:
        return ""
    order = list(LABELS)
    labels = sorted(flood, key=lambda k: order.index(k) if k in order else len(order))
    first = flood[labels[-1]]
    rows = []
    for label in labels:
        r = flood[label]
        m = r["median"]
        runs = " / ".join(f"{run['flood_p99_ms']:.0f}" for run in r["runs"])
        rows.append(
            f"| {LABELS.get(label, label)} | {m['baseline_p99_ms']:.1f} | "
            f"**{m['flood_p99_ms']:.0f}** ({runs}) | {m['flood_max_ms']:.0f} | "
            f"{m['scrapes_per_s']:.0f} | {r['when']} |"
        )
    return f"""{BEGIN}
## Scrapes that stall calls

`saynad run` pinned to core 0 with {first["sessions"]} always-on sessions, each streaming
the bundled caller audio in real time in {first["chunk_ms"]} ms chunks to a minimal Sayna
peer (core 1) that timestamps every binary frame as it arrives. A flood client (core 1)
keeps {first["concurrency"]} `GET /metrics` in flight at once for {first["flood_s"]:g} s
(one per keep-alive connection; the next is sent as soon as the last answer is read).
The **audio stall** is each gap between two frames of a session minus
{first["chunk_ms"]} ms (a source that fell behind sends its late chunks at once, so a
stall is one long gap); percentiles over every gap of every session. Medians of
{len(first["runs"])} runs (each run's flood p99 in parentheses). Machine:
{first["machine"]} (when the last row was measured).

{HEADER}
{chr(10).join(rows)}

The first rows are the code before the change (`--saynad-src` on a copy of it) and each
half of the change alone (one constant changed in `saynad/http.py`). What is left under
the flood is the HTTP server's own work per request: a thousand connections that are
ready at once are parsed in one scheduler batch.
{reload_table(reload)}
{REPRODUCE}
{END}
"""


def reload_table(reload: dict[str, Any]) -> str:
    """The reload rows (``--reload-templates``), if any were measured."""
    if not reload:
        return ""
    rows = []
    for label in sorted(reload, key=lambda k: k != "reload-before"):
        r = reload[label]
        m = r["median"]
        rows.append(
            f"| {'before' if label == 'reload-before' else '**after**'} | {m['reload_s']:.1f} | "
            f"{m['flood_p99_ms']:.1f} | {m['flood_max_ms']:.0f} | {m['healthz_max_ms']:.0f} | "
            f"{r['when']} |"
        )
    first = next(iter(reload.values()))
    return f"""
**Reloads of a large file.** The same fleet, reloaded three times (`POST /reload`,
which answers once the reload is applied) between its file and the same file with
{first.get("templates", 30000):,} extra unused templates (about 60,000 values, under the
100,000-value limit); `/healthz` asked every 50 ms meanwhile. Medians of
{len(first["runs"])} runs.

{RELOAD_HEADER}
{chr(10).join(rows)}

{RELOAD_NOTE}
"""


def splice(document: str, block: str) -> str:
    """``document`` with its scrape-flood section replaced by ``block`` (or appended)."""
    if BEGIN in document and END in document:
        head, _, rest = document.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + block.rstrip("\n") + tail
    return document.rstrip("\n") + "\n\n" + block


def write_section(out: Path, saved: dict[str, Any]) -> None:
    out.write_text(splice(out.read_text() if out.exists() else "", section(saved)))
    print(f"wrote {out}")


def keep_section(out: Path, document: str) -> str:
    """``document`` (rewritten by another benchmark) with ``out``'s current section kept."""
    if not out.exists():
        return document
    current = out.read_text()
    if BEGIN not in current or END not in current:
        return document
    block = BEGIN + current.partition(BEGIN)[2].partition(END)[0] + END + "\n"
    return splice(document, block)


if __name__ == "__main__":
    main()

"""Soak scenario (issue 7, item 3): a daemon fleet through repeated server deaths.

Topology, all on loopback::

    saynad run (subprocess, N sessions) ──► FaultProxy (this process) ──► emulator (subprocess)

Each session streams the bundled 16 kHz WAV in real time (looped) and writes every final
transcript to its own jsonl file. The emulator (``--numbered --utterance-ms 200``) answers
with 5 numbered finals per second per connection. Every ``cycle_s`` (30 s) the emulator
is SIGKILLed and restarted after a random 1–3 s outage, on a port the system picks (the
proxy then forwards there: the old port may have been taken meanwhile); once the fleet
is ready again the proxy applies one fault (rotating: stall, reset, corrupt, half_close,
latency, slice) to 10 % of the connections.

Rules (what each criterion measures):

- **crashes**: the daemon is still running before the final SIGTERM, then exits 0.
- **failed sessions**: the daemon runs with the default backoff and restart intensity;
  ``saynad_session_failures_total{reason="gave_up"}`` (sessions left ``failed``) must stay
  0 through every outage (read with the accounting, before the final SIGTERM); the
  ``connect`` failures (attempts refused during the outages) are shown beside it.
- **unhandled exceptions**: daemon log records with an ``exception`` field or level
  ``critical``, plus ``Traceback`` in its stderr. Error-level records of an expected kind
  (none are expected here) would be listed, not counted; every error record is counted
  under "error log records" and must be 0 too.
- **sequences**: the proxy decodes each connection's first client frame (the ``config``
  frame, whose ``stream_id`` is the session name), so nothing is guessed about which
  connection a line came from; the sink lines of one session are split into runs at
  every line numbered 1 (a new connection restarts the count). Within a run every number
  must be the previous + 1: anything else is a gap (higher) or a duplicate (not higher).
- **accounting**: after the last cycle the emulator is killed for good, the sinks get
  3 s to flush, and ``/metrics`` is read: received = ``saynad_stt_results_total{final="true"}``,
  written/dropped = ``saynad_transcript_sink_entries_total{outcome}``; the sink files'
  line count must equal written.
- **reconnect**: per (session, cycle), from the moment the restarted emulator printed its
  listening line to the session's next ``session state … new=ready`` log record.
- **stall**: per stalled connection, from applying the stall to the session leaving
  ``ready`` (the keepalive dropped the silent connection: ≤ interval + timeout) and to its
  next ``ready`` (replaced: ≤ interval + timeout + 2 s for the first backoff delay and a
  handshake). In a stall cycle
  the next kill waits (bounded) until the stalled sessions are replaced or the limit has
  passed, so a kill never hides a stall.
- **stampede**: accepts at the proxy (connect attempts), in sliding 10 s windows (0.5 s
  steps) that start 10 s or more after a kill and end before the next kill. The final
  kill for the accounting is a kill too: windows end before it (in its first seconds the
  whole fleet reconnects with fresh backoff, ~3 attempts per session, which is what the
  first 10 s of an outage are excluded for). Max attempts/s ≤ 0.3 × N; the report says
  where the peak window lies (kill + offset of its cycle).
- **resources**: daemon open fds (``/proc/PID/fd``), VmRSS and ``saynad_trio_tasks``,
  sampled with the fleet ready: baseline before the first kill, after every cycle, and at
  the end. fds at the end ≤ baseline + 2; tasks at the end ≤ baseline + 2 % (transient
  tasks); RSS at the end < 1.05 × RSS after cycle 3 (the last cycle when there are fewer).

``python -m tests.soak.scenario --sessions 100 --duration-s 600 [--report docs/benchmarks-soak.md]``
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import trio

from saynad.protocol.framing import read_frame
from tests.faultproxy import Fault, FaultProxy, ProxyConnection
from tests.support.processes import pin
from tests.support.samples import CALLER_WAV, LISTEN_ANY, STT_YAML, TTS_YAML
from tests.timing import HANG_S

FAULTS = (Fault.STALL, Fault.RESET, Fault.CORRUPT, Fault.HALF_CLOSE, Fault.LATENCY, Fault.SLICE)
TIMER_SLACK_S = 0.5
"""A stall found exactly at interval + timeout is on time: log timestamps and the daemon's
timers add scheduling slack."""
TASK_NOISE = 0.02
"""Tasks come and go with the fleet's traffic (HTTP handlers, sink flushes): the end
count may exceed the baseline by 2 % (a leak of one task per session per cycle would
exceed it after one cycle)."""
STALL_RECONNECT_S = 2.0
"""Allowance from dropping a stalled connection to ``ready`` on a new one: the first
backoff delay (< 0.5 s after a healthy run) plus a handshake."""

CONFIG = """
sayna:
  url: "ws://127.0.0.1:{proxy_port}"
http:
  listen: "{listen}"
logging: {{level: info, format: json}}
defaults:
  keepalive: {{interval_s: {ka_interval}, timeout_s: {ka_timeout}}}
  # backoff and intensity: the defaults. Attempts refused during an outage back off
  # but do not count toward the intensity, so no outage leaves a session failed.
templates:
  caller:
    stt: {stt}
    tts: {tts}
    stream_id: "{{session}}"
    behaviours:
      audio:
        source: {{path: "{wav}", realtime: true, loop: true, chunk_ms: 100}}
      transcripts:
        - {{kind: jsonl, path: "{sinks}/{{session}}.jsonl", fsync: never}}
sessions:
{sessions}"""


def _iso(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# --------------------------------------------------------------------------- the proxy


def _config_stream_id(buffer: bytes) -> str | None:
    """The ``stream_id`` of the first client WebSocket frame after the HTTP upgrade."""
    _, sep, rest = buffer.partition(b"\r\n\r\n")
    first = read_frame(rest) if sep else None
    if first is None:
        return None
    data = first[1]
    try:
        frame = json.loads(data)
    except ValueError:
        return ""
    return str(frame.get("stream_id") or "") if isinstance(frame, dict) else ""


class SoakProxy(FaultProxy):
    """A FaultProxy that timestamps accepts and learns each connection's session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accept_times: list[float] = []
        self.session_of: dict[int, str] = {}
        self._heads: dict[int, bytes] = {}

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accept_times.append(time.time())
        await super()._handle(client)

    async def _forward(
        self, conn: ProxyConnection, sink: trio.SocketStream, data: bytes, upward: bool
    ) -> None:
        if upward and conn.id not in self.session_of:
            head = self._heads.get(conn.id, b"") + data
            name = _config_stream_id(head) if len(head) < 1 << 16 else ""
            if name is None:
                self._heads[conn.id] = head
            else:
                self._heads.pop(conn.id, None)
                self.session_of[conn.id] = name
        await super()._forward(conn, sink, data, upward)

    def live_sessions(self) -> dict[str, ProxyConnection]:
        return {
            self.session_of[c.id]: c for c in self.connections.values() if c.id in self.session_of
        }


# --------------------------------------------------------------------------- processes


class Emulator:
    """``saynad emulator`` on a port the system picks, every start. Reusing the port of
    the killed process would fail whenever another process took it during the outage;
    ``moved`` hears the new port at each start (the proxy forwards there)."""

    def __init__(self, workdir: Path, moved: Callable[[int], None] = lambda port: None) -> None:
        self.port = 0
        self.moved = moved
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    async def start(self) -> float:
        """Start it; return the wall time at which it printed its listening line."""
        out = self._spawn()
        assert self.proc is not None
        with trio.fail_after(HANG_S):
            while b"listening on" not in (text := out.read_bytes()):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"emulator exited: {out.read_text()}")
                await trio.sleep(0.01)
        url = text.split(b"listening on", 1)[1].split(b"\n", 1)[0].decode().strip()
        self.port = int(url.rsplit(":", 1)[1])
        self.moved(self.port)
        return time.time()

    def _spawn(self) -> Path:
        self.starts += 1
        out = self.workdir / f"emulator-{self.starts}.out"
        with open(out, "wb") as fh:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "saynad", "emulator", "--port", "0"),
                    *("--numbered", "--utterance-ms", "200", "--interim-ms", "200"),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        with contextlib.suppress(OSError):
            pin(self.proc.pid, 1)
        return out

    def kill(self) -> float:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return time.time()


class DaemonLog:
    """The daemon's JSON log file, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.records: list[dict[str, Any]] = []

    def poll(self) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        self.offset += len(chunk)
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "<not json>", "level": "error", "raw": line[:200].decode()}
            if isinstance(record, dict):
                record["_t"] = _iso(record["timestamp"]) if "timestamp" in record else time.time()
                self.records.append(record)

    async def url(self, process: subprocess.Popen[bytes]) -> str:
        """The HTTP address the daemon bound (its ``http server listening`` line)."""
        with trio.fail_after(HANG_S):
            while True:
                self.poll()
                for record in self.records:
                    if record.get("event") == "http server listening":
                        return str(record["url"])
                if process.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {process.returncode}")
                await trio.sleep(0.05)

    def readies(self) -> list[tuple[float, str]]:
        return [(r["_t"], r["session"]) for r in self.records if r.get("new") == "ready"]


@dataclass
class Sample:
    label: str
    fds: int
    rss_kb: int
    tasks: int


@dataclass
class Run:
    sessions: int
    duration_s: float
    cycle_s: float
    ka_interval: float
    ka_timeout: float
    kills: list[float] = field(default_factory=list)
    """The cycles' kills, each followed by a restart (``ups`` pairs with it)."""
    final_kill: float | None = None
    """The kill for the final accounting (no restart follows): it ends the last cycle."""
    ups: list[float] = field(default_factory=list)
    faults: list[tuple[float, Fault, list[str]]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    sink_lines: dict[str, list[str]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    alive_before_stop: bool = False
    exit_code: int | None = None
    accept_times: list[float] = field(default_factory=list)


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


async def _scrape(http: httpx.AsyncClient) -> dict[str, float]:
    return _parse_metrics((await http.get("/metrics")).text)


async def _all_ready(http: httpx.AsyncClient, n: int, deadline_s: float) -> bool:
    with trio.move_on_after(deadline_s):
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                rows = (await http.get("/sessions")).json()
                rows = rows.get("sessions", rows) if isinstance(rows, dict) else rows
                if sum(1 for row in rows if row.get("state") == "ready") >= n:
                    return True
            await trio.sleep(0.2)
    return False


async def _sample(run: Run, http: httpx.AsyncClient, pid: int, label: str) -> Sample:
    metrics = await _scrape(http)
    sample = Sample(
        label=label,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        rss_kb=_rss_kb(pid),
        tasks=int(metrics.get("saynad_trio_tasks", -1)),
    )
    run.samples.append(sample)
    print(f"  [{label}] fds={sample.fds} rss={sample.rss_kb} KB tasks={sample.tasks}", flush=True)
    return sample


def _start_daemon(config: Path, stdout: Path, stderr: Path) -> subprocess.Popen[bytes]:
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "saynad", "run", "--config", str(config)],
            stdout=out,
            stderr=err,
        )
    with contextlib.suppress(OSError):
        pin(daemon.pid, 0)
    return daemon


async def soak(
    sessions: int,
    duration_s: float,
    *,
    cycle_s: float = 30.0,
    fraction: float = 0.1,
    keepalive: tuple[float, float] = (15.0, 10.0),
    seed: int | None = None,
) -> Run:
    """Run the scenario; return everything measured (judge it with :func:`criteria`)."""
    rng = random.Random(seed)
    run = Run(sessions, duration_s, cycle_s, *keepalive)
    # The last kill (the "end" cycle) is one of them: it also brings the fleet back.
    cycles = max(1, int(duration_s // cycle_s) - 1)
    with tempfile.TemporaryDirectory(prefix="saynad-soak-") as tmp:
        work = Path(tmp)
        sinks = work / "sinks"
        emulator = Emulator(work)
        proxy: SoakProxy | None = None
        daemon: subprocess.Popen[bytes] | None = None
        log = DaemonLog(work / "daemon.jsonl")
        try:
            await emulator.start()
            proxy = forwarding = SoakProxy(
                "127.0.0.1", emulator.port, rng=random.Random(rng.random())
            )

            def forward_to(port: int) -> None:
                forwarding.upstream_port = port

            emulator.moved = forward_to
            async with trio.open_nursery() as nursery:
                proxy_port = await nursery.start(proxy.run)
                config = work / "soak.yaml"
                config.write_text(
                    CONFIG.format(
                        proxy_port=proxy_port,
                        listen=LISTEN_ANY,
                        stt=STT_YAML,
                        tts=TTS_YAML,
                        ka_interval=keepalive[0],
                        ka_timeout=keepalive[1],
                        wav=CALLER_WAV,
                        sinks=sinks,
                        sessions="".join(
                            f"  - {{name: s{i:04d}, template: caller}}\n" for i in range(sessions)
                        ),
                    )
                )
                daemon = _start_daemon(config, log.path, work / "daemon.stderr")
                async with httpx.AsyncClient(base_url=await log.url(daemon), timeout=10) as http:
                    await _drive(run, rng, cycles, emulator, proxy, http, daemon, log, fraction)
                    # Final accounting: no server from here on, the sinks flush what they hold.
                    run.final_kill = emulator.kill()
                    await trio.sleep(3)
                    run.metrics = await _scrape(http)
                run.alive_before_stop = daemon.poll() is None
                daemon.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await trio.to_thread.run_sync(daemon.wait, 60)
                run.exit_code = daemon.poll()
                nursery.cancel_scope.cancel()
        finally:
            emulator.kill()
            if daemon is not None and daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            with contextlib.suppress(OSError):
                log.poll()
            run.records = log.records
            with contextlib.suppress(OSError):
                run.stderr = (work / "daemon.stderr").read_text(errors="replace")
            run.accept_times = proxy.accept_times if proxy is not None else []
            for path in sorted(sinks.glob("*.jsonl")) if sinks.exists() else []:
                run.sink_lines[path.stem] = path.read_text().splitlines()
    return run


async def _drive(
    run: Run,
    rng: random.Random,
    cycles: int,
    emulator: Emulator,
    proxy: SoakProxy,
    http: httpx.AsyncClient,
    daemon: subprocess.Popen[bytes],
    log: DaemonLog,
    fraction: float,
) -> None:
    n = run.sessions
    if not await _all_ready(http, n, 120):
        raise RuntimeError("the fleet did not become ready within 120 s")
    await trio.sleep(2)
    await _sample(run, http, daemon.pid, "baseline")
    next_kill = time.time() + 1
    stall_budget = run.ka_interval + run.ka_timeout
    for cycle in range(1, cycles + 1):
        await trio.sleep(max(0.0, next_kill - time.time()))
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited with {daemon.returncode}")
        killed = emulator.kill()
        run.kills.append(killed)
        next_kill = killed + run.cycle_s
        await trio.sleep(rng.uniform(1.0, 3.0))
        run.ups.append(await emulator.start())
        ready = await _all_ready(http, n, 60)
        print(
            f"cycle {cycle}/{cycles}: outage {run.ups[-1] - killed:.1f} s, ready again: {ready}",
            flush=True,
        )
        await trio.sleep(1)
        fault = FAULTS[(cycle - 1) % len(FAULTS)]
        live = proxy.live_sessions()
        chosen = rng.sample(sorted(live), max(1, round(len(live) * fraction)))
        applied = time.time()
        for name in chosen:
            proxy.apply_to(live[name], fault)
        run.faults.append((applied, fault, chosen))
        if fault is Fault.STALL:
            # The keepalive must replace them; wait (bounded) so a kill cannot hide a stall.
            with trio.move_on_after(stall_budget + 5):
                while True:
                    log.poll()
                    done = {s for t, s in log.readies() if t > applied}
                    if done >= set(chosen):
                        break
                    await trio.sleep(0.5)
            for conn in list(proxy.connections.values()):
                if conn.fault is Fault.STALL:
                    proxy.apply_to(conn, Fault.RESET)  # the proxy's side of the dead peer
            next_kill = max(next_kill, time.time() + 1)
        # Resources once the fleet is ready again, just before the next kill.
        await trio.sleep(max(0.0, next_kill - 4 - time.time()))
        await _all_ready(http, n, max(1.0, next_kill - 1 - time.time()))
        await _sample(run, http, daemon.pid, f"cycle {cycle}")
        log.poll()
    # The end: latency/slice faults are gone with the killed connections; all ready again.
    await trio.sleep(max(0.0, next_kill - time.time()))
    killed = emulator.kill()
    run.kills.append(killed)
    await trio.sleep(rng.uniform(1.0, 3.0))
    run.ups.append(await emulator.start())
    await _all_ready(http, n, 60)
    await trio.sleep(3)
    await _sample(run, http, daemon.pid, "end")


# --------------------------------------------------------------------------- judging


@dataclass
class Row:
    criterion: str
    measured: str
    limit: str
    ok: bool
    # What must hold on any machine, however loaded: the row's counts without its time
    # or memory limit (None: the row has no such limit, ``ok`` is all of it). ``make
    # soak`` judges ``ok``; the short variant in ``make test`` judges this.
    holds_untimed: bool | None = None

    @property
    def ok_untimed(self) -> bool:
        return self.ok if self.holds_untimed is None else self.holds_untimed


def check_sequences(lines: list[str]) -> tuple[int, int, int, int]:
    """(numbered lines, runs, gaps, duplicates) of one session's sink lines."""
    numbered = runs = gaps = dups = 0
    prev = 0
    for line in lines:
        entry = json.loads(line)
        if entry.get("role") != "user":
            continue
        head, sep, _ = str(entry.get("text", "")).partition(":")
        if not sep or not head.isdigit():
            continue
        value = int(head)
        numbered += 1
        if value == 1:
            runs += 1
        elif value > prev + 1:
            gaps += 1
        elif value <= prev:
            dups += 1
        prev = value
    return numbered, runs, gaps, dups


STAMPEDE_SKIP_S = 10.0
"""Windows start this long after a kill: the first reconnects of an outage are allowed."""
STAMPEDE_WINDOW_S = 10.0
STAMPEDE_STEP_S = 0.5


@dataclass(frozen=True)
class Stampede:
    """The busiest window: ``rate`` attempts/s from ``offset_s`` after kill ``cycle`` (1-based)."""

    rate: float = 0.0
    cycle: int = 0
    offset_s: float = 0.0
    windows: int = 0


def stampede_peak(accepts: list[float], kills: list[float], final_kill: float | None) -> Stampede:
    """Max connect attempts/s over the sliding windows of the stampede rule.

    Windows lie between ``kill + STAMPEDE_SKIP_S`` and the next kill; the last cycle's
    end is ``final_kill`` (the accounting kill; when unknown, the last accept). The
    first window wins a tie.
    """
    if not kills:
        return Stampede()
    ordered = sorted(accepts)
    last = ordered[-1] if ordered else -math.inf
    ends = [*kills[1:], final_kill if final_kill is not None else math.inf]
    best = Stampede()
    windows = 0
    for cycle, (start, end) in enumerate(zip(kills, ends, strict=True), start=1):
        t = start + STAMPEDE_SKIP_S
        while t + STAMPEDE_WINDOW_S <= (end if math.isfinite(end) else last):
            count = bisect.bisect_left(ordered, t + STAMPEDE_WINDOW_S) - bisect.bisect_left(
                ordered, t
            )
            windows += 1
            if count / STAMPEDE_WINDOW_S > best.rate or windows == 1:
                best = Stampede(count / STAMPEDE_WINDOW_S, cycle, t - start, windows)
            t += STAMPEDE_STEP_S
    return Stampede(best.rate, best.cycle, best.offset_s, windows)


def _failures(metrics: dict[str, float], reason: str) -> int:
    """``saynad_session_failures_total{reason=…}`` summed over origins."""
    return int(
        sum(
            value
            for key, value in metrics.items()
            if key.startswith("saynad_session_failures_total{") and f'reason="{reason}"' in key
        )
    )


def criteria(run: Run) -> list[Row]:
    """The pass criteria of issue 7 item 3, measured."""
    rows: list[Row] = []
    n = run.sessions
    crashed = not run.alive_before_stop or run.exit_code != 0
    rows.append(
        Row(
            "daemon crashes",
            f"{int(crashed)} (alive before SIGTERM: {run.alive_before_stop}, exit {run.exit_code})",
            "0",
            not crashed,
        )
    )
    unhandled = [
        r for r in run.records if "exception" in r or r.get("level") in ("critical", "fatal")
    ]
    tracebacks = run.stderr.count("Traceback")
    rows.append(
        Row(
            "unhandled-exception log records",
            f"{len(unhandled) + tracebacks}"
            + (f" ({sorted({str(r.get('event')) for r in unhandled})})" if unhandled else ""),
            "0",
            not unhandled and not tracebacks,
        )
    )
    errors = [r for r in run.records if r.get("level") == "error"]
    rows.append(
        Row(
            "error log records",
            f"{len(errors)}"
            + (f" ({sorted({str(r.get('event')) for r in errors})})" if errors else ""),
            "0",
            not errors,
        )
    )
    numbered = runs = gaps = dups = 0
    for session_lines in run.sink_lines.values():
        a, b, c, d = check_sequences(session_lines)
        numbered, runs, gaps, dups = numbered + a, runs + b, gaps + c, dups + d
    rows.append(
        Row(
            "sink sequences: gaps / duplicates",
            f"{gaps} / {dups} ({numbered} lines, {runs} connection runs, "
            f"{len(run.sink_lines)} files)",
            "0 / 0",
            gaps == 0 and dups == 0 and numbered > 0,
        )
    )
    m = run.metrics
    gave_up = _failures(m, "gave_up") if m else -1
    refused = _failures(m, "connect")
    rows.append(
        Row(
            "sessions left failed (default intensity: 5 restarts in 60 s)",
            f"{gave_up} ({refused} connect attempts refused during outages)",
            "0",
            gave_up == 0,
        )
    )
    received = int(m.get('saynad_stt_results_total{final="true"}', -1))
    written = int(m.get('saynad_transcript_sink_entries_total{outcome="written"}', -1))
    dropped = int(m.get('saynad_transcript_sink_entries_total{outcome="dropped"}', -1))
    lines = sum(len(v) for v in run.sink_lines.values())
    rows.append(
        Row(
            "received = written + dropped; dropped",
            f"{received} = {written} + {dropped}; sink lines {lines}",
            "equal, dropped 0, lines = written",
            received == written + dropped and dropped == 0 and lines == written and received > 0,
        )
    )
    readies = sorted((r["_t"], r["session"]) for r in run.records if r.get("new") == "ready")
    latencies: list[float] = []
    missing = 0
    for i, up in enumerate(run.ups):
        killed = run.kills[i]
        first: dict[str, float] = {}
        for t, s in readies:
            if t > killed and s not in first:
                first[s] = t
        missing += n - len(first)
        latencies.extend(max(0.0, t - up) for t in first.values())
    p50, p99 = _pct(latencies, 0.5), _pct(latencies, 0.99)
    rows.append(
        Row(
            "reconnect: server accepts → ready, p50 / p99",
            f"{p50:.2f} s / {p99:.2f} s ({len(latencies)} reconnects, {missing} missing)",
            "≤ 3 s / ≤ 10 s",
            p50 <= 3 and p99 <= 10 and missing == 0,
            holds_untimed=missing == 0 and bool(latencies),
        )
    )
    limit = run.ka_interval + run.ka_timeout
    leaves = sorted((r["_t"], r["session"]) for r in run.records if r.get("old") == "ready")
    detected: list[float] = []
    replaced: list[float] = []
    unreplaced = 0
    for applied, fault, chosen in run.faults:
        if fault is not Fault.STALL:
            continue
        for s in chosen:
            left = [t for t, name in leaves if name == s and t > applied]
            back = [t for t, name in readies if name == s and t > applied]
            if left:
                detected.append(left[0] - applied)
            if back:
                replaced.append(back[0] - applied)
            else:
                unreplaced += 1
    worst_detect = max(detected, default=math.nan)
    rows.append(
        Row(
            "stalled peers dropped by the keepalive (max)",
            f"{worst_detect:.1f} s ({len(detected)} of {len(detected) + unreplaced})",
            f"≤ {limit:g} s (keepalive {run.ka_interval:g} + {run.ka_timeout:g}; "
            f"+{TIMER_SLACK_S:g} s timer slack)",
            bool(detected) and unreplaced == 0 and worst_detect <= limit + TIMER_SLACK_S,
            holds_untimed=bool(detected) and unreplaced == 0,
        )
    )
    worst = max(replaced, default=math.nan)
    rows.append(
        Row(
            "stalled peers replaced: stall → ready (max)",
            f"{worst:.1f} s ({len(replaced)} replaced, {unreplaced} not)",
            f"≤ {limit + STALL_RECONNECT_S:g} s (+ {STALL_RECONNECT_S:g} s to reconnect)",
            bool(replaced) and unreplaced == 0 and worst <= limit + STALL_RECONNECT_S,
            holds_untimed=bool(replaced) and unreplaced == 0,
        )
    )
    peak = stampede_peak(run.accept_times, run.kills, run.final_kill)
    where = (
        f" (peak at kill+{peak.offset_s:.1f} s of "
        + (f"cycle {peak.cycle}" if peak.cycle < len(run.kills) else "the end cycle")
        + f"; {peak.windows} windows)"
        if peak.windows
        else " (no window)"
    )
    rows.append(
        Row(
            "connect attempts ≥ 10 s into an outage (max over 10 s windows)",
            f"{peak.rate:.1f}/s{where}",
            f"≤ {0.3 * n:g}/s (0.3 × N)",
            peak.windows > 0 and peak.rate <= 0.3 * n,
        )
    )
    by = {s.label: s for s in run.samples}
    base, end = by.get("baseline"), by.get("end")
    cycle_samples = [s for s in run.samples if s.label.startswith("cycle")]
    ref = cycle_samples[min(2, len(cycle_samples) - 1)] if cycle_samples else None
    if base and end:
        rows.append(
            Row(
                "open fds: end vs baseline",
                f"{end.fds} vs {base.fds}",
                "≤ baseline + 2",
                end.fds <= base.fds + 2,
            )
        )
        rows.append(
            Row(
                "trio tasks: end vs baseline",
                f"{end.tasks} vs {base.tasks}",
                f"≤ baseline + {TASK_NOISE:.0%}",
                0 < end.tasks <= base.tasks * (1 + TASK_NOISE),
            )
        )
    if end and ref:
        growth = (end.rss_kb - ref.rss_kb) / ref.rss_kb * 100
        rows.append(
            Row(
                f"RSS growth after {ref.label}",
                f"{growth:+.1f} % ({ref.rss_kb / 1024:.0f} → {end.rss_kb / 1024:.0f} MB)",
                "< 5 %",
                growth < 5,
                holds_untimed=True,  # a memory target: make soak judges it
            )
        )
    return rows


def table(run: Run, rows: list[Row]) -> str:
    faults = ", ".join(f.value for _, f, _ in run.faults)
    head = (
        f"{run.sessions} sessions × 5 transcripts/s, {len(run.kills)} emulator SIGKILLs "
        f"(every {run.cycle_s:g} s, 1–3 s outages; one more ends the run), "
        f"faults on 10 % of connections: {faults}; "
        f"keepalive {run.ka_interval:g} s + {run.ka_timeout:g} s.\n\n"
    )
    body = "| criterion | measured | limit | result |\n|---|---|---|---|\n" + "".join(
        f"| {r.criterion} | {r.measured} | {r.limit} | {'pass' if r.ok else 'FAIL'} |\n"
        for r in rows
    )
    samples = "\n| sample | open fds | RSS (MB) | trio tasks |\n|---|---|---|---|\n" + "".join(
        f"| {s.label} | {s.fds} | {s.rss_kb / 1024:.1f} | {s.tasks} |\n" for s in run.samples
    )
    return head + body + samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--duration-s", type=float, default=600)
    parser.add_argument("--cycle-s", type=float, default=30)
    parser.add_argument("--keepalive-interval-s", type=float, default=15)
    parser.add_argument("--keepalive-timeout-s", type=float, default=10)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--report", type=Path, help="write the table (Markdown) to this file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    run = trio.run(
        lambda: soak(
            args.sessions,
            args.duration_s,
            cycle_s=args.cycle_s,
            keepalive=(args.keepalive_interval_s, args.keepalive_timeout_s),
            seed=args.seed,
        )
    )
    rows = criteria(run)
    text = table(run, rows)
    print()
    print(text)
    print(
        f"wall time {time.monotonic() - started:.0f} s; stt finals/s per session ≈ "
        f"{statistics.fmean([len(v) for v in run.sink_lines.values()] or [0]):.0f} lines"
    )
    if args.report:
        args.report.write_text(
            "# Soak scenario\n\n"
            "`make soak` (`python -m tests.soak.scenario --sessions "
            f"{args.sessions} --duration-s {args.duration_s:g} --report {args.report}`); "
            "the rules behind every row are in the docstring of `tests/soak/scenario.py`.\n\n"
            + text
        )
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

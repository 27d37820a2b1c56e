"""Agent benchmark: final transcript received → first ``speak`` frame sent, echo agent.

``N`` session actors — the daemon's own :func:`~saynad.actors.session.run_session`, each
with the echo agent and a looping audio source at real-time pace — run in one process
pinned to core 0, against an emulator process pinned to core 1 that finalises one
transcript per 2 s of received audio (``utterance_ms=2000``). So every session receives
a final transcript every 2 s and answers it with one ``speak``; session starts are
staggered, which spreads the transcripts evenly over the 2 s period.

The latency is measured inside the session actor: from the reader receiving the
``stt_result`` that closes a turn (``SessionCounters.last_turn_end_at``) to the writer
having sent the reply's first ``speak`` frame (``SessionCounters.observe_first_speak``),
on trio's clock. It covers the fan-out to the agent, turn assembly, the reply task, the
outbox and the socket write. Observations start after a warm-up.

The same latency of **the daemon itself** (``--parts daemon``): a real ``saynad run``
process pinned to core 0, configured with the same fleet (``N`` always-on sessions, the
``echo`` agent, a looping audio source at real-time pace) against the same emulator
process, once per ``runtime.gc`` value. Its latencies are read exactly, not from the
histogram: the daemon process is started through ``saynad.cli.main(["run", ...])`` by
this module with a recorder wrapped around ``Metrics.observe_final_to_speak`` (the very
call that feeds ``saynad_final_transcript_to_speak_seconds``), which appends
``(time.monotonic(), seconds)`` to an ``array`` (two float stores per turn, nothing the
collector tracks) and writes them to a file when the daemon exits; a ``gc.callbacks``
hook records each collection's pause the same way. The benchmark keeps the observations
inside its measurement window (``CLOCK_MONOTONIC`` is shared by the processes) and also
reports the histogram's own p99 bound from two ``/metrics`` scrapes.

The reload run (``--parts reload``): the daemon (``runtime.gc: tuned``) gets ``--reloads``
``SIGHUP`` reloads, each changing a rotating subset of sessions (they restart), and its
RSS and frozen-object count are sampled along the way.

::

    python -m tests.bench.bench_agent            # every part → docs/benchmarks-agent.md
    python -m tests.bench.bench_agent --sessions 200 --measure-s 10 --no-write
    python -m tests.bench.bench_agent --parts daemon --reps 3     # only the daemon rows

Each part's results are kept in ``bench-results/agent-<part>.json``; the document is
written from those, so a part run alone replaces only its own table.

``make bench`` runs it after the session benchmarks (see ``tests/bench/__main__.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

from tests.support.samples import LISTEN_ANY

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16_000
UTTERANCE_MS = 2000
SCRIPT = ("hello there", "I would like to check my order", "thank you very much")
GC_TUNED = (10_000, 50, 10)


# --------------------------------------------------------------------------- workload shape


BURST_WINDOW_S = 0.005


def burst_sizes(turn_ends: list[float]) -> tuple[int, int]:
    """Median and p90 of how many turns (itself included) ended within ±5 ms of each
    turn: 1 when the transcripts are spread over the period, N when N sessions receive
    theirs together (they are then answered in the same scheduler passes, one after the
    other, and the last waits for all the others' work)."""
    import bisect

    from tests.bench.common import percentile

    ends = sorted(turn_ends)
    sizes: list[float] = [
        bisect.bisect_right(ends, t + BURST_WINDOW_S) - bisect.bisect_left(ends, t - BURST_WINDOW_S)
        for t in ends
    ]
    return round(percentile(sizes, 50)), round(percentile(sizes, 90))


# --------------------------------------------------------------------------- emulator process


def _serve_emulator() -> None:
    from saynad.emulator import EmulatorOptions
    from tests.bench.common import pin_to_cpu
    from tests.bench.emulator import serve_until_signal

    pin_to_cpu(1)
    serve_until_signal(
        EmulatorOptions(
            script=SCRIPT, utterance_ms=UTTERANCE_MS, interim_ms=UTTERANCE_MS // 2, tts_chunk_ms=500
        )
    )


# --------------------------------------------------------------------------- daemon process


def _write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"\x10\x00" * SAMPLE_RATE * 4)


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _daemon(
    url: str,
    n: int,
    warmup_s: float,
    measure_s: float,
    chunk_ms: int,
    emulator_pid: int,
    gc_mode: str,
) -> None:
    from saynad.actors.behaviour import Behaviour, SessionCounters, SessionIdentity
    from saynad.actors.behaviours.agent import Agent, EchoBackend
    from saynad.actors.behaviours.audio import AudioSource
    from saynad.actors.behaviours.transcripts import Journal
    from saynad.actors.registry import Registry, SessionState
    from saynad.actors.session import EndPolicy, SessionPlan, run_session
    from saynad.actors.supervisor import ChildControl
    from saynad.protocol.messages import STTConfig, TTSConfig
    from tests.bench.common import cpu_s, percentile, rss_kb

    stt = STTConfig(
        provider="deepgram",
        language="en-US",
        sample_rate=SAMPLE_RATE,
        channels=1,
        punctuation=True,
        encoding="linear16",
        model="nova-3",
    )
    tts = TTSConfig(provider="deepgram", model="aura-2", sample_rate=SAMPLE_RATE)
    wav = Path(tempfile.mkdtemp()) / "caller.wav"
    _write_wav(wav)

    measuring = False
    latencies: list[float] = []
    turn_ends: list[float] = []
    lags: list[float] = []
    failures: dict[str, int] = {}

    def observe(latency_s: float) -> None:
        if measuring:
            latencies.append(latency_s)
            turn_ends.append(trio.current_time() - latency_s)

    gc_pauses: list[float] = []
    young_pauses: list[float] = []
    gc_started = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_started
        if phase == "start":
            gc_started = time.perf_counter()
        elif measuring:
            pause = time.perf_counter() - gc_started
            (gc_pauses if info.get("generation") == 2 else young_pauses).append(pause)

    gc.callbacks.append(on_gc)

    def behaviours(journal: Journal) -> list[Behaviour]:
        return [
            Agent(EchoBackend(), journal=journal),
            AudioSource(wav, realtime=True, loop=True, chunk_ms=chunk_ms),
        ]

    registry = Registry()
    controls = [ChildControl(f"s{i}", registry) for i in range(n)]
    counters = [SessionCounters(on_first_speak=observe) for _ in range(n)]

    async def one(i: int) -> None:
        registry.add(f"s{i}", origin="config", template="bench")
        plan = SessionPlan(
            url=url,
            identity=SessionIdentity(name=f"s{i}", template="bench", origin="config"),
            stt=stt,
            tts=tts,
            behaviours=behaviours,
            end=EndPolicy(on_participant_disconnected=False, flush_timeout_s=1),
            counters=counters[i],
            ready_timeout_s=120,
            connect_timeout_s=60,
        )
        try:
            await run_session(plan, controls[i])
        except Exception as exc:
            key = f"{type(exc).__name__}: {str(exc)[:80]}"
            failures[key] = failures.get(key, 0) + 1

    async def loop_lag() -> None:
        while True:
            due = trio.current_time() + 0.05
            await trio.sleep_until(due)
            if measuring:
                lags.append(trio.current_time() - due)

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop_lag)
        for i in range(n):
            nursery.start_soon(one, i)
            await trio.sleep(0.004)  # stagger: spreads connects and the 2 s transcript phase
        with trio.move_on_after(120):
            while registry.count(SessionState.READY) < n and not failures:  # noqa: ASYNC110
                await trio.sleep(0.1)
        all_ready_s = trio.current_time() - t0
        if gc_mode in ("freeze", "tuned"):
            gc.collect()
            gc.freeze()  # what a daemon can do once its fleet is up: full GCs skip it
        if gc_mode == "tuned":
            gc.set_threshold(*GC_TUNED)  # short-lived objects die before promotion
        elif gc_mode.startswith("thresholds="):  # experiments: thresholds=700,10,10
            gc.collect()
            gc.freeze()
            gc.set_threshold(*(int(v) for v in gc_mode.split("=")[1].split(",")))
        await trio.sleep(warmup_s)
        measuring = True
        cpu0, wall0 = cpu_s(), trio.current_time()
        emulator_cpu0 = _proc_cpu_s(emulator_pid)
        load0 = os.getloadavg()[0]
        turns0 = sum(c.agent_requests for c in counters)
        await trio.sleep(measure_s)
        measuring = False
        cpu = cpu_s() - cpu0
        wall = trio.current_time() - wall0
        emulator_cpu = _proc_cpu_s(emulator_pid) - emulator_cpu0
        load = max(load0, os.getloadavg()[0])
        turns = sum(c.agent_requests for c in counters) - turns0
        dropped = sum(c.dropped_events for c in counters)
        for control in controls:
            control.drain_requested.set()
        with trio.move_on_after(30):
            while registry.count(SessionState.READY):  # noqa: ASYNC110 - a poll with a deadline
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()

    result: dict[str, Any] = {
        "sessions": n,
        "ready": sum(1 for c in counters if c.agent_requests),
        "all_ready_s": round(all_ready_s, 2),
        "chunk_ms": chunk_ms,
        "gc": gc_mode,
        "measure_s": round(wall, 1),
        "turns": turns,
        "observations": len(latencies),
        "burst_p50": burst_sizes(turn_ends)[0],
        "burst_p90": burst_sizes(turn_ends)[1],
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "loop_lag_p99_ms": percentile(lags, 99) * 1000,
        "gc_full_collections": len(gc_pauses),
        "gc_full_max_ms": max(gc_pauses, default=0.0) * 1000,
        "gc_young_collections": len(young_pauses),
        "gc_young_max_ms": max(young_pauses, default=0.0) * 1000,
        "cpu_percent": round(100 * cpu / wall, 1),
        "emulator_cpu_percent": round(100 * emulator_cpu / wall, 1),
        "load_average": round(load, 2),
        "rss_mb": round(rss_kb() / 1024, 1),
        "dropped_events": dropped,
        "failures": failures,
    }
    print(json.dumps(result), flush=True)


def _run_daemon(argv: list[str]) -> None:
    from saynad.observability.logs import configure_logging
    from tests.bench.common import pin_to_cpu

    pin_to_cpu(0)
    configure_logging("error", "json", stream=sys.stderr)
    url, n, warmup_s, measure_s, chunk_ms, emulator_pid, gc_mode = argv
    trio.run(
        _daemon,
        url,
        int(n),
        float(warmup_s),
        float(measure_s),
        int(chunk_ms),
        int(emulator_pid),
        gc_mode,
    )


# --------------------------------------------------------------------------- driver


@contextlib.contextmanager
def _emulator_process() -> Iterator[tuple[str, int]]:
    """The emulator in its own process (it pins itself to core 1): its URL and pid."""
    from tests.bench.sessions import listening_process

    command = [sys.executable, "-m", "tests.bench.bench_agent", "emulator"]
    with listening_process(command, cwd=ROOT) as (url, pid):
        yield url, pid


def run(
    sessions: int, warmup_s: float, measure_s: float, chunk_ms: int, gc_mode: str = "default"
) -> dict[str, Any]:
    """One measurement: an emulator process and a daemon-side process; the result dict."""
    with _emulator_process() as (url, emulator_pid):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.bench.bench_agent",
                "daemon",
                url,
                str(sessions),
                str(warmup_s),
                str(measure_s),
                str(chunk_ms),
                str(emulator_pid),
                gc_mode,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600 + warmup_s + measure_s,
            check=False,
        )
    for result_line in reversed(out.stdout.splitlines()):
        if result_line.startswith("{"):
            result: dict[str, Any] = json.loads(result_line)
            return result
    raise RuntimeError(f"no result (exit {out.returncode}):\n{out.stderr[-3000:]}")


# --------------------------------------------------------------------------- saynad run


def _saynad_run(argv: list[str]) -> None:
    """``saynad run`` as shipped (its CLI entry point) with a recorder of each observation.

    ``argv``: the file to write the observations to, then the ``saynad run`` arguments.
    """
    from saynad import cli
    from saynad.observability.metrics import Metrics
    from tests.bench.common import pin_to_cpu

    pin_to_cpu(0)
    out_path, *run_args = argv
    samples = array("d")  # (monotonic time, latency) pairs: untracked by the collector
    collections = array("d")  # (monotonic time, generation, pause) triples
    observe = Metrics.observe_final_to_speak

    def recording(self: Metrics, seconds: float) -> None:
        samples.append(time.monotonic())
        samples.append(seconds)
        observe(self, seconds)

    Metrics.observe_final_to_speak = recording  # type: ignore[method-assign]
    gc_started = 0.0

    def on_gc(phase: str, info: dict[str, int]) -> None:
        nonlocal gc_started
        if phase == "start":
            gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - gc_started
            collections.extend((time.monotonic(), info["generation"], pause))

    gc.callbacks.append(on_gc)
    code = 1
    try:
        code = cli.main(["run", *run_args])
    finally:
        Path(out_path).write_text(
            json.dumps({"samples": samples.tolist(), "collections": collections.tolist()})
        )
    sys.exit(code)


DAEMON_GC = {
    "tuned": "`runtime.gc: tuned`, the default: the policy of `saynad.runtime_gc`",
    "stock": "`runtime.gc: stock`: CPython's default collector, nothing frozen",
}


def _daemon_config(
    url: str, n: int, chunk_ms: int, gc_mode: str, wav: Path, reload: int = 0
) -> str:
    """The benchmark fleet as a saynad configuration. ``reload`` k > 0 gives a rotating
    subset of sessions a greeting (so a reload from k - 1 to k changes 2 × n/20 of them)."""
    per_reload = max(1, n // 20)
    greeted = {(reload * per_reload + i) % n for i in range(per_reload)} if reload else set()
    sessions = "".join(
        f"  - {{name: s{i}, template: bench"
        + (f", behaviours: {{greeting: {{text: 'reload {reload}'}}}}" if i in greeted else "")
        + "}\n"
        for i in range(n)
    )
    return f"""\
sayna:
  url: {url}
http:
  listen: "{LISTEN_ANY}"
logging:
  level: info
  format: json
runtime:
  gc: {gc_mode}
defaults:
  connect_timeout_s: 60
  ready_timeout_s: 120
  drain_timeout_s: 1
templates:
  bench:
    stt: {{provider: deepgram, language: en-US, sample_rate: {SAMPLE_RATE}, channels: 1,
           punctuation: true, encoding: linear16, model: nova-3}}
    tts: {{provider: deepgram, model: aura-2, sample_rate: {SAMPLE_RATE}}}
    behaviours:
      agent: {{kind: echo}}
      audio: {{source: {{path: "{wav}", realtime: true, loop: true, chunk_ms: {chunk_ms}}}}}
sessions:
{sessions}"""


def _scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _total(scrape: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str) -> float:
    return sum(scrape.get(name, {}).values())


def _histogram_bound(
    before: dict[str, dict[tuple[tuple[str, str], ...], float]],
    after: dict[str, dict[tuple[tuple[str, str], ...], float]],
    q: float,
) -> float:
    """The bucket bound a histogram_quantile-style reading gives: the first ``le`` whose
    cumulative count (in the window) reaches ``q`` of the total, in seconds."""
    name = "saynad_final_transcript_to_speak_seconds_bucket"
    buckets = sorted(
        (float(dict(labels)["le"]), value - before.get(name, {}).get(labels, 0.0))
        for labels, value in after.get(name, {}).items()
    )
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Daemon:
    """A ``saynad run`` process of the benchmark: its log lines, metrics and recorder file."""

    def __init__(self, tmp: Path, config: str) -> None:
        self.config_path = tmp / "saynad.yaml"
        self.config_path.write_text(config)
        self.samples_path = tmp / "observations.json"
        self.log_path = tmp / "daemon.log"
        self._log = self.log_path.open("w")
        self._offset = 0
        self.lines: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.bench_agent",
                "saynad-run",
                str(self.samples_path),
                "--config",
                str(self.config_path),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.spawned = time.monotonic()
        # The configuration listens on port 0: the address it bound is in the log.
        try:
            url = self.wait_log("http server listening")["url"]
        except BaseException:
            self.stop()
            raise
        self.port = int(url.rsplit(":", 1)[1])

    def read_log(self) -> list[dict[str, Any]]:
        """New log lines since the last call (also kept in ``lines``)."""
        with self.log_path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        new = []
        for raw in data[:complete].splitlines():
            with contextlib.suppress(ValueError):
                new.append(json.loads(raw))
        self.lines.extend(new)
        return new

    def wait_log(self, event: str, *, count: int = 1, timeout_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            self.read_log()
            found = [line for line in self.lines if line.get("event") == event]
            if len(found) >= count:
                return found[count - 1]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {event!r} #{count} in the daemon's log ({self.log_path})")
            time.sleep(0.1)

    def wait_ready(self, n: int, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"saynad run exited: see {self.log_path}")
            with contextlib.suppress(OSError):
                ready = _scrape(self.port).get("saynad_sessions", {}).get((("state", "ready"),))
                if ready == n:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{n} sessions not ready within {timeout_s} s")

    def stop(self) -> dict[str, Any]:
        """SIGTERM (drain), wait; the recorder's observations."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.read_log()
        if not self.samples_path.exists():
            return {"samples": [], "collections": []}
        recorded: dict[str, Any] = json.loads(self.samples_path.read_text())
        return recorded


def run_saynad(
    sessions: int, warmup_s: float, measure_s: float, chunk_ms: int, gc_mode: str
) -> dict[str, Any]:
    """One measurement of a real ``saynad run`` with ``runtime.gc: gc_mode``."""
    from tests.bench.common import percentile

    with tempfile.TemporaryDirectory() as tmp_dir, _emulator_process() as (url, emulator_pid):
        tmp = Path(tmp_dir)
        wav = tmp / "caller.wav"
        _write_wav(wav)
        config = _daemon_config(url, sessions, chunk_ms, gc_mode, wav)
        daemon = _Daemon(tmp, config)
        port = daemon.port
        try:
            t0 = daemon.spawned
            daemon.wait_ready(sessions)
            all_ready_s = time.monotonic() - t0
            freeze: dict[str, Any] = {}
            if gc_mode == "tuned":
                freeze = daemon.wait_log("gc frozen")
            time.sleep(warmup_s)
            before = _scrape(port)
            window0 = time.monotonic()
            cpu0, emulator_cpu0 = _proc_cpu_s(daemon.process.pid), _proc_cpu_s(emulator_pid)
            load0 = os.getloadavg()[0]
            time.sleep(measure_s)
            window1 = time.monotonic()
            cpu = _proc_cpu_s(daemon.process.pid) - cpu0
            emulator_cpu = _proc_cpu_s(emulator_pid) - emulator_cpu0
            load = max(load0, os.getloadavg()[0])
            after = _scrape(port)
            rss = _rss_mb(daemon.process.pid)
        finally:
            recorded = daemon.stop()
    pairs = recorded["samples"]
    inside = [i for i in range(0, len(pairs), 2) if window0 <= pairs[i] < window1]
    latencies = [pairs[i + 1] for i in inside]
    bursts = burst_sizes([pairs[i] - pairs[i + 1] for i in inside])
    triples = recorded["collections"]
    pauses = [
        (int(triples[i + 1]), triples[i + 2])
        for i in range(0, len(triples), 3)
        if window0 <= triples[i] < window1
    ]
    young = [pause for generation, pause in pauses if generation < 2]
    full = [pause for generation, pause in pauses if generation == 2]
    wall = window1 - window0

    def delta(name: str) -> int:
        return round(_total(after, name) - _total(before, name))

    counted = delta("saynad_final_transcript_to_speak_seconds_count")
    return {
        "target": "saynad run",
        "gc": gc_mode,
        "sessions": sessions,
        "all_ready_s": round(all_ready_s, 1),
        "first_freeze": {k: freeze[k] for k in ("collected", "frozen", "pause_ms") if k in freeze},
        "chunk_ms": chunk_ms,
        "measure_s": round(wall, 1),
        "turns": delta("saynad_agent_requests_total"),
        "observations": len(latencies),
        "burst_p50": bursts[0],
        "burst_p90": bursts[1],
        "histogram_observations": counted,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "histogram_p50_le_ms": _histogram_bound(before, after, 0.50) * 1000,
        "histogram_p99_le_ms": _histogram_bound(before, after, 0.99) * 1000,
        "gc_young_collections": len(young),
        "gc_young_max_ms": max(young, default=0.0) * 1000,
        "gc_full_collections": len(full),
        "gc_full_max_ms": max(full, default=0.0) * 1000,
        "cpu_percent": round(100 * cpu / wall, 1),
        "emulator_cpu_percent": round(100 * emulator_cpu / wall, 1),
        "load_average": round(load, 2),
        "rss_mb": round(rss, 1),
        "dropped_events": delta("saynad_channel_drops_total"),
        "failures": delta("saynad_session_failures_total"),
        "restarts": delta("saynad_session_restarts_total"),
    }


def run_reloads(sessions: int, reloads: int, chunk_ms: int) -> dict[str, Any]:
    """``reloads`` SIGHUP reloads of a ``runtime.gc: tuned`` daemon; RSS along the way."""
    with tempfile.TemporaryDirectory() as tmp_dir, _emulator_process() as (url, _):
        tmp = Path(tmp_dir)
        wav = tmp / "caller.wav"
        _write_wav(wav)
        daemon = _Daemon(tmp, _daemon_config(url, sessions, chunk_ms, "tuned", wav))
        port = daemon.port
        rss: dict[int, float] = {}
        t0 = time.monotonic()
        load = 0.0
        try:
            daemon.wait_ready(sessions)
            daemon.wait_log("gc frozen")
            rss[0] = _rss_mb(daemon.process.pid)
            for k in range(1, reloads + 1):
                config = _daemon_config(url, sessions, chunk_ms, "tuned", wav, reload=k)
                daemon.config_path.write_text(config)
                daemon.process.send_signal(signal.SIGHUP)
                daemon.wait_log("configuration reloaded", count=k)
                rss[k] = _rss_mb(daemon.process.pid)
                load = max(load, os.getloadavg()[0])
            # The last changes settle, then one more refreeze reclaims what they left.
            freezes = len([line for line in daemon.lines if line.get("event") == "gc frozen"])
            daemon.wait_log("gc frozen", count=freezes + 1, timeout_s=180)
            daemon.wait_ready(sessions)
            end_rss = _rss_mb(daemon.process.pid)
            elapsed = time.monotonic() - t0
            failures = _total(_scrape(port), "saynad_session_failures_total")
        finally:
            daemon.stop()
    frozen = [line for line in daemon.lines if line.get("event") == "gc frozen"]
    checkpoints = sorted({1, 10, reloads // 4, reloads // 2, 3 * reloads // 4, reloads} & set(rss))
    return {
        "sessions": sessions,
        "reloads": reloads,
        "changed_per_reload": 2 * max(1, sessions // 20),
        "minutes": round(elapsed / 60, 1),
        "rss_fleet_up_mb": round(rss[0], 1),
        "rss_after_mb": {str(k): round(rss[k], 1) for k in checkpoints},
        "rss_end_mb": round(end_rss, 1),
        "freezes": [
            {k: line[k] for k in ("reason", "collected", "frozen", "pause_ms")} for line in frozen
        ],
        "load_average": round(load, 2),
        "failures": round(failures),
    }


GC_MODES = {
    "default": "CPython's default thresholds, nothing frozen",
    "freeze": "`gc.freeze()` once the fleet is up",
    "tuned": "`gc.freeze()` once the fleet is up and `gc.set_threshold(10_000, 50, 10)`",
}


RESULTS = ROOT / "bench-results"
PARTS = ("actors", "daemon", "reload")


def _actors_markdown(results: list[dict[str, Any]]) -> str:
    head = (
        "| GC | sessions | turns | finals within ±5 ms p50 / p90 | p50 (ms) | p90 (ms) "
        "| p99 (ms) | max (ms) "
        "| loop lag p99 (ms) | GCs young / full (max ms) | CPU core 0 / emulator (%) | load avg "
        "| RSS (MB) | dropped media | failures |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = "\n".join(
        f"| {r['gc']} | {r['sessions']} | {r['observations']} "
        f"| {r.get('burst_p50', '?')} / {r.get('burst_p90', '?')} | {r['p50_ms']:.2f} "
        f"| {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} "
        f"| {r['loop_lag_p99_ms']:.2f} | {r['gc_young_collections']} / "
        f"{r['gc_full_collections']} ({max(r['gc_young_max_ms'], r['gc_full_max_ms']):.0f}) "
        f"| {r['cpu_percent']} / {r['emulator_cpu_percent']} | {r['load_average']} "
        f"| {r['rss_mb']} | {r['dropped_events']} | {sum(r['failures'].values())} |"
        for r in results
    )
    modes = "\n".join(f"- `{r['gc']}`: {GC_MODES.get(r['gc'], r['gc'])}" for r in results)
    return f"{head}\n{rows}\n\nGC modes:\n{modes}"


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _bursts(runs: list[dict[str, Any]]) -> str:
    if any("burst_p50" not in r for r in runs):
        return "?"
    return f"{_median(runs, 'burst_p50'):.0f} / {_median(runs, 'burst_p90'):.0f}"


def _daemon_markdown(results: list[dict[str, Any]]) -> str:
    head = (
        "| `runtime.gc` | sessions | runs | turns / run | finals within ±5 ms p50 / p90 "
        "| p50 (ms) | p90 (ms) | p99 (ms) "
        "| max (ms) | p99 of each run (ms) | histogram p99 ≤ (ms) "
        "| GCs young / full per run (max pause ms) | CPU daemon / emulator (%) | load avg "
        "| RSS (MB) | dropped media | failures |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for mode in dict.fromkeys(r["gc"] for r in results):
        runs = [r for r in results if r["gc"] == mode]
        pause = max(max(r["gc_young_max_ms"], r["gc_full_max_ms"]) for r in runs)
        each_p99 = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
        rows.append(
            f"| {mode} | {runs[0]['sessions']} | {len(runs)} "
            f"| {_median(runs, 'observations'):.0f} "
            f"| {_bursts(runs)} | {_median(runs, 'p50_ms'):.2f} "
            f"| {_median(runs, 'p90_ms'):.2f} | {_median(runs, 'p99_ms'):.2f} "
            f"| {_median(runs, 'max_ms'):.2f} "
            f"| {each_p99} "
            f"| {_median(runs, 'histogram_p99_le_ms'):g} "
            f"| {_median(runs, 'gc_young_collections'):.0f} / "
            f"{_median(runs, 'gc_full_collections'):.0f} ({pause:.0f}) "
            f"| {_median(runs, 'cpu_percent'):.1f} / {_median(runs, 'emulator_cpu_percent'):.1f} "
            f"| {', '.join(str(r['load_average']) for r in runs)} "
            f"| {_median(runs, 'rss_mb'):.0f} | {sum(r['dropped_events'] for r in runs)} "
            f"| {sum(r['failures'] for r in runs)} |"
        )
    modes = "\n".join(
        f"- `{mode}`: {DAEMON_GC.get(mode, mode)}"
        for mode in dict.fromkeys(r["gc"] for r in results)
    )
    freezes = [r["first_freeze"] for r in results if r.get("first_freeze")]
    freeze_text = ""
    if freezes:
        freeze_text = (
            f"\n\nThe first freeze of the `tuned` runs (once all {results[0]['sessions']} "
            "sessions were ready): "
            + "; ".join(
                f"{f['frozen']:,} objects frozen, {f['collected']} collected, "
                f"{f['pause_ms']:.0f} ms pause"
                for f in freezes
            )
            + "."
        )
    return f"{head}\n{rows and chr(10).join(rows)}\n\n{modes}{freeze_text}"


def _reload_markdown(r: dict[str, Any]) -> str:
    after = ", ".join(f"{mb:.0f} MB after {k}" for k, mb in r["rss_after_mb"].items())
    frozen = [f["frozen"] for f in r["freezes"]]
    reasons: dict[str, int] = {}
    for f in r["freezes"]:
        reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    pauses = [f["pause_ms"] for f in r["freezes"]]
    return (
        f"{r['reloads']} `SIGHUP` reloads of a {r['sessions']}-session daemon "
        f"(`runtime.gc: tuned`), each changing {r['changed_per_reload']} sessions (a rotating "
        f"subset gains or loses a greeting, so they restart), in {r['minutes']} min.\n\n"
        f"| RSS fleet up (MB) | RSS along the reloads | RSS at the end, after the last "
        f"refreeze (MB) | freezes (by reason) | frozen objects: first / min / max / last "
        f"| freeze pause max (ms) | load avg max | failures |\n"
        f"|---|---|---|---|---|---|---|---|\n"
        f"| {r['rss_fleet_up_mb']:.0f} | {after} | {r['rss_end_mb']:.0f} "
        f"| {len(frozen)} ({', '.join(f'{k}: {v}' for k, v in reasons.items())}) "
        f"| {frozen[0]:,} / {min(frozen):,} / {max(frozen):,} / {frozen[-1]:,} "
        f"| {max(pauses):.0f} | {r['load_average']} | {r['failures']} |"
    )


def markdown(parts: dict[str, Any], machine: str) -> str:
    """``docs/benchmarks-agent.md`` from each part's saved results (a missing part: noted)."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    period_s = f"{UTTERANCE_MS / 1000:g}"
    actors, daemon, reload = parts.get("actors"), parts.get("daemon"), parts.get("reload")
    first = (actors or {}).get("results", [{}])[0] or (daemon or {}).get("results", [{}])[0]
    sessions = first.get("sessions", "N")
    chunk_ms = first.get("chunk_ms", 200)
    measure_s = first.get("measure_s", "?")

    def stamp(part: dict[str, Any] | None) -> str:
        return f"Run on {part['when']}; load avg is per run." if part else "Not run."

    daemon_text = (
        _daemon_markdown(daemon["results"])
        if daemon
        else "Not run (`python -m tests.bench.bench_agent --parts daemon`)."
    )
    reload_text = (
        _reload_markdown(reload["result"])
        if reload
        else "Not run (`python -m tests.bench.bench_agent --parts reload`)."
    )
    actors_text = _actors_markdown(actors["results"]) if actors else "Not run."
    return f"""# saynad agent benchmark

Generated by `make bench` (`tests/bench/bench_agent.py`) on {when}.
Machine: {machine}. Loopback only; the daemon (or the session actors) runs in one process
pinned to core 0, the emulator in its own process pinned to core 1. *load avg* is the
machine's 1-minute load average during the run (2 means both cores busy): other work on
the machine shows up in the tail latencies.

Workload: {sessions} concurrent sessions, each with the echo agent and a looping
audio source at real-time pace in {chunk_ms} ms chunks; the emulator finalises one
transcript per {period_s} s of audio, so each session receives a final transcript every
{period_s} s and answers it with one `speak`. Measured over {measure_s} s after a
10 s warm-up.

**Final transcript received → first `speak` frame sent**: from the reader receiving the
turn-closing `stt_result` to the writer having sent the reply's first frame (fan-out,
turn assembly, the reply task, the outbox, the socket write). Target: p99 under 5 ms.

## `saynad run` as shipped

{stamp(daemon)} A real `saynad run` process (its CLI entry point and a configuration
file, `sayna.url` pointing at the emulator) with {sessions} always-on sessions
(`agent: {{kind: echo}}`, `audio: {{source: {{loop: true, chunk_ms: {chunk_ms}}}}}`) against
the emulator process;
one row per `runtime.gc` value, the figures the **median of the runs** (the runs of both
values interleaved, so machine noise hits both alike).

How the latencies are read: exactly, one value per turn. The benchmark starts the daemon
through `saynad.cli.main(["run", "--config", …])` with a recorder wrapped around
`Metrics.observe_final_to_speak`, the call that feeds
`saynad_final_transcript_to_speak_seconds`: it stores `(monotonic time, seconds)` in an
`array` (two float stores per turn, nothing the collector tracks) and writes them to a
file when the daemon exits. Only observations inside the measurement window count.
*histogram p99 ≤* is what the daemon's own histogram says for the same window (two
`/metrics` scrapes): a bucket bound, not a value. *GCs* are the collections inside the
window and their longest pause, recorded by a `gc.callbacks` hook in the daemon.

*Finals within ±5 ms* describes the workload, not saynad: for each turn, how many
sessions (itself included) received their turn-closing transcript within 5 ms of it
(median / p90). `saynad run` starts its always-on sessions at once, so their audio
sources start within milliseconds of each other and the emulator, which finalises per
{period_s} s of received audio, sends their transcripts together; the session actors
below are started 4 ms apart instead. Sessions whose transcripts arrive together are
answered in the same scheduler passes — a reply takes four (reader, agent, reply task,
writer), and each pass runs every runnable task of every session — so the last reply of
a burst waits for the work of all the others. That waiting, not per-turn work, is what
separated a 50-session daemon (p50 ~2–4 ms, bursts of ~30) from the 50 session actors
(p50 0.2 ms): the same daemon with its sessions started 40 ms apart answered in 0.27 ms
p50. Real callers do not speak in lockstep; the column says how far a run is from that.

{daemon_text}

## Memory across reloads

{stamp(reload)} Frozen objects are never collected, so a frozen session run that ends
(a reload restarts it) would leave its reference cycles behind for good; the policy
refreezes (unfreeze, collect, freeze) once the fleet has settled after a change, at most
once a minute. This run checks that RSS does not grow with the reloads.

{reload_text}

## The session actors alone

{stamp(actors)} The daemon's session actors
(`saynad.actors.session.run_session`) in a bare trio process, without the supervisor, the
HTTP server or the metrics; starts staggered by 4 ms, which spreads the transcripts
evenly over the {period_s} s period. The latency is read inside the session actor
(`SessionCounters.observe_first_speak`), one value per turn; *GC* is set by the benchmark
process itself.

{actors_text}

Why the GC matters here: a thousand sessions keep a few hundred thousand objects alive,
and the suspended coroutines of their tasks are re-created at every `await`, so they
are always young. With CPython's default thresholds a young collection runs every few
hundred milliseconds and walks them (tens of milliseconds each, see *GCs*), and a full
collection walks everything. Every session waits through each pause, so the pauses,
not the agent path, make the tail. `gc.freeze()` once the fleet is up takes the
long-lived objects out of every collection, and a higher young threshold lets the
short-lived ones die (by reference counting) before anything walks them. `saynad run`
applies that policy itself (`runtime.gc: tuned`, the default; `docs/operations.md`,
*Garbage collection*).
"""


def _save(part: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"agent-{part}.json").write_text(json.dumps(data, indent=2))


def _saved(part: str) -> dict[str, Any] | None:
    path = RESULTS / f"agent-{part}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _print_result(result: dict[str, Any]) -> None:
    print(
        f"  final→speak p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
        f"max {result['max_ms']:.2f} ms over {result['observations']} turns "
        f"(finals within ±5 ms: p50 {result.get('burst_p50')}, p90 {result.get('burst_p90')}); "
        f"CPU {result['cpu_percent']}% (emulator {result['emulator_cpu_percent']}%), "
        f"load {result['load_average']}, "
        f"full GCs {result['gc_full_collections']} (max {result['gc_full_max_ms']:.1f} ms), "
        f"young GCs {result['gc_young_collections']} "
        f"(max {result['gc_young_max_ms']:.1f} ms), failures {result['failures']}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; write ``docs/benchmarks-agent.md`` unless ``--no-write``."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_agent")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--chunk-ms", type=int, default=200)
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="what to run: actors (in-process session actors), daemon (saynad run), reload",
    )
    parser.add_argument(
        "--gc",
        action="append",
        help="GC modes of the actors part (repeatable; default: default and tuned)",
    )
    parser.add_argument(
        "--daemon-gc",
        action="append",
        help="runtime.gc values of the daemon part (repeatable; default: tuned and stock)",
    )
    parser.add_argument("--reps", type=int, default=3, help="runs per runtime.gc value")
    parser.add_argument("--reloads", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-agent.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results: list[dict[str, Any]] = []
    saved: dict[str, Any] = {part: _saved(part) for part in PARTS}
    if "actors" in parts:
        actor_results = []
        for mode in args.gc or ["default", "tuned"]:
            print(
                f"agent benchmark: {args.sessions} session actors, transcript every "
                f"{UTTERANCE_MS} ms, {args.chunk_ms} ms audio chunks, GC {mode}, "
                f"measuring {args.measure_s:g} s"
            )
            result = run(args.sessions, args.warmup_s, args.measure_s, args.chunk_ms, mode)
            actor_results.append(result)
            _print_result(result)
            print(f"  loop lag p99 {result['loop_lag_p99_ms']:.2f} ms")
        saved["actors"] = {"when": when, "results": actor_results}
        results += actor_results
    if "daemon" in parts:
        daemon_results = []
        for rep in range(args.reps):
            for mode in args.daemon_gc or ["tuned", "stock"]:
                print(
                    f"agent benchmark: saynad run, {args.sessions} sessions, runtime.gc {mode}, "
                    f"run {rep + 1}/{args.reps}, measuring {args.measure_s:g} s",
                    flush=True,
                )
                result = run_saynad(
                    args.sessions, args.warmup_s, args.measure_s, args.chunk_ms, mode
                )
                daemon_results.append(result)
                _print_result(result)
                print(
                    f"  histogram p99 ≤ {result['histogram_p99_le_ms']:g} ms; all ready in "
                    f"{result['all_ready_s']} s; first freeze {result['first_freeze']}; "
                    f"RSS {result['rss_mb']} MB",
                    flush=True,
                )
        saved["daemon"] = {"when": when, "results": daemon_results}
        results += daemon_results
    if "reload" in parts and args.reloads:
        print(f"agent benchmark: saynad run, {args.sessions} sessions, {args.reloads} reloads")
        reload_result = run_reloads(args.sessions, args.reloads, args.chunk_ms)
        print(
            f"  RSS fleet up {reload_result['rss_fleet_up_mb']} MB, along "
            f"{reload_result['rss_after_mb']}, end {reload_result['rss_end_mb']} MB; "
            f"freezes {[(f['reason'], f['frozen']) for f in reload_result['freezes']]}",
            flush=True,
        )
        saved["reload"] = {"when": when, "result": reload_result}
        results.append(reload_result)
    if not args.no_write:
        from tests.bench.__main__ import machine

        for part in parts:
            if saved.get(part) is not None:
                _save(part, saved[part])
        Path(args.out).write_text(markdown(saved, machine()))
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "emulator":
        _serve_emulator()
    elif len(sys.argv) > 1 and sys.argv[1] == "daemon":
        _run_daemon(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "saynad-run":
        _saynad_run(sys.argv[2:])
    else:
        main(sys.argv[1:])

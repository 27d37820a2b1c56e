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

::

    python -m tests.bench.bench_agent            # 1000 sessions → docs/benchmarks-agent.md
    python -m tests.bench.bench_agent --sessions 200 --measure-s 10 --no-write

``make bench`` runs it after the session benchmarks (see ``tests/bench/__main__.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16_000
UTTERANCE_MS = 2000
SCRIPT = ("hello there", "I would like to check my order", "thank you very much")
GC_TUNED = (10_000, 50, 10)


# --------------------------------------------------------------------------- emulator process


def _serve_emulator() -> None:
    from saynad.emulator import EmulatorOptions, serve_emulator
    from tests.bench.common import pin_to_cpu

    pin_to_cpu(1)
    options = EmulatorOptions(
        script=SCRIPT, utterance_ms=UTTERANCE_MS, interim_ms=UTTERANCE_MS // 2, tts_chunk_ms=500
    )

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            emulator = await nursery.start(
                lambda task_status: serve_emulator(options, task_status=task_status)
            )
            print(f"listening on {emulator.url}", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

    trio.run(run)


# --------------------------------------------------------------------------- daemon process


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
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"\x10\x00" * SAMPLE_RATE * 4)

    measuring = False
    latencies: list[float] = []
    lags: list[float] = []
    failures: dict[str, int] = {}

    def observe(latency_s: float) -> None:
        if measuring:
            latencies.append(latency_s)

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


def run(
    sessions: int, warmup_s: float, measure_s: float, chunk_ms: int, gc_mode: str = "default"
) -> dict[str, Any]:
    """One measurement: an emulator process and a daemon-side process; the result dict."""
    emulator = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_agent", "emulator"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert emulator.stdout is not None
        line = emulator.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        url = line.rsplit(" ", 1)[1].strip()
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
                str(emulator.pid),
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
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait()


GC_MODES = {
    "default": "the daemon's GC as it is (CPython's default thresholds)",
    "freeze": "`gc.freeze()` once the fleet is up",
    "tuned": "`gc.freeze()` once the fleet is up and `gc.set_threshold(10_000, 50, 10)`",
}


def markdown(results: list[dict[str, Any]], machine: str) -> str:
    first = results[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    period_s = f"{UTTERANCE_MS / 1000:g}"
    head = (
        "| GC | sessions | turns | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) "
        "| loop lag p99 (ms) | GCs young / full (max ms) | CPU core 0 / emulator (%) | load avg "
        "| RSS (MB) | dropped media | failures |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = "\n".join(
        f"| {r['gc']} | {r['sessions']} | {r['observations']} | {r['p50_ms']:.2f} "
        f"| {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} "
        f"| {r['loop_lag_p99_ms']:.2f} | {r['gc_young_collections']} / "
        f"{r['gc_full_collections']} ({max(r['gc_young_max_ms'], r['gc_full_max_ms']):.0f}) "
        f"| {r['cpu_percent']} / {r['emulator_cpu_percent']} | {r['load_average']} "
        f"| {r['rss_mb']} | {r['dropped_events']} | {sum(r['failures'].values())} |"
        for r in results
    )
    modes = "\n".join(f"- `{r['gc']}`: {GC_MODES.get(r['gc'], r['gc'])}" for r in results)
    return f"""# saynad agent benchmark

Generated by `make bench` (`tests/bench/bench_agent.py`) on {when}.
Machine: {machine}. Loopback only; the session actors run in one process pinned to
core 0, the emulator in its own process pinned to core 1. *load avg* is the machine's
1-minute load average during the run (2 means both cores busy): other work on the
machine shows up in the tail latencies.

Workload: {first["sessions"]} concurrent sessions, each with the echo agent and a looping
audio source at real-time pace in {first["chunk_ms"]} ms chunks; the emulator finalises one
transcript per {period_s} s of audio, so each session receives a final transcript every
{period_s} s and answers it with one `speak`. Measured over {first["measure_s"]} s after a
warm-up.

**Final transcript received → first `speak` frame sent**, inside the session actor: from
the reader receiving the turn-closing `stt_result` to the writer having sent the reply's
first frame (fan-out, turn assembly, the reply task, the outbox, the socket write).

{head}
{rows}

GC modes:
{modes}

Why the GC matters here: a thousand sessions keep a few hundred thousand objects alive,
and the suspended coroutines of their tasks are re-created at every `await`, so they
are always young. With CPython's default thresholds a young collection runs every few
hundred milliseconds and walks them (tens of milliseconds each, see *GCs*), and a full
collection walks everything. Every session waits through each pause, so the pauses,
not the agent path, make the tail. `gc.freeze()` once the fleet is up takes the
long-lived objects out of every collection, and a higher young threshold lets the
short-lived ones die (by reference counting) before anything walks them. That policy
belongs to the daemon's composition root; the benchmark only shows its effect.
"""


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; write ``docs/benchmarks-agent.md`` unless ``--no-write``."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_agent")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--warmup-s", type=float, default=10.0)
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--chunk-ms", type=int, default=200)
    parser.add_argument(
        "--gc",
        action="append",
        help="GC modes to run (repeatable; default: default and tuned)",
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks-agent.md"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results = []
    for mode in args.gc or ["default", "tuned"]:
        print(
            f"agent benchmark: {args.sessions} sessions, transcript every {UTTERANCE_MS} ms, "
            f"{args.chunk_ms} ms audio chunks, GC {mode}, measuring {args.measure_s:g} s"
        )
        result = run(args.sessions, args.warmup_s, args.measure_s, args.chunk_ms, mode)
        results.append(result)
        print(
            f"  final→speak p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
            f"max {result['max_ms']:.2f} ms over {result['observations']} turns; "
            f"CPU {result['cpu_percent']}% (emulator {result['emulator_cpu_percent']}%), "
            f"loop lag p99 {result['loop_lag_p99_ms']:.2f} ms, load {result['load_average']}, "
            f"full GCs {result['gc_full_collections']} (max {result['gc_full_max_ms']:.1f} ms), "
            f"young GCs {result['gc_young_collections']} "
            f"(max {result['gc_young_max_ms']:.1f} ms), "
            f"failures {result['failures']}"
        )
    if not args.no_write:
        from tests.bench.__main__ import machine

        Path(args.out).write_text(markdown(results, machine()))
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "emulator":
        _serve_emulator()
    elif len(sys.argv) > 1 and sys.argv[1] == "daemon":
        _run_daemon(sys.argv[2:])
    else:
        main(sys.argv[1:])

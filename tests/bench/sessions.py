"""Session benchmark: N concurrent sessions per client process against an emulator process.

Each session: connect, ready, speak one sentence and receive its audio and completion,
stream 2 s of 16 kHz PCM in 20 ms chunks at real-time pace, receive the transcripts,
close. The emulator runs in its own process pinned to core 1, each client process on
core 0; the emulator's CPU time is reported next to the client's.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench.common import percentile

CLIENTS: dict[str, list[str]] = {
    "saynad": ["-m", "tests.bench.client_saynad"],
    "sdk": ["-m", "tests.bench.client_sdk"],
    "bare": ["-m", "tests.bench.client_bare"],
    # Ablations (not run by default): saynad with one optimisation taken out.
    "saynad/loop": ["-m", "tests.bench.client_saynad", "--pacing", "saynad"],
    "saynad/trio-sleep": ["-m", "tests.bench.client_saynad", "--pacing", "trio"],
    "saynad/trio-websocket": [
        "-m",
        "tests.bench.client_saynad",
        "--transport",
        "trio-websocket",
        "--pacing",
        "trio",
    ],
}
DEFAULT_CLIENTS = ("saynad", "sdk", "bare")


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class EmulatorProcess:
    url: str
    pid: int

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.pid)


@contextmanager
def emulator_process(
    *extra: str,
    server: str = "direct",
    timings: Path | None = None,
    pacing: tuple[str, ...] = (),
) -> Iterator[EmulatorProcess]:
    """Start the emulator on a free loopback port, pinned to core 1.

    ``server``: ``direct`` (WebSocket sessions served straight over wsproto) or
    ``hypercorn``; ``extra`` arguments go to ``saynad emulator`` when given (it has
    options the benchmark launcher lacks, and always uses the default server).

    The emulator runs without CPython's cyclic garbage collector. It stands in for
    Sayna, a server without collector pauses, and it makes almost no cyclic garbage
    (2,879 objects after 1,000 sessions, nearly all from start-up); with the collector
    on, its full collections (15–112 ms at N = 1,000, while its core is saturated)
    landed in whichever client's first-audio and send-lag tails they happened to hit.

    ``timings``: where the emulator writes, when it stops, each session's speech
    timings (see :func:`speech_split`). ``pacing``: TTS pacing options of
    ``tests.bench.emulator`` (e.g. ``--tts-first-audio-ms 100``), for a server paced
    unlike the default emulator.
    """
    if extra and timings is not None:
        raise ValueError("saynad emulator records no speech timings; pass extra or timings")
    if extra:
        command = [sys.executable, "-m", "saynad", "emulator", "--port", "0", *extra]
    else:
        command = [
            sys.executable,
            *("-m", "tests.bench.emulator", "--server", server, "--collector", "off"),
            *(("--timings", str(timings)) if timings is not None else ()),
            *pacing,
        ]
    with listening_process(command, cpu=1) as (url, pid):
        yield EmulatorProcess(url=url, pid=pid)


@contextmanager
def listening_process(
    command: list[str], *, cpu: int | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, int]]:
    """Run ``command`` (a server that prints ``... listening on URL`` when it is up)
    for the block: yields its URL and pid, pinned to core ``cpu`` when given and the
    machine has more than one; terminates it after the block (killed after 10 s)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=cwd)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"{' '.join(command[1:])} did not start: {line!r}")
        if cpu is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(proc.pid, {cpu})
        yield line.rsplit(" ", 1)[1].strip(), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_once(
    client: str,
    n: int,
    *,
    timeout_s: float = 900,
    server: str = "direct",
    stagger_ms: float = 0.0,
    pacing: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One client process with ``n`` sessions against a fresh emulator (session ``i``
    started ``i * stagger_ms`` after the first; all at once by default; ``pacing``: see
    :func:`emulator_process`)."""
    with tempfile.TemporaryDirectory() as tmp:
        timings = Path(tmp) / "speech-timings.json"
        with emulator_process(server=server, timings=timings, pacing=pacing) as emu:
            cpu0 = emu.cpu_s()
            driver0 = _own_cpu_s()
            started = time.monotonic()
            out = subprocess.run(
                [sys.executable, *CLIENTS[client], emu.url, str(n)]
                + (["--stagger-ms", str(stagger_ms)] if stagger_ms else []),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
            result: dict[str, Any] = {}
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    result = json.loads(line)
            if not result:
                raise RuntimeError(f"{client} N={n} produced no result:\n{out.stderr[-2000:]}")
            result["client"] = client
            result["emulator_cpu_s"] = emu.cpu_s() - cpu0
            result["emulator_cpu_ms_per_session"] = result["emulator_cpu_s"] * 1000 / n
            result["process_wall_s"] = time.monotonic() - started
            # How busy the emulator's core was while the client ran (100 %: the emulator,
            # not the client, would set the pace), and this driver's own CPU meanwhile.
            result["emulator_busy"] = result["emulator_cpu_s"] / result["process_wall_s"]
            result["driver_cpu_s"] = _own_cpu_s() - driver0
        # The emulator writes its side when it stops (at the end of the block above).
        emulator_side = json.loads(timings.read_text()) if timings.exists() else {}
    result.update(speech_split(result.pop("speech", {}), emulator_side))
    return result


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


SPLIT = ("to_emulator", "in_emulator", "to_client", "since_start")


def speech_split(
    client_side: dict[str, list[float]], emulator_side: dict[str, list[float]]
) -> dict[str, float]:
    """Where each session's speak → first audio went, from the two processes' records
    of it on the machine's monotonic clock, matched by ``stream_id``:

    - ``to_emulator``: speak sent by the client → handled by the emulator (the client's
      send, the kernel, and the emulator's queue of work before that frame);
    - ``in_emulator``: handled → first audio frame written (the emulator alone);
    - ``to_client``: written → the client has the frame as an event (the kernel and the
      client's own queue: its share);
    - ``since_start``: the session's start (before connecting) → first audio, what a
      caller waits for in all.

    Returns p50 and p99 of each (``first_audio_<part>_p50_s`` …), the number of
    sessions matched, and how close together the client sent its speaks
    (``speak_spread_s``: p95 − p5 of the send times; the emulator serves speaks sent
    together one after the other).

    And who makes the tail of speak → first audio: the sessions are ranked by when
    their ``speak`` left, and the first tenth of them (at least one) — the sessions
    ready first, whose answer comes while the client is still starting the rest — is
    set apart: ``first_audio_early_p50_s`` (their p50), ``first_audio_rest_p99_s``
    (the p99 of the other nine tenths) and ``first_audio_slowest_early_share`` (the
    share of the slowest hundredth, at least one session, that spoke in that first
    tenth).
    """
    parts: dict[str, list[float]] = {name: [] for name in SPLIT}
    sent = [spoke for _, spoke, _ in client_side.values() if not math.isnan(spoke)]
    by_speak: list[tuple[float, float]] = []  # (speak sent, speak → first audio)
    for stream_id, (began, spoke, heard) in client_side.items():
        handled, written = emulator_side.get(stream_id, (math.nan, math.nan))
        stamps = (began, spoke, handled, written, heard)
        if any(math.isnan(t) for t in stamps):
            continue
        parts["to_emulator"].append(handled - spoke)
        parts["in_emulator"].append(written - handled)
        parts["to_client"].append(heard - written)
        parts["since_start"].append(heard - began)
        by_speak.append((spoke, heard - spoke))
    out: dict[str, float] = {
        "first_audio_matched": float(len(parts["to_client"])),
        "speak_spread_s": percentile(sent, 95) - percentile(sent, 5),
    }
    for name, values in parts.items():
        out[f"first_audio_{name}_p50_s"] = statistics.median(values) if values else math.nan
        out[f"first_audio_{name}_p99_s"] = percentile(values, 99)
    out.update(_early_speakers(by_speak))
    return out


def _early_speakers(by_speak: list[tuple[float, float]]) -> dict[str, float]:
    """The first tenth of the speakers against the rest (see :func:`speech_split`)."""
    if not by_speak:
        return {
            "first_audio_early_p50_s": math.nan,
            "first_audio_rest_p99_s": math.nan,
            "first_audio_slowest_early_share": math.nan,
        }
    # The waits in the order the speaks left; the first tenth is a prefix of it.
    waits = [wait for _, wait in sorted(by_speak, key=lambda pair: pair[0])]
    early = max(1, math.ceil(len(waits) / 10))
    slowest = sorted(range(len(waits)), key=waits.__getitem__)[-max(1, len(waits) // 100) :]
    return {
        "first_audio_early_p50_s": statistics.median(waits[:early]),
        "first_audio_rest_p99_s": percentile(waits[early:], 99),
        "first_audio_slowest_early_share": sum(i < early for i in slowest) / len(slowest),
    }


METRICS = (
    "all_ready_s",
    "wall_s",
    "cpu_ms_per_session",
    "user_ms_per_session",
    "sys_ms_per_session",
    "gc_ms_per_session",
    "gc_full",
    "rss_kb_per_session",
    "send_lag_p50_s",
    "send_lag_p99_s",
    "send_lag_worst_p50_s",
    "send_lag_worst_p99_s",
    "first_audio_p50_s",
    "first_audio_p99_s",
    "emulator_cpu_s",
    "emulator_cpu_ms_per_session",
    "emulator_busy",
    "driver_cpu_s",
    "failures",
    "first_audio_matched",
    "speak_spread_s",
    *(f"first_audio_{part}_{q}_s" for part in SPLIT for q in ("p50", "p99")),
    "first_audio_early_p50_s",
    "first_audio_rest_p99_s",
    "first_audio_slowest_early_share",
)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"client": runs[0]["client"], "n": runs[0]["n"], "reps": len(runs)}
    for key in METRICS:
        # Results saved before a metric existed lack it.
        merged[key] = statistics.median(float(r.get(key, math.nan)) for r in runs)
    merged["failures_total"] = sum(int(r["failures"]) for r in runs)
    merged["errors"] = {k: v for r in runs for k, v in r["errors"].items()}
    merged["runs"] = runs
    return merged


def run_matrix(
    clients: list[str],
    sizes: list[int],
    reps: int,
    log: Callable[[str], object] = print,
    *,
    server: str = "direct",
    stagger_ms: float = 0.0,
    pacing: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Every client at every size, ``reps`` times, interleaved so drift hits all alike."""
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n in sizes:
        for rep in range(reps):
            for client in clients:
                result = run_once(client, n, server=server, stagger_ms=stagger_ms, pacing=pacing)
                raw.setdefault((client, n), []).append(result)
                log(
                    f"  {client:22s} N={n:5d} rep={rep + 1}: "
                    f"cpu {result['cpu_ms_per_session']:.2f} ms/session, "
                    f"rss {result['rss_kb_per_session']:.0f} KB/session, "
                    f"lag p99 {result['send_lag_p99_s'] * 1000:.1f} ms "
                    f"(worst chunk p99 {result['send_lag_worst_p99_s'] * 1000:.1f}), "
                    f"first audio p99 {result['first_audio_p99_s'] * 1000:.0f} ms, "
                    f"ready {result['all_ready_s']:.2f} s, "
                    f"emulator {result['emulator_cpu_s']:.1f} s, failures {result['failures']}"
                )
    return [median_of(runs) for runs in raw.values()]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table of medians, one row per client and N."""
    head = (
        "| N | client | CPU (ms/session) | peak RSS (KB/session) | send lag p50 / p99 (ms) "
        "| worst chunk per session p50 / p99 (ms) "
        "| speak→first audio p50 / p99 (ms) | all ready (s) | wall (s) "
        "| emulator CPU (s; ms/session; % of its core) | driver CPU (s) "
        "| failures (all runs) |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    nan = math.nan
    body = "".join(
        f"| {r['n']} | {r['client']} | {r['cpu_ms_per_session']:.2f} "
        f"| {r['rss_kb_per_session']:.0f} "
        f"| {_ms(r['send_lag_p50_s'])} / {_ms(r['send_lag_p99_s'])} "
        f"| {_ms(r.get('send_lag_worst_p50_s', nan))} / "
        f"{_ms(r.get('send_lag_worst_p99_s', nan))} "
        f"| {_ms(r['first_audio_p50_s'])} / {_ms(r['first_audio_p99_s'])} "
        f"| {r['all_ready_s']:.2f} | {r['wall_s']:.1f} "
        f"| {r['emulator_cpu_s']:.1f}; {r['emulator_cpu_ms_per_session']:.2f}; "
        f"{r.get('emulator_busy', nan) * 100:.0f} % "
        f"| {r.get('driver_cpu_s', nan):.2f} "
        f"| {r['failures_total']} |\n"
        for r in sorted(rows, key=lambda r: (r["n"], r["client"]))
    )
    return head + body


def cpu_markdown(rows: list[dict[str, Any]]) -> str:
    """Where each client's CPU went, one row per client and N (medians)."""
    head = (
        "| N | client | CPU (ms/session) | user | system | of which the collector "
        "| full collections |\n|---:|---|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['n']} | {r['client']} | {r['cpu_ms_per_session']:.2f} "
        f"| {r.get('user_ms_per_session', math.nan):.2f} "
        f"| {r.get('sys_ms_per_session', math.nan):.2f} "
        f"| {r.get('gc_ms_per_session', math.nan):.2f} "
        f"| {r.get('gc_full', math.nan):.0f} |\n"
        for r in sorted(rows, key=lambda r: (r["n"], r["client"]))
    )
    return head + body


def split_markdown(rows: list[dict[str, Any]]) -> str:
    """Speak → first audio split between the client and the emulator, one row per
    client and N (medians over the runs of each p50 / p99)."""

    def pair(r: dict[str, Any], name: str) -> str:
        return f"{_ms(r[f'{name}_p50_s'])} / {_ms(r[f'{name}_p99_s'])}"

    head = (
        "| N | client | speak→first audio | client→emulator | in the emulator "
        "| emulator→client | session start→first audio | sessions matched "
        "| speaks sent within (p5–p95) |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['n']} | {r['client']} | {pair(r, 'first_audio')} "
        f"| {pair(r, 'first_audio_to_emulator')} | {pair(r, 'first_audio_in_emulator')} "
        f"| {pair(r, 'first_audio_to_client')} | {pair(r, 'first_audio_since_start')} "
        f"| {r['first_audio_matched']:.0f} "
        f"| {_ms(r['speak_spread_s'])} |\n"
        for r in sorted(rows, key=lambda r: (r["n"], r["client"]))
        if "first_audio_since_start_p50_s" in r
    )
    return head + body


def early_markdown(rows: list[dict[str, Any]]) -> str:
    """Who makes the tail of speak → first audio: the first tenth of the speakers against
    the rest, one row per client and N (medians over the runs)."""
    head = (
        "| N | client | speak→first audio p99 | first 10 % of speakers: p50 "
        "| the other 90 %: p99 | slowest 1 % that spoke in the first 10 % |\n"
        "|---:|---|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['n']} | {r['client']} | {_ms(r['first_audio_p99_s'])} "
        f"| {_ms(r['first_audio_early_p50_s'])} | {_ms(r['first_audio_rest_p99_s'])} "
        f"| {r['first_audio_slowest_early_share'] * 100:.0f} % |\n"
        for r in sorted(rows, key=lambda r: (r["n"], r["client"]))
        if not math.isnan(r.get("first_audio_early_p50_s", math.nan))
    )
    return head + body

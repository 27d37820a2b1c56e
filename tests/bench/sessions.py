"""Session benchmark: N concurrent sessions per client process against an emulator process.

Each session: connect, ready, speak one sentence and receive its audio and completion,
stream 2 s of 16 kHz PCM in 20 ms chunks at real-time pace, receive the transcripts,
close. The emulator runs in its own process pinned to core 1, each client process on
core 0; the emulator's CPU time is reported next to the client's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

CLIENT_MODULES = {
    "saynad": "tests.bench.client_saynad",
    "sdk": "tests.bench.client_sdk",
}


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
def emulator_process(*extra: str) -> Iterator[EmulatorProcess]:
    """Start ``saynad emulator`` on a free loopback port, pinned to core 1."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "saynad", "emulator", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(proc.pid, {1})
        yield EmulatorProcess(url=line.rsplit(" ", 1)[1].strip(), pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_once(client: str, n: int, timeout_s: float = 600) -> dict[str, Any]:
    """One client process with ``n`` sessions against a fresh emulator."""
    with emulator_process() as emu:
        cpu0 = emu.cpu_s()
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", CLIENT_MODULES[client], emu.url, str(n)],
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
        result["emulator_cpu_s"] = emu.cpu_s() - cpu0
        result["process_wall_s"] = time.monotonic() - started
        return result


METRICS = (
    "all_ready_s",
    "cpu_ms_per_session",
    "rss_kb_per_session",
    "send_lag_p50_s",
    "send_lag_p99_s",
    "first_audio_p50_s",
    "first_audio_p99_s",
    "emulator_cpu_s",
    "failures",
)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"client": runs[0]["client"], "n": runs[0]["n"], "reps": len(runs)}
    for key in METRICS:
        merged[key] = statistics.median(float(r[key]) for r in runs)
    merged["errors"] = {k: v for r in runs for k, v in r["errors"].items()}
    return merged


def run_matrix(
    clients: list[str], sizes: list[int], reps: int, log: Any = print
) -> list[dict[str, Any]]:
    """Every client at every size, ``reps`` times, interleaved so drift hits all alike."""
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n in sizes:
        for rep in range(reps):
            for client in clients:
                result = run_once(client, n)
                raw.setdefault((client, n), []).append(result)
                log(
                    f"  {client:7s} N={n:5d} rep={rep + 1}: cpu {result['cpu_ms_per_session']:.2f} "
                    f"ms/session, rss {result['rss_kb_per_session']:.0f} KB/session, "
                    f"lag p99 {result['send_lag_p99_s'] * 1000:.1f} ms, "
                    f"ready {result['all_ready_s']:.2f} s, failures {result['failures']}"
                )
    return [median_of(runs) for runs in raw.values()]


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| client | N | all ready (s) | client CPU (ms/session) | peak RSS (KB/session) "
        "| send lag p50 / p99 (ms) | speak→first audio p50 / p99 (ms) | emulator CPU (s) "
        "| failures |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r['client']} | {r['n']} | {r['all_ready_s']:.2f} | {r['cpu_ms_per_session']:.2f} "
        f"| {r['rss_kb_per_session']:.0f} "
        f"| {r['send_lag_p50_s'] * 1000:.1f} / {r['send_lag_p99_s'] * 1000:.1f} "
        f"| {r['first_audio_p50_s'] * 1000:.1f} / {r['first_audio_p99_s'] * 1000:.1f} "
        f"| {r['emulator_cpu_s']:.1f} | {r['failures']:.0f} |\n"
        for r in sorted(rows, key=lambda r: (r["n"], r["client"]))
    )
    return head + body

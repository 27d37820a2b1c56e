"""Fleet benchmark (issue 4): N always-on sessions in one daemon against an emulator process.

Measures, per repetition: time from process start to all sessions ready, steady-state
CPU (% of one core) and RSS of the daemon over a quiet window, and what a SIGHUP that
changes exactly one session costs: the time until that session is ready again and the
number of reconnects it caused (target: exactly one).

``python -m tests.bench.bench_fleet [N] [REPS]``
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.sessions import emulator_process

TEMPLATE = """
sayna:
  url: "{url}"
http:
  listen: "127.0.0.1:{port}"
logging: {{level: info, format: json}}
defaults:
  backoff: {{initial_s: 0.5, max_s: 5}}
  ready_timeout_s: 120
  drain_timeout_s: 10
templates:
  voice:
    stt: {{provider: deepgram, language: en-US, sample_rate: 16000, channels: 1,
           punctuation: true, encoding: linear16, model: nova-3}}
    tts: {{provider: deepgram, model: aura-2, voice_id: aura-asteria-en}}
sessions:
{sessions}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(path: Path, url: str, port: int, n: int, changed: int | None) -> None:
    lines = []
    for i in range(n):
        lines.append(f"  - name: s{i:05d}\n    template: voice\n")
        if i == changed:
            lines.append("    stream_id: changed-{session}\n")
    path.write_text(TEMPLATE.format(url=url, port=port, sessions="".join(lines)))


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Log:
    """Reads the daemon's JSON log lines as they come (blocking reads with deadlines)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.stream = proc.stdout
        os.set_blocking(self.stream.fileno(), False)
        self.buffer = b""
        self.lines: list[dict[str, Any]] = []

    def poll(self) -> None:
        try:
            chunk = os.read(self.stream.fileno(), 1 << 20)
        except BlockingIOError:
            time.sleep(0.01)
            return
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        for line in complete:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def wait(self, predicate: Any, count: int, deadline_s: float) -> float:
        end = time.monotonic() + deadline_s
        while sum(1 for line in self.lines if predicate(line)) < count:
            if time.monotonic() > end:
                raise TimeoutError(f"waited {deadline_s} s for {count} matching log lines")
            self.poll()
        return time.monotonic()


def run_once(n: int) -> dict[str, float]:
    with emulator_process() as emu, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        port = _free_port()
        _write(path, emu.url, port, n, changed=None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "saynad", "run", "--config", str(path)],
            stdout=subprocess.PIPE,
        )
        try:
            if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(proc.pid, {0})
            log = _Log(proc)
            all_ready = log.wait(lambda e: e.get("new") == "ready", n, 300) - started
            cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
            time.sleep(10)
            steady_cpu = (_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
            rss = _rss_kb(proc.pid)
            mark = len(log.lines)
            _write(path, emu.url, port, n, changed=n // 2)
            hup = time.monotonic()
            proc.send_signal(1)  # SIGHUP
            target = f"s{n // 2:05d}"
            done = log.wait(lambda e: e.get("new") == "ready" and e.get("session") == target, 2, 60)
            time.sleep(2)  # let any unexpected reconnect show up
            log.poll()
            reconnects = sum(1 for e in log.lines[mark:] if e.get("new") == "connecting")
            proc.send_signal(15)
            end = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < end:
                log.poll()  # keep the pipe drained or the daemon blocks on its logs
            return {
                "n": n,
                "all_ready_s": all_ready,
                "steady_cpu_pct": steady_cpu,
                "rss_mb": rss / 1024,
                "rss_kb_per_session": rss / n,
                "reload_s": done - hup,
                "reconnects": reconnects,
            }
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run(n: int = 2000, reps: int = 3) -> str:
    """Run ``reps`` times; return the Markdown section with medians."""
    runs = []
    for rep in range(reps):
        result = run_once(n)
        print(f"  fleet N={n} rep={rep + 1}: {result}")
        runs.append(result)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return (
        f"## Fleet: {n} always-on sessions in one daemon\n\n"
        "The daemon (core 0) against an emulator process (core 1); medians of "
        f"{reps} runs.\n\n"
        "| sessions | start → all ready (s) | steady CPU (% of a core) | RSS (MB) "
        "| RSS per session (KB) | SIGHUP changing 1 session → ready (s) | reconnects |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {n} | {med['all_ready_s']:.2f} | {med['steady_cpu_pct']:.1f} | {med['rss_mb']:.0f} "
        f"| {med['rss_kb_per_session']:.0f} | {med['reload_s']:.2f} | "
        f"{', '.join(str(int(r['reconnects'])) for r in runs)} |\n"
    )


def main(argv: list[str] | None = None) -> str:
    """``[N] [REPS]``: run and write ``docs/benchmarks-fleet.md``."""
    from tests.bench.__main__ import machine

    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 2000
    reps = int(args[1]) if len(args) > 1 else 3
    section = run(n, reps)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    DOC.write_text(
        f"# saynad fleet benchmark\n\nGenerated by `make bench` "
        f"(`python -m tests.bench.bench_fleet {n} {reps}`) on {stamp}.\n"
        f"Machine: {machine()}.\n\n{section}"
    )
    print(section)
    return section


DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-fleet.md"

if __name__ == "__main__":
    main()

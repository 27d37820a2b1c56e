"""Fleet benchmark (issue 4): N always-on sessions in one daemon against an emulator process.

Measures, per repetition: time from process start to all sessions ready, steady-state
CPU (% of one core) and RSS of the daemon over a quiet window, and what a SIGHUP that
changes exactly one session costs: the time until that session is ready again and the
number of reconnects it caused (target: exactly one).

``python -m tests.bench.bench_fleet [N] [REPS]``
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from tests.bench.sessions import emulator_process
from tests.support.processes import daemon_process
from tests.support.samples import LISTEN_ANY, STT_YAML, tts_yaml

TEMPLATE = """
sayna:
  url: "{url}"
http:
  listen: "{listen}"
logging: {{level: info, format: json}}
defaults:
  backoff: {{initial_s: 0.5, max_s: 5}}
  ready_timeout_s: 120
  drain_timeout_s: 10
templates:
  voice:
    stt: {stt}
    tts: {tts}
sessions:
{sessions}
"""


def _write(path: Path, url: str, n: int, changed: int | None) -> None:
    lines = []
    for i in range(n):
        lines.append(f"  - name: s{i:05d}\n    template: voice\n")
        if i == changed:
            lines.append("    stream_id: changed-{session}\n")
    text = TEMPLATE.format(
        url=url,
        listen=LISTEN_ANY,
        stt=STT_YAML,
        tts=tts_yaml(sample_rate=None),
        sessions="".join(lines),
    )
    path.write_text(text)


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


def run_once(n: int) -> dict[str, float]:
    return trio.run(_run_once, n)


def _ready(line: dict[str, Any]) -> bool:
    return bool(line.get("new") == "ready")


async def _run_once(n: int) -> dict[str, float]:
    with emulator_process() as emu, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        _write(path, emu.url, n, changed=None)
        async with daemon_process(
            path, cpu=0, listening=False, keep_raw=False, stop_s=60
        ) as daemon:
            await daemon.wait_for_lines(_ready, count=n, within_s=300)
            all_ready = trio.current_time() - daemon.spawned_at
            cpu0, t0 = _cpu_s(daemon.pid), trio.current_time()
            await trio.sleep(10)
            steady_cpu = (_cpu_s(daemon.pid) - cpu0) / (trio.current_time() - t0) * 100
            rss = _rss_kb(daemon.pid)
            mark = len(daemon.lines)
            _write(path, emu.url, n, changed=n // 2)
            hup = trio.current_time()
            daemon.signal(signal.SIGHUP)
            target = f"s{n // 2:05d}"
            await daemon.wait_for_lines(
                lambda e: _ready(e) and e.get("session") == target, count=2, within_s=60
            )
            done = trio.current_time()
            await trio.sleep(2)  # let any unexpected reconnect show up
            reconnects = sum(1 for e in daemon.lines[mark:] if e.get("new") == "connecting")
        return {
            "n": n,
            "all_ready_s": all_ready,
            "steady_cpu_pct": steady_cpu,
            "rss_mb": rss / 1024,
            "rss_kb_per_session": rss / n,
            "reload_s": done - hup,
            "reconnects": reconnects,
        }


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

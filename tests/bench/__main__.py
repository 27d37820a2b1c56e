"""``make bench``: run the benchmarks and write ``docs/benchmarks.md``.

Options: ``--sizes 50,100,200,500,1000,2000,5000`` (sessions per client process),
``--reps 3``,
``--clients saynad,sdk,bare``, ``--ablations 1000`` (saynad with one optimisation taken
out, at that N; ``0`` to skip), ``--staggered 500`` (saynad and the SDK with sessions
started 2 ms apart, at that N; ``0`` to skip), ``--stretch 10000`` (one saynad run at
that N; ``0`` to skip), ``--paced 50,200`` (saynad and the SDK against an emulator paced like a real
TTS provider: first audio 100 ms after ``speak``, 20 ms chunks; empty to skip),
``--profiles`` (py-spy flame graphs of each client at N=1000 into
``docs/profiles/``). Medians of the repetitions are reported; raw results go to
``bench-results/`` (ignored by git). The README's Performance table is refreshed from the
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench import decode, report, sessions

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FINDINGS = Path(__file__).with_name("findings.md")
STAGGER_MS = 2.0  # session i starts at i × 2 ms in the staggered comparison
# A server paced unlike the default emulator: first TTS audio 100 ms after the speak (a
# provider's time to first byte), TTS audio in 20 ms chunks.
PACED_SERVER = ("--tts-first-audio-ms", "100", "--tts-chunk-ms", "20")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def _versions() -> str:
    from importlib.metadata import version

    names = ("trio", "wsproto", "msgspec", "hypercorn", "sayna-client", "aiohttp", "pydantic")
    return ", ".join(f"{name} {version(name)}" for name in names)


def profiles(out_dir: Path, n: int = 1000) -> list[Path]:
    """Flame graphs (SVG) of each client process at ``n`` sessions, recorded with py-spy."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for client in ("saynad", "sdk", "bare", "saynad/trio-websocket"):
        path = out_dir / f"{client.replace('/', '-')}-N{n}.svg"
        with sessions.emulator_process() as emu:
            record = [py_spy, "record", "--rate", "250", "--format", "flamegraph", "-o", str(path)]
            client_command = [sys.executable, *sessions.CLIENTS[client], emu.url, str(n)]
            subprocess.run(
                [*record, "--", *client_command],
                check=True,
                capture_output=True,
            )
        written.append(path)
        print(f"  profile: {path.relative_to(ROOT)}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--sizes", default="50,100,200,500,1000,2000,5000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", default=",".join(sessions.DEFAULT_CLIENTS))
    parser.add_argument("--ablations", type=int, default=1000)
    parser.add_argument("--stretch", type=int, default=10000)
    parser.add_argument("--staggered", type=int, default=500)
    parser.add_argument("--paced", default="50,200")
    parser.add_argument("--profiles", action="store_true")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the document and README table from bench-results/sessions.json",
    )
    parser.add_argument(
        "--sessions-only",
        action="store_true",
        help="only the session benchmark (docs/benchmarks.md), not the daemon's",
    )
    parser.add_argument("--out", default=str(DOCS / "benchmarks.md"))
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args()

    results_dir = ROOT / "bench-results"
    results_path = results_dir / "sessions.json"
    if args.report_only:
        saved = json.loads(results_path.read_text())
    else:
        saved = run_all(args)
        results_dir.mkdir(exist_ok=True)
        results_path.write_text(json.dumps(saved, indent=2))
    write_report(saved, Path(args.out), Path(args.readme))
    if not args.report_only and not args.sessions_only:
        # Webhooks under pressure, lifecycle and disk-full figures:
        # tests/bench/bench_webhook_pressure.py → docs/benchmarks-reliability.md
        from tests.bench import bench_webhook_pressure

        bench_webhook_pressure.main(["--reps", str(args.reps)])
        run_daemon_benchmarks(args.reps)


def run_daemon_benchmarks(reps: int) -> None:
    """The daemon's own benchmarks, each writing its docs/benchmarks-*.md."""
    from tests.bench import (
        bench_agent,
        bench_calls,
        bench_fleet,
        bench_scale,
        bench_scrape_flood,
        bench_webhooks,
    )

    bench_scrape_flood.main(["--reps", str(reps)])  # → docs/benchmarks-reliability.md
    bench_fleet.main(["2000", str(reps)])  # → docs/benchmarks-fleet.md
    bench_webhooks.main(["--reps", str(reps)])  # → docs/benchmarks-webhooks.md
    bench_agent.main([])  # → docs/benchmarks-agent.md
    bench_scale.main(["--reps", str(reps)])  # → docs/benchmarks-scale.md
    bench_calls.main(["--reps", str(reps)])  # → docs/benchmarks-calls.md


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Run every benchmark; returns what the report is built from."""
    sizes = [int(s) for s in args.sizes.split(",")]
    clients = args.clients.split(",")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    print(f"session benchmark: clients={clients} sizes={sizes} reps={args.reps}")
    rows = sessions.run_matrix(clients, sizes, args.reps)
    ablation_rows: list[dict[str, Any]] = []
    if args.ablations:
        print(f"ablations at N={args.ablations}")
        variants = ["saynad", "saynad/loop", "saynad/trio-sleep", "saynad/trio-websocket", "sdk"]
        ablation_rows = sessions.run_matrix(variants, [args.ablations], args.reps)
    staggered_rows: list[dict[str, Any]] = []
    if args.staggered:
        print(f"staggered starts at N={args.staggered}, {STAGGER_MS} ms apart")
        staggered_rows = sessions.run_matrix(
            ["saynad", "sdk"], [args.staggered], args.reps, stagger_ms=STAGGER_MS
        )
    paced_rows: list[dict[str, Any]] = []
    paced_sizes = [int(n) for n in args.paced.split(",") if n]
    if paced_sizes:
        print(f"a differently paced server ({' '.join(PACED_SERVER)}) at N={paced_sizes}")
        paced_rows = sessions.run_matrix(
            ["saynad", "sdk"], paced_sizes, args.reps, pacing=PACED_SERVER
        )
    stretch: list[dict[str, Any]] = []
    if args.stretch:
        for client in ("saynad", "sdk"):
            print(f"stretch: {client} at N={args.stretch}")
            result = sessions.run_once(client, args.stretch, timeout_s=1800)
            result["failures_total"] = result["failures"]
            stretch.append(result)
            print(
                f"  cpu {result['cpu_ms_per_session']:.2f} ms/session, lag p99 "
                f"{result['send_lag_p99_s'] * 1000:.0f} ms, failures {result['failures']}"
            )
    print("decode throughput")
    decode_rows = decode.run()
    if args.profiles:
        profiles(DOCS / "profiles")
    return {
        "started": started,
        "minutes": (time.monotonic() - t0) / 60,
        "machine": machine(),
        "versions": _versions(),
        "sizes": sizes,
        "clients": clients,
        "reps": args.reps,
        "ablation_n": args.ablations,
        "staggered_n": args.staggered,
        "rows": rows,
        "ablations": ablation_rows,
        "staggered": staggered_rows,
        "paced": paced_rows,
        "stretch": stretch,
        "decode": decode_rows,
    }


def write_report(saved: dict[str, Any], out: Path, readme: Path) -> None:
    rows, sizes, clients = saved["rows"], saved["sizes"], saved["clients"]
    stretch, ablation_rows, decode_rows = saved["stretch"], saved["ablations"], saved["decode"]
    started, minutes, reps = saved["started"], saved["minutes"], saved["reps"]
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_path = out.with_suffix(".png")
    report.plot(rows, clients, plot_path)
    targets_table, checks = report.targets(rows, sizes)

    stretch_text = "Not run (`--stretch 0`)."
    if stretch:
        stretch_text = "One run each:\n\n" + sessions.markdown(stretch)
    ablation_text = "Not run (`--ablations 0`)."
    if ablation_rows:
        ablation_text = sessions.markdown(ablation_rows)
    staggered_rows = saved.get("staggered", [])
    staggered_text = "Not run (`--staggered 0`)."
    if staggered_rows:
        staggered_text = (
            sessions.markdown(staggered_rows) + "\n" + sessions.split_markdown(staggered_rows)
        )
    paced_rows = saved.get("paced", [])
    paced_text = "Not run (`--paced ''`)."
    if paced_rows:
        paced_text = sessions.markdown(paced_rows) + "\n" + sessions.split_markdown(paced_rows)
    findings = FINDINGS.read_text(encoding="utf-8") if FINDINGS.exists() else ""

    text = f"""# saynad benchmarks

Generated by `make bench` on {started} ({minutes:.0f} min). Machine: {saved["machine"]}.
Versions: {saved["versions"]}.
Loopback only. The emulator runs in its own process pinned to core 1, without CPython's
cyclic garbage collector (it stands in for Sayna, a server without collector pauses; see
item 10 below), and its CPU is reported in every row; each client process runs alone on
core 0. Every figure is the
median of {reps} runs; the clients run interleaved at each N (saynad, sdk, bare, saynad, …)
so that drift and noise from other work on the machine hit all of them alike. Ratios
compare figures from the same run.

## Concurrent sessions in one process

Each session: connect, `ready`, speak one sentence and receive its audio and
`tts_playback_complete`, stream 2 s of 16 kHz PCM in 20 ms chunks at real-time pace,
receive the two final transcripts, close. Clients:

- **saynad**: `open_session` + `Session.stream_audio(chunks, 0.020)`, the client's
  paced-audio call (`tests/bench/client_saynad.py`); the hand-written loop
  (`pacing.sleep_until` + `send_audio` per chunk) is the `saynad/loop` ablation;
- **sdk**: the official asyncio SDK, `sayna-client` (`tests/bench/client_sdk.py`);
- **bare**: trio + wsproto + json written the obvious way: a reader task and a channel,
  a lock around sends, `trio.sleep_until` (`tests/bench/client_bare.py`).

*CPU* is the client process's user + system time from start to the last session's end,
divided by N. *Peak RSS* is the growth of the client's resident set over its baseline,
divided by N. *Send lag* is the official SDK client's own measure, taken the same way
for every client: chunk *i* is due at t0 + *i* × 20 ms, t0 being the moment `speak`
returned, and its lag is how late the chunk was written (for saynad, what
`stream_audio`'s `on_sent` reports with `start=t0`: saynad's own write lateness is the
same figure); p50 / p99 over all chunks of all sessions, and over each session's worst
chunk (a stream that starts late shows there, however few its late chunks are). *First
audio* is the time from `speak` to the first TTS frame. The emulator's CPU (and how busy
its core was while the client ran) and the driver's (the process that starts both) are
in every row: neither may set the pace.

![CPU per session and send-lag p99 against N](benchmarks.png)

### Medians

{sessions.markdown(rows)}
### Where the CPU goes (ms per session, medians)

The client's CPU per session split into user and system time (the kernel's: socket
calls, waits, wake-ups), and the part of it spent in CPython's cyclic garbage collector
(a `gc.callbacks` hook in every client process; full collections counted apart).

{sessions.cpu_markdown(rows)}
### Where speak → first audio goes (p50 / p99, ms)

Both processes note the time of each step on the machine's monotonic clock, matched by
the session's `stream_id`: the client when it sends `speak` and when the first audio
frame reaches it, the emulator when it handles that `speak` and when it has written the
first audio frame. *client→emulator* is the client's send, the kernel and the queue of
work ahead of that frame in the emulator; *in the emulator* is the emulator alone;
*emulator→client* is the kernel and the client's own queue — the part a client decides.
The last column is how close together the client sent its N speaks (the emulator serves
speaks that arrive together one after the other).

{sessions.split_markdown(rows)}
### Who makes the tail of speak → first audio (ms, medians)

The sessions of each run ranked by when their `speak` left: the first tenth are those
ready first, whose answer comes while the client is still starting the rest of the
fleet. Their p50, the p99 of the other nine tenths, and how much of the slowest
hundredth spoke in that first tenth (see item 30 below). The target stays the p99 of
all sessions.

{sessions.early_markdown(rows)}
### Ratios to the official SDK

{report.ratios(rows, sizes, clients)}
### Targets

At every N: CPU per session ≤ 0.8× the SDK's, RSS per session ≤ 0.7×, send-lag p99 ≤
the SDK's (and ≤ 20 ms up to N = 500), speak→first-audio p99 ≤ the SDK's, no failures.

{targets_table}
### Ablations: saynad with one change taken out (N = {saved["ablation_n"]})

`saynad/loop` streams with a loop of `saynad.client.pacing.sleep_until` and
`Session.send_audio` per chunk instead of `Session.stream_audio`; `saynad/trio-sleep`
paces that loop with `trio.sleep_until`; `saynad/trio-websocket` additionally goes back
to the trio-websocket transport (the stack before this work).

{ablation_text}
### Staggered starts: the same arrival pattern from both clients

The workload above starts all N sessions at once, so each client's own speed decides
how its speaks meet the emulator's single core (see the split above and item 12 below).
Here both clients start session *i* at *i* × {STAGGER_MS:g} ms (N = {saved.get("staggered_n", 0)}),
so the emulator sees the same, unhurried arrivals from both (`--stagger-ms`;
*session start* is each session's own start):

{staggered_text}
### A differently paced server

The default emulator sends the first TTS audio as soon as it handles the `speak`, in
100 ms chunks. A real server waits for its TTS provider's first bytes and may chunk
finer; here the emulator sends the first audio {PACED_SERVER[1]} ms after the `speak` and
then {PACED_SERVER[3]} ms chunks (`--tts-first-audio-ms`, `--tts-chunk-ms`), so
first-audio and send-lag figures are checked against a server paced unlike our own:

{paced_text}
### Stretch: one process, many more sessions

{stretch_text}

## Decode throughput of `stt_result` frames

One core, best of 5 runs of {decode.ROUNDS:,} frames (`tests/bench/decode.py`).

{decode.markdown(decode_rows)}
{findings}
## Reproduce

```
make bench                                   # everything above (~{minutes:.0f} min here)
.venv/bin/python -m tests.bench --sizes 100,1000 --reps 1 --ablations 0 --stretch 0
.venv/bin/python -m tests.bench --profiles   # also record docs/profiles/*.svg
.venv/bin/python -m tests.bench.decode       # decode throughput only
```
"""
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} and {plot_path}")

    held = sum(ok for _, ok in checks)
    note = (
        f"`make bench` on {started}, {saved['machine']}; medians of {reps} runs "
        f"({held} of {len(checks)} targets held; details and the plot in "
        "[docs/benchmarks.md](docs/benchmarks.md)):"
    )
    try:
        report.update_readme(readme, report.headline(rows, sizes), note)
        print(f"updated the Performance table in {readme}")
    except (OSError, RuntimeError) as exc:
        print(f"README not updated: {exc}")


if __name__ == "__main__":
    main()

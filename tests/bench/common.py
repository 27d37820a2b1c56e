"""Shared pieces of the session benchmark: the workload constants and the measurements."""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

SENTENCE = "Hello from the saynad benchmark."
SAMPLE_RATE = 16_000
CHUNK_MS = 20
CHUNK = b"\x01\x00" * (SAMPLE_RATE * CHUNK_MS // 1000)  # 20 ms of 16 kHz s16le mono
STREAM_S = 2.0
CHUNKS = int(STREAM_S * 1000 / CHUNK_MS)
FINALS_EXPECTED = 2  # the emulator finalises one transcript per second of audio
SESSION_DEADLINE_S = 180.0

STT = {
    "provider": "deepgram",
    "language": "en-US",
    "sample_rate": SAMPLE_RATE,
    "channels": 1,
    "punctuation": True,
    "encoding": "linear16",
    "model": "nova-3",
}
TTS = {"provider": "deepgram", "model": "aura-asteria-en"}

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench-results"


def save_results(results: object, name: str, document: str | None, markdown: str) -> None:
    """Keep ``results`` as ``bench-results/NAME`` and, unless ``document`` is None, write
    ``markdown`` there."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / name).write_text(json.dumps(results, indent=2))
    if document is not None:
        Path(document).write_text(markdown)
        print(f"wrote {document}")


def rss_kb() -> int:
    """Current resident set size of this process, in KiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CollectorTime:
    """CPU time spent in CPython's cyclic garbage collector (a ``gc.callbacks`` hook)
    and the number of full (generation 2) collections, since it was installed."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.full = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu_s += time.process_time() - self._started
            self.full += info["generation"] == 2


COLLECTOR = CollectorTime()


@dataclass(frozen=True)
class Usage:
    """Where a client process's CPU went so far: user and system time, and the
    collector's part of it (with how many full collections)."""

    user_s: float
    sys_s: float
    gc_s: float
    gc_full: int

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def usage() -> Usage:
    """This process's :class:`Usage` now (the collector's part counts once
    :func:`prepare_process` installed :data:`COLLECTOR`)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(own.ru_utime, own.ru_stime, COLLECTOR.cpu_s, COLLECTOR.full)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Collector:
    """What one client process measures across its N sessions."""

    n: int
    # How late each chunk was written against its absolute schedule, chunk i due at
    # t0 + i × 20 ms with t0 the moment speak returned (the official SDK client's own
    # measure); and each session's latest chunk.
    send_lags: list[float] = field(default_factory=list)
    worst_lags: list[float] = field(default_factory=list)
    first_audio: list[float] = field(default_factory=list)
    ready_at: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    peak_rss_kb: int = 0
    # stream_id → [session started, speak sent, first audio received], on
    # time.monotonic() (the emulator's clock too), to split speak→first audio between
    # client and emulator.
    speech: dict[str, list[float]] = field(default_factory=dict)

    def spoke(self, stream_id: str | None, began: float) -> None:
        """Record, on the shared clock, that session ``stream_id`` (started at
        ``began``, a ``time.monotonic()``) sends its speak now."""
        if stream_id is not None:
            self.speech[stream_id] = [began, time.monotonic(), math.nan]

    def heard(self, stream_id: str | None) -> None:
        """Record that the first audio of session ``stream_id`` arrived now."""
        if stream_id is not None:
            self.speech[stream_id][2] = time.monotonic()

    def fail(self, exc: BaseException) -> None:
        self.failures += 1
        key = f"{type(exc).__name__}: {str(exc)[:80]}"
        self.errors[key] = self.errors.get(key, 0) + 1

    def sample_rss(self) -> None:
        self.peak_rss_kb = max(self.peak_rss_kb, rss_kb())


class SessionLags:
    """One session's send lags: ``sent(i, lag)`` per chunk (an ``on_sent`` callback),
    ``done()`` once streamed (records the session's worst chunk)."""

    __slots__ = ("_collector", "worst")

    def __init__(self, collector: Collector) -> None:
        self._collector = collector
        self.worst = -math.inf

    def sent(self, _index: int, lag: float) -> None:
        self._collector.send_lags.append(lag)
        if lag > self.worst:
            self.worst = lag

    def done(self) -> None:
        if self.worst > -math.inf:
            self._collector.worst_lags.append(self.worst)


@dataclass
class Result:
    client: str
    n: int
    all_ready_s: float
    wall_s: float
    cpu_s: float
    cpu_ms_per_session: float
    user_ms_per_session: float
    sys_ms_per_session: float
    gc_ms_per_session: float
    gc_full: int
    rss_kb_per_session: float
    send_lag_p50_s: float
    send_lag_p99_s: float
    send_lag_worst_p50_s: float
    send_lag_worst_p99_s: float
    first_audio_p50_s: float
    first_audio_p99_s: float
    failures: int
    errors: dict[str, int]
    speech: dict[str, list[float]]


def finish(
    client: str, c: Collector, *, t_start: float, t_end: float, cpu0: Usage, rss0: int
) -> None:
    """Print the result of this client process as one JSON line on stdout (``cpu0``:
    the :func:`usage` when the sessions started)."""
    ready = [t - t_start for t in c.ready_at]
    now = usage()
    result = Result(
        client=client,
        n=c.n,
        all_ready_s=max(ready) if ready else float("nan"),
        wall_s=t_end - t_start,
        cpu_s=now.cpu_s - cpu0.cpu_s,
        cpu_ms_per_session=(now.cpu_s - cpu0.cpu_s) * 1000 / c.n,
        user_ms_per_session=(now.user_s - cpu0.user_s) * 1000 / c.n,
        sys_ms_per_session=(now.sys_s - cpu0.sys_s) * 1000 / c.n,
        gc_ms_per_session=(now.gc_s - cpu0.gc_s) * 1000 / c.n,
        gc_full=now.gc_full - cpu0.gc_full,
        rss_kb_per_session=max(0, c.peak_rss_kb - rss0) / c.n,
        send_lag_p50_s=statistics.median(c.send_lags) if c.send_lags else float("nan"),
        send_lag_p99_s=percentile(c.send_lags, 99),
        send_lag_worst_p50_s=statistics.median(c.worst_lags) if c.worst_lags else math.nan,
        send_lag_worst_p99_s=percentile(c.worst_lags, 99),
        first_audio_p50_s=statistics.median(c.first_audio) if c.first_audio else float("nan"),
        first_audio_p99_s=percentile(c.first_audio, 99),
        failures=c.failures + (c.n - len(c.ready_at) if c.failures == 0 else 0),
        errors=c.errors,
        speech=c.speech,
    )
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    sys.stdout.flush()


def pin_to_cpu(cpu: int) -> None:
    """Keep this process on one core so client and emulator do not share one."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def raise_fd_limit() -> None:
    """One socket per session: lift the soft limit on open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def prepare_process() -> None:
    """What every client process does first: core 0, enough file descriptors, the
    collector's time counted."""
    pin_to_cpu(0)
    raise_fd_limit()
    if COLLECTOR not in gc.callbacks:
        gc.callbacks.append(COLLECTOR)


def stagger_s(argv: list[str]) -> float:
    """The ``--stagger-ms M`` option of every client (default 0): session ``i`` starts
    ``i * M`` ms after the first instead of all at once."""
    if "--stagger-ms" in argv:
        return float(argv[argv.index("--stagger-ms") + 1]) / 1000
    return 0.0


async def run_trio_clients(
    client: str,
    url: str,
    n: int,
    one_session: Callable[[str, Collector], Awaitable[None]],
    stagger: float = 0.0,
) -> None:
    """The trio clients' ``main``: ``n`` sessions, started at once (or ``stagger``
    seconds apart), each within the session deadline, peak RSS sampled every 100 ms;
    prints the result line. (trio is imported here, not at the top, so the asyncio
    client's process never loads it.)"""
    import trio

    c = Collector(n)
    rss0 = rss_kb()
    cpu0 = usage()
    t_start = trio.current_time()

    async def guarded(delay: float) -> None:
        await trio.sleep(delay)
        try:
            with trio.fail_after(SESSION_DEADLINE_S):
                await one_session(url, c)
        except Exception as exc:
            c.fail(exc)

    async def sample_rss(done: trio.Event) -> None:
        while not done.is_set():
            c.sample_rss()
            await trio.sleep(0.1)

    done = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(sample_rss, done)
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(guarded, i * stagger)
        done.set()
    finish(client, c, t_start=t_start, t_end=trio.current_time(), cpu0=cpu0, rss0=rss0)

"""A real ``saynad run`` whose transcript disk fills up, then has room again.

Two ways to fill it: a small tmpfs mounted for the test (needs root and
``CAP_SYS_ADMIN``; skipped otherwise) plus a filler file (writes fail with ``ENOSPC``;
space returns when the filler is deleted), and ``RLIMIT_FSIZE`` lowered on the running
daemon with ``prlimit`` (Python ignores ``SIGXFSZ``, so writes fail with ``EFBIG``;
space returns when the limit is raised).

What holds: sessions stay up; errors and drops are counted exactly; one error line per
sink per minute; writing resumes once space returns (how soon is printed; the backoff
cap that bounds it is tested on the autojump clock in
tests/actors/behaviours/test_sink_errors.py); and — the sink keeps what it could not
write — no transcript is lost.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from saynad.http import METRICS_CACHE_S
from tests.lifecycle._harness import assert_complete, read_entries, user_numbers
from tests.support.processes import DaemonProcess, daemon_process, poll_until
from tests.support.samples import talking_fleet
from tests.timing import HANG_S

SESSIONS = ("a", "b", "c")
OUTAGE_S = 1.0


class Disk:
    """Where the transcripts go, and how to take the space away and give it back."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def fill(self, pid: int) -> None:
        raise NotImplementedError

    def free(self, pid: int) -> None:
        raise NotImplementedError


class FileSizeLimit(Disk):
    """``RLIMIT_FSIZE`` of the daemon: 1 byte (every append fails), then unlimited."""

    def fill(self, pid: int) -> None:
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))

    def free(self, pid: int) -> None:
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


class SmallTmpfs(Disk):
    """A 1 MiB tmpfs; a filler file takes every free byte, deleting it gives them back."""

    def fill(self, pid: int) -> None:
        chunk = b"\0" * 4096
        with open(self.directory / "filler", "wb", buffering=0) as filler:
            while True:
                try:
                    filler.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return

    def free(self, pid: int) -> None:
        (self.directory / "filler").unlink()


@contextmanager
def disk_of(kind: str, tmp_path: Path) -> Iterator[Disk]:
    directory = tmp_path / "transcripts"
    directory.mkdir()
    if kind == "rlimit":
        yield FileSizeLimit(directory)
        return
    mount = shutil.which("mount")
    result = (
        subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(directory)],
            capture_output=True,
            check=False,
        )
        if mount is not None and os.geteuid() == 0
        else None
    )
    if result is None or result.returncode != 0:
        reason = result.stderr.decode().strip() if result is not None else "not root"
        pytest.skip(f"cannot mount a tmpfs here ({reason}); the rlimit variant still runs")
    try:
        yield SmallTmpfs(directory)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    """Sample name + labels (``name{k=v}``) → value."""
    text = (await client.get("/metrics")).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def logged(daemon: DaemonProcess, event: str, session: str) -> list[dict[str, object]]:
    return [
        line
        for line in daemon.lines
        if line.get("event") == event and line.get("session") == session
    ]


def connections(daemon: DaemonProcess) -> int:
    return sum(
        1
        for line in daemon.lines
        if line.get("event") == "session state" and line.get("new") == "connecting"
    )


@pytest.mark.parametrize("kind", ["rlimit", "tmpfs"])
async def test_a_full_disk_never_ends_a_session_nor_loses_a_transcript(
    tmp_path: Path, kind: str
) -> None:
    with disk_of(kind, tmp_path) as disk:
        config = tmp_path / "saynad.yaml"
        config.write_text(
            talking_fleet(
                transcripts=disk.directory,
                sessions=SESSIONS,
                inbound=False,
                utterance_ms=100,
            )
        )
        files = [disk.directory / f"{name}.jsonl" for name in SESSIONS]
        async with (
            daemon_process(config) as daemon,
            httpx.AsyncClient(base_url=daemon.url) as client,
        ):
            await poll_until(
                lambda: min(len(user_numbers(read_entries(f, growing=True))) for f in files) >= 2,
            )
            pid = daemon.process.pid
            assert connections(daemon) == len(SESSIONS)

            disk.fill(pid)
            full = trio.current_time()
            # Every sink notices (a tmpfs page may still have room for a few lines).
            await poll_until(
                lambda: all(logged(daemon, "transcript write failed", s) for s in SESSIONS),
            )
            await trio.sleep_until(trio.current_time() + OUTAGE_S)
            during = await scrape(client)
            # /metrics reuses a rendering for METRICS_CACHE_S: the next scrape must not
            # be answered with this one.
            fresh_scrape_at = trio.current_time() + METRICS_CACHE_S
            outage_s = trio.current_time() - full

            sizes = [f.stat().st_size for f in files]
            disk.free(pid)
            freed = trio.current_time()
            resumed_after = [0.0] * len(files)
            with trio.fail_after(HANG_S):
                while not all(resumed_after):
                    for i, f in enumerate(files):
                        if not resumed_after[i] and f.stat().st_size > sizes[i]:
                            resumed_after[i] = trio.current_time() - freed
                    await trio.sleep(0.01)
            await poll_until(
                lambda: all(logged(daemon, "transcript writes resumed", s) for s in SESSIONS),
            )
            await trio.sleep_until(fresh_scrape_at)
            after = await scrape(client)

            # Nothing ended, nothing reconnected: the sessions never noticed.
            assert not [line for line in daemon.lines if line.get("event") == "session ended"]
            assert connections(daemon) == len(SESSIONS)
            daemon.process.send_signal(15)
            with trio.fail_after(HANG_S):
                assert await daemon.process.wait() == 0
        entries = {name: read_entries(f) for name, f in zip(SESSIONS, files, strict=True)}

    errors = int(after["saynad_transcript_sink_errors_total"])
    failed_lines = {s: logged(daemon, "transcript write failed", s) for s in SESSIONS}
    resumed_lines = {s: logged(daemon, "transcript writes resumed", s)[0] for s in SESSIONS}
    message = (
        f"[disk full, {kind}] outage; failed writes; dropped; space back → writing: "
        f"{outage_s:.1f} s; {errors}; "
        f"{int(after['saynad_transcript_sink_entries_total{outcome=dropped}'])}; "
        f"{max(resumed_after) * 1000:.0f} ms "
        f"(per session: {', '.join(f'{t * 1000:.0f}' for t in resumed_after)} ms)"
    )
    print(message)
    # Counted exactly: the metric is the sum of what each sink reported on recovery,
    # and one error line per sink (the outage lasted less than a minute).
    assert errors == sum(int(str(line["errors"])) for line in resumed_lines.values()), message
    assert errors >= len(SESSIONS)
    assert during["saynad_transcript_sink_errors_total"] >= len(SESSIONS)
    assert all(len(lines) == 1 for lines in failed_lines.values()), failed_lines
    expected = "File too large" if kind == "rlimit" else "No space left"
    assert all(expected in str(lines[0]["error"]) for lines in failed_lines.values())
    # No loss: every transcript each session received is in its file, once, in order.
    assert after["saynad_transcript_sink_entries_total{outcome=dropped}"] == 0
    ended = {line["session"]: line for line in daemon.lines if line.get("event") == "session ended"}
    for name in SESSIONS:
        assert ended[name]["sink_dropped"] == 0
        assert_complete(user_numbers(entries[name]), int(ended[name]["transcripts"]), name)

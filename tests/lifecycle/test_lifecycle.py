"""The daemon's lifecycle as systemd sees it: a real ``saynad run`` with a fake
``NOTIFY_SOCKET`` (a datagram socket bound in a temporary directory) and real signals.

``READY=1`` once the daemon serves; an invalid file exits 78 with one
``FILE:LINE: KEY: problem`` line per problem and no ``READY``; ``SIGTERM`` sends
``STOPPING=1``, webhooks are answered 503 while draining, every transcript reaches the
sink files, exit 0; a burst of 10 ``SIGHUP``s makes at most 2 reloads; a broken file on
``SIGHUP`` keeps the fleet (0 reconnects) and ``READY=1`` is re-sent.

The times (spawn → ``READY=1``, ``SIGTERM`` → ``STOPPING=1``, …) are printed
(``pytest -s``), never asserted: a loaded machine is slower, and speed targets live in
the benchmarks. Every wait is a generous hang guard.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.lifecycle._harness import assert_complete, read_entries, user_numbers
from tests.support.notify import NotifySocket, notify_socket
from tests.support.processes import DaemonProcess, daemon_process, poll_until
from tests.support.samples import ENV, signed_call, talking_fleet
from tests.timing import HANG_S


def figure(name: str, value: str) -> str:
    line = f"[lifecycle] {name}: {value}"
    print(line)
    return line


@asynccontextmanager
async def notified_daemon(config: Path) -> AsyncIterator[tuple[DaemonProcess, NotifySocket, float]]:
    """``saynad run`` with ``NOTIFY_SOCKET`` set; yields it, the socket and the spawn time."""
    with notify_socket() as notify:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notify.receive_forever)
            spawned = trio.current_time()
            async with daemon_process(config, env={"NOTIFY_SOCKET": notify.address}) as daemon:
                yield daemon, notify, spawned
            nursery.cancel_scope.cancel()


def events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [line for line in daemon.lines if line.get("event") == name]


def transitions(daemon: DaemonProcess, session: str, new: str) -> int:
    return sum(
        1
        for line in daemon.lines
        if line.get("event") == "session state"
        and line.get("session") == session
        and line.get("new") == new
    )


async def all_ready(daemon: DaemonProcess, names: tuple[str, ...]) -> None:
    for name in names:
        await daemon.wait_for(
            lambda line, name=name: (
                line.get("event") == "session state"
                and line.get("session") == name
                and line.get("new") == "ready"
            )
        )


async def stop(daemon: DaemonProcess) -> int:
    daemon.process.send_signal(signal.SIGTERM)
    with trio.fail_after(HANG_S):
        return await daemon.process.wait()


async def test_ready_comes_once_the_daemon_serves(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(talking_fleet(transcripts=tmp_path / "t"))
    async with notified_daemon(config) as (daemon, notify, spawned):
        ready = await notify.wait_for("READY")
        figure("spawn → READY=1", f"{(ready.at - spawned) * 1000:.0f} ms")
        # READY means serving: the HTTP server answers, the supervisor has the fleet.
        assert ready.fields["STATUS"].startswith("running: 2 sessions")
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            assert (await client.get("/healthz")).status_code == 200
        assert len(notify.with_key("READY")) == 1
        assert await stop(daemon) == 0


async def test_an_invalid_file_exits_78_naming_file_line_and_key(
    tmp_path: Path,
) -> None:
    config = tmp_path / "broken.yaml"
    good = talking_fleet(transcripts=tmp_path / "t").splitlines()
    # Two problems: an unknown key (a typo) and a value of the wrong kind.
    typo = next(i for i, line in enumerate(good) if line.startswith("  - {name: a"))
    good[typo] = "  - {name: a, tempalte: voice}"
    drain = next(i for i, line in enumerate(good) if "drain_timeout_s" in line)
    good[drain] = "  drain_timeout_s: soon"
    config.write_text("\n".join(good) + "\n")
    with notify_socket() as notify:
        started = trio.current_time()
        result = await trio.run_process(
            [sys.executable, "-m", "saynad", "run", "--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, **ENV, "NOTIFY_SOCKET": notify.address},
        )
        elapsed = trio.current_time() - started
        sent = notify.take_nowait()
    message = figure(
        "invalid file → exit", f"status {result.returncode} in {elapsed * 1000:.0f} ms"
    )
    assert result.returncode == 78, message
    assert sent == [], f"the daemon notified systemd: {sent}"
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 2, lines  # exactly one line per problem
    pattern = re.compile(rf"^{re.escape(str(config))}:(\d+): ([\w.\[\]]+): .+")
    located = [pattern.match(line) for line in lines]
    assert all(located), lines
    found = {(int(m.group(1)), m.group(2)) for m in located if m}
    assert found == {(drain + 1, "defaults.drain_timeout_s"), (typo + 1, "sessions[0].tempalte")}
    assert result.stdout == b""


async def test_sigterm_stopping_webhooks_503_sinks_flushed_exit_0(
    tmp_path: Path,
) -> None:
    config = tmp_path / "saynad.yaml"
    transcripts = tmp_path / "transcripts"
    goodbye = "Thank you for calling, the office is closing now, goodbye."
    config.write_text(talking_fleet(transcripts=transcripts, goodbye=goodbye, drain_s=5))
    async with notified_daemon(config) as (daemon, notify, _):
        await all_ready(daemon, ("a", "b"))
        await notify.wait_for("READY")
        # Let both sessions talk a little: several transcripts each.
        await poll_until(
            lambda: all(
                len(user_numbers(read_entries(transcripts / f"{n}.jsonl", growing=True))) >= 3
                for n in "ab"
            ),
        )
        since = len(notify.received)
        signalled = trio.current_time()
        daemon.process.send_signal(signal.SIGTERM)
        stopping = await notify.wait_for("STOPPING", since=since)
        figure("SIGTERM → STOPPING=1", f"{(stopping.at - signalled) * 1000:.1f} ms")

        headers, body = signed_call("sip-drain-test", "EV_during_drain")
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            answer = await client.post("/webhooks/sip", headers=headers, content=body)
        figure("webhook during drain", f"{answer.status_code} {answer.text.strip()}")
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "30"

        with trio.fail_after(HANG_S):
            code = await daemon.process.wait()
        drain_s = trio.current_time() - signalled
        figure("SIGTERM → exit", f"status {code} after {drain_s:.2f} s")
        assert code == 0
    ended = {line["session"]: line for line in events(daemon, "session ended")}
    assert set(ended) == {"a", "b"}
    for name, line in ended.items():
        assert line["reason"] == "drain"
        assert line["sink_dropped"] == 0, line
        entries = read_entries(transcripts / f"{name}.jsonl")
        numbers = user_numbers(entries)
        assert_complete(numbers, line["transcripts"], name)
        # The goodbye line is recorded during the drain: the sink flushed after it.
        assert entries[-1]["role"] == "agent"
        assert entries[-1]["text"] == goodbye
        figure(f"session {name}", f"{line['transcripts']} transcripts, all {len(entries)} lines")


async def test_a_burst_of_ten_sighups_makes_at_most_two_reloads(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    transcripts = tmp_path / "t"
    config.write_text(talking_fleet(transcripts=transcripts, inbound=False))
    async with notified_daemon(config) as (daemon, notify, _):
        await all_ready(daemon, ("a", "b"))
        await notify.wait_for("READY")
        # The burst's first reload restarts b (changed); the second finds nothing to do.
        config.write_text(
            talking_fleet(transcripts=transcripts, inbound=False).replace(
                "{name: b, template: voice}", "{name: b, template: voice, stream_id: b2}"
            )
        )
        plans, since = len(events(daemon, "reload plan")), len(notify.received)
        for _ in range(10):  # back to back: well within the 1 s between reload starts
            daemon.process.send_signal(signal.SIGHUP)
        # The first reload, done; then one still owed may start a second later. A slow
        # machine may only show it later: the count below is an upper bound either way.
        await notify.wait_for("READY", since=since)
        await trio.sleep(2.5)
        await poll_until(  # whatever started, let it finish: READY=1 again
            lambda: (
                len(notify.with_key("READY", since=since))
                >= len(notify.with_key("RELOADING", since=since))
            )
        )
        reloads = len(events(daemon, "reload plan")) - plans
        done = len(events(daemon, "configuration reloaded")) + len(
            [
                line
                for line in daemon.lines
                if str(line.get("event", "")).startswith("reload failed")
            ]
        )
        reloading = len(notify.with_key("RELOADING", since=since))
        message = figure(
            "10 SIGHUPs back to back",
            f"{reloads} reload plans, {done} reloads finished, {reloading} RELOADING=1",
        )
        assert 1 <= reloads <= 2, message
        assert done == reloads, message
        assert 1 <= reloading <= 2, message
        # READY=1 follows every RELOADING=1; b reconnected once, a never.
        assert len(notify.with_key("READY", since=since)) == reloading
        await poll_until(lambda: transitions(daemon, "b", "connecting") >= 2)
        assert transitions(daemon, "b", "connecting") == 2
        assert transitions(daemon, "a", "connecting") == 1
        assert await stop(daemon) == 0


async def test_a_broken_file_on_sighup_keeps_the_fleet_and_resends_ready(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(talking_fleet(transcripts=tmp_path / "t"))
    async with notified_daemon(config) as (daemon, notify, _):
        await all_ready(daemon, ("a", "b"))
        await notify.wait_for("READY")
        connecting = transitions(daemon, "a", "connecting") + transitions(daemon, "b", "connecting")
        config.write_text(config.read_text() + "\nsurprise_section: {}\n")
        since = len(notify.received)
        signalled = trio.current_time()
        daemon.process.send_signal(signal.SIGHUP)
        reloading = await notify.wait_for("RELOADING", since=since)
        ready = await notify.wait_for("READY", since=since)
        assert reloading.at <= ready.at
        failed = await daemon.wait_for(
            lambda line: str(line.get("event", "")).startswith("reload failed")
        )
        assert any("surprise_section" in problem for problem in failed["problems"])
        message = figure(
            "broken file, SIGHUP → READY=1 again", f"{(ready.at - signalled) * 1000:.0f} ms"
        )
        assert ready.fields["STATUS"].startswith("running: 2 sessions, 2 ready"), message
        await trio.sleep(1.0)  # a reconnect, if any, would show by now
        again = transitions(daemon, "a", "connecting") + transitions(daemon, "b", "connecting")
        figure("broken file, reconnects", f"{again - connecting}")
        assert again == connecting
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            rows = (await client.get("/sessions")).json()["sessions"]
        assert {row["name"]: row["state"] for row in rows} == {"a": "ready", "b": "ready"}
        assert await stop(daemon) == 0

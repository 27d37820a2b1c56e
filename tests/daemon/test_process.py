"""A real ``saynad run`` process: a webhook signed by ``saynad sign-webhook`` becomes a
session and a room; ``saynad status`` shows it; SIGTERM turns /readyz to 503 while the
server keeps answering until the sessions have drained."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import trio

from saynad.cli import format_sessions
from saynad.protocol.webhooks import WebhookVerifier
from tests.support.processes import closed_port, daemon_process
from tests.support.samples import ENV, SECRET, daemon_config
from tests.timing import HANG_S


async def saynad(*args: str) -> str:
    result = await trio.run_process(
        [sys.executable, "-m", "saynad", *args], capture_stdout=True, capture_stderr=True
    )
    return result.stdout.decode()


async def poll_json(
    client: httpx.AsyncClient,
    path: str,
    predicate: Callable[[httpx.Response], bool],
    within_s: float = HANG_S,
) -> httpx.Response:
    """GET ``path`` until ``predicate`` holds (another process: nothing to wait on)."""
    with trio.fail_after(within_s):
        while True:
            response = await client.get(path)
            if predicate(response):
                return response
            await trio.sleep(0.05)


async def test_signed_webhook_end_to_end_with_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(daemon_config(sessions=("lobby",)))  # listens on 127.0.0.1:0
    async with daemon_process(config) as daemon:
        # The port the system picked is read back from the log: the same address the
        # daemon serves and reports as running.
        url = daemon.url
        assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*", url), url
        assert (await daemon.event("saynad running"))["http"] == url
        emulator_url = (await daemon.event("embedded emulator started"))["url"]
        signed = await saynad(
            "sign-webhook",
            "--secret",
            SECRET,
            "--room",
            "sip-+15550001111",
            "--from",
            "+15550001111",
            "--event-id",
            "EV_cli1",
        )
        head, _, body = signed.partition("\n\n")
        headers = dict(line.split(": ", 1) for line in head.splitlines())
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post(
                "/webhooks/sip", headers=headers, content=body.rstrip("\n").encode()
            )
            assert response.status_code == 202, response.text
            assert response.json()["session"] == "sip-EV_cli1"
            await poll_json(
                client,
                "/sessions/sip-EV_cli1",
                lambda r: r.status_code == 200 and r.json()["state"] == "ready",
            )
            async with httpx.AsyncClient(base_url=emulator_url) as emulator:
                rooms = (await emulator.get("/livekit/rooms")).json()["rooms"]
            assert "sip-+15550001111" in {room["name"] for room in rooms}

            table = await saynad("status", "--url", url)
            assert "sip-EV_cli1" in table
            assert "inbound" in table
            assert "sip-+15550001111" in table
            assert "2 sessions: 2 ready" in table

        admitted = await daemon.event("inbound call admitted")
        assert admitted["caller"] == "+15550001111"
        daemon.process.send_signal(signal.SIGTERM)
        with trio.fail_after(HANG_S):
            assert await daemon.process.wait() == 0


async def test_sigterm_turns_readiness_to_503_while_sessions_drain(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    goodbye = "Goodbye from saynad, this sentence takes a couple of seconds to say. " * 3
    config.write_text(daemon_config(sessions=("lobby",), goodbye=goodbye, drain_s=4))
    async with daemon_process(config) as daemon, httpx.AsyncClient(base_url=daemon.url) as client:
        await poll_json(client, "/readyz", lambda r: r.status_code == 200)
        await poll_json(
            client,
            "/sessions/lobby",
            lambda r: r.status_code == 200 and r.json()["state"] == "ready",
        )
        daemon.process.send_signal(signal.SIGTERM)
        not_ready = await poll_json(client, "/readyz", lambda r: r.status_code == 503)
        assert not_ready.json()["checks"]["not_draining"] is False
        # The lobby is still saying goodbye: the server answers meanwhile.
        assert (await client.get("/sessions/lobby")).json()["state"] == "draining"
        assert (await client.get("/metrics")).status_code == 200
        with trio.fail_after(HANG_S):
            assert await daemon.process.wait() == 0
        ended = await daemon.event("session ended")
        assert ended["reason"] == "drain"


async def test_status_cli_reports_an_unreachable_daemon() -> None:
    with closed_port() as port:
        result = await trio.run_process(
            [sys.executable, "-m", "saynad", "status", "--url", f"http://127.0.0.1:{port}"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    assert b"cannot reach" in result.stderr


def test_status_table_layout() -> None:
    rows = [
        {
            "name": "lobby",
            "origin": "config",
            "template": "voice",
            "state": "ready",
            "since": 1000.0,
            "restarts": 2,
            "last_error": None,
            "room": None,
            "stream_id": "s-1",
        },
        {
            "name": "sip-EV_1",
            "origin": "inbound",
            "template": "call",
            "state": "backoff",
            "since": 1090.0,
            "restarts": 0,
            "last_error": "ConnectionClosedError: " + "x" * 100,
            "room": "sip-+1555",
            "stream_id": None,
        },
    ]
    lines = format_sessions(rows, now=1100.0).splitlines()
    assert lines[0].split() == [
        "NAME",
        "ORIGIN",
        "TEMPLATE",
        "STATE",
        "FOR",
        "RESTARTS",
        "ROOM",
        "STREAM",
        "ERROR",
    ]
    assert lines[1].split()[:8] == ["lobby", "config", "voice", "ready", "100s", "2", "-", "s-1"]
    assert lines[2].split()[:8] == [
        "sip-EV_1",
        "inbound",
        "call",
        "backoff",
        "10s",
        "0",
        "sip-+1555",
        "-",
    ]
    assert lines[2].endswith("...")
    assert lines[1].index("config") == lines[2].index("inbound")  # aligned columns


async def test_sign_webhook_curl_line_carries_a_verifiable_delivery() -> None:
    line = await saynad(
        "sign-webhook",
        "--secret",
        SECRET,
        "--room",
        "sip-it's a room",
        "--curl",
        "--url",
        "http://127.0.0.1:9464/webhooks/sip",
    )
    argv = shlex.split(line)
    assert argv[:6] == ["curl", "-sS", "-i", "-X", "POST", "http://127.0.0.1:9464/webhooks/sip"]
    headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
    body = argv[argv.index("--data-binary") + 1].encode()
    webhook = WebhookVerifier(SECRET).verify(headers, body)
    assert webhook.room.name == "sip-it's a room"
    assert webhook.event_id.startswith("EV_")


async def test_an_address_in_use_exits_69_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "saynad.yaml"
        config.write_text(daemon_config(listen=f"127.0.0.1:{port}"))
        with trio.fail_after(HANG_S):
            result = await trio.run_process(
                [sys.executable, "-m", "saynad", "run", "--config", str(config)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**os.environ, **ENV},
            )
    assert result.returncode == 69
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith(b"{")]
    failure = next(line for line in lines if line["event"] == "cannot listen for http")
    assert failure["listen"] == f"127.0.0.1:{port}"
    assert "in use" in failure["error"]

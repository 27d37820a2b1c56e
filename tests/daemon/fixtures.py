"""Shared by the daemon, HTTP and observability tests: configs, in-process daemons,
real ``saynad run`` subprocesses, signed webhooks and external tools."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from saynad.actors.registry import SessionState
from saynad.app import Daemon
from saynad.config import load_config
from saynad.protocol.webhooks import (
    SipWebhook,
    WebhookParticipant,
    WebhookRoom,
    encode_webhook_payload,
    sign_webhook,
)
from tests.timing import HANG_S

SECRET = "test-webhook-secret-0123456789"
CALLER_WAV = Path(__file__).resolve().parents[2] / "saynad" / "data" / "demo-caller.wav"
TOKEN = "test-control-token-0123456789"
ENV = {"SAYNAD_TEST_WEBHOOK_SECRET": SECRET, "SAYNAD_TEST_CONTROL_TOKEN": TOKEN}

STT = (
    "{provider: deepgram, language: en-US, sample_rate: 16000, channels: 1, "
    "punctuation: true, encoding: linear16, model: nova-3}"
)
TTS = "{provider: deepgram, model: aura-2, voice_id: aura-asteria-en, sample_rate: 16000}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(
    *,
    port: int,
    sessions: tuple[str, ...] = ("lobby",),
    inbound: bool = True,
    control: bool = False,
    max_sessions: int = 5,
    max_duration_s: float = 3600,
    max_body_bytes: int = 65536,
    drain_s: float = 2.0,
    goodbye: str | None = None,
    call_end: str = "",
    talk: bool = False,
) -> str:
    """A small daemon configuration on the embedded emulator.

    ``talk``: the always-on sessions stream the bundled caller audio and echo back what
    the emulator's STT hears (transcripts, replies, barge-ins).
    """
    end = f"\n      end: {{goodbye_text: {json.dumps(goodbye)}}}" if goodbye else ""
    if talk:
        end += (
            "\n      agent: {kind: echo}"
            f"\n      audio: {{source: {{path: {json.dumps(str(CALLER_WAV))}, loop: true}}}}"
        )
    lines = [
        "sayna:",
        "  emulator: {utterance_ms: 500, interim_ms: 250, tts_ms_per_char: 20}",
        "http:",
        f'  listen: "127.0.0.1:{port}"',
    ]
    if control:
        lines.append("  control_token: ${env:SAYNAD_TEST_CONTROL_TOKEN}")
    lines += [
        "logging: {level: info, format: json}",
        "defaults:",
        "  backoff: {initial_s: 0.1, max_s: 1}",
        f"  drain_timeout_s: {drain_s}",
    ]
    if inbound:
        lines += [
            "inbound:",
            "  sip_webhook:",
            "    template: call",
            "    secrets:",
            "      - ${env:SAYNAD_TEST_WEBHOOK_SECRET}",
            f"    max_sessions: {max_sessions}",
            f"    max_duration_s: {max_duration_s}",
            f"    max_body_bytes: {max_body_bytes}",
        ]
    lines += [
        "templates:",
        "  voice:",
        f"    stt: {STT}",
        f"    tts: {TTS}",
        "    behaviours:",
        '      greeting: {text: "hello"}' + end,
        "  call:",
        f"    stt: {STT}",
        f"    tts: {TTS}",
        "    livekit: {}",
        "    behaviours:",
        '      greeting: {text: "hello caller"}' + call_end,
        "sessions:" + ("" if sessions else " []"),
    ]
    lines += [f"  - {{name: {name}, template: voice}}" for name in sessions]
    return "\n".join(lines) + "\n"


def webhook_payload(room: str, *, caller: str = "+15551230001") -> SipWebhook:
    return SipWebhook(
        participant=WebhookParticipant(name="Caller", identity=f"sip_{caller}", sid="PA_test"),
        room=WebhookRoom(name=room, sid="RM_test"),
        from_phone_number=caller,
        to_phone_number="+15557654321",
        room_prefix="sip-",
        sip_host="sip.example.com",
        sip_headers={"x-to-ip": "sip.example.com", "x-customer": "acme"},
    )


def signed(
    body: bytes,
    event_id: str,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return sign_webhook(secret, body, timestamp=stamp, event_id=event_id)


def signed_call(room: str, event_id: str, **kwargs: Any) -> tuple[dict[str, str], bytes]:
    body = encode_webhook_payload(webhook_payload(room))
    return signed(body, event_id, **kwargs), body


async def wait_until(predicate: Callable[[], bool], *, within_s: float = HANG_S) -> None:
    """Poll ``predicate`` (cheap, in-process state) until true; fail after ``within_s``."""
    with trio.fail_after(within_s):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


def states(daemon: Daemon) -> dict[str, SessionState]:
    return {row.name: row.state for row in daemon.registry.snapshot()}


@asynccontextmanager
async def running_daemon(
    tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[Daemon, httpx.AsyncClient]]:
    """An in-process daemon (embedded emulator) and an HTTP client on its address."""
    path = tmp_path / "saynad.yaml"
    path.write_text(config_text(port=free_port(), **options))
    daemon = Daemon(config_path=path, config=load_config(path, env=ENV), env=ENV)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        async with httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=HANG_S) as client:
            yield daemon, client
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- subprocesses


class DaemonProcess:
    """A real ``saynad run``; its JSON log lines are collected as they arrive."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def pump(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    continue
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, within_s: float = HANG_S
    ) -> dict[str, Any]:
        with trio.fail_after(within_s):
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                await self._changed.wait()

    async def event(self, name: str, *, within_s: float = HANG_S) -> dict[str, Any]:
        return await self.wait_for(lambda line: line.get("event") == name, within_s=within_s)

    @property
    def url(self) -> str:
        """The HTTP address the daemon logged (``http server listening``)."""
        line = next(x for x in self.lines if x.get("event") == "http server listening")
        return str(line["url"])


@asynccontextmanager
async def daemon_process(
    config: Path | None,
    *,
    env: dict[str, str] | None = None,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[DaemonProcess]:
    """``python -m saynad run --config CONFIG`` (or ``command``); killed at exit if
    still running."""
    full_env = {**os.environ, **ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
    if command is None:
        assert config is not None
        command = [sys.executable, "-m", "saynad", "run", "--config", str(config)]
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            list(command), stdout=subprocess.PIPE, env=full_env, cwd=cwd
        )
        daemon = DaemonProcess(process)
        nursery.start_soon(daemon.pump)
        try:
            await daemon.event("http server listening")
            yield daemon
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
            nursery.cancel_scope.cancel()


def require_tool(name: str) -> str:
    """The path of an external tool; skip without it, but fail in CI (``CI`` set)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus / systemd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

"""Helpers for daemon tests: a small config file and a real ``saynad run`` subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tests.timing import HANG_S

FLEET = """
sayna:
  emulator:
    utterance_ms: 500
http:
  listen: "127.0.0.1:{port}"
logging:
  level: info
  format: json
defaults:
  backoff: {{ initial_s: 0.1, max_s: 1 }}
  drain_timeout_s: {drain}
templates:
  voice:
    stt: {{provider: deepgram, language: en-US, sample_rate: 16000, channels: 1,
           punctuation: true, encoding: linear16, model: nova-3}}
    tts: {{provider: deepgram, model: aura-2, voice_id: aura-asteria-en}}
    behaviours:
      greeting: {{text: "hello"}}
sessions:
{sessions}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_fleet(path: Path, names: dict[str, str], *, drain_s: float = 2.0) -> None:
    """A fleet of sessions ``name → greeting text`` on the embedded emulator."""
    sessions = "".join(
        f"  - name: {name}\n    template: voice\n    behaviours:\n"
        f'      greeting: {{text: "{text}"}}\n'
        for name, text in names.items()
    )
    path.write_text(FLEET.format(port=free_port(), drain=drain_s, sessions=sessions))


class DaemonProcess:
    """A real ``saynad run``: JSON log lines are collected as they arrive."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._changed = trio.Event()

    async def _pump(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                text = line.decode(errors="replace")
                self.raw.append(text)
                try:
                    self.lines.append(json.loads(text))
                except ValueError:
                    continue
            self._changed.set()
            self._changed = trio.Event()

    def find(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [line for line in self.lines if predicate(line)]

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        count: int = 1,
        within_s: float = HANG_S,
    ) -> list[dict[str, Any]]:
        with trio.fail_after(within_s):
            while len(found := self.find(predicate)) < count:
                await self._changed.wait()
        return found

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)


@asynccontextmanager
async def daemon_process(config: Path) -> AsyncIterator[DaemonProcess]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "saynad", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            env=env,
        )
        daemon = DaemonProcess(process)
        nursery.start_soon(daemon._pump)
        try:
            yield daemon
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
            nursery.cancel_scope.cancel()


def state(session: str, new: str) -> Callable[[dict[str, Any]], bool]:
    return lambda line: (
        line.get("event") == "session state"
        and line.get("session") == session
        and line.get("new") == new
    )

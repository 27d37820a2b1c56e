"""Helpers of the lifecycle tests: a systemd notify socket that timestamps every
datagram, a talking fleet configuration with jsonl transcript sinks, and readers of
those transcript files."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tests.daemon.fixtures import CALLER_WAV, STT, TTS
from tests.timing import HANG_S


@dataclass
class Datagram:
    at: float  # trio.current_time() when it was received
    fields: dict[str, str]


@dataclass
class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's ``NOTIFY_SOCKET``.

    :meth:`receive_forever` (a task) stamps each datagram with ``trio.current_time()``
    as it arrives, so a test can time a signal → datagram delay.
    """

    raw: socket.socket
    sock: trio.socket.SocketType
    address: str
    received: list[Datagram] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def receive_forever(self) -> None:
        while True:
            data = await self.sock.recv(65536)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.received.append(Datagram(trio.current_time(), fields))
            self._changed.set()
            self._changed = trio.Event()

    def take_nowait(self) -> list[dict[str, str]]:
        """Datagrams queued in the socket, without waiting (for a sender that has exited)."""
        taken = []
        while True:
            try:
                data = self.raw.recv(65536)  # trio made the socket non-blocking
            except BlockingIOError:
                return taken
            taken.append(dict(line.split("=", 1) for line in data.decode().splitlines()))

    def with_key(self, key: str, *, since: int = 0) -> list[Datagram]:
        return [d for d in self.received[since:] if key in d.fields]

    async def wait_for(self, key: str, *, since: int = 0, within_s: float = HANG_S) -> Datagram:
        with trio.fail_after(within_s):
            while not (found := self.with_key(key, since=since)):
                await self._changed.wait()
        return found[0]


@contextmanager
def notify_socket() -> Iterator[NotifySocket]:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    directory = tempfile.mkdtemp(prefix="sdl", dir="/tmp")  # AF_UNIX paths are short
    address = os.path.join(directory, "notify")
    try:
        raw.bind(address)
        yield NotifySocket(raw, trio.socket.from_stdlib_socket(raw), address)
    finally:
        raw.close()
        Path(address).unlink(missing_ok=True)
        os.rmdir(directory)


def talking_fleet(
    *,
    port: int,
    transcripts: Path,
    sessions: tuple[str, ...] = ("a", "b"),
    drain_s: float = 5.0,
    goodbye: str | None = None,
    inbound: bool = True,
    utterance_ms: int = 300,
    fsync: str = "never",
) -> str:
    """Sessions that stream the bundled caller audio (looped, real time) to the embedded
    emulator, which numbers its final transcripts (``"1: …"``); an echo agent answers;
    every line goes to ``transcripts/{session}.jsonl``."""
    goodbye_line = f"\n      end: {{goodbye_text: {json.dumps(goodbye)}}}" if goodbye else ""
    lines = [
        "sayna:",
        f"  emulator: {{utterance_ms: {utterance_ms}, interim_ms: {utterance_ms // 2},"
        " tts_ms_per_char: 20, numbered: true}",
        "http:",
        f'  listen: "127.0.0.1:{port}"',
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
            "    secrets: ['${env:SAYNAD_TEST_WEBHOOK_SECRET}']",
            "    max_sessions: 5",
        ]
    lines += [
        "templates:",
        "  voice:",
        f"    stt: {STT}",
        f"    tts: {TTS}",
        "    behaviours:",
        "      agent: {kind: echo}",
        f"      audio: {{source: {{path: {json.dumps(str(CALLER_WAV))}, loop: true}}}}",
        "      transcripts:",
        f"        - {{kind: jsonl, path: {json.dumps(str(transcripts / '{session}.jsonl'))},"
        f" fsync: {fsync}}}" + goodbye_line,
        "  call:",
        f"    stt: {STT}",
        f"    tts: {TTS}",
        "    livekit: {}",
        "    behaviours:",
        '      greeting: {text: "hello caller"}',
        "sessions:",
    ]
    lines += [f"  - {{name: {name}, template: voice}}" for name in sessions]
    return "\n".join(lines) + "\n"


async def poll_until(
    predicate: Callable[[], bool], *, within_s: float = HANG_S, step_s: float = 0.05
) -> None:
    """Check ``predicate`` (files, log lines of another process: nothing to wait on)
    every ``step_s`` until true; fail after ``within_s``."""
    with trio.fail_after(within_s):
        while not predicate():  # noqa: ASYNC110 - another process's state
            await trio.sleep(step_s)


def read_entries(path: Path, *, growing: bool = False) -> list[dict[str, Any]]:
    """Every JSON line of a transcript file. A torn last line fails the test, unless the
    file is ``growing`` (being written while read): then it is left out."""
    text = path.read_text() if path.exists() else ""
    if growing:
        text = text[: text.rfind("\n") + 1]
    assert not text or text.endswith("\n"), f"{path}: a torn last line: {text[-80:]!r}"
    return [json.loads(line) for line in text.splitlines()]


def user_numbers(entries: list[dict[str, Any]]) -> list[int]:
    """The emulator's sequence numbers of the final transcripts (``"7: …"`` → 7)."""
    return [int(e["text"].split(":", 1)[0]) for e in entries if e["role"] == "user"]


def assert_complete(numbers: list[int], received: int, where: str) -> None:
    """Every final transcript 1..received is in the file exactly once, in order."""
    assert numbers == list(range(1, received + 1)), (
        f"{where}: {received} transcripts received, file holds {len(numbers)} "
        f"(first missing: {next((i for i in range(1, received + 1) if i not in numbers), None)})"
    )

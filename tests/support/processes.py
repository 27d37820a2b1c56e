"""Real processes for tests, benchmarks and the soak: ``saynad run`` with its JSON log
read as it arrives, an emulator process, and the few ports a test still needs.

:func:`daemon_process` starts ``python -m saynad run`` on a configuration (which
listens on ``127.0.0.1:0``, see :mod:`tests.support.samples`) and yields once the
daemon logged ``http server listening``: :attr:`DaemonProcess.url` is the address it
bound. Benchmarks that log thousands of lines a second pass ``parse`` to keep only the
lines they need (the others are never decoded).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.samples import ENV
from tests.timing import HANG_S

Line = dict[str, Any]
Predicate = Callable[[Line], bool]

LISTENING = b'"http server listening"'


class DaemonProcess:
    """A real ``saynad run``; its JSON log lines are collected as they arrive.

    ``parse(raw)`` decides which raw lines are decoded and kept (default: all); the
    ``http server listening`` line always is. ``raw`` keeps every line as text when
    ``keep_raw`` (for tests that look at what is not JSON).
    """

    def __init__(
        self,
        process: trio.Process,
        *,
        parse: Callable[[bytes], bool] | None = None,
        keep_raw: bool = True,
        spawned_at: float | None = None,
    ) -> None:
        self.process = process
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self.spawned_at = trio.current_time() if spawned_at is None else spawned_at
        """``trio.current_time()`` just before the process was started."""
        self._parse = parse
        self._keep_raw = keep_raw
        self._changed = trio.Event()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def pump(self) -> None:
        """Read the process's stdout until it closes (a task)."""
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                if self._keep_raw:
                    self.raw.append(raw.decode(errors="replace"))
                if self._parse is not None and LISTENING not in raw and not self._parse(raw):
                    continue
                try:
                    self.lines.append(json.loads(raw))
                except ValueError:
                    continue
            self._changed.set()
            self._changed = trio.Event()

    async def changed(self) -> None:
        """Return once more output has been read."""
        await self._changed.wait()

    def find(self, predicate: Predicate) -> list[Line]:
        """Every line so far that ``predicate`` accepts."""
        return [line for line in self.lines if predicate(line)]

    async def wait_for(self, predicate: Predicate, *, within_s: float = HANG_S) -> Line:
        """The first line ``predicate`` accepts, waiting for it if need be."""
        return (await self.wait_for_lines(predicate, within_s=within_s))[0]

    async def wait_for_lines(
        self, predicate: Predicate, *, count: int = 1, within_s: float = HANG_S
    ) -> list[Line]:
        """The lines ``predicate`` accepts, once there are at least ``count``."""
        found: list[Line] = []
        seen = 0
        with trio.fail_after(within_s):
            while True:
                found += [line for line in self.lines[seen:] if predicate(line)]
                seen = len(self.lines)
                if len(found) >= count:
                    return found
                await self._changed.wait()

    async def event(self, name: str, *, within_s: float = HANG_S) -> Line:
        """The first line logging ``name``."""
        return await self.wait_for(lambda line: line.get("event") == name, within_s=within_s)

    @property
    def url(self) -> str:
        """The HTTP address the daemon bound (``http server listening``)."""
        line = next(x for x in self.lines if x.get("event") == "http server listening")
        return str(line["url"])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)


def state(session: str, new: str) -> Predicate:
    """Accepts the ``session state`` line of ``session`` entering state ``new``."""
    return lambda line: (
        line.get("event") == "session state"
        and line.get("session") == session
        and line.get("new") == new
    )


def pin(pid: int, cpu: int) -> None:
    """Run process ``pid`` (0: this one) on core ``cpu`` only, where there is one."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(pid, {cpu})


@asynccontextmanager
async def daemon_process(
    config: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    cwd: Path | None = None,
    listening: bool = True,
    parse: Callable[[bytes], bool] | None = None,
    keep_raw: bool = True,
    cpu: int | None = None,
    stop_s: float = 0.0,
) -> AsyncIterator[DaemonProcess]:
    """``python -m saynad run --config CONFIG`` (or ``command``), with the sample
    configurations' environment (:data:`~tests.support.samples.ENV`) and ``env``.

    ``listening``: yield once the daemon logged ``http server listening`` (False: at
    once, for a daemon expected not to get that far). ``cpu``: pin it to that core.
    ``stop_s``: at the end, SIGTERM and wait that long before SIGKILL (0: SIGKILL at
    once, whatever is left running).
    """
    full_env = {**os.environ, **ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
    if command is None:
        assert config is not None
        command = [sys.executable, "-m", "saynad", "run", "--config", str(config)]
    async with trio.open_nursery() as nursery:
        spawned = trio.current_time()
        process = await trio.lowlevel.open_process(
            list(command), stdout=subprocess.PIPE, env=full_env, cwd=cwd
        )
        if cpu is not None:
            pin(process.pid, cpu)
        daemon = DaemonProcess(process, parse=parse, keep_raw=keep_raw, spawned_at=spawned)
        nursery.start_soon(daemon.pump)
        try:
            if listening:
                await daemon.event("http server listening")
            yield daemon
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None and stop_s > 0:
                    process.terminate()
                    with trio.move_on_after(stop_s):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                await process.wait()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def emulator_process(
    command: Sequence[str] | None = None,
    *,
    cwd: Path | None = None,
    cpu: int | None = None,
    within_s: float = 30,
) -> AsyncIterator[tuple[str, trio.Process]]:
    """An emulator process that prints ``… listening on URL`` (``saynad emulator --port
    0`` by default); yields the URL and the process, terminated at the end."""
    if command is None:
        command = [sys.executable, "-m", "saynad", "emulator", "--port", "0"]
    process = await trio.lowlevel.open_process(list(command), stdout=subprocess.PIPE, cwd=cwd)
    assert process.stdout is not None
    try:
        line = b""
        with trio.fail_after(within_s):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(4096)
                assert chunk, f"the emulator exited: {line!r}"
                line += chunk
        if cpu is not None:
            pin(process.pid, cpu)
        yield line.decode().rsplit(" ", 1)[1].strip(), process
    finally:
        process.terminate()
        with trio.CancelScope(shield=True):
            await process.wait()


async def poll_until(
    predicate: Callable[[], bool], *, within_s: float = HANG_S, step_s: float = 0.05
) -> None:
    """Check ``predicate`` (files, log lines of another process: nothing to wait on)
    every ``step_s`` until true; fail after ``within_s``."""
    with trio.fail_after(within_s):
        while not predicate():  # noqa: ASYNC110 - another process's state
            await trio.sleep(step_s)


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound,
    never listening, so nothing else can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextmanager
def shared_port() -> Iterator[int]:
    """A loopback port for listeners that share it with ``SO_REUSEPORT`` (the shards'
    ``http.webhooks``), kept for them for as long as the block runs: bound here with
    ``SO_REUSEPORT`` and never listening, so the kernel hands it no connection, the
    daemons of this user may bind it too, and no other socket can take it meanwhile."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def free_port() -> int:
    """A loopback port that was free a moment ago.

    Only for third-party programs that cannot report the port they bound (Prometheus)
    and ports that must be known in advance (``http.port_per_shard``'s base): saynad,
    the emulator and every server in the tests bind port 0 and say which port they got;
    listeners sharing a port take :func:`shared_port`.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str) -> str:
    """The path of an external tool; skip without it, but fail in CI (``CI`` set)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus / systemd)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

"""The command line's packaging surface: which configuration it uses without
``--config``, the shipped files, ``--version``, a reader that goes away, and log lines
with their syslog priority under journald."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from saynad import cli
from saynad._version import __version__
from saynad.observability.logs import PriorityLines, journal_stream
from saynad.shipped import DEMO_CONFIG, read_shipped, shipped_files, shipped_path
from tests.support.samples import LISTEN_ANY

COMMAND_TIMEOUT_S = 60  # a hang guard: each command takes well under a second


def saynad(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "saynad", *args],
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_without_config_the_system_file_wins_and_else_the_embedded_demo(tmp_path: Path) -> None:
    system = tmp_path / "saynad.yaml"
    path, why = cli.default_config(str(system))
    assert (path, why) == (shipped_path(DEMO_CONFIG), f"the embedded demo: {system} does not exist")
    system.write_text("sayna: {}\n")
    assert cli.default_config(str(system)) == (system, "the system configuration")
    # Present but unreadable (or a dangling link) is still the system's file: its error
    # is reported, never replaced by the demo.
    system.unlink()
    system.symlink_to(tmp_path / "gone.yaml")
    assert cli.default_config(str(system))[0] == system


def test_config_example_lists_and_prints_each_shipped_example() -> None:
    listing = saynad("config", "example")
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.decode().splitlines()]
    assert names == [
        "call-center",
        "demo",
        "livekit-phone-agent",
        "sharded-host",
        "websocket-only",
    ]
    for name in names:
        shown = saynad("config", "example", name)
        assert shown.returncode == 0
        assert shown.stdout == read_shipped(f"examples/{name}.yaml")
    unknown = saynad("config", "example", "nope")
    assert unknown.returncode == 1
    assert b"no example named 'nope'; the examples are: call-center, demo, " in unknown.stderr


def test_files_lists_prints_and_locates_every_shipped_file() -> None:
    listing = saynad("files")
    assert listing.stdout.decode().splitlines() == shipped_files()
    assert "systemd/saynad.service" in shipped_files()
    unit = saynad("files", "systemd/saynad.service")
    assert unit.stdout == read_shipped("systemd/saynad.service")
    where = saynad("files", "--path", "demo-caller.wav")
    assert Path(where.stdout.decode().strip()) == shipped_path("demo-caller.wav")
    assert Path(where.stdout.decode().strip()).is_file()
    for name in ("nope", "../pyproject.toml", "examples"):
        missing = saynad("files", name)
        assert missing.returncode == 1, name
        assert b"saynad ships no file named" in missing.stderr


def test_version_flag_and_command() -> None:
    for args in (["--version"], ["version"]):
        result = saynad(*args)
        assert (result.returncode, result.stdout) == (0, f"saynad {__version__}\n".encode())


async def test_status_into_a_reader_that_goes_away_ends_quietly() -> None:
    # A /sessions answer far larger than a pipe's buffer: `saynad status | head -1`.
    rows = [
        {"name": f"session-{i:05d}", "origin": "config", "template": "t", "state": "ready"}
        for i in range(5000)
    ]
    body = json.dumps({"sessions": rows}).encode()
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(head + body)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        read, write = os.pipe()
        with trio.fail_after(COMMAND_TIMEOUT_S):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "saynad", "status", "--url", f"http://127.0.0.1:{port}"],
                stdout=write,
                stderr=subprocess.PIPE,
            )
            os.close(write)
            reader = trio.lowlevel.FdStream(read)
            received = b""
            while b"\n" not in received:
                chunk = await reader.receive_some()
                assert chunk, received
                received += chunk
            await reader.aclose()  # as `head -1` does after its line
            first = received.split(b"\n")[0]
            assert process.stderr is not None
            stderr = b"".join([chunk async for chunk in process.stderr])
            code = await process.wait()
        nursery.cancel_scope.cancel()
    assert first.split() == [
        b"NAME",
        b"ORIGIN",
        b"TEMPLATE",
        b"STATE",
        b"FOR",
        b"RESTARTS",
        b"ROOM",
        b"STREAM",
        b"ERROR",
    ]
    assert stderr == b""
    assert code == 1


def test_a_stream_is_journald_s_only_when_journal_stream_names_it(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w") as stream, (tmp_path / "other").open("w") as other:
        mine = os.fstat(stream.fileno())
        theirs = os.fstat(other.fileno())
        assert journal_stream(stream, {"JOURNAL_STREAM": f"{mine.st_dev}:{mine.st_ino}"})
        # Inherited from a parent whose stream was another one: not journald's.
        assert not journal_stream(stream, {"JOURNAL_STREAM": f"{theirs.st_dev}:{theirs.st_ino}"})
        assert not journal_stream(stream, {})
        assert not journal_stream(stream, {"JOURNAL_STREAM": "garbage"})


def test_priority_lines_prefix_every_line_once() -> None:
    class Sink:
        text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def flush(self) -> None:
            pass

    sink = Sink()
    lines = PriorityLines(sink, 3)  # type: ignore[arg-type]
    lines.write("first problem\nsecond ")
    lines.write("problem\n\nTraceback (most recent call last):\n")
    assert (
        sink.text
        == "<3>first problem\n<3>second problem\n\n<3>Traceback (most recent call last):\n"
    )


@pytest.mark.slow
async def test_under_journald_every_line_carries_its_syslog_priority(tmp_path: Path) -> None:
    """A real ``saynad run`` whose stdout and stderr are "journald's" streams (pipes
    named by ``JOURNAL_STREAM`` exactly as systemd names its stream): info lines start
    with ``<6>``, the configuration's problems on stderr with ``<3>``."""
    broken = tmp_path / "saynad.yaml"
    broken.write_text("sayna: {}\nsessions: [{name: a, template: missing}]\n")
    read, write = os.pipe()
    status = os.fstat(write)
    env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
    with trio.fail_after(COMMAND_TIMEOUT_S):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "saynad", "run", "--config", str(broken)],
            stdout=write,
            stderr=write,
            env=env,
        )
        os.close(write)
        code = await process.wait()
    with os.fdopen(read, "rb") as reader:
        output = reader.read().decode().splitlines()
    assert code == 78
    assert output, "no output"
    assert all(line.startswith(f"<3>{broken}:") for line in output), output

    demo = tmp_path / "demo.yaml"
    demo.write_text(read_shipped(DEMO_CONFIG).decode().replace("127.0.0.1:9464", LISTEN_ANY))
    read, write = os.pipe()
    status = os.fstat(write)
    env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
    async with trio.open_nursery() as nursery:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "saynad", "run", "--config", str(demo)],
            stdout=write,
            env=env,
        )
        os.close(write)
        reader = trio.lowlevel.FdStream(read)
        buffer = b""
        with trio.fail_after(COMMAND_TIMEOUT_S):
            while b'"saynad running"' not in buffer:
                chunk = await reader.receive_some()
                assert chunk, buffer
                buffer += chunk
            process.terminate()
            while chunk := await reader.receive_some():
                buffer += chunk
            assert await process.wait() == 0
        await reader.aclose()
        nursery.cancel_scope.cancel()
    lines = buffer.decode().splitlines()
    assert lines
    for line in lines:
        priority, _, record = line.partition(">")
        event = json.loads(record)
        expected = {"info": "<6", "warning": "<4", "error": "<3", "debug": "<7"}[event["level"]]
        assert priority == expected, line
    assert any(line.startswith('<6>{"') for line in lines)

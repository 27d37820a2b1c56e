"""Configuration files that would hang or explode a reader are refused before parsing.

Real FIFOs (no writer: reading one blocks for ever), devices, directories and files
over :data:`saynad.config.CONFIG_FILE_MAX_BYTES`, through ``saynad check`` and
``saynad run`` as subprocesses and through a running daemon's ``SIGHUP``. The hang
guards are generous: a hang fails the test instead of holding the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from saynad.config import CONFIG_FILE_MAX_BYTES, load_config, load_config_text
from saynad.errors import ConfigError
from tests.support.processes import daemon_process, state
from tests.support.samples import write_fleet

HANG_GUARD_S = 60


def saynad(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "saynad", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
    )


def minimal(extra: str = "") -> str:
    return (
        "sayna: {emulator: {}}\n"
        f"{extra}"
        "templates: {t: {audio: false}}\n"
        "sessions: [{name: s, template: t}]\n"
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "config.fifo"
    os.mkfifo(path)
    return path


def test_check_refuses_a_fifo_instead_of_hanging(fifo: Path) -> None:
    result = saynad("check", "--config", str(fifo))
    assert result.returncode == 1
    assert f"{fifo}: cannot read the file: not a regular file (a FIFO)" in result.stderr


def test_run_refuses_a_fifo_with_the_config_status(fifo: Path) -> None:
    result = saynad("run", "--config", str(fifo))
    assert result.returncode == 78
    assert "not a regular file (a FIFO)" in result.stderr


def test_a_file_reference_to_a_fifo_is_a_problem_not_a_hang(tmp_path: Path, fifo: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(minimal(f"http: {{control_token: '${{file:{fifo}}}'}}\n"))
    result = saynad("check", "--config", str(config))
    assert result.returncode == 1
    assert f"file {fifo}" in result.stderr
    assert "not a regular file (a FIFO)" in result.stderr


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_devices_are_refused(path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "not a regular file (a character device)" in caught.value.problems[0]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert "cannot read the file" in caught.value.problems[0]


def test_an_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    config = tmp_path / "huge.yaml"
    with config.open("wb") as fh:  # sparse: no disk space, but its size is over the limit
        fh.truncate(CONFIG_FILE_MAX_BYTES + 1)
    result = saynad("check", "--config", str(config))
    assert result.returncode == 1
    assert f"at most {CONFIG_FILE_MAX_BYTES} are read" in result.stderr
    # A file exactly at the limit is read (and then judged on its content).
    with config.open("r+b") as fh:
        fh.truncate(CONFIG_FILE_MAX_BYTES)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "at most" not in caught.value.problems[0]


def test_a_document_with_too_many_values_stops_composing_early() -> None:
    # ~1.2 million nodes: the loader stops after 201,000 and says why.
    sessions = "".join(f"  - {{name: s{i}, template: t}}\n" for i in range(250_000))
    text = "sayna: {emulator: {}}\ntemplates: {t: {audio: false}}\nsessions:\n" + sessions
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env={})
    assert caught.value.problems == ["<config>:1: the document expands to more than 100000 values"]


async def test_sighup_with_a_fifo_keeps_the_fleet_and_sigterm_still_stops(
    tmp_path: Path,
) -> None:
    config = tmp_path / "saynad.yaml"
    write_fleet(config, {"a": "hello"}, drain_s=1.0)
    async with daemon_process(config, listening=False) as daemon:
        await daemon.wait_for(state("a", "ready"), within_s=30)
        config.unlink()
        os.mkfifo(config)
        daemon.signal(signal.SIGHUP)
        (failed,) = await daemon.wait_for_lines(
            lambda line: line.get("event") == "reload failed; keeping the running configuration",
            within_s=30,
        )
        assert "not a regular file (a FIFO)" in failed["problems"][0]
        daemon.signal(signal.SIGTERM)
        with trio.fail_after(HANG_GUARD_S):
            code = await daemon.process.wait()
    assert code == 0

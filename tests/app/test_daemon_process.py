"""``saynad run`` as a real subprocess receiving real signals, against its embedded emulator."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from tests.support.processes import daemon_process, state
from tests.support.samples import write_fleet
from tests.timing import HANG_S


async def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    write_fleet(config, {"a": "hello a", "b": "hello b"}, drain_s=2.0)
    async with daemon_process(config, listening=False) as daemon:
        await daemon.wait_for_lines(lambda line: line.get("new") == "ready", count=2)
        daemon.signal(signal.SIGTERM)
        with trio.fail_after(HANG_S):
            code = await daemon.process.wait()
        assert code == 0
        assert daemon.find(lambda line: line.get("event") == "drained")
        ended = daemon.find(lambda line: line.get("event") == "session ended")
        assert {line["session"] for line in ended} == {"a", "b"}
        assert all(line["reason"] == "drain" for line in ended)


async def test_sighup_applies_a_valid_change_to_that_session_only(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    write_fleet(config, {"keep": "same", "change": "old text", "drop": "bye"})
    async with daemon_process(config, listening=False) as daemon:
        await daemon.wait_for_lines(lambda line: line.get("new") == "ready", count=3)
        text = config.read_text()
        write_fleet(config, {"keep": "same", "change": "new text", "add": "hi"})
        # Same port as before: only the sessions differ.
        port_line = next(line for line in text.splitlines() if "listen:" in line)
        config.write_text(
            "\n".join(
                port_line if "listen:" in line else line for line in config.read_text().splitlines()
            )
        )
        daemon.signal(signal.SIGHUP)
        plan = await daemon.wait_for_lines(lambda line: line.get("event") == "reload plan", count=2)
        assert plan[-1]["added"] == ["add"]
        assert plan[-1]["removed"] == ["drop"]
        assert plan[-1]["changed"] == ["change"]
        await daemon.wait_for_lines(state("change", "ready"), count=2)
        await daemon.wait_for(state("add", "ready"))
        # The unchanged session never reconnected.
        assert len(daemon.find(state("keep", "connecting"))) == 1
        daemon.signal(signal.SIGTERM)
        with trio.fail_after(HANG_S):
            assert await daemon.process.wait() == 0


async def test_sighup_with_a_broken_file_keeps_the_running_fleet(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    write_fleet(config, {"a": "hello"})
    async with daemon_process(config, listening=False) as daemon:
        await daemon.wait_for(state("a", "ready"))
        good = config.read_text()
        config.write_text(good + "\nsurprise_section: {}\n")
        daemon.signal(signal.SIGHUP)
        failed = await daemon.wait_for_lines(
            lambda line: line.get("event", "").startswith("reload failed")
        )
        assert any("surprise_section" in problem for problem in failed[0]["problems"])
        assert str(config) in failed[0]["problems"][0]
        # Still one connection, still ready, and a later valid reload works.
        assert len(daemon.find(state("a", "connecting"))) == 1
        config.write_text(good)
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for(lambda line: line.get("event") == "configuration reloaded")
        assert len(daemon.find(state("a", "connecting"))) == 1
        daemon.signal(signal.SIGTERM)
        with trio.fail_after(HANG_S):
            assert await daemon.process.wait() == 0


async def test_bad_config_exits_78_naming_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("sessions:\n  - name: x\n    tempalte: voice\n")
    result = await trio.run_process(
        [sys.executable, "-m", "saynad", "run", "--config", str(config)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 78
    errors = result.stderr.decode()
    assert f"{config}:3:" in errors
    assert "tempalte" in errors


async def test_check_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    write_fleet(good, {"a": "hello"})
    ok = await trio.run_process(
        [sys.executable, "-m", "saynad", "check", "--config", str(good)], capture_stdout=True
    )
    assert ok.returncode == 0
    assert b"configuration OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("http:\n  listen: nowhere\n")
    result = await trio.run_process(
        [sys.executable, "-m", "saynad", "check", "--config", str(bad)],
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 1
    assert f"{bad}:2: http.listen:" in result.stderr.decode()

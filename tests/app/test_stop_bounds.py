"""Every path from SIGTERM to exit is bounded by ``drain_timeout_s`` + ``STOP_GRACE_S``.

Real ``saynad run`` subprocesses receive real signals: with the Sayna server down
(sessions in backoff), while sessions wait for ``ready`` from a server that never sends
it, during a slow reload, and in the first instants of the process, before the daemon
listens for signals. Sessions with nothing to drain stop at once, so those exits come
well inside the drain timeout; the assertions leave generous room for a loaded machine
and still fail when a stop waits for the drain deadline (or for ever).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import trio

from saynad import _early_signals
from saynad.app import STOP_GRACE_S, Daemon
from saynad.config import load_config
from tests.support.processes import DaemonProcess, closed_port, daemon_process, state
from tests.support.samples import CALLER_WAV, LISTEN_ANY, STT_YAML, tts_yaml
from tests.support.wspeer import ScriptedPeer, ws_server

DRAIN_S = 10.0
"""Long, so that a stop that waits for the drain deadline is told from one that does not."""
PROMPT_S = 5.0
"""A stop with nothing to drain must come within this (it takes well under a second)."""

TTS = tts_yaml(sample_rate=None)


def fleet(
    url: str | None,
    *,
    names: tuple[str, ...] = ("a", "b", "c"),
    drain_s: float,
    backoff: str = "{initial_s: 0.2, max_s: 2}",
) -> str:
    sayna = f"sayna: {{url: {url!r}}}" if url else "sayna: {emulator: {}}"
    sessions = "".join(f"  - {{name: {name}, template: voice}}\n" for name in names)
    return (
        f"{sayna}\n"
        f'http: {{listen: "{LISTEN_ANY}"}}\n'
        "logging: {level: info, format: json}\n"
        "defaults:\n"
        f"  backoff: {backoff}\n"
        "  ready_timeout_s: 600\n"
        f"  drain_timeout_s: {drain_s}\n"
        "templates:\n"
        "  voice:\n"
        f"    stt: {STT_YAML}\n"
        f"    tts: {TTS}\n"
        '    behaviours: {greeting: {text: "hello"}}\n'
        f"sessions:\n{sessions}"
    )


async def stop_and_time(daemon: DaemonProcess, *, within_s: float) -> tuple[int, float]:
    """SIGTERM; the exit status and the seconds until exit (fails past ``within_s``)."""
    started = trio.current_time()
    daemon.signal(signal.SIGTERM)
    with trio.fail_after(within_s):
        code = await daemon.process.wait()
    return code, trio.current_time() - started


async def test_sigterm_with_the_server_down_does_not_wait_for_the_drain(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    with closed_port() as port:
        # Nothing listens there: every session goes from connecting to a long backoff.
        config.write_text(
            fleet(
                f"ws://127.0.0.1:{port}",
                drain_s=DRAIN_S,
                backoff="{initial_s: 30, max_s: 60}",
            )
        )
        async with daemon_process(config, listening=False) as daemon:
            for name in ("a", "b", "c"):
                await daemon.wait_for(state(name, "backoff"), within_s=30)
            code, elapsed = await stop_and_time(daemon, within_s=DRAIN_S + STOP_GRACE_S + 30)
    assert code == 0
    assert elapsed < PROMPT_S, f"{elapsed:.1f} s: the stop waited for sessions in backoff"
    assert daemon.find(lambda line: line.get("event") == "drained")


async def test_sigterm_while_sessions_wait_for_ready_does_not_wait_for_it(tmp_path: Path) -> None:
    async def never_ready(peer: ScriptedPeer) -> None:
        await trio.sleep_forever()  # the handshake and config went through; no ready

    async with ws_server(never_ready) as url:
        config = tmp_path / "saynad.yaml"
        config.write_text(fleet(url, drain_s=DRAIN_S))
        async with daemon_process(config, listening=False) as daemon:
            for name in ("a", "b", "c"):
                await daemon.wait_for(state(name, "connecting"), within_s=30)
            code, elapsed = await stop_and_time(daemon, within_s=DRAIN_S + STOP_GRACE_S + 30)
    assert code == 0
    assert elapsed < PROMPT_S, f"{elapsed:.1f} s: the stop waited for a ready that never came"


def big_fleet(port_line: str, sessions: int) -> str:
    """A valid file that takes seconds to parse (``sessions`` data-only sessions)."""
    lines = [
        "sayna: {emulator: {}}",
        port_line,
        "logging: {level: info, format: json}",
        "defaults: {drain_timeout_s: 1}",
        "templates: {t: {audio: false}}",
        "sessions:",
    ]
    lines += [f"  - {{name: s{i}, template: t}}" for i in range(sessions)]
    return "\n".join(lines) + "\n"


async def test_sigterm_during_a_slow_reload_does_not_wait_for_the_parse(tmp_path: Path) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(fleet(None, names=("a",), drain_s=1.0))
    port_line = next(line for line in config.read_text().splitlines() if "listen" in line)
    async with daemon_process(config, listening=False) as daemon:
        await daemon.wait_for(state("a", "ready"), within_s=30)
        # ~30,000 sessions: several seconds of parsing (on any machine) in the reload.
        config.write_text(big_fleet(port_line, 30_000))
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for(lambda line: line.get("event") == "SIGHUP: reload requested")
        await trio.sleep(0.5)  # the parse is under way (it lasts far longer than this)
        code, elapsed = await stop_and_time(daemon, within_s=60)
    assert code == 0
    # Within the bound, and not after the parse: the reload never finished.
    assert elapsed < 1.0 + STOP_GRACE_S
    assert elapsed < PROMPT_S, f"{elapsed:.1f} s: the stop waited for the reload's parse"
    assert not daemon.find(lambda line: line.get("event") == "configuration reloaded")


def catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a handler for SIGTERM installed (``SigCgt`` in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


async def test_sigterm_in_the_first_instants_exits_cleanly(tmp_path: Path) -> None:
    # A big file keeps the process reading its configuration for seconds: the window
    # before the daemon's own signal receiver exists.
    config = tmp_path / "saynad.yaml"
    config.write_text(big_fleet(f'http: {{listen: "{LISTEN_ANY}"}}', 30_000))
    async with daemon_process(config, listening=False) as daemon:
        pid = daemon.process.pid
        with trio.move_on_after(1.0):  # the handler is installed before any import
            while not catches_sigterm(pid):  # noqa: ASYNC110 - another process: poll
                await trio.sleep(0.001)
        code, elapsed = await stop_and_time(daemon, within_s=60)
    assert code == 0, f"exit status {code} (-15: killed by the signal's default action)"
    assert elapsed < PROMPT_S
    assert not daemon.find(lambda line: line.get("event") == "saynad running")


async def test_a_signal_recorded_while_starting_drains_once_the_daemon_listens(
    tmp_path: Path,
) -> None:
    config = tmp_path / "saynad.yaml"
    config.write_text(fleet(None, names=("a",), drain_s=1.0))
    daemon = Daemon(config_path=config, config=load_config(config, env={}), env={})
    previous = {signum: signal.getsignal(signum) for signum in _early_signals.SIGNALS}
    try:
        _early_signals.install()
        _early_signals.defer()
        os.kill(os.getpid(), signal.SIGTERM)  # arrives before the daemon's receiver opens
        with trio.fail_after(30):
            await daemon.run()  # returns once drained
    finally:
        _early_signals._deferred = False
        _early_signals.take()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert daemon.draining
    assert sys.exc_info() == (None, None, None)


async def test_a_stop_held_past_the_bound_is_cut_short_by_the_guard(tmp_path: Path) -> None:
    # User code that ignores cancellation holds its session, so the drain can never
    # finish: the process must still exit at drain_timeout_s + STOP_GRACE_S.
    config = tmp_path / "saynad.yaml"
    caller = CALLER_WAV
    config.write_text(
        "sayna: {emulator: {utterance_ms: 300, interim_ms: 300}}\n"
        f'http: {{listen: "{LISTEN_ANY}"}}\n'
        "logging: {level: info, format: json}\n"
        "defaults: {drain_timeout_s: 1}\n"
        "templates:\n"
        "  voice:\n"
        f"    stt: {STT_YAML}\n"
        f"    tts: {TTS}\n"
        "    behaviours:\n"
        '      agent: {kind: python, function: "tests.app.stuck_agent:reply"}\n'
        f"      audio: {{source: {{path: {str(caller)!r}, loop: true}}}}\n"
        "sessions: [{name: stuck, template: voice}]\n"
    )
    async with daemon_process(config, listening=False) as daemon:
        await daemon.wait_for(state("stuck", "ready"), within_s=30)
        # The first caller turn reaches the agent, which then never returns.
        await trio.sleep(2.0)
        code, elapsed = await stop_and_time(daemon, within_s=1.0 + STOP_GRACE_S + 30)
    assert code == 1
    assert 1.0 + STOP_GRACE_S - 1.0 < elapsed < 1.0 + STOP_GRACE_S + 5.0
    (line,) = daemon.find(lambda line: line.get("event") == "stop overran its bound; exiting now")
    assert line["bound_s"] == 1.0 + STOP_GRACE_S

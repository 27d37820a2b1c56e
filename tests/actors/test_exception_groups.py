"""Errors leave their boundary bare: never an ``ExceptionGroup`` from a nursery on the way.

``open_session`` raises the same exception with keepalive on (a nursery inside) as
without; a behaviour that crashes is named by its own error in the supervisor's log,
in ``/sessions`` and in the failure metric — against the real emulator and daemon.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from saynad._groups import cause_of, unwrapped
from saynad.app import Daemon, failure_reason
from saynad.client.session import open_session
from saynad.config import load_config
from saynad.emulator import open_emulator
from saynad.errors import ConnectionClosedError
from tests.support.daemon import wait_until
from tests.support.samples import LISTEN_ANY, STT_CONFIG, STT_YAML, TTS_CONFIG, TTS_YAML, write_wav
from tests.support.wspeer import ScriptedPeer, ws_server


class Boom(Exception):
    pass


@pytest.mark.parametrize("keepalive_interval_s", [None, 5.0])
async def test_open_session_raises_the_blocks_error_bare(
    keepalive_interval_s: float | None,
) -> None:
    async with open_emulator() as emulator:
        with pytest.raises(Boom) as caught:
            async with open_session(
                emulator.url,
                stt=STT_CONFIG,
                tts=TTS_CONFIG,
                keepalive_interval_s=keepalive_interval_s,
            ):
                raise Boom("from the block")
    assert type(caught.value) is Boom
    assert not isinstance(caught.value.__context__, BaseExceptionGroup)


@pytest.mark.parametrize("keepalive_interval_s", [None, 5.0])
async def test_open_session_raises_a_lost_connection_bare(
    keepalive_interval_s: float | None,
) -> None:
    async def server(peer: ScriptedPeer) -> None:
        await peer.send_text('{"type":"ready","stream_id":"s"}')
        await peer.stream.aclose()  # no close frame: the connection just breaks

    async def read_until_closed(url: str) -> None:
        async with open_session(
            url, stt=STT_CONFIG, tts=TTS_CONFIG, keepalive_interval_s=keepalive_interval_s
        ) as session:
            async for _ in session.events():
                pass

    async with ws_server(server) as url:
        with pytest.raises(ConnectionClosedError):
            await read_until_closed(url)


def test_the_cause_is_the_first_error_and_the_others_are_kept_as_notes() -> None:
    with pytest.raises(ValueError, match="first") as caught, unwrapped():
        raise ExceptionGroup(
            "outer",
            [ExceptionGroup("inner", [ValueError("first")]), KeyError("second")],
        )
    assert caught.value.__notes__ == ["also: KeyError: 'second'"]
    # A bare exception passes through untouched.
    bare = RuntimeError("x")
    assert cause_of(bare) is bare
    assert failure_reason(ExceptionGroup("g", [ConnectionClosedError(1006, None)])) == (
        "connection_lost"
    )


async def test_a_crashing_behaviour_is_named_by_its_own_error(tmp_path: Path) -> None:
    caller = write_wav(tmp_path / "caller.wav", 200)
    path = tmp_path / "saynad.yaml"
    path.write_text(
        "sayna: {emulator: {}}\n"
        f'http: {{listen: "{LISTEN_ANY}"}}\n'
        "logging: {level: info, format: json}\n"
        "defaults: {backoff: {initial_s: 0.05, max_s: 0.1}, "
        "intensity: {max_restarts: 1000, window_s: 60}}\n"
        "templates:\n"
        "  t:\n"
        f"    stt: {STT_YAML}\n"
        f"    tts: {TTS_YAML}\n"
        f'    behaviours: {{audio: {{source: {{path: "{caller}"}}}}}}\n'
        "sessions: [{name: crash, template: t}]\n"
    )
    config = load_config(path, env={})
    caller.unlink()  # the behaviour now fails at run time: FileNotFoundError
    daemon = Daemon(config_path=path, config=config, env={})
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            await wait_until(
                lambda: any(e["event"] == "session ended with an error" for e in logs),
                within_s=30,
            )
            async with httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=30) as client:
                rows = (await client.get("/sessions")).json()["sessions"]
                metrics = (await client.get("/metrics")).text
            nursery.cancel_scope.cancel()
    ended = next(e for e in logs if e["event"] == "session ended with an error")
    assert ended["error"].startswith("FileNotFoundError: ")
    assert "ExceptionGroup" not in ended["error"]
    (row,) = rows
    assert row["last_error"].startswith("FileNotFoundError: ")
    assert 'saynad_session_failures_total{origin="config",reason="error"}' in metrics

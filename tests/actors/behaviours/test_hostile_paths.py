"""Values from outside never leave the configured directory (path templates), and an
audio sink that cannot write never ends its session.

A hostile Sayna server (raw frames over a real loopback socket) answers ``ready`` with a
``stream_id`` made to climb out of the transcript and audio directories; real files
and directories on disk show where everything landed.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from saynad.actors.behaviour import SessionCounters, SessionIdentity
from saynad.actors.behaviours.audio import _write_wav
from saynad.actors.behaviours.transcripts import _open_append, render_path
from saynad.actors.plan import build_plan
from saynad.actors.registry import SessionState
from saynad.actors.session import run_session
from saynad.config import load_config_text
from saynad.emulator import EmulatorOptions, open_emulator
from saynad.errors import ConfigError
from saynad.paths import (
    MAX_COMPONENT_CHARS,
    PathEscapeError,
    expand_path_template,
    safe_component,
)
from saynad.protocol.framing import BINARY
from tests.actors.behaviours.fakes import control
from tests.support.daemon import wait_until
from tests.support.samples import session_spec
from tests.support.wspeer import ScriptedPeer, encode_frame, ws_server

HOSTILE_IDS = (
    "../../../../tmp/x/pwned",
    "../escaped/pwned",
    "..",
    ".",
    "",
    "/etc/passwd",
    "a/../../b",
    "\x00nul",
    "é" * 300,
    "x" * 5000,
    ".hidden",
    "back\\slash",
)


def files_under(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _, names in os.walk(root) for f in names)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_every_value_becomes_one_safe_component(value: str) -> None:
    safe = safe_component(value)
    assert safe not in ("", ".", "..")
    assert not safe.startswith(".")
    for bad in ("/", "\\", "\x00"):
        assert bad not in safe
    assert len(safe) <= MAX_COMPONENT_CHARS
    assert all(c.isascii() and (c.isalnum() or c in "_-.") for c in safe)


def test_safe_values_are_unchanged_and_changed_ones_stay_distinct() -> None:
    for value in ("front-desk", "sip-EV_abc123", "2026-01-01", "a.b_c-d"):
        assert safe_component(value) == value
    # Both would read "a_b" once cleaned: the hash keeps them apart.
    assert safe_component("a/b") != safe_component("a:b")
    assert safe_component("x" * 200) != safe_component("x" * 201)


def test_expanded_paths_stay_under_the_fixed_prefix(tmp_path: Path) -> None:
    template = f"{tmp_path}/t/{{date}}/{{stream_id}}.jsonl"
    for value in HOSTILE_IDS:
        path = expand_path_template(template, {"date": "2026-01-01", "stream_id": value})
        assert os.path.normpath(path).startswith(f"{tmp_path}/t/2026-01-01/")
    # A template whose own literal text climbs out after a placeholder is refused.
    with pytest.raises(PathEscapeError):
        expand_path_template(f"{tmp_path}/t/{{session}}/../../x", {"session": "s"})


def test_render_path_sanitises_server_and_webhook_values(tmp_path: Path) -> None:
    identity = SessionIdentity(
        name="sip-EV_1",
        template="call",
        origin="inbound",
        room="../../room",
        stream_id="../../../../tmp/x/pwned",
    )
    path = render_path(f"{tmp_path}/t/{{room}}/{{stream_id}}.jsonl", identity)
    assert path.parent.parent == tmp_path / "t"
    assert ".." not in path.parts


ESCAPING = '"/var/lib/saynad/{session}/../../etc/x"'


@pytest.mark.parametrize(
    "behaviour",
    [
        "transcripts: [{kind: jsonl, path: " + ESCAPING + "}]",
        "audio: {sink: {dir: " + ESCAPING + "}}",
    ],
)
def test_config_refuses_dotdot_after_a_placeholder(behaviour: str) -> None:
    text = (
        "templates:\n  t:\n    behaviours:\n"
        f"      {behaviour}\n"
        "sessions: [{name: s, template: t}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env={})
    assert any("'..' after a placeholder" in p for p in caught.value.problems)


# --------------------------------------------------------------------------- hostile server


def hostile_ready(stream_id: str) -> str:
    return json.dumps({"type": "ready", "stream_id": stream_id})


@pytest.mark.parametrize("stream_id", ["../../../../tmp/x/pwned", "../escaped/pwned", ".."])
async def test_a_hostile_stream_id_stays_inside_the_configured_directories(
    tmp_path: Path, stream_id: str
) -> None:
    # The server's id climbs out of tmp_path/t (and tmp_path/audio); its "/tmp/" part is
    # pointed into tmp_path/outside, so that a write that escapes stays in the test's reach.
    hostile = stream_id.replace("/tmp/", f"{tmp_path}/outside/")
    spec = session_spec(
        tmp_path,
        f"""
        transcripts: [{{kind: jsonl, path: "{tmp_path}/t/{{stream_id}}.jsonl"}}]
        audio: {{sink: {{dir: "{tmp_path}/audio/{{stream_id}}"}}}}
        """,
    )
    root = tmp_path.parent
    before = set(files_under(root))

    async def server(peer: ScriptedPeer) -> None:
        await peer.send_text(hostile_ready(hostile))
        await peer.send_text(
            '{"type":"stt_result","transcript":"hello there","is_final":true,'
            '"is_speech_final":true,"confidence":0.9}'
        )
        await peer.send(encode_frame(BINARY, b"\x01\x00" * 800))
        await peer.send_text('{"type":"tts_playback_complete","timestamp":1}')
        # Close once the utterance is on disk (wherever it went), so nothing is cut.
        await wait_until(lambda: any(p.suffix == ".wav" for p in set(files_under(root)) - before))
        await peer.close()

    counters = SessionCounters()
    async with ws_server(server) as url:
        plan = replace(build_plan(spec, url=url, api_key=None), counters=counters)
        with trio.fail_after(30):
            await run_session(plan, control(spec.name))

    created = set(files_under(root)) - before
    assert created, "the session wrote nothing"
    for path in created:
        assert path.is_relative_to(tmp_path / "t") or path.is_relative_to(tmp_path / "audio"), path
    (jsonl,) = [p for p in created if p.suffix == ".jsonl"]
    assert jsonl.parent == tmp_path / "t"
    assert [json.loads(line)["text"] for line in jsonl.read_text().splitlines()] == ["hello there"]
    (wav,) = [p for p in created if p.suffix == ".wav"]
    assert wav.parent.parent == tmp_path / "audio"
    assert counters.sink_written == 1
    assert counters.audio_sink_errors == 0


# --------------------------------------------------------------------------- audio sink faults


@contextmanager
def unraisable() -> Iterator[list[Any]]:
    """Collect what Python would print as 'Exception ignored in …' (finalisers)."""
    seen: list[Any] = []
    previous = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        yield seen
    finally:
        gc.collect()
        sys.unraisablehook = previous


def test_a_wav_that_cannot_be_opened_raises_oserror_and_leaves_no_finaliser_noise(
    tmp_path: Path,
) -> None:
    target = tmp_path / "taken.wav"
    target.mkdir()  # the file name is a directory: open() fails, even for root
    with unraisable() as seen:
        with pytest.raises(IsADirectoryError):
            _write_wav(target, b"\x00\x00" * 10, 16_000)
        gc.collect()
    assert seen == []


async def test_an_unwritable_audio_directory_never_ends_the_session(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the directory should be")  # ENOTDIR, even for root
    spec = session_spec(
        tmp_path,
        f"""
        greeting: {{text: "Hello and welcome."}}
        audio: {{sink: {{dir: "{blocker}/{{session}}"}}}}
        transcripts: [{{kind: jsonl, path: "{tmp_path}/t/{{session}}.jsonl"}}]
        """,
    )
    counters = SessionCounters()
    ctl = control(spec.name)
    async with open_emulator(EmulatorOptions(tts_chunk_ms=50)) as emulator:
        plan = replace(build_plan(spec, url=emulator.url, api_key=None), counters=counters)
        with capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_session, plan, ctl)
                await wait_until(lambda: counters.audio_sink_errors >= 1)
                # The greeting's audio was lost, the session still serves.
                assert ctl.registry.get(spec.name).state is SessionState.READY  # type: ignore[union-attr]
                ctl.drain_requested.set()
    assert counters.behaviour_errors == 0
    failures = [e for e in logs if e["event"] == "audio write failed"]
    assert len(failures) == 1  # rate-limited: one line per interval
    assert failures[0]["errors"] == 1
    assert str(blocker) in failures[0]["path"]
    assert not [e for e in logs if e["event"] == "behaviour failed"]
    assert (tmp_path / "t" / "e2e.jsonl").exists()


@pytest.mark.parametrize("reader", [False, True])
async def test_a_fifo_where_a_sink_writes_is_refused_not_waited_on(
    tmp_path: Path, reader: bool
) -> None:
    fifo = tmp_path / "taken"
    os.mkfifo(fifo)
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        for write in (
            lambda: _open_append(fifo),
            lambda: _write_wav(fifo, b"\x00\x00" * 10, 16_000),
        ):
            # Without a reader, a blocking open() would wait for ever: the guard fails
            # the test instead (the worker thread is abandoned).
            refused: int | None = None
            with trio.fail_after(30):
                try:
                    await trio.to_thread.run_sync(write, abandon_on_cancel=True)
                except OSError as exc:
                    refused = exc.errno
            assert refused in (errno.ENXIO, errno.EINVAL)
    finally:
        if held is not None:
            os.close(held)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # left as it was

"""Hostile server frames (``server_frames.yaml``) against a real session, over loopback.

Every item runs through :func:`saynad.client.open_session`, never through transport
internals: whichever WebSocket implementation is the default must give the documented
outcome.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from saynad.client.session import SessionEvent, open_session
from saynad.errors import ConnectionClosedError
from saynad.protocol.messages import STTResult, TTSAudio
from tests.corpus._corpus import item_frames, load_items, params
from tests.support.samples import STT_CONFIG, TTS_CONFIG
from tests.support.wspeer import ScriptedPeer, ws_server
from tests.timing import HANG_S

READY = '{"type":"ready","stream_id":"corpus","livekit_url":"http://localhost:7880"}'
VALID = (
    '{"type":"stt_result","transcript":"still here","is_final":true,'
    '"is_speech_final":true,"confidence":0.5}'
)
VALID_EVENT = STTResult(
    transcript="still here", is_final=True, is_speech_final=True, confidence=0.5
)
DEFAULT_LIMIT = 1024 * 1024
BAD_FRAME_LOG = "ignored undecodable frame"


def event_kind(event: SessionEvent) -> str:
    if isinstance(event, TTSAudio):
        return "tts_audio"
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


@pytest.mark.parametrize("item", params("server_frames.yaml"))
async def test_hostile_server_frame(item: dict[str, Any]) -> None:
    expect = item["expect"]
    outcome = expect["outcome"]
    frames = item_frames(item)

    async def script(peer: ScriptedPeer) -> None:
        if item.get("when") == "before_ready":
            for frame in frames:
                await peer.send(frame)
            await peer.send_text(READY)
        else:
            await peer.send_text(READY)
            for frame in frames:
                await peer.send(frame)
        await peer.send_text(VALID)
        await peer.close(1000)

    events: list[SessionEvent] = []
    closed: ConnectionClosedError | None = None
    limit = item.get("max_message_bytes", DEFAULT_LIMIT)
    async with ws_server(script) as url:
        with capture_logs() as logs, trio.fail_after(HANG_S):
            async with open_session(
                url, stt=STT_CONFIG, tts=TTS_CONFIG, max_message_bytes=limit
            ) as session:
                try:
                    async for event in session.events():
                        events.append(event)
                except ConnectionClosedError as exc:
                    closed = exc
    warnings = [entry for entry in logs if entry["event"] == BAD_FRAME_LOG]
    stats = session.stats

    if outcome == "closed":
        assert closed is not None, f"the session ended normally after {events}"
        assert closed.code == expect["close_code"]
        assert VALID_EVENT not in events
        assert warnings == []
        return

    assert closed is None, f"the session broke: {closed}"
    if outcome == "skipped":
        assert events == [VALID_EVENT]
        counter = expect["counter"]
        other = "unknown_types" if counter == "malformed" else "malformed"
        assert getattr(stats, counter) == 1
        assert getattr(stats, other) == 0
        assert [(w["kind"], w["log_level"]) for w in warnings] == [(expect["kind"], "warning")]
    elif outcome == "delivered":
        assert [event_kind(e) for e in events] == [*expect["events"], "stt_result"]
        assert events[-1] == VALID_EVENT
        assert (stats.malformed, stats.unknown_types) == (0, 0)
        assert warnings == []
    else:
        raise AssertionError(f"unknown outcome {outcome!r}")


def test_corpus_covers_every_category() -> None:
    names = {item["name"] for item in load_items("server_frames.yaml")}
    for required in (
        "plain-text",  # non-JSON
        "unknown-type",
        "transcript-is-a-number",  # wrong field types
        "nan-literal",
        "timestamp-of-4301-digits",  # huge integers
        "nested-arrays-10000",
        "lone-high-surrogate-escape",
        "text-frame-over-the-limit",
        "binary-before-ready",
        "audio-sent-as-text",  # text where binary is expected
    ):
        assert required in names
    assert len(names) >= 60

"""The emulator's WebSocket server, driven with raw frames on loopback.

Silence (no reply) is asserted with a *barrier*: an ``update_config`` with an invalid
threshold, whose ``error`` reply proves every earlier frame was handled (the server
processes a connection's frames strictly in order).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from saynad.client.transport import WebSocketTransport, connect_websocket
from saynad.emulator import Chaos, Emulator, EmulatorOptions, Tenant, open_emulator
from saynad.emulator.audio import synthesize, wav_bytes
from saynad.emulator.state import EmulatorState
from saynad.emulator.wire import (
    LoadingAudio,
    decode_client_frame,
    loading_audio_problem,
    rust_f32_display,
)
from saynad.errors import ConnectionClosedError, FrameDecodeError, HandshakeRejectedError
from tests.timing import HANG_S

STT = {
    "provider": "deepgram",
    "language": "en-US",
    "sample_rate": 16000,
    "channels": 1,
    "punctuation": True,
    "encoding": "linear16",
    "model": "nova-3",
}
TTS = {"provider": "deepgram", "model": "aura-asteria-en"}
ONE_SECOND_16K = b"\x00\x00" * 16000
BARRIER = '{"type":"update_config","turn_detect":{"threshold":9}}'
BARRIER_REPLY = (
    '{"type":"error","message":"Invalid turn detection threshold: 9. Must be between 0.0 and 1.0"}'
)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll the emulator's state, which its session tasks update after the socket closed."""
    for _ in range(500):
        if predicate():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Raw:
    """A bare WebSocket client: frames in, frames out, nothing interpreted."""

    def __init__(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.transport.send_text(frame if isinstance(frame, str) else compact(frame))

    async def send_bytes(self, data: bytes) -> None:
        await self.transport.send_bytes(data)

    async def recv(self) -> str | bytes:
        with trio.fail_after(HANG_S):
            return await self.transport.receive()

    async def text(self) -> str:
        message = await self.recv()
        assert isinstance(message, str), f"expected a text frame, got {len(message)} bytes"
        return message

    async def json(self) -> dict[str, Any]:
        obj = json.loads(await self.text())
        assert isinstance(obj, dict)
        return obj

    async def error(self) -> str:
        obj = await self.json()
        assert obj["type"] == "error", obj
        return str(obj["message"])

    async def config(self, **fields: Any) -> dict[str, Any]:
        """Send config (audio session by default) and return the ready frame."""
        frame: dict[str, Any] = {"type": "config", "stt_config": STT, "tts_config": TTS}
        frame.update(fields)
        await self.send({k: v for k, v in frame.items() if v is not None})
        ready = await self.json()
        assert ready["type"] == "ready", ready
        return ready

    async def barrier(self) -> list[str | bytes]:
        """Send the barrier; return every frame received before its reply."""
        await self.send(BARRIER)
        before: list[str | bytes] = []
        while (frame := await self.recv()) != BARRIER_REPLY:
            before.append(frame)
        return before

    async def until_closed(self) -> tuple[list[str | bytes], ConnectionClosedError]:
        frames: list[str | bytes] = []
        with trio.fail_after(HANG_S):
            while True:
                try:
                    frames.append(await self.transport.receive())
                except ConnectionClosedError as exc:
                    return frames, exc


@asynccontextmanager
async def raw(
    emulator: Emulator, *, headers: dict[str, str] | None = None, query: str = ""
) -> AsyncIterator[Raw]:
    url = emulator.ws_url + (f"?{query}" if query else "")
    async with connect_websocket(url, headers, connect_timeout_s=5) as transport:
        yield Raw(transport)


# --------------------------------------------------------------------------- config and ready


async def test_ready_without_livekit(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send({"type": "config", "stream_id": "s-1", "stt_config": STT, "tts_config": TTS})
        assert await ws.text() == (
            '{"type":"ready","stream_id":"s-1","livekit_url":"http://localhost:7880"}'
        )


async def test_generated_stream_id_is_a_uuid4(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        ready = await ws.config()
        assert list(ready) == ["type", "stream_id", "livekit_url"]
        assert UUID4.match(ready["stream_id"])


async def test_ready_with_livekit_matches_reference_byte_order() -> None:
    options = EmulatorOptions(livekit_url="wss://livekit.example.com")
    async with open_emulator(options) as emu, raw(emu) as ws:
        await ws.send(
            '{"type":"config","stream_id":"call-2024-0001","audio":true,"stt_config":'
            '{"provider":"deepgram","language":"en-US","sample_rate":24000,"channels":1,'
            '"punctuation":true,"encoding":"linear16","model":"nova-3"},"tts_config":'
            '{"provider":"elevenlabs","model":"eleven_multilingual_v2","voice_id":'
            '"21m00Tcm4TlvDq8ikWAM","speaking_rate":1.0,"audio_format":"linear16",'
            '"sample_rate":24000,"pronunciations":[{"word":"API","pronunciation":"A P I"}],'
            '"auth":{"api_key":"el-session-key"}},"livekit":{"room_name":"call-2024-0001",'
            '"enable_recording":false,"sayna_participant_identity":"sayna-ai",'
            '"sayna_participant_name":"Sayna AI","listen_participants":[]}}'
        )
        assert await ws.text() == (
            '{"type":"ready","stream_id":"call-2024-0001","livekit_room_name":"call-2024-0001",'
            '"livekit_url":"wss://livekit.example.com","sayna_participant_identity":"sayna-ai",'
            '"sayna_participant_name":"Sayna AI"}'
        )
        room = emu.state.rooms["call-2024-0001"]
        assert room.participants["sayna-ai"].kind == "AGENT"
        assert room.participants["sayna-ai"].name == "Sayna AI"


async def test_data_only_session_and_custom_agent(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send(
            {
                "type": "config",
                "audio": False,
                "livekit": {
                    "room_name": "chat-42",
                    "sayna_participant_identity": "bot",
                    "sayna_participant_name": None,
                },
            }
        )
        ready = await ws.json()
        assert ready["livekit_room_name"] == "chat-42"
        assert ready["sayna_participant_identity"] == "bot"
        assert ready["sayna_participant_name"] == "Sayna AI"


async def test_null_means_absent_and_unknown_keys_are_ignored(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send(
            {
                "type": "config",
                "stream_id": None,
                "audio": None,
                "vad": {"silence_duration_ms": 5},
                "stt_config": {**STT, "api_key": "ignored", "auth": None},
                "tts_config": {**TTS, "voice_id": None, "auth": {}},
                "livekit": None,
            }
        )
        ready = await ws.json()
        assert ready["type"] == "ready"
        assert UUID4.match(ready["stream_id"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stt_config": None}, "STT configuration is required when audio=true"),
        ({"tts_config": None}, "TTS configuration is required when audio=true"),
        ({"stt_config": {**STT, "provider": "Whisper"}}, "Unsupported provider: whisper"),
        ({"tts_config": {**TTS, "provider": "polly"}}, "Unsupported provider: polly"),
        (
            {"stt_config": {**STT, "auth": {"api_key": "k", "token": 1, "a": 2}}},
            "Invalid auth input for provider deepgram: "
            "Unsupported auth field(s) for provider deepgram: a, token",
        ),
        (
            {"tts_config": {**TTS, "provider": "azure", "auth": {"api_key": "k"}}},
            "Invalid auth input for provider azure: "
            "Auth field 'region' is required for provider azure",
        ),
        (
            {"tts_config": {**TTS, "provider": "elevenlabs", "auth": {"api_key": 5}}},
            "Invalid auth input for provider elevenlabs: "
            "Auth field 'api_key' must be a string for provider elevenlabs",
        ),
        (
            {"stt_config": {**STT, "provider": "google", "auth": {"credentials": 5}}},
            "Invalid auth input for provider google: "
            "Auth field 'credentials' must be a string or JSON object for provider google",
        ),
    ],
)
async def test_fatal_config_errors(
    emulator: Emulator, fields: dict[str, Any], message: str
) -> None:
    frame: dict[str, Any] = {"type": "config", "stt_config": STT, "tts_config": TTS, **fields}
    async with raw(emulator) as ws:
        await ws.send({k: v for k, v in frame.items() if v is not None})
        assert await ws.error() == message
        # No ready follows, and the connection stays open.
        assert await ws.barrier() == []


async def test_google_credentials_object_and_azure_alias_are_accepted(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config(
            stt_config={**STT, "provider": "Google", "auth": {"credentials": {"type": "sa"}}},
            tts_config={
                **TTS,
                "provider": "microsoft-azure",
                "auth": {"api_key": "k", "region": "eastus"},
            },
        )


async def test_livekit_without_server_credentials_is_fatal() -> None:
    async with open_emulator(EmulatorOptions(livekit=False)) as emu, raw(emu) as ws:
        await ws.send({"type": "config", "audio": False, "livekit": {"room_name": "r"}})
        assert await ws.error() == (
            "LiveKit room handler not initialized. Check API keys configuration."
        )
        assert await ws.barrier() == []


async def test_room_of_another_tenant_is_denied() -> None:
    options = EmulatorOptions(tenants=(Tenant("acme", "s-acme"), Tenant("other", "s-other")))
    async with open_emulator(options) as emu:
        emu.state.create_room("taken", owner="other")
        async with raw(emu, headers={"Authorization": "Bearer s-acme"}) as ws:
            await ws.send({"type": "config", "audio": False, "livekit": {"room_name": "taken"}})
            assert await ws.error() == "Access denied: room 'taken' belongs to a different tenant"
        async with raw(emu, query="api_key=s-acme") as ws:
            await ws.config(audio=False, stt_config=None, livekit={"room_name": "fresh"})
            assert emu.state.rooms["fresh"].owner == "acme"


async def test_handshake_requires_auth_when_tenants_are_configured() -> None:
    options = EmulatorOptions(tenants=(Tenant("acme", "s-acme"),))
    async with open_emulator(options) as emu:
        with pytest.raises(HandshakeRejectedError) as info:
            async with raw(emu):
                pass
        assert info.value.status_code == 401
        assert info.value.error == "missing_auth_header"
        with pytest.raises(HandshakeRejectedError) as info:
            async with raw(emu, headers={"Authorization": "Bearer wrong"}):
                pass
        assert info.value.error == "unauthorized"
        with pytest.raises(HandshakeRejectedError) as info:
            async with raw(emu, headers={"Authorization": "Token s-acme"}):
                pass
        assert info.value.error == "invalid_auth_header"


async def test_second_config_replaces_the_first(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        first = await ws.config(livekit={"room_name": "one"})
        second = await ws.config(livekit={"room_name": "two"}, stream_id="again")
        assert first["livekit_room_name"] == "one"
        assert second["stream_id"] == "again"
        assert second["livekit_room_name"] == "two"
    # Only the last room is deleted at close (§2.5).
    await wait_until(lambda: "two" not in emulator.state.rooms)
    assert "one" in emulator.state.rooms


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ("hello", "Invalid message format: expected value at line 1 column 1"),
        ('{"text":"x"}', "Invalid message format: missing field `type` at line 1 column 12"),
        (
            '{"type":"foo"}',
            "Invalid message format: unknown variant `foo`, expected one of `config`, `speak`, "
            "`clear`, `send_message`, `sip_transfer`, `update_config`, `loading_start`, "
            "`loading_stop` at line 1 column 14",
        ),
        ('{"type":"speak"}', "Invalid message format: missing field `text` at line 1 column 16"),
        (
            '{"type":"send_message","message":"m"}',
            "Invalid message format: missing field `role` at line 1 column 37",
        ),
        (
            '{"type":"config","audio":false,"livekit":{"room_name":"r","enable_recording":null}}',
            "Invalid message format: invalid type: null, expected a boolean at line 1 column 83",
        ),
        (
            '{"type":"config","stt_config":{"provider":"deepgram","language":"en","sample_rate":'
            '16000.0,"channels":1,"punctuation":true,"encoding":"linear16","model":"m"},'
            '"tts_config":{"provider":"deepgram","model":""}}',
            "Invalid message format: invalid type: floating point `16000.0`, expected u32 "
            "at line 1 column 206",
        ),
        (
            '{"type":"config","tts_config":{"provider":"google"},"stt_config":{}}',
            # Fields are checked in input order, as serde visits map entries.
            "Invalid message format: missing field `model` at line 1 column 68",
        ),
    ],
)
async def test_unparsable_frames_answer_invalid_message_format(
    emulator: Emulator, frame: str, message: str
) -> None:
    async with raw(emulator) as ws:
        await ws.send(frame)
        assert await ws.error() == message
        assert await ws.barrier() == []


async def test_every_text_frame_is_logged_raw(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send('{"type":"clear", "extra": [1, 2]}')
        await ws.send("not json")
        await ws.error()
        await ws.send_bytes(b"\x00\x01")
        await ws.error()
        assert list(emulator.state.wire_log) == ['{"type":"clear", "extra": [1, 2]}', "not json"]


# --------------------------------------------------------------------------- before config


async def test_frames_before_config(emulator: Emulator) -> None:
    audio_disabled = "Audio processing is disabled. Send config message with audio=true first."
    async with raw(emulator) as ws:
        await ws.send_bytes(b"\x00\x00" * 160)
        assert await ws.error() == audio_disabled
        await ws.send({"type": "speak", "text": "hi"})
        assert await ws.error() == audio_disabled
        await ws.send({"type": "clear"})
        await ws.send({"type": "loading_stop"})
        await ws.send({"type": "update_config", "turn_detect": {"threshold": 0.25}})
        assert await ws.barrier() == []
        assert emulator.state.turn_threshold == 0.25
        await ws.send({"type": "send_message", "message": "m", "role": "user"})
        assert await ws.error() == (
            "LiveKit client not configured. Send config message with livekit configuration first."
        )
        await ws.send({"type": "sip_transfer", "transfer_to": "12a"})
        assert await ws.json() == {
            "type": "sip_transfer_error",
            "message": "Invalid phone number: Invalid character 'a' at position 2 - only digits "
            "(0-9) and optional leading '+' are allowed",
        }
        await ws.send({"type": "sip_transfer", "transfer_to": "+15551234567"})
        assert await ws.json() == {
            "type": "sip_transfer_error",
            "message": "Room name not available. Ensure LiveKit is configured.",
        }
        await ws.send({"type": "loading_start"})
        assert await ws.error() == "Send a config message first before using loading_start."


# --------------------------------------------------------------------------- TTS


async def test_speak_streams_pcm_then_playback_complete(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "speak", "text": "hello world", "flush": True})
        audio = b""
        while isinstance(frame := await ws.recv(), bytes):
            assert len(frame) <= 24000 * 2 // 10  # tts_chunk_ms = 100 at 24 kHz
            audio += frame
        complete = json.loads(frame)
        assert list(complete) == ["type", "timestamp"]
        assert complete["type"] == "tts_playback_complete"
        assert isinstance(complete["timestamp"], int)
        assert audio == synthesize("hello world", 24000, 20)


async def test_a_speak_into_silence_has_its_first_audio_queued_before_the_next_frame(
    emulator: Emulator,
) -> None:
    # The read loop queues the first chunk itself when nothing plays, so it goes out
    # ahead of the reply to the frame after the speak; the rest keeps its real-time pace.
    text = "x" * 40  # 800 ms at 20 ms a character: 8 chunks of 100 ms
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "speak", "text": text})
        before = await ws.barrier()
        assert before == [synthesize(text, 24000, 20)[: 24000 * 2 // 10]]
        audio = before[0]
        while isinstance(frame := await ws.recv(), bytes):
            audio += frame
        assert audio == synthesize(text, 24000, 20)
        assert json.loads(frame)["type"] == "tts_playback_complete"


async def test_a_speech_of_one_chunk_still_reports_playback_complete(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config()
        for _ in range(2):  # the second one after the queue drained, into silence again
            await ws.send({"type": "speak", "text": "hi"})  # 40 ms: one chunk
            assert await ws.recv() == synthesize("hi", 24000, 20)
            assert (await ws.json())["type"] == "tts_playback_complete"
        assert await ws.barrier() == []


async def test_speech_timings_are_recorded_only_when_asked(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "speak", "text": "hi"})
        assert isinstance(await ws.recv(), bytes)
    assert emulator.state.speech_timings is None  # off by default

    emulator.state.speech_timings = {}
    async with raw(emulator) as silent, raw(emulator) as ws:
        quiet_id = (await silent.config())["stream_id"]
        stream_id = (await ws.config())["stream_id"]
        sent = time.monotonic()
        await ws.send({"type": "speak", "text": "hello world"})
        assert isinstance(await ws.recv(), bytes)
        heard = time.monotonic()
        await ws.send({"type": "speak", "text": "again"})  # only the first one counts
        while isinstance(await ws.recv(), bytes):
            pass
    handled, written = emulator.state.speech_timings[stream_id]
    assert sent <= handled <= written <= heard  # on time.monotonic(), like the clients
    assert all(math.isnan(t) for t in emulator.state.speech_timings[quiet_id])


async def test_speech_is_fifo_with_one_completion_per_drained_queue(emulator: Emulator) -> None:
    first, second = "the first utterance is long enough", "and a second one"
    async with raw(emulator) as ws:
        await ws.config(tts_config={**TTS, "sample_rate": 16000})
        await ws.send({"type": "speak", "text": first})
        await ws.send({"type": "speak", "text": second})
        audio = b""
        while isinstance(frame := await ws.recv(), bytes):
            audio += frame
        assert json.loads(frame)["type"] == "tts_playback_complete"
        assert audio == synthesize(first, 16000, 20) + synthesize(second, 16000, 20)
        assert await ws.barrier() == []


async def test_empty_speak_produces_nothing(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "speak", "text": "   "})
        await ws.send({"type": "speak", "text": ""})
        assert await ws.barrier() == []


async def test_pronunciations_are_applied_before_synthesis(emulator: Emulator) -> None:
    pronunciations = [{"word": "API", "pronunciation": "A P I"}]
    async with raw(emulator) as ws:
        await ws.config(tts_config={**TTS, "pronunciations": pronunciations})
        await ws.send({"type": "speak", "text": "API"})
        audio = b""
        while isinstance(frame := await ws.recv(), bytes):
            audio += frame
        assert audio == synthesize("A P I", 24000, 20)


async def test_clear_drops_queued_and_unsent_speech(emulator: Emulator) -> None:
    long_text = "x" * 100  # 2 s of audio, 20 chunks at real-time pace
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "speak", "text": long_text})
        await ws.send({"type": "speak", "text": long_text})
        first = await ws.recv()
        assert isinstance(first, bytes)
        await ws.send({"type": "clear"})
        before = await ws.barrier()
        received = len(first) + sum(len(f) for f in before if isinstance(f, bytes))
        assert received < len(synthesize(long_text, 24000, 20))
        assert all(isinstance(f, bytes) for f in before)  # no tts_playback_complete
        # The queue works again afterwards.
        await ws.send({"type": "speak", "text": "ok"})
        while isinstance(frame := await ws.recv(), bytes):
            pass
        assert json.loads(frame)["type"] == "tts_playback_complete"


async def test_clear_is_ignored_inside_a_non_interruptible_utterance() -> None:
    options = EmulatorOptions(tts_ms_per_char=10)
    text = "y" * 30  # 300 ms
    async with open_emulator(options) as emu, raw(emu) as ws:
        await ws.config()
        await ws.send({"type": "speak", "text": text, "allow_interruption": False})
        first = await ws.recv()
        assert isinstance(first, bytes)
        await ws.send({"type": "clear"})
        audio = first
        while isinstance(frame := await ws.recv(), bytes):
            audio += frame
        assert audio == synthesize(text, 24000, 10)
        assert json.loads(frame)["type"] == "tts_playback_complete"


async def test_first_tts_audio_comes_after_the_configured_provider_latency() -> None:
    options = EmulatorOptions(tts_first_audio_ms=150, tts_chunk_ms=20, tts_ms_per_char=10)
    async with open_emulator(options) as emu, raw(emu) as ws:
        await ws.config()
        spoke = trio.current_time()
        await ws.send({"type": "speak", "text": "hello"})  # 50 ms of audio
        first = await ws.recv()
        assert trio.current_time() - spoke >= 0.150
        audio = [first]
        while isinstance(frame := await ws.recv(), bytes):
            audio.append(frame)
        assert b"".join(audio) == synthesize("hello", 24000, 10)
        assert len(audio) == 3  # 20 ms chunks
        assert json.loads(frame)["type"] == "tts_playback_complete"


async def test_speak_and_clear_in_a_data_only_session(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send({"type": "config", "audio": False, "livekit": {"room_name": "d"}})
        await ws.json()
        await ws.send({"type": "clear"})
        await ws.send({"type": "speak", "text": "hi"})
        assert await ws.error() == (
            "Audio processing is disabled. Send config message with audio=true first."
        )


async def test_after_a_failed_config_the_voice_manager_is_missing(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send(
            {"type": "config", "stt_config": {**STT, "provider": "nope"}, "tts_config": TTS}
        )
        assert await ws.error() == "Unsupported provider: nope"
        await ws.send({"type": "speak", "text": "hi"})
        assert await ws.error() == (
            "Voice manager not configured. Send config message with audio=true first."
        )


# --------------------------------------------------------------------------- STT


async def test_audio_in_yields_interim_then_final_transcripts(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config()
        for _ in range(4):  # 400 ms: nothing yet
            await ws.send_bytes(b"\x00\x00" * 1600)
        assert await ws.barrier() == []
        await ws.send_bytes(b"\x00\x00" * 1600)  # 500 ms: interim
        assert await ws.text() == (
            '{"type":"stt_result","transcript":"hello","is_final":false,'
            '"is_speech_final":false,"confidence":0.8}'
        )
        await ws.send_bytes(b"\x00\x00" * 8000)  # 1000 ms: final
        assert await ws.text() == (
            '{"type":"stt_result","transcript":"hello there","is_final":true,'
            '"is_speech_final":true,"confidence":0.95}'
        )


async def test_numbered_finals_cycle_the_script() -> None:
    options = EmulatorOptions(numbered=True, script=("one two", "three"))
    async with open_emulator(options) as emu, raw(emu) as ws:
        # 8 kHz stereo: 32000 bytes per second.
        await ws.config(stt_config={**STT, "sample_rate": 8000, "channels": 2})
        await ws.send_bytes(b"\x00" * 32000 * 3)  # three utterances in one frame
        results = [await ws.json() for _ in range(6)]
        assert [(r["transcript"], r["is_final"]) for r in results] == [
            ("one", False),
            ("1: one two", True),
            ("three", False),
            ("2: three", True),
            ("one", False),
            ("3: one two", True),
        ]


# --------------------------------------------------------------------------- LiveKit


async def test_room_events_and_close_without_status_code(emulator: Emulator) -> None:
    state = emulator.state
    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "call"})
        state.join("call", "caller", name="Caller", kind="SIP", tracks=("TR_a",))
        connected = await ws.json()
        assert list(connected["participant"]) == ["identity", "name", "room", "timestamp"]
        assert connected["type"] == "participant_connected"
        assert connected["participant"]["identity"] == "caller"
        assert connected["participant"]["name"] == "Caller"
        assert connected["participant"]["room"] == "call"
        track = await ws.json()
        assert track["type"] == "track_subscribed"
        assert track["track"]["track_sid"] == "TR_a"
        assert track["track"]["track_kind"] == "audio"
        state.publish_data("call", "caller", "héllo".encode())
        message = await ws.json()
        assert list(message["message"]) == ["message", "identity", "topic", "room", "timestamp"]
        assert message["message"]["message"] == "héllo"
        assert message["message"]["topic"] == "default"
        assert message["message"]["room"] == "livekit"
        state.publish_data("call", "server", b"\xff\x00", topic="bin")
        binary = (await ws.json())["message"]
        assert "message" not in binary
        assert binary["data"] == base64.b64encode(b"\xff\x00").decode()
        assert binary["identity"] == "server"
        assert binary["topic"] == "bin"
        state.leave("call", "caller")
        frames, closed = await ws.until_closed()
        assert [json.loads(f)["type"] for f in frames] == ["participant_disconnected"]
        assert closed.code == 1005
    assert "call" not in state.rooms


async def test_empty_participant_name_is_sent(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config(audio=False, stt_config=None, livekit={"room_name": "n"})
        emulator.state.join("n", "anon", tracks=("TR_x",))
        connected = await ws.json()
        assert connected["participant"]["name"] == ""
        # No track_subscribed in audio:false sessions.
        assert await ws.barrier() == []


async def test_listen_participants_filters_data_packets(emulator: Emulator) -> None:
    state = emulator.state
    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "f", "listen_participants": ["alice"]})
        state.join("f", "alice")
        state.join("f", "bob")
        assert [(await ws.json())["type"] for _ in range(2)] == ["participant_connected"] * 2
        state.publish_data("f", "bob", b"from bob")
        state.publish_data("f", "alice", b"from alice")
        state.publish_data("f", "server", b"from server")
        texts = [(await ws.json())["message"]["message"] for _ in range(2)]
        assert texts == ["from alice", "from server"]


async def test_livekit_tts_goes_to_the_room(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "tts-room"})
        await ws.send({"type": "speak", "text": "hi"})
        complete = await ws.json()  # no binary frame before it
        assert complete["type"] == "tts_playback_complete"
        assert emulator.state.rooms["tts-room"].published_audio_bytes == len(
            synthesize("hi", 24000, 20)
        )


async def test_send_message_publishes_to_the_room(emulator: Emulator) -> None:
    seen: list[Any] = []
    async with raw(emulator) as ws:
        await ws.config(audio=False, stt_config=None, livekit={"room_name": "pub"})
        emulator.state.rooms["pub"].listeners.append(seen.append)
        await ws.send({"type": "send_message", "message": "hi", "role": "user"})
        await ws.send(
            {"type": "send_message", "message": "m", "role": "bot", "topic": "t", "debug": [1]}
        )
        assert await ws.barrier() == []  # not echoed back, no ack
    assert list(emulator.state.published_messages) == [
        {
            "room": "pub",
            "identity": "sayna-ai",
            "topic": "messages",
            "payload": '{"message":"hi","role":"user","debug":null}',
        },
        {
            "room": "pub",
            "identity": "sayna-ai",
            "topic": "t",
            "payload": '{"message":"m","role":"bot","debug":[1]}',
        },
    ]
    assert [event.payload["topic"] for event in seen] == ["messages", "t"]


async def test_room_is_deleted_even_if_it_existed_before(emulator: Emulator) -> None:
    emulator.state.create_room("old")
    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "old", "enable_recording": True}, stream_id="rec")
        assert emulator.state.rooms["old"].active_recording
    await wait_until(lambda: "old" not in emulator.state.rooms)
    assert emulator.state.recordings["rec"].startswith(b"OggS")


async def test_the_recordings_kept_are_bounded_the_oldest_dropped() -> None:
    async with open_emulator(state=EmulatorState(wire_log_size=2)) as emulator:
        for n in range(4):
            async with raw(emulator) as ws:
                await ws.config(
                    livekit={"room_name": f"r{n}", "enable_recording": True}, stream_id=f"rec{n}"
                )
            await wait_until(lambda n=n: f"r{n}" not in emulator.state.rooms)
    assert list(emulator.state.recordings) == ["rec2", "rec3"]


# --------------------------------------------------------------------------- SIP transfer


async def test_sip_transfer_sequence(emulator: Emulator) -> None:
    state = emulator.state

    async def sip_error(ws: Raw, transfer_to: str) -> str:
        await ws.send({"type": "sip_transfer", "transfer_to": transfer_to})
        frame = await ws.json()
        assert frame["type"] == "sip_transfer_error", frame
        return str(frame["message"])

    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "sip-room"})
        assert await sip_error(ws, "  ") == "Invalid phone number: Phone number cannot be empty"
        assert await sip_error(ws, "+") == (
            "Invalid phone number: Phone number must contain at least one digit"
        )
        assert await sip_error(ws, "1+2") == (
            "Invalid phone number: Invalid character '+' at position 1 - "
            "plus sign is only allowed at the beginning"
        )
        assert await sip_error(ws, "+1555") == "No SIP participant found in room to transfer"
        state.join("sip-room", "sip_caller", kind="SIP")
        await ws.json()  # participant_connected
        await ws.send({"type": "sip_transfer", "transfer_to": " +15551234567 "})
        assert await ws.barrier() == []
        assert list(state.transfers) == [
            {
                "room_name": "sip-room",
                "participant_identity": "sip_caller",
                "transfer_to": "tel:+15551234567",
            }
        ]
        state.delete_room("sip-room")
        assert await sip_error(ws, "+1555") == "SIP transfer failed: Room not found"


async def test_sip_transfer_tenant_and_configuration_checks() -> None:
    options = EmulatorOptions(tenants=(Tenant("acme", "s-acme"),))
    async with open_emulator(options) as emu, raw(emu, query="api_key=s-acme") as ws:
        await ws.config(livekit={"room_name": "mine"})
        emu.state.rooms["mine"].metadata["auth_id"] = "someone-else"
        await ws.send({"type": "sip_transfer", "transfer_to": "+1555"})
        assert (await ws.json())["message"] == "SIP transfer failed: Room not accessible"
    async with open_emulator(EmulatorOptions(sip=False)) as emu, raw(emu) as ws:
        await ws.config(livekit={"room_name": "r"})
        await ws.send({"type": "sip_transfer", "transfer_to": "+1555"})
        assert (await ws.json())["message"] == (
            "LiveKit client not configured. Send config message with livekit configuration first."
        )


# --------------------------------------------------------------------------- update_config


@pytest.mark.parametrize(("threshold", "shown"), [(1.5, "1.5"), (2, "2"), (-0.25, "-0.25")])
async def test_update_config_threshold_range(
    emulator: Emulator, threshold: float, shown: str
) -> None:
    async with raw(emulator) as ws:
        await ws.send({"type": "update_config", "turn_detect": {"threshold": threshold}})
        assert await ws.error() == (
            f"Invalid turn detection threshold: {shown}. Must be between 0.0 and 1.0"
        )


async def test_update_config_is_silent_on_success(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "update_config", "vad": {"silence_duration_ms": 500}})
        await ws.send({"type": "update_config", "turn_detect": {"threshold": 1}})
        await ws.send({"type": "update_config", "turn_detect": {"threshold": None}})
        assert await ws.barrier() == []
        assert emulator.state.turn_threshold == 1.0


# --------------------------------------------------------------------------- loading audio


def clip(ms: int, rate: int = 16000) -> str:
    return base64.b64encode(wav_bytes(b"\x00\x00" * (rate * ms // 1000), rate)).decode()


async def test_loading_start_checks_in_order(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.config(audio=False, stt_config=None, livekit={"room_name": "la"})
        await ws.send({"type": "loading_start"})
        assert await ws.error() == (
            "Loading indicator requires audio to be enabled. Send a config message with audio=true."
        )
    async with raw(emulator) as ws:
        await ws.config()
        await ws.send({"type": "loading_start"})
        assert await ws.error() == (
            "Loading indicator requires a LiveKit room. "
            "Include a livekit configuration in your config message."
        )
    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "lb"})
        await ws.send({"type": "loading_start"})
        assert await ws.error() == "no loading audio configured"
    async with raw(emulator) as ws:
        await ws.config(livekit={"room_name": "lc"}, loading_audio={"data": clip(500)})
        await ws.send({"type": "loading_start"})
        await ws.send({"type": "loading_start"})  # idempotent
        await ws.send({"type": "loading_stop"})
        await ws.send({"type": "loading_stop"})
        assert await ws.barrier() == []


async def test_loading_audio_problems_are_non_fatal_and_replayed(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send(
            {
                "type": "config",
                "stt_config": STT,
                "tts_config": TTS,
                "livekit": {"room_name": "ld"},
                "loading_audio": {"data": clip(100)},
            }
        )
        too_short = "loading_audio is too short; the minimum duration is 250 ms"
        assert await ws.error() == too_short
        assert (await ws.json())["type"] == "ready"
        await ws.send({"type": "loading_start"})
        assert await ws.error() == too_short


async def test_loading_audio_needs_audio_and_livekit(emulator: Emulator) -> None:
    async with raw(emulator) as ws:
        await ws.send(
            {
                "type": "config",
                "audio": False,
                "livekit": {"room_name": "le"},
                "loading_audio": {"data": clip(500)},
            }
        )
        assert await ws.error() == (
            "loading_audio requires audio to be enabled and a livekit configuration"
        )
        assert (await ws.json())["type"] == "ready"


async def test_loading_start_without_an_active_room() -> None:
    options = EmulatorOptions(tenants=(Tenant("acme", "s-acme"), Tenant("b", "s-b")))
    async with open_emulator(options) as emu:
        emu.state.create_room("busy", owner="b")
        async with raw(emu, query="api_key=s-acme") as ws:
            await ws.send(
                {
                    "type": "config",
                    "stt_config": STT,
                    "tts_config": TTS,
                    "livekit": {"room_name": "busy"},
                    "loading_audio": {"data": clip(500)},
                }
            )
            assert (await ws.error()).startswith("Access denied")
            await ws.send({"type": "loading_start"})
            assert await ws.error() == (
                "loading indicator requires an active LiveKit connection; connect to a room first"
            )


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"data": "not base64!"}, "loading_audio.data is not valid base64"),
        ({"data": "AAA"}, "loading_audio.data is not valid base64"),
        (
            {"data": "A" * 2_600_000},
            "loading_audio.data decoded audio would exceed the maximum size of 1924096 bytes",
        ),
        ({"data": clip(500), "format": "mp3"}, 'loading_audio.format must be "wav" or "pcm"'),
        (
            {"data": base64.b64encode(b"\x00" * 16000).decode()},
            "sample_rate is required for raw PCM loading_audio",
        ),
        (
            {"data": base64.b64encode(b"\x00" * 16001).decode(), "sample_rate": 16000},
            "loading_audio raw PCM length is not frame-aligned",
        ),
        (
            {
                "data": base64.b64encode(b"\x00" * 16002).decode(),
                "sample_rate": 16000,
                "channels": 3,
            },
            "loading_audio supports mono or stereo only",
        ),
        (
            {"data": base64.b64encode(b"\x00" * 16000).decode(), "sample_rate": 4000},
            "loading_audio sample rate must be between 8000 Hz and 48000 Hz",
        ),
        (
            {"data": base64.b64encode(b"\x00" * 32000 * 11).decode(), "sample_rate": 16000},
            "loading_audio is too long; the maximum duration is 10000 ms",
        ),
        (
            {"data": base64.b64encode(b"RIFF\x00\x00\x00\x00WAVEjunk").decode(), "format": "WAV "},
            "loading_audio is not a valid WAV file: no fmt chunk found",
        ),
        ({"data": clip(500), "format": "pcm", "sample_rate": 16000}, None),
        ({"data": base64.b64encode(b"\x00" * 16000).decode(), "sample_rate": 16000}, None),
    ],
)
def test_loading_audio_rules(fields: dict[str, Any], problem: str | None) -> None:
    assert loading_audio_problem(LoadingAudio(**fields)) == problem


def test_loading_audio_rejects_8_bit_wav() -> None:
    wav = bytearray(wav_bytes(b"\x00" * 16000, 16000))
    wav[34:36] = (8).to_bytes(2, "little")  # bits per sample
    data = base64.b64encode(bytes(wav)).decode()
    assert loading_audio_problem(LoadingAudio(data=data)) == (
        "loading_audio: only 16-bit PCM is supported; please provide 16-bit PCM audio"
    )


# --------------------------------------------------------------------------- chaos


async def test_chaos_garbage_frames() -> None:
    async with open_emulator(EmulatorOptions(chaos=Chaos(garbage_every=2))) as emu, raw(emu) as ws:
        await ws.send({"type": "config", "stt_config": STT, "tts_config": TTS})
        assert (await ws.json())["type"] == "ready"  # frame 1
        await ws.send(BARRIER)
        garbage = await ws.text()  # before frame 2
        with pytest.raises(json.JSONDecodeError):
            json.loads(garbage)
        assert await ws.text() == BARRIER_REPLY


async def test_chaos_drop_after_frames() -> None:
    options = EmulatorOptions(chaos=Chaos(drop_after_frames=2))
    async with open_emulator(options) as emu, raw(emu) as ws:
        await ws.config()
        await ws.send(BARRIER)
        frames, closed = await ws.until_closed()
        assert frames == [BARRIER_REPLY]
        assert closed.code == 1011


async def test_chaos_latency() -> None:
    options = EmulatorOptions(chaos=Chaos(latency_s=0.05))
    async with open_emulator(options) as emu, raw(emu) as ws:
        start = trio.current_time()
        await ws.config()
        await ws.barrier()
        assert trio.current_time() - start >= 0.1


async def test_chaos_refused_handshake() -> None:
    async with open_emulator(EmulatorOptions(chaos=Chaos(refuse_handshake=503))) as emu:
        with pytest.raises(HandshakeRejectedError) as info:
            async with raw(emu):
                pass
        assert info.value.status_code == 503


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.5, "1.5"), (2.0, "2"), (1.1, "1.1"), (-0.5, "-0.5"), (1e10, "10000000000"), (0.0, "0")],
)
def test_rust_f32_display(value: float, text: str) -> None:
    assert rust_f32_display(value) == text


def test_decode_client_frame_rejects_out_of_range_integers() -> None:
    frame = compact({"type": "config", "stt_config": {**STT, "channels": 70000}, "tts_config": TTS})
    with pytest.raises(FrameDecodeError) as info:
        decode_client_frame(frame)
    assert info.value.detail.startswith("invalid value: integer `70000`, expected u16 at line 1")

"""open_session / Session end to end: against the emulator, and against scripted servers
for the close codes and frames the emulator never produces.

What saynad puts on the wire is read back from ``emulator.state.wire_log``. To know the
emulator has handled every earlier frame, tests send a *barrier*: an ``update_config``
with an out-of-range threshold, whose ``error`` reply comes after everything sent
before it (the server handles a connection's frames strictly in order).
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import sys
from contextlib import AbstractAsyncContextManager
from functools import partial

import pytest
import trio
import trio_websocket
import trustme
from structlog.testing import capture_logs

from saynad.client.session import (
    Session,
    SessionEvent,
    is_fatal_config_error,
    open_session,
)
from saynad.emulator import Chaos, Emulator, EmulatorOptions, Tenant, open_emulator
from saynad.emulator.audio import synthesize, wav_bytes
from saynad.errors import (
    ConnectionClosedError,
    HandshakeRejectedError,
    ReadyTimeoutError,
    SessionClosedError,
    SessionConfigError,
    TransportError,
    ValidationError,
)
from saynad.protocol.messages import (
    ApiKeyAuth,
    AudioFrame,
    ClearFrame,
    ConfigFrame,
    Error,
    LiveKitConfig,
    LoadingAudioConfig,
    LoadingStartFrame,
    LoadingStopFrame,
    Message,
    ParticipantConnected,
    ParticipantDisconnected,
    Pronunciation,
    Ready,
    RoomMessage,
    SendMessageFrame,
    SessionCommand,
    SipTransferError,
    SipTransferFrame,
    SpeakFrame,
    STTConfig,
    STTResult,
    TrackSubscribed,
    TTSAudio,
    TTSConfig,
    TTSPlaybackComplete,
    TurnDetectSettings,
    UpdateConfigFrame,
    VadSettings,
)
from tests.support.samples import STT_CONFIG, TTS_CONFIG
from tests.support.wspeer import Script, ScriptedPeer, ws_server
from tests.timing import HANG_S

STT = STT_CONFIG
TTS = TTS_CONFIG
MINIMAL_CONFIG = (
    '{"type":"config","stt_config":{"provider":"deepgram","language":"en-US","sample_rate":'
    '16000,"channels":1,"punctuation":true,"encoding":"linear16","model":"nova-3"},'
    '"tts_config":{"provider":"deepgram","model":"aura-asteria-en"}}'
)
FULL_CONFIG = (
    '{"type":"config","stream_id":"call-2024-0001","audio":true,"stt_config":{"provider":'
    '"deepgram","language":"en-US","sample_rate":24000,"channels":1,"punctuation":true,'
    '"encoding":"linear16","model":"nova-3"},"tts_config":{"provider":"elevenlabs","model":'
    '"eleven_multilingual_v2","voice_id":"21m00Tcm4TlvDq8ikWAM","speaking_rate":1.0,'
    '"audio_format":"linear16","sample_rate":24000,"pronunciations":[{"word":"API",'
    '"pronunciation":"A P I"}],"auth":{"api_key":"el-session-key"}},"livekit":{"room_name":'
    '"call-2024-0001","enable_recording":false,"sayna_participant_identity":"sayna-ai",'
    '"sayna_participant_name":"Sayna AI","listen_participants":[]}}'
)
BARRIER_PREFIX = "Invalid turn detection threshold: 9. "
READY_FRAME = '{"type":"ready","stream_id":"s","livekit_url":"http://localhost:7880"}'


async def barrier(session: Session) -> list[SessionEvent]:
    """Events received before the reply to a barrier frame."""
    await session.update_config(turn_detect=TurnDetectSettings(threshold=9.0))
    seen: list[SessionEvent] = []
    with trio.fail_after(HANG_S):
        async for event in session.events():
            if isinstance(event, Error) and event.message.startswith(BARRIER_PREFIX):
                return seen
            seen.append(event)
    raise AssertionError(f"the session ended before the barrier; saw {seen}")


async def next_event(session: Session) -> SessionEvent:
    with trio.fail_after(HANG_S):
        return await session.events().__anext__()


def wire(emulator: Emulator) -> list[str]:
    """Frames saynad sent, barrier frames left out."""
    return [f for f in emulator.state.wire_log if '"threshold":9.0' not in f]


@pytest.fixture(autouse=True)
def _no_api_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAYNA_API_KEY", raising=False)


# --------------------------------------------------------------------------- config and ready


async def test_minimal_config_is_the_reference_example(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        assert wire(emulator) == [MINIMAL_CONFIG]
        ready = session.ready
        assert ready.livekit_room_name is None
        assert ready.livekit_url == "http://localhost:7880"
        assert ready.sayna_participant_identity is None
        assert ready.sayna_participant_name is None
        assert session.stream_id == ready.stream_id
        assert len(session.stream_id) == 36
        assert session.url == emulator.ws_url


async def test_full_config_and_ready_with_livekit() -> None:
    options = EmulatorOptions(livekit_url="wss://livekit.example.com")
    async with (
        open_emulator(options) as emu,
        open_session(
            emu.url,
            stream_id="call-2024-0001",
            audio=True,
            stt=STTConfig(
                provider="deepgram",
                language="en-US",
                sample_rate=24000,
                channels=1,
                punctuation=True,
                encoding="linear16",
                model="nova-3",
            ),
            tts=TTSConfig(
                provider="elevenlabs",
                model="eleven_multilingual_v2",
                voice_id="21m00Tcm4TlvDq8ikWAM",
                speaking_rate=1.0,
                audio_format="linear16",
                sample_rate=24000,
                pronunciations=(Pronunciation(word="API", pronunciation="A P I"),),
                auth=ApiKeyAuth(api_key="el-session-key"),
            ),
            livekit=LiveKitConfig(
                room_name="call-2024-0001",
                enable_recording=False,
                sayna_participant_identity="sayna-ai",
                sayna_participant_name="Sayna AI",
                listen_participants=(),
            ),
        ) as session,
    ):
        assert wire(emu) == [FULL_CONFIG]
        assert session.ready == Ready(
            stream_id="call-2024-0001",
            livekit_room_name="call-2024-0001",
            livekit_url="wss://livekit.example.com",
            sayna_participant_identity="sayna-ai",
            sayna_participant_name="Sayna AI",
        )
        assert session.stream_id == "call-2024-0001"


async def test_data_only_session(emulator: Emulator) -> None:
    async with open_session(
        emulator.ws_url, audio=False, livekit=LiveKitConfig(room_name="chat-42")
    ) as session:
        assert wire(emulator) == [
            '{"type":"config","audio":false,"livekit":{"room_name":"chat-42"}}'
        ]
        assert session.ready.livekit_room_name == "chat-42"
        assert session.ready.sayna_participant_identity == "sayna-ai"


async def test_every_command_on_the_wire(emulator: Emulator) -> None:
    async with open_session(
        emulator.url, stt=STT, tts=TTS, livekit=LiveKitConfig(room_name="cmd")
    ) as session:
        await session.speak("Hello")
        await session.speak("Hi", flush=False, allow_interruption=False)
        await session.clear()
        await session.tts_flush()
        await session.tts_flush(allow_interruption=False)
        await session.send_message("hi", "user")
        await session.send_message("m", "assistant", topic="chat", debug={"step": 1})
        await session.sip_transfer("  +15551234567 ")
        await session.update_config()
        await session.update_config(
            vad=VadSettings(silence_duration_ms=300), turn_detect=TurnDetectSettings(threshold=0.5)
        )
        await session.loading_start()
        await session.loading_stop()
        await barrier(session)
        assert wire(emulator)[1:] == [
            '{"type":"speak","text":"Hello","flush":true,"allow_interruption":true}',
            '{"type":"speak","text":"Hi","flush":false,"allow_interruption":false}',
            '{"type":"clear"}',
            '{"type":"speak","text":"","flush":true,"allow_interruption":true}',
            '{"type":"speak","text":"","flush":true,"allow_interruption":false}',
            '{"type":"send_message","message":"hi","role":"user"}',
            '{"type":"send_message","message":"m","role":"assistant","topic":"chat",'
            '"debug":{"step":1}}',
            '{"type":"sip_transfer","transfer_to":"+15551234567"}',
            '{"type":"update_config"}',
            '{"type":"update_config","vad":{"silence_duration_ms":300},'
            '"turn_detect":{"threshold":0.5}}',
            '{"type":"loading_start"}',
            '{"type":"loading_stop"}',
        ]
        assert session.stats.out_by_kind["speak"] == 4
        assert session.stats.out_by_kind["config"] == 1


async def test_send_takes_the_frames_and_writes_what_the_methods_write(
    emulator: Emulator,
) -> None:
    frames: list[SessionCommand] = [
        SpeakFrame(text="Hello"),
        SpeakFrame(text="Hi", flush=False, allow_interruption=False),
        ClearFrame(),
        SendMessageFrame(message="m", role="assistant", topic="chat", debug={"step": 1}),
        SipTransferFrame(transfer_to="+15551234567"),
        UpdateConfigFrame(turn_detect=TurnDetectSettings(threshold=0.5)),
        LoadingStartFrame(),
        LoadingStopFrame(),
    ]
    async with open_session(
        emulator.url, stt=STT, tts=TTS, livekit=LiveKitConfig(room_name="cmd")
    ) as session:
        await session.speak("Hello")
        await session.speak("Hi", flush=False, allow_interruption=False)
        await session.clear()
        await session.send_message("m", "assistant", topic="chat", debug={"step": 1})
        await session.sip_transfer("+15551234567")
        await session.update_config(turn_detect=TurnDetectSettings(threshold=0.5))
        await session.loading_start()
        await session.loading_stop()
        for frame in frames:
            await session.send(frame)
        await session.send(AudioFrame(b"\x01\x00" * 320))
        await session.send(AudioFrame(bytearray(b"\x01\x00" * 160)))  # type: ignore[arg-type]
        await barrier(session)
        sent = wire(emulator)[1:]
        assert sent[: len(frames)] == sent[len(frames) :]
        assert len(sent) == 2 * len(frames)
        stats = session.stats
        assert stats.out_by_kind["speak"] == 4
        assert stats.out_by_kind["audio"] == 2
        assert stats.out_by_kind["config"] == 1
        # config is open_session's to send, once; anything else is not a command.
        with pytest.raises(ValidationError):
            await session.send(ConfigFrame())  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            await session.send(TTSAudio(b"\x00\x00"))  # type: ignore[arg-type]
        before = stats.frames_out
    assert stats.frames_out == before
    with pytest.raises(SessionClosedError):
        await session.send(AudioFrame(b"\x00\x00"))


@pytest.mark.parametrize("transport", ["wsproto", "trio-websocket"])
async def test_transport_is_chosen_by_open_session(emulator: Emulator, transport: str) -> None:
    async with open_session(
        emulator.url,
        stt=STT,
        tts=TTS,
        transport=transport,  # type: ignore[arg-type]
    ) as session:
        kind = type(session._transport).__name__
        assert kind == ("WsprotoTransport" if transport == "wsproto" else "_TrioWebSocketTransport")
        await session.speak("Hi")
        with trio.fail_after(HANG_S):
            async for event in session.events():
                if isinstance(event, TTSPlaybackComplete):
                    break
    with pytest.raises(ValidationError):
        async with open_session(emulator.url, stt=STT, tts=TTS, transport="aiohttp"):  # type: ignore[arg-type]
            pass


async def test_api_key_argument_and_environment() -> None:
    options = EmulatorOptions(tenants=(Tenant("acme", "s-acme"),))
    async with open_emulator(options) as emu:
        with pytest.raises(HandshakeRejectedError) as info:
            async with open_session(emu.url, stt=STT, tts=TTS):
                pass
        assert info.value.status_code == 401
        assert info.value.error == "missing_auth_header"
        assert '"message":"Missing authentication token' in info.value.body
        with pytest.raises(HandshakeRejectedError) as info:
            async with open_session(emu.url, stt=STT, tts=TTS, api_key="wrong"):
                pass
        assert info.value.error == "unauthorized"
        async with open_session(emu.url, stt=STT, tts=TTS, api_key="s-acme") as session:
            assert session.ready.stream_id
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SAYNA_API_KEY", "s-acme")
            async with open_session(emu.url, stt=STT, tts=TTS) as session:
                assert session.ready.stream_id


# --------------------------------------------------------------------------- events


async def test_speak_yields_audio_then_playback_complete(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        await session.speak("hello world")
        audio = b""
        with trio.fail_after(HANG_S):
            async for event in session.events():
                if isinstance(event, TTSAudio):
                    audio += event.data
                else:
                    assert isinstance(event, TTSPlaybackComplete)
                    assert event.timestamp > 1_600_000_000_000
                    break
        assert audio == synthesize("hello world", 24000, 20)
        assert session.stats.in_by_kind["tts_audio"] == len(audio) // 4800 + 1
        assert session.stats.in_by_kind["tts_playback_complete"] == 1


async def test_send_audio_yields_interim_and_final_transcripts(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        for _ in range(10):
            await session.send_audio(b"\x00\x00" * 1600)  # 100 ms
        await session.send_audio(bytearray(b"\x00\x00" * 16000))
        events = [await next_event(session) for _ in range(4)]
        assert events == [
            STTResult(transcript="hello", is_final=False, is_speech_final=False, confidence=0.8),
            STTResult(
                transcript="hello there", is_final=True, is_speech_final=True, confidence=0.95
            ),
            STTResult(
                transcript="I would like to", is_final=False, is_speech_final=False, confidence=0.8
            ),
            STTResult(
                transcript="I would like to check my order",
                is_final=True,
                is_speech_final=True,
                confidence=0.95,
            ),
        ]
        assert session.stats.out_by_kind["audio"] == 11
        assert session.stats.bytes_out >= 64000


async def test_room_events_then_normal_end(emulator: Emulator) -> None:
    state = emulator.state
    async with open_session(
        emulator.url, stt=STT, tts=TTS, livekit=LiveKitConfig(room_name="room-1")
    ) as session:
        state.join("room-1", "caller", name="Caller", kind="SIP", tracks=("TR_1",))
        connected = await next_event(session)
        assert isinstance(connected, ParticipantConnected)
        assert connected.participant.identity == "caller"
        assert connected.participant.name == "Caller"
        assert connected.participant.room == "room-1"
        subscribed = await next_event(session)
        assert isinstance(subscribed, TrackSubscribed)
        assert subscribed.track.track_sid == "TR_1"
        state.publish_data("room-1", "caller", b"hello agent", topic="chat")
        state.publish_data("room-1", "caller", b"\xfe\xff")
        text, binary = await next_event(session), await next_event(session)
        assert isinstance(text, Message)
        assert isinstance(binary, Message)
        assert text.message == RoomMessage(
            message="hello agent",
            identity="caller",
            topic="chat",
            room="livekit",
            timestamp=text.message.timestamp,
        )
        assert binary.message.message is None
        assert binary.message.data == base64.b64encode(b"\xfe\xff").decode()
        assert binary.message.topic == "default"
        state.leave("room-1", "caller")
        rest: list[SessionEvent] = []
        with trio.fail_after(HANG_S):
            async for event in session.events():  # ends without raising (close 1005)
                rest.append(event)
        assert [type(e) for e in rest] == [ParticipantDisconnected]
        # Once ended, it stays ended.
        assert [e async for e in session.events()] == []
    assert "room-1" not in state.rooms


async def test_error_frames_do_not_end_the_session(emulator: Emulator) -> None:
    async with open_session(
        emulator.url, audio=False, livekit=LiveKitConfig(room_name="errs")
    ) as session:
        await session.speak("no audio here")
        await session.send_audio(b"\x00\x00")
        await session.sip_transfer("12ab")
        await session.sip_transfer("+15551234567")
        events = await barrier(session)
        assert events == [
            Error(
                message="Audio processing is disabled. Send config message with audio=true first."
            ),
            Error(
                message="Audio processing is disabled. Send config message with audio=true first."
            ),
            SipTransferError(
                message="Invalid phone number: Invalid character 'a' at position 2 - only digits "
                "(0-9) and optional leading '+' are allowed"
            ),
            SipTransferError(message="No SIP participant found in room to transfer"),
        ]
        emulator.state.join("errs", "pstn", kind="SIP")
        assert isinstance(await next_event(session), ParticipantConnected)
        await session.sip_transfer("+15551234567")
        await session.send_message("still alive", "assistant")
        assert await barrier(session) == []
        assert emulator.state.transfers[-1]["transfer_to"] == "tel:+15551234567"
        assert emulator.state.published_messages[-1]["payload"] == (
            '{"message":"still alive","role":"assistant","debug":null}'
        )


async def test_garbage_frames_are_counted_logged_and_skipped() -> None:
    async with open_emulator(EmulatorOptions(chaos=Chaos(garbage_every=2))) as emu:
        async with open_session(emu.url, stt=STT, tts=TTS) as session:
            with capture_logs() as logs:
                await session.send_audio(b"\x00\x00" * 8000)  # 500 ms: one interim
                interim = await next_event(session)
                events = await barrier(session)
        assert isinstance(interim, STTResult)
        assert events == []
        assert session.stats.malformed >= 1
        assert session.stats.unknown_types == 0
        warnings = [entry for entry in logs if entry["event"] == "ignored undecodable frame"]
        assert len(warnings) == session.stats.malformed
        assert warnings[0]["kind"] == "not_json"
        assert warnings[0]["log_level"] == "warning"


async def test_chaos_drop_raises_connection_closed() -> None:
    options = EmulatorOptions(chaos=Chaos(drop_after_frames=1))
    async with open_emulator(options) as emu, open_session(emu.url, stt=STT, tts=TTS) as session:
        with pytest.raises(ConnectionClosedError) as info:
            await next_event(session)
        assert info.value.code == 1011
        # Still ended on the next attempt, with the same code.
        with pytest.raises(ConnectionClosedError) as again:
            await next_event(session)
        assert again.value.code == 1011
        with pytest.raises(ConnectionClosedError):
            await session.speak("too late")


# --------------------------------------------------------------------------- failures before ready


async def test_fatal_config_error_raises_session_config_error(emulator: Emulator) -> None:
    bad = TTSConfig(provider="polly", model="")
    with pytest.raises(SessionConfigError) as info:
        async with open_session(emulator.url, stt=STT, tts=bad):
            pytest.fail("the block must not run")
    assert info.value.server_message == "Unsupported provider: polly"


async def test_non_fatal_errors_before_ready_come_first(emulator: Emulator) -> None:
    clip = base64.b64encode(wav_bytes(b"\x00\x00" * 8000, 16000)).decode()
    async with open_session(
        emulator.url,
        audio=False,
        livekit=LiveKitConfig(room_name="pre"),
        loading_audio=LoadingAudioConfig(data=clip),
    ) as session:
        first = await next_event(session)
        assert first == Error(
            message="loading_audio requires audio to be enabled and a livekit configuration"
        )
        assert await barrier(session) == []


@pytest.mark.parametrize(
    ("message", "fatal"),
    [
        ("STT configuration is required when audio=true", True),
        ("Unsupported provider: x", True),
        ("Invalid auth input for provider deepgram: …", True),
        ("Missing server auth for provider deepgram: …", True),
        ("Timeout waiting for voice providers to be ready", True),
        ("Access denied: room 'r' belongs to a different tenant", True),
        ("Failed to connect to LiveKit room: Timeout", True),
        ("Invalid message format: missing field `model` at line 1 column 9", True),
        ("Failed to set up TTS completion callback: x", True),
        ("Failed to set up TTS audio callback: x", False),
        ("STT streaming error: upstream closed", False),
        ("TTS error: quota", False),
        ("loading_audio is too short; the minimum duration is 250 ms", False),
        ("loading_audio requires audio to be enabled and a livekit configuration", False),
    ],
)
def test_fatal_error_classification(message: str, fatal: bool) -> None:
    assert is_fatal_config_error(message) is fatal


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # audio enabled by default: stt and tts required
        {"stt": STT},
        {"tts": TTS, "audio": True},
        {"stt": STT, "tts": TTS, "audio": "yes"},
        {"stt": TTS, "tts": TTS},
        {"audio": False, "livekit": "room"},
        {"audio": False, "loading_audio": LoadingAudioConfig(data="")},
        {"stt": STT, "tts": TTS, "ready_timeout_s": 0},
    ],
)
async def test_invalid_arguments_fail_before_connecting(
    emulator: Emulator, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        async with open_session(emulator.url, **kwargs):  # type: ignore[arg-type]
            pass
    assert emulator.state.connections_total == 0


async def test_invalid_url_fails_before_connecting() -> None:
    with pytest.raises(ValidationError):
        async with open_session("ftp://127.0.0.1:1", stt=STT, tts=TTS):
            pass


async def test_ready_timeout() -> None:
    async def silent(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()  # the config frame
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server: trio_websocket.WebSocketServer = await nursery.start(
            partial(trio_websocket.serve_websocket, silent, "127.0.0.1", 0, ssl_context=None)
        )
        with trio.fail_after(HANG_S), pytest.raises(ReadyTimeoutError):
            async with open_session(
                f"ws://127.0.0.1:{server.port}/ws", stt=STT, tts=TTS, ready_timeout_s=0.2
            ):
                pass
        nursery.cancel_scope.cancel()


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(HANG_S), pytest.raises(TransportError):
        async with open_session(f"http://127.0.0.1:{port}", stt=STT, tts=TTS):
            pass


async def test_peer_hanging_up_during_the_handshake_fails_at_once() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        # Far below connect_timeout_s: the failure is reported as soon as it happens.
        with trio.fail_after(HANG_S), pytest.raises(TransportError, match="during the WebSocket"):
            async with open_session(f"ws://127.0.0.1:{port}/ws", stt=STT, tts=TTS):
                pass
        nursery.cancel_scope.cancel()


async def test_slow_handshake_is_a_transport_error() -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, mute, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        with trio.fail_after(HANG_S), pytest.raises(TransportError, match=r"longer than 0\.2 s"):
            async with open_session(
                f"ws://127.0.0.1:{port}/ws", stt=STT, tts=TTS, connect_timeout_s=0.2
            ):
                pass
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- closing


async def test_sending_after_aclose_raises_and_events_end(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        await session.aclose()
        await session.aclose()  # idempotent
        assert session.closed
        for command in (
            session.speak("x"),
            session.clear(),
            session.send_audio(b"\x00\x00"),
            session.loading_stop(),
        ):
            with pytest.raises(SessionClosedError):
                await command
        assert [e async for e in session.events()] == []


async def test_aclose_from_another_task_ends_a_waiting_iterator(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        seen: list[SessionEvent] = []

        async def consume() -> None:
            async for event in session.events():
                seen.append(event)

        with trio.fail_after(HANG_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await trio.sleep(0.05)  # let the consumer block on the socket
                await session.aclose()
        assert seen == []


async def test_blank_transfer_target_is_rejected_client_side(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        with pytest.raises(ValidationError, match="transfer_to must be a non-empty string"):
            await session.sip_transfer("   ")
        assert wire(emulator) == [MINIMAL_CONFIG]


# --------------------------------------------------------------------------- scripted servers


def scripted_server(script: Script) -> AbstractAsyncContextManager[str]:
    """A WebSocket server on 127.0.0.1:0 that accepts, reads ``config`` and runs
    ``script``; the TCP connection is dropped soon after the script returns."""
    return ws_server(script, linger_s=0.05)


async def run_scripted(script: Script) -> tuple[list[SessionEvent], Session]:
    async with scripted_server(script) as url:
        with trio.fail_after(HANG_S):
            async with open_session(url, stt=STT, tts=TTS) as session:
                return [event async for event in session.events()], session


STT_FRAME = (
    '{"type":"stt_result","transcript":"hi","is_final":true,"is_speech_final":true,'
    '"confidence":0.9}'
)


async def test_unknown_and_invalid_frames_are_skipped() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text(READY_FRAME)
        await peer.send_text('{"type":"brand_new_event","x":1}')
        await peer.send_text('{"type":"stt_result","transcript":"missing fields"}')
        await peer.send_text("[1,2,3]")
        await peer.send_text(STT_FRAME)
        await peer.close(1000)

    events, session = await run_scripted(script)
    assert events == [
        STTResult(transcript="hi", is_final=True, is_speech_final=True, confidence=0.9)
    ]
    assert session.stats.unknown_types == 1
    assert session.stats.malformed == 2
    assert session.stats.frames_in == 5


async def test_close_without_code_after_participant_disconnected_is_normal() -> None:
    left = (
        '{"type":"participant_disconnected","participant":{"identity":"c","name":"",'
        '"room":"r","timestamp":1}}'
    )

    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text(READY_FRAME)
        await peer.send_text(left)
        await peer.close(None)

    events, _ = await run_scripted(script)
    assert [type(e) for e in events] == [ParticipantDisconnected]


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (None, "", 1005),  # no participant left: abnormal
        (1001, "going away", 1001),
        (4000, "custom", 4000),
        ("drop", "", 1006),  # TCP closed without a Close frame
    ],
)
async def test_abnormal_closes_raise(code: int | str | None, reason: str, expected: int) -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text(READY_FRAME)
        await peer.send_text(STT_FRAME)
        if code != "drop":
            assert not isinstance(code, str)
            await peer.close(code, reason)

    async with scripted_server(script) as url:
        with trio.fail_after(HANG_S):
            async with open_session(url, stt=STT, tts=TTS) as session:
                assert isinstance(await next_event(session), STTResult)
                with pytest.raises(ConnectionClosedError) as info:
                    await next_event(session)
    assert info.value.code == expected
    assert info.value.reason == (reason or None)


async def test_close_before_ready_raises() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.close(1000)

    async with scripted_server(script) as url:
        with trio.fail_after(HANG_S), pytest.raises(ConnectionClosedError) as info:
            async with open_session(url, stt=STT, tts=TTS):
                pass
    assert info.value.code == 1000


async def test_pre_ready_events_are_kept_in_order() -> None:
    async def script(peer: ScriptedPeer) -> None:
        await peer.send_text('{"type":"error","message":"TTS error: slow"}')
        await peer.send_text("garbage")
        await peer.send_text('{"type":"error","message":"STT streaming error: x"}')
        await peer.send_text(READY_FRAME)
        await peer.close(1000)

    events, session = await run_scripted(script)
    assert events == [
        Error(message="TTS error: slow"),
        Error(message="STT streaming error: x"),
    ]
    assert session.stats.malformed == 1


async def test_message_over_the_size_limit_closes_with_1009(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS, max_message_bytes=1000) as session:
        await session.speak("hello")  # one 4800-byte chunk
        with pytest.raises(ConnectionClosedError) as info:
            await next_event(session)
        assert info.value.code == 1009


async def test_untrusted_tls_certificate_is_a_transport_error() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    async def tls_handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.do_handshake()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, tls_handler, 0, server_context, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        url = f"wss://127.0.0.1:{port}/ws"
        with trio.fail_after(HANG_S), pytest.raises(TransportError, match="TLS handshake"):
            async with open_session(url, stt=STT, tts=TTS):
                pass
        # With the CA trusted, TLS succeeds (and the plain TLS server then hangs up).
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        with trio.fail_after(HANG_S), pytest.raises(TransportError, match="during the WebSocket"):
            async with open_session(url, stt=STT, tts=TTS, ssl_context=client_context):
                pass
        nursery.cancel_scope.cancel()


# A fresh process: what its first open_session loads besides the session itself.
FIRST_SESSION = """
import sys, trio
from saynad import STTConfig, TTSConfig, open_session

async def main(url: str) -> None:
    before = set(sys.modules)
    async with open_session(
        url,
        stt=STTConfig(provider="deepgram", language="en-US", sample_rate=16000, channels=1,
                      punctuation=True, encoding="linear16", model="nova-3"),
        tts=TTSConfig(provider="deepgram", model="aura-asteria-en"),
    ) as session:
        await session.speak("hello")
    print(" ".join(sorted(set(sys.modules) - before)))

trio.run(main, sys.argv[1])
"""


async def test_a_process_first_session_imports_no_module_on_the_way(emulator: Emulator) -> None:
    # A module looked up on first use makes the first connection of every process (a
    # daemon's first call, a fleet's first session) pay for its import: the IDNA codec
    # of the Host header made it about 0.5 ms longer before it came with saynad.
    result = await trio.run_process(
        [sys.executable, "-c", FIRST_SESSION, emulator.url],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().split() == []

"""The emulator's front server: WebSocket sessions served directly, everything else relayed
to hypercorn; and the same behaviour with ``server="hypercorn"``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from saynad.client.session import open_session
from saynad.emulator import Emulator, EmulatorOptions, Tenant, serve_emulator
from saynad.errors import HandshakeRejectedError
from saynad.protocol.messages import STTConfig, STTResult, TTSAudio, TTSConfig

STT = STTConfig(
    provider="deepgram",
    language="en-US",
    sample_rate=16000,
    channels=1,
    punctuation=True,
    encoding="linear16",
    model="nova-3",
)
TTS = TTSConfig(provider="deepgram", model="aura-asteria-en")


@asynccontextmanager
async def running(server: str, options: EmulatorOptions | None = None) -> AsyncIterator[Emulator]:
    async with trio.open_nursery() as nursery:
        emulator: Emulator = await nursery.start(
            lambda task_status: serve_emulator(options, server=server, task_status=task_status)
        )
        yield emulator
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("server", ["direct", "hypercorn"])
async def test_session_and_rest_on_one_port(server: str) -> None:
    async with running(server) as emu:
        assert emu.url.startswith("http://127.0.0.1:")
        async with open_session(emu.url, stt=STT, tts=TTS) as session:
            await session.speak("hi")
            for _ in range(15):
                await session.send_audio(b"\x00\x00" * 1600)
            audio = finals = 0
            with trio.fail_after(5):
                async for event in session.events():
                    if isinstance(event, TTSAudio):
                        audio += 1
                    elif isinstance(event, STTResult) and event.is_final:
                        finals += 1
                    if audio and finals:
                        break
            assert audio >= 1
        async with httpx.AsyncClient(base_url=emu.url) as http:
            for _ in range(3):  # keep-alive through the relay
                response = await http.get("/")
                assert response.status_code == 200
        assert emu.state.connections_total == 1


@pytest.mark.parametrize("server", ["direct", "hypercorn"])
async def test_rejections_are_the_same(server: str) -> None:
    options = EmulatorOptions(tenants=(Tenant("acme", "s-acme"),))
    async with running(server, options) as emu:
        with pytest.raises(HandshakeRejectedError) as info:
            async with open_session(emu.url, stt=STT, tts=TTS, api_key="wrong"):
                pass
        assert info.value.status_code == 401
        assert info.value.error == "unauthorized"
        assert info.value.body == (
            '{"error":"unauthorized","message":"Unauthorized: Invalid API secret"}'
        )
        with pytest.raises(HandshakeRejectedError) as info:
            async with open_session(emu.url.replace("http", "ws") + "/elsewhere", stt=STT, tts=TTS):
                pass
        assert info.value.status_code == 404


async def test_malformed_upgrades_are_left_to_hypercorn() -> None:
    async with running("direct") as emu:
        port = int(emu.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            # No Sec-WebSocket-Key: not a valid upgrade, so hypercorn answers it.
            await stream.send_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            answer = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in answer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 4")
        assert emu.state.connections_total == 0

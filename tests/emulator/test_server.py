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
from saynad.protocol.framing import ClientFrameParser, ProtocolViolation, masked_frame
from saynad.protocol.messages import STTResult, TTSAudio
from tests.support.samples import STT_CONFIG, TTS_CONFIG
from tests.timing import HANG_S


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
        async with open_session(emu.url, stt=STT_CONFIG, tts=TTS_CONFIG) as session:
            await session.speak("hi")
            for _ in range(15):
                await session.send_audio(b"\x00\x00" * 1600)
            audio = finals = 0
            with trio.fail_after(HANG_S):
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
            async with open_session(emu.url, stt=STT_CONFIG, tts=TTS_CONFIG, api_key="wrong"):
                pass
        assert info.value.status_code == 401
        assert info.value.error == "unauthorized"
        assert info.value.body == (
            '{"error":"unauthorized","message":"Unauthorized: Invalid API secret"}'
        )
        with pytest.raises(HandshakeRejectedError) as info:
            async with open_session(
                emu.url.replace("http", "ws") + "/elsewhere", stt=STT_CONFIG, tts=TTS_CONFIG
            ):
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
            with trio.fail_after(HANG_S):
                while b"\r\n\r\n" not in answer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 4")
        assert emu.state.connections_total == 0


# --------------------------------------------------------------------------- frame parser


def masked(first_byte: int, payload: bytes) -> bytes:
    return masked_frame(first_byte, payload, b"\x11\x22\x33\x44")


def test_parser_messages_fragments_and_control_frames() -> None:
    parser = ClientFrameParser(1000)
    data = (
        masked(0x81, b'{"type":"config"}')
        + masked(0x82, b"\x00" * 300)
        + masked(0x01, "héllo ".encode())  # text, not final
        + masked(0x89, b"ping!")  # a ping between fragments
        + masked(0x80, b"world")  # final continuation
    )
    items: list[object] = []
    for i in range(0, len(data), 7):  # byte-by-byte-ish arrival
        items += parser.feed(data[i : i + 7])
    assert items == ['{"type":"config"}', b"\x00" * 300, ("ping", b"ping!"), "héllo world"]
    assert parser.feed(masked(0x88, b"\x03\xe8bye")) == [("close", 1000, "bye")]
    assert ClientFrameParser(10).feed(masked(0x88, b"")) == [("close", 1005, "")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x82\x03abc", 1002),  # unmasked
        (masked(0xC2, b"x"), 1002),  # RSV1 set
        (masked(0x09, b"x"), 1002),  # fragmented ping
        (masked(0x80, b"x"), 1002),  # continuation without a message
        (masked(0x83, b"x"), 1002),  # reserved opcode
        (masked(0x81, b"\xff\xfe"), 1007),  # invalid UTF-8
        (masked(0x82, b"x" * 11), 1009),  # over the limit
        (masked(0x88, b"\x03"), 1002),  # one-byte close payload
        (masked(0x88, b"\x03\xed"), 1002),  # 1005 may not be sent
    ],
)
def test_parser_refuses_protocol_violations(data: bytes, code: int) -> None:
    with pytest.raises(ProtocolViolation) as info:
        ClientFrameParser(10).feed(data)
    assert info.value.code == code

"""The emulator's front server: WebSocket sessions served directly, everything else relayed
to hypercorn; and the same behaviour with ``server="hypercorn"``."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from saynad.client.session import open_session
from saynad.emulator import Emulator, EmulatorOptions, Tenant, serve_emulator
from saynad.errors import HandshakeRejectedError
from saynad.protocol.framing import (
    BINARY_FRAME,
    CLOSE_FRAME,
    PING_FRAME,
    PONG_FRAME,
    TEXT_FRAME,
    ClientFrameParser,
    ProtocolViolation,
    close_payload,
    masked_frame,
    read_frame,
)
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


# --------------------------------------------------------------------------- one reader


def binary(payload: bytes) -> bytes:
    return masked(BINARY_FRAME, payload)


def text(payload: str) -> bytes:
    return masked(TEXT_FRAME, payload.encode())


CONFIG_FRAME = text(
    '{"type":"config","stream_id":"raw-1","audio":true,'
    '"stt_config":{"provider":"deepgram","language":"en-US","sample_rate":16000,'
    '"channels":1,"punctuation":true,"encoding":"linear16","model":"nova-3"},'
    '"tts_config":{"provider":"deepgram","model":"aura-asteria-en"}}'
)
CHUNK = b"\x00\x00" * 320  # 20 ms at 16 kHz mono: 50 make one second


class RawClient:
    """A client that writes frames as raw bytes, cut as a test says, and reads the
    server's frames one by one."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    @asynccontextmanager
    async def connect(cls, emu: Emulator) -> AsyncIterator[RawClient]:
        port = int(emu.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            client = cls(stream)
            await stream.send_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            with trio.fail_after(HANG_S):
                while b"\r\n\r\n" not in client.buffer:
                    client.buffer += await stream.receive_some(65536)
            head, client.buffer = client.buffer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101")
            yield client

    async def send(self, data: bytes, *, pieces: int = 1) -> None:
        """``data`` in ``pieces`` writes of about equal size, each read by the server
        before the next is written (as far as a short pause makes sure)."""
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            await self.stream.send_all(data[start : start + size])
            if pieces > 1:
                await trio.sleep(0.002)

    async def frame(self) -> tuple[int, bytes] | None:
        """The server's next frame (first header byte, payload); ``None`` at the end."""
        with trio.fail_after(HANG_S):
            while (found := read_frame(self.buffer)) is None:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.buffer += data
        first, payload, end = found
        self.buffer = self.buffer[end:]
        return first, payload


@pytest.mark.parametrize(
    ("server", "read_interval_ms"), [("direct", 0), ("direct", 20), ("hypercorn", 0)]
)
@pytest.mark.parametrize("cut", ["one write", "frame by frame", "split frames"])
async def test_frames_however_they_arrive_are_answered_alike(
    server: str, read_interval_ms: float, cut: str
) -> None:
    """Audio frames many to a read, one per read, or split across reads, read at once
    or at most every 20 ms: the same transcripts at the same points of the audio, the
    text frame among them answered in its place, the ping answered, the Close echoed."""
    frames = [
        CONFIG_FRAME,
        *[binary(CHUNK)] * 25,  # 500 ms: the interim result is due
        masked(PING_FRAME, b"are you there"),
        *[binary(CHUNK)] * 5,
        text("not json"),  # answered after the interim, before the final
        *[binary(CHUNK)] * 20,  # 1000 ms: the final result is due
        *[binary(CHUNK)] * 10,
    ]
    options = EmulatorOptions(read_interval_ms=read_interval_ms)
    async with running(server, options) as emu, RawClient.connect(emu) as client:
        if cut == "one write":
            await client.send(b"".join(frames))
        elif cut == "frame by frame":
            for frame in frames:
                await client.send(frame)
                await trio.sleep(0.001)
        else:
            await client.send(b"".join(frames), pieces=97)
        texts: list[dict[str, object]] = []
        pongs: list[bytes] = []
        while not texts or texts[-1].get("is_final") is not True:
            answer = await client.frame()
            assert answer is not None, texts
            first, payload = answer
            if first == PONG_FRAME:
                pongs.append(payload)
            else:
                assert first == TEXT_FRAME
                texts.append(json.loads(payload))
        await client.send(masked(CLOSE_FRAME, close_payload(1000)))
        assert await client.frame() == (CLOSE_FRAME, close_payload(1000))
        assert await client.frame() is None
    assert [t["type"] for t in texts] == ["ready", "stt_result", "error", "stt_result"]
    assert texts[0]["stream_id"] == "raw-1"
    assert texts[1]["is_final"] is False
    assert str(texts[2]["message"]).startswith("Invalid message format")
    assert texts[3]["transcript"] == EmulatorOptions().script[0]
    assert pongs == [b"are you there"]
    assert emu.state.connections_open == 0


async def test_nothing_after_a_close_among_audio_frames_counts() -> None:
    """A Close frame in the middle of a read of audio frames: echoed, and the audio
    behind it is neither transcribed nor read."""
    async with running("direct") as emu, RawClient.connect(emu) as client:
        await client.send(CONFIG_FRAME)
        answer = await client.frame()
        assert answer is not None
        assert json.loads(answer[1])["type"] == "ready"
        await client.send(
            b"".join(
                [
                    *[binary(CHUNK)] * 10,
                    masked(CLOSE_FRAME, close_payload(1000)),
                    *[binary(CHUNK)] * 60,  # would complete both results if read
                ]
            )
        )
        assert await client.frame() == (CLOSE_FRAME, close_payload(1000))
        assert await client.frame() is None
    assert emu.state.connections_open == 0


async def test_a_peer_gone_mid_stream_ends_its_session_only() -> None:
    """One connection vanishes without a Close while streaming; the one beside it keeps
    its transcripts coming."""
    async with running("direct") as emu, RawClient.connect(emu) as staying:
        await staying.send(CONFIG_FRAME)
        async with RawClient.connect(emu) as leaving:
            await leaving.send(CONFIG_FRAME + binary(CHUNK) * 10)
            assert await leaving.frame() is not None  # ready
        with trio.fail_after(HANG_S):
            while emu.state.connections_open != 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        await staying.send(binary(CHUNK) * 50, pieces=13)
        kinds = []
        while len(kinds) < 3:
            answer = await staying.frame()
            assert answer is not None
            kinds.append(json.loads(answer[1]).get("is_final"))
        assert kinds == [None, False, True]  # ready, interim, final


class _ReaderSteps(trio.abc.Instrument):
    """Counts the steps of the emulator's frame reader task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == "emulator-ws-reader":
            self.steps += 1


async def test_a_reset_connection_left_unread_does_not_wake_the_reader() -> None:
    """A client resets its connection while its session is busy with frames it sent
    (here: more speaks than the TTS queue holds). The socket reports the hang-up until
    someone reads it; the reader must not wake for it pass after pass meanwhile."""
    async with running("direct") as emu, RawClient.connect(emu) as client:
        await client.send(CONFIG_FRAME)
        assert await client.frame() is not None  # ready
        await client.send(text('{"type":"speak","text":"' + "la " * 200 + '"}') * 300)
        with trio.fail_after(HANG_S):
            while emu.state.connections_open != 1 or client.buffer == b"":
                client.buffer += await client.stream.receive_some(65536)
        # Unread data in our buffer: close() sends a reset.
        client.stream.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        client.stream.socket.close()
        counter = _ReaderSteps()
        trio.lowlevel.add_instrument(counter)
        try:
            await trio.sleep(0.5)
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.steps < 20

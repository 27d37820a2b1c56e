"""The same workload on a bare trio + wsproto + json loop, written the obvious way.

``python -m tests.bench.client_bare URL N [--stagger-ms M]``

What someone would write without saynad: ``trio.open_tcp_stream``, wsproto's
``WSConnection``, a reader task feeding a memory channel, a ``trio.Lock`` around sends,
``json`` for text frames and ``trio.sleep_until`` for pacing. It is the baseline the
issue measured ("bare trio + wsproto + json").
"""

from __future__ import annotations

import json
import sys
import time
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from tests.bench import common

CONFIG = json.dumps({"type": "config", "stt_config": common.STT, "tts_config": common.TTS})
SPEAK = json.dumps(
    {"type": "speak", "text": common.SENTENCE, "flush": True, "allow_interruption": True}
)


class BareSocket:
    """A WebSocket client in ~60 lines: a reader task, a channel, a send lock."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.lock = trio.Lock()
        self.send_channel, self.receive_channel = trio.open_memory_channel[str | bytes | None](16)

    async def send(self, event: TextMessage | BytesMessage | CloseConnection | object) -> None:
        async with self.lock:
            await self.stream.send_all(self.ws.send(event))  # type: ignore[arg-type]

    async def handshake(self, host: str, target: str) -> None:
        await self.stream.send_all(self.ws.send(Request(host=host, target=target)))
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"rejected: {event.status_code}")

    async def reader(self) -> None:
        parts: list[str | bytes] = []
        async with self.send_channel:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    if isinstance(event, TextMessage | BytesMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            if isinstance(parts[0], str):
                                message: str | bytes = "".join(parts)  # type: ignore[arg-type]
                            else:
                                message = b"".join(parts)  # type: ignore[arg-type]
                            parts = []
                            await self.send_channel.send(message)
                    elif isinstance(event, Ping):
                        await self.send(event.response())
                    elif isinstance(event, CloseConnection):
                        if self.ws.state.name == "REMOTE_CLOSING":
                            await self.send(event.response())
                        return
                if not data:
                    return


async def one_session(url: str, c: common.Collector) -> None:
    began = time.monotonic()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        sock = BareSocket(stream)
        await sock.handshake(f"{host}:{port}", "/ws")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sock.reader)
            await sock.send(TextMessage(data=CONFIG))
            stream_id = None
            async for message in sock.receive_channel:
                if (
                    isinstance(message, str)
                    and (ready := json.loads(message)).get("type") == "ready"
                ):
                    stream_id = ready.get("stream_id")
                    break
            c.ready_at.append(trio.current_time())

            async def stream_audio(start: float) -> None:
                lags = common.SessionLags(c)
                for i in range(common.CHUNKS):
                    due = start + i * common.CHUNK_MS / 1000
                    await trio.sleep_until(due)
                    await sock.send(BytesMessage(data=common.CHUNK))
                    lags.sent(i, trio.current_time() - due)
                lags.done()

            spoke = trio.current_time()
            c.spoke(stream_id, began)
            await sock.send(TextMessage(data=SPEAK))
            nursery.start_soon(stream_audio, trio.current_time())
            first_audio = complete = False
            finals = 0
            async for message in sock.receive_channel:
                if isinstance(message, bytes):
                    if not first_audio:
                        first_audio = True
                        c.first_audio.append(trio.current_time() - spoke)
                        c.heard(stream_id)
                    continue
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "tts_playback_complete":
                    complete = True
                elif kind == "stt_result" and frame.get("is_final"):
                    finals += 1
                if complete and finals >= common.FINALS_EXPECTED:
                    break
            # The reader task ends when the server answers the Close frame.
            with trio.move_on_after(2):
                await sock.send(CloseConnection(code=1000))
                async for _ in sock.receive_channel:
                    pass
            nursery.cancel_scope.cancel()


async def main(url: str, n: int, stagger: float) -> None:
    await common.run_trio_clients("bare", url, n, one_session, stagger)


if __name__ == "__main__":
    common.prepare_process()
    trio.run(main, sys.argv[1], int(sys.argv[2]), common.stagger_s(sys.argv))

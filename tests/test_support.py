"""The shared test helpers themselves: the scripted WebSocket peer on memory streams
(against saynad's own client transport) and the ports that refuse connections."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection

from saynad._io.sockets import open_fast_tcp_stream
from saynad.client._wsproto import handshake
from saynad.errors import ConnectionClosedError
from saynad.protocol.framing import BINARY
from tests.support.processes import closed_port
from tests.support.samples import LISTEN_ANY, daemon_config, greeting_fleet, talking_fleet
from tests.support.wspeer import encode_frame, memory_peer


async def test_the_scripted_peer_speaks_to_the_client_over_memory_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client_stream, peer = memory_peer()
    seen: list[object] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            request = await peer.accept()
            seen.append(request.target)
            seen.append(await peer.message())
            await peer.send_text("hello from the peer")
            await peer.send(encode_frame(BINARY, b"\x00\x01\x02"))
            await peer.close(4000, "scripted")
            event = await peer.next_event()
            assert isinstance(event, CloseConnection)
            seen.append(event.code)

        nursery.start_soon(serve)
        transport = await handshake(
            client_stream,
            host="sayna.test",
            resource="/ws",
            extra_headers=[],
            max_message_bytes=1 << 20,
            close_timeout_s=1.0,
        )
        await transport.send_text("hello from the client")
        assert await transport.receive() == "hello from the peer"
        assert await transport.receive() == b"\x00\x01\x02"
        with pytest.raises(ConnectionClosedError) as closed:
            await transport.receive()
        assert closed.value.code == 4000
        await transport.aclose()
    assert seen == ["/ws", "hello from the client", 4000]


async def test_a_closed_port_refuses_for_as_long_as_it_is_held() -> None:
    with closed_port() as port:
        for _ in range(2):
            with pytest.raises(ConnectionRefusedError):
                await open_fast_tcp_stream("127.0.0.1", port)


def test_sample_configurations_listen_on_a_port_the_system_picks(tmp_path: Path) -> None:
    samples = (daemon_config(), greeting_fleet({"a": "hi"}), talking_fleet(transcripts=tmp_path))
    for text in samples:
        assert f'listen: "{LISTEN_ANY}"' in text

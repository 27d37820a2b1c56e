"""The default WebSocket transport (saynad.client._wsproto) over memory streams, against
a wsproto server driven by the test; the fast socket stream; the pacing timer."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason, FrameProtocol

from saynad._io.sockets import RECEIVE_SCHEDULE_EVERY, SEND_SCHEDULE_EVERY, FastSocketStream
from saynad.client import pacing
from saynad.client._wsproto import WsprotoTransport, handshake
from saynad.client.transport import connect_websocket
from saynad.errors import (
    ConnectionClosedError,
    HandshakeRejectedError,
    TransportError,
    ValidationError,
)
from saynad.protocol.framing import FIN, masked_frame, unmasked_frame
from saynad.protocol.upgrade import accept_value
from tests.support.scheduling import with_schedule_point, without_schedule_point
from tests.timing import HANG_S

# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize("size", [0, 1, 3, 125, 126, 127, 4800, 65535, 65536, 70001])
@pytest.mark.parametrize("first_byte", [0x81, 0x82])
def test_client_frames_decode_to_the_same_payload(size: int, first_byte: int) -> None:
    payload = os.urandom(size) if first_byte == 0x82 else ("é" * size).encode()[:size]
    if first_byte == 0x81:
        payload = b"x" * size
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(masked_frame(first_byte, payload, os.urandom(4)))
    frames = list(server.received_frames())
    assert len(frames) == 1
    frame = frames[0]
    assert frame.frame_finished
    assert frame.message_finished
    expected = payload.decode() if first_byte == 0x81 else payload
    assert frame.payload == expected


def test_client_frames_are_masked_with_the_given_key() -> None:
    frame = masked_frame(0x82, b"\x00\x00\x00\x00\x00", b"\x01\x02\x03\x04")
    assert frame == b"\x82\x85\x01\x02\x03\x04\x01\x02\x03\x04\x01"


# --------------------------------------------------------------------------- a scripted server


class Server:
    """The server end of a memory stream pair, speaking wsproto."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.pending: list[object] = []

    async def next_event(self) -> object:
        for _ in range(1000):
            if self.pending:
                return self.pending.pop(0)
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        raise AssertionError("no event")

    async def send(self, event: object) -> None:
        await self.stream.send_all(self.ws.send(event))  # type: ignore[arg-type]

    async def accept(self) -> Request:
        request = await self.next_event()
        assert isinstance(request, Request)
        await self.send(AcceptConnection())
        return request

    async def message(self) -> str | bytes:
        event = await self.next_event()
        assert isinstance(event, TextMessage | BytesMessage), event
        assert event.message_finished
        return event.data if isinstance(event.data, str) else bytes(event.data)


Scenario = Callable[[Server], Awaitable[None]]


@asynccontextmanager
async def connected(
    scenario: Scenario, *, max_message_bytes: int = 1 << 20, close_timeout_s: float = 2.0
) -> AsyncIterator[WsprotoTransport]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server = Server(server_stream)
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def serve() -> None:
            await server.accept()
            await scenario(server)
            done.set()
            # Then answer the client's Close frame, if the scenario left it unread, so
            # that aclose() needs no close timeout.
            with contextlib.suppress(Exception):
                while True:
                    event = await server.next_event()
                    if isinstance(event, CloseConnection):
                        await server.send(event.response())
                        return

        nursery.start_soon(serve)
        transport = await handshake(
            client_stream,
            host="sayna.test",
            resource="/ws",
            extra_headers=[(b"authorization", b"Bearer k")],
            max_message_bytes=max_message_bytes,
            close_timeout_s=close_timeout_s,
        )
        try:
            yield transport
        finally:
            await transport.aclose()
            with trio.move_on_after(HANG_S):
                await done.wait()  # let the scenario finish its checks
            nursery.cancel_scope.cancel()


async def test_upgrade_request_carries_host_resource_and_headers() -> None:
    seen: list[Request] = []
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server = Server(server_stream)
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            seen.append(await server.accept())

        nursery.start_soon(serve)
        transport = await handshake(
            client_stream,
            host="sayna.test:8443",
            resource="/ws?x=1",
            extra_headers=[(b"authorization", b"Bearer k")],
            max_message_bytes=100,
            close_timeout_s=0.1,
        )
        nursery.cancel_scope.cancel()
    await transport.aclose()
    request = seen[0]
    assert request.host == "sayna.test:8443"
    assert request.target == "/ws?x=1"
    assert (b"authorization", b"Bearer k") in request.extra_headers
    assert request.extensions == []  # no permessage-deflate offer


async def test_messages_both_ways_and_ping_answered() -> None:
    got: list[object] = []

    async def scenario(server: Server) -> None:
        got.append(await server.message())
        got.append(await server.message())
        await server.send(Ping(payload=b"p1"))
        got.append(await server.next_event())
        await server.send(TextMessage(data='{"type":"ready"}'))
        await server.send(BytesMessage(data=b"\x01\x02"))
        # A fragmented message is reassembled.
        await server.send(TextMessage(data="ab", message_finished=False))
        await server.send(TextMessage(data="cd", message_finished=True))

    async with connected(scenario) as transport:
        await transport.send_text('{"type":"config"}')
        await transport.send_bytes(b"\x00" * 640)
        with trio.fail_after(HANG_S):
            assert await transport.receive() == '{"type":"ready"}'
            assert await transport.receive() == b"\x01\x02"
            assert await transport.receive() == "abcd"
    assert got[0] == '{"type":"config"}'
    assert got[1] == b"\x00" * 640
    assert got[2] == Pong(payload=b"p1")


async def test_concurrent_senders_never_interleave_frames() -> None:
    received: list[str | bytes] = []
    all_in = trio.Event()

    async def scenario(server: Server) -> None:
        for _ in range(60):
            received.append(await server.message())
        all_in.set()

    async with connected(scenario) as transport:
        async with trio.open_nursery() as nursery:
            for task in range(3):

                async def send(task: int = task) -> None:
                    for i in range(20):
                        await transport.send_bytes(bytes([task]) * (1000 + i))

                nursery.start_soon(send)
        with trio.fail_after(HANG_S):
            await all_in.wait()
    assert sorted(len(m) for m in received) == sorted(1000 + i for _ in range(3) for i in range(20))
    assert all(len(set(m)) == 1 for m in received)


@pytest.mark.parametrize(
    ("code", "reason", "expected_code", "expected_reason"),
    [
        (1000, "bye", 1000, "bye"),
        (4000, "custom", 4000, "custom"),
        (CloseReason.NO_STATUS_RCVD, None, 1005, None),
    ],
)
async def test_peer_close_delivers_earlier_messages_then_raises(
    code: int, reason: str | None, expected_code: int, expected_reason: str | None
) -> None:
    answers: list[object] = []

    async def scenario(server: Server) -> None:
        await server.send(TextMessage(data="last words"))
        await server.send(CloseConnection(code=code, reason=reason))
        answers.append(await server.next_event())

    async with connected(scenario) as transport:
        with trio.fail_after(HANG_S):
            assert await transport.receive() == "last words"
            with pytest.raises(ConnectionClosedError) as info:
                await transport.receive()
            assert (info.value.code, info.value.reason) == (expected_code, expected_reason)
            # It stays closed; sends fail the same way.
            with pytest.raises(ConnectionClosedError):
                await transport.receive()
            with pytest.raises(ConnectionClosedError):
                await transport.send_text("x")
    assert isinstance(answers[0], CloseConnection)
    assert answers[0].code == code  # the Close frame is echoed (1005: without a code)


async def test_eof_without_close_frame_is_1006() -> None:
    async def scenario(server: Server) -> None:
        await server.send(TextMessage(data="hi"))
        await server.stream.aclose()

    async with connected(scenario) as transport:
        with trio.fail_after(HANG_S):
            assert await transport.receive() == "hi"
            with pytest.raises(ConnectionClosedError) as info:
                await transport.receive()
    assert (info.value.code, info.value.reason) == (1006, None)


async def test_oversized_message_closes_with_1009() -> None:
    answers: list[object] = []
    answered = trio.Event()

    async def scenario(server: Server) -> None:
        await server.send(BytesMessage(data=b"x" * 200))
        answers.append(await server.next_event())
        answered.set()

    async with connected(scenario, max_message_bytes=100) as transport:
        with trio.fail_after(HANG_S), pytest.raises(ConnectionClosedError) as info:
            await transport.receive()
        assert info.value.code == 1009
        with trio.fail_after(HANG_S):
            await answered.wait()
    assert isinstance(answers[0], CloseConnection)
    assert answers[0].code == 1009


async def test_aclose_sends_close_and_waits_for_the_answer() -> None:
    events: list[object] = []

    async def scenario(server: Server) -> None:
        event = await server.next_event()
        events.append(event)
        assert isinstance(event, CloseConnection)
        await server.send(event.response())

    async with connected(scenario) as transport:
        await transport.aclose(1000)
        await transport.aclose()  # idempotent
        with pytest.raises(ConnectionClosedError) as info:
            await transport.receive()
    assert info.value.code == 1000
    assert isinstance(events[0], CloseConnection)
    assert events[0].code == 1000


async def test_aclose_gives_up_on_a_silent_server(autojump_clock: trio.abc.Clock) -> None:
    async def scenario(server: Server) -> None:
        await trio.sleep_forever()

    async with connected(scenario, close_timeout_s=2.0) as transport:
        before = trio.current_time()
        await transport.aclose()
        assert trio.current_time() - before == pytest.approx(2.0)


async def test_aclose_returns_as_soon_as_the_server_answers(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def scenario(server: Server) -> None:
        event = await server.next_event()
        assert isinstance(event, CloseConnection)
        # Late messages before the answer are dropped; the answer ends the close.
        await server.stream.send_all(server_frame(1, b"late") + server_frame(2, b"late"))
        await server.send(event.response())

    async with connected(scenario, close_timeout_s=2.0) as transport:
        before = trio.current_time()
        await transport.aclose()
        assert trio.current_time() == before  # no wait for the close timeout


# --------------------------------------------------------------------------- inbound frames


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, length_bytes: int = 0) -> bytes:
    """A raw server frame; ``length_bytes`` forces a 2- or 8-byte length encoding (an
    over-long one, which no encoder writes, for a small payload)."""
    first = (FIN if fin else 0) | opcode
    if not length_bytes:
        return unmasked_frame(first, payload)
    marker = 126 if length_bytes == 2 else 127
    return bytes((first, marker)) + len(payload).to_bytes(length_bytes, "big") + payload


def raw_scenario(raw: bytes, *, piece: int = 0, answers: list[object] | None = None) -> Scenario:
    """Send ``raw`` (in ``piece``-byte writes when given), then record what comes back."""

    async def scenario(server: Server) -> None:
        if piece:
            for i in range(0, len(raw), piece):
                await server.stream.send_all(raw[i : i + piece])
                await trio.lowlevel.checkpoint()
        else:
            await server.stream.send_all(raw)
        if answers is not None:
            with trio.move_on_after(HANG_S):
                answers.append(await server.next_event())

    return scenario


async def receive_all(transport: WsprotoTransport, count: int) -> list[str | bytes]:
    with trio.fail_after(HANG_S):
        return [await transport.receive() for _ in range(count)]


MESSAGES: list[tuple[int, bytes]] = [
    (1, b'{"type":"ready","stream_id":"s"}'),
    (2, os.urandom(3200)),
    (1, "héllo wörld ✓".encode()),
    (2, b""),
    (1, b""),
    (2, os.urandom(70_000)),  # 64-bit length
    (1, b"x" * 126),  # 16-bit length, smallest
]


def expected(messages: list[tuple[int, bytes]]) -> list[str | bytes]:
    return [p.decode() if op == 1 else p for op, p in messages]


@pytest.mark.parametrize("piece", [0, 1, 7, 1000])
async def test_frames_split_anywhere_across_reads_come_out_whole(piece: int) -> None:
    raw = b"".join(server_frame(op, p) for op, p in MESSAGES)
    async with connected(raw_scenario(raw, piece=piece)) as transport:
        assert await receive_all(transport, len(MESSAGES)) == expected(MESSAGES)


async def test_fragments_and_control_frames_in_between_go_through_wsproto() -> None:
    raw = (
        server_frame(1, b"hel", fin=False)
        + server_frame(9, b"are you there")  # a ping inside a fragmented message
        + server_frame(0, b"lo ", fin=False)
        + server_frame(0, "wörld".encode())
        + server_frame(2, b"\x01\x02")  # and the fast path again afterwards
    )
    answers: list[object] = []
    async with connected(raw_scenario(raw, piece=5, answers=answers)) as transport:
        assert await receive_all(transport, 2) == ["hello wörld", b"\x01\x02"]
    assert isinstance(answers[0], Pong)
    assert answers[0].payload == b"are you there"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (server_frame(1, b"\xff\xfe not utf-8"), 1007),
        (server_frame(2, b"abc", length_bytes=2), 1002),  # over-long length encoding
        (server_frame(2, b"abc", length_bytes=8), 1002),
        (bytes((0x82, 0x83)) + b"mask" + b"abc", 1002),  # a masked server frame
        (bytes((0xC2, 0x03)) + b"abc", 1002),  # a reserved bit
        (bytes((0x83, 0x01)) + b"x", 1002),  # an unknown opcode
        (server_frame(0, b"orphan continuation"), 1002),
    ],
)
async def test_malformed_frames_close_with_wsprotos_code(raw: bytes, code: int) -> None:
    answers: list[object] = []
    ok = server_frame(1, b"before")
    async with connected(raw_scenario(ok + raw, answers=answers)) as transport:
        assert await receive_all(transport, 1) == ["before"]
        with trio.fail_after(HANG_S), pytest.raises(ConnectionClosedError) as info:
            await transport.receive()
    assert info.value.code == code
    assert isinstance(answers[0], CloseConnection)
    assert answers[0].code == code


async def test_an_oversized_header_closes_at_once_without_waiting_for_the_payload() -> None:
    # The header claims 1 GiB; nothing of it is ever buffered.
    raw = bytes((0x82, 127)) + (1 << 30).to_bytes(8, "big") + b"xx"
    answers: list[object] = []
    async with connected(raw_scenario(raw, answers=answers), max_message_bytes=1024) as transport:
        with trio.fail_after(HANG_S), pytest.raises(ConnectionClosedError) as info:
            await transport.receive()
    assert info.value.code == 1009
    assert isinstance(answers[0], CloseConnection)


async def test_frames_in_the_same_read_as_the_upgrade_answer() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server = WSConnection(ConnectionType.SERVER)
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            while True:
                server.receive_data(await server_stream.receive_some(65536))
                if any(isinstance(e, Request) for e in server.events()):
                    break
            answer = server.send(AcceptConnection())
            frames = server_frame(1, b"first") + server_frame(2, b"second")
            await server_stream.send_all(answer + frames + server_frame(1, b"thi"))

        nursery.start_soon(serve)
        transport = await handshake(
            client_stream,
            host="sayna.test",
            resource="/ws",
            extra_headers=[],
            max_message_bytes=1024,
            close_timeout_s=1.0,
        )
        assert await receive_all(transport, 2) == ["first", b"second"]
        nursery.cancel_scope.cancel()


async def test_aclose_from_another_task_ends_a_blocked_receive() -> None:
    async def scenario(server: Server) -> None:
        event = await server.next_event()
        assert isinstance(event, CloseConnection)
        await server.send(event.response())

    async with connected(scenario) as transport:
        outcome: list[BaseException] = []

        async def consume() -> None:
            try:
                await transport.receive()
            except ConnectionClosedError as exc:
                outcome.append(exc)

        with trio.fail_after(HANG_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume)
                await trio.testing.wait_all_tasks_blocked()
                await transport.aclose()
    assert isinstance(outcome[0], ConnectionClosedError)
    assert outcome[0].code == 1000


# --------------------------------------------------------------------------- handshake failures


async def answer_upgrade_with(
    raw: bytes, *, then_close: bool = True, piecewise: bool = False
) -> TransportError | Exception:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            await server_stream.receive_some(65536)
            # All at once, or one byte per read of the client.
            for part in [raw[i : i + 1] for i in range(len(raw))] if piecewise else [raw]:
                if part:
                    await server_stream.send_all(part)
                    await trio.testing.wait_all_tasks_blocked()
            if then_close:
                await server_stream.aclose()

        nursery.start_soon(serve)
        try:
            with trio.fail_after(HANG_S):
                await handshake(
                    client_stream,
                    host="h",
                    resource="/ws",
                    extra_headers=[],
                    max_message_bytes=100,
                    close_timeout_s=0.1,
                )
        except Exception as exc:
            return exc
    raise AssertionError("the handshake succeeded")


async def test_rejection_carries_status_body_and_error_code() -> None:
    body = b'{"error":"unauthorized","message":"Unauthorized: Invalid API secret"}'
    exc = await answer_upgrade_with(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body,
        then_close=False,
    )
    assert isinstance(exc, HandshakeRejectedError)
    assert exc.status_code == 401
    assert exc.error == "unauthorized"
    assert exc.body == body.decode()


async def test_rejection_body_read_until_eof() -> None:
    exc = await answer_upgrade_with(b"HTTP/1.1 503 Busy\r\n\r\nnot json")
    assert isinstance(exc, HandshakeRejectedError)
    assert (exc.status_code, exc.body, exc.error) == (503, "not json", None)


async def test_garbage_answer_is_a_transport_error() -> None:
    exc = await answer_upgrade_with(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert isinstance(exc, TransportError)


async def test_hang_up_during_handshake_is_a_transport_error() -> None:
    exc = await answer_upgrade_with(b"")
    assert isinstance(exc, TransportError)
    assert "during the WebSocket handshake" in str(exc)


async def test_a_101_with_the_wrong_accept_value_is_a_transport_error() -> None:
    exc = await answer_upgrade_with(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_value(b"not the key sent") + b"\r\n\r\n",
        then_close=False,
    )
    assert isinstance(exc, TransportError)


async def test_an_endless_answer_head_is_a_transport_error() -> None:
    exc = await answer_upgrade_with(
        b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Filler: y\r\n" * 2000, then_close=False
    )
    assert isinstance(exc, TransportError)


async def test_a_refusal_whose_head_and_body_arrive_in_pieces() -> None:
    body = b'{"error":"busy"}'
    head = b"HTTP/1.1 503 Busy\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    exc = await answer_upgrade_with(head + body, then_close=False, piecewise=True)
    assert isinstance(exc, HandshakeRejectedError)
    assert (exc.status_code, exc.error) == (503, "busy")


async def test_a_header_that_cannot_go_on_the_wire_is_refused_before_connecting() -> None:
    # Nothing listens on port 9 of the loopback: a connection attempt would be a
    # TransportError. The value is never quoted (it may be an API key).
    for headers in ({"Authorization": "Bearer k\r\nX-Evil: 1"}, {"Authorization": "Bearer \u2603"}):
        with pytest.raises(ValidationError) as caught:
            async with connect_websocket("ws://127.0.0.1:9/ws", headers, connect_timeout_s=HANG_S):
                pass
        assert "Bearer" not in str(caught.value)


def test_wsproto_rejection_events_are_the_ones_handled() -> None:
    # The handshake loop relies on these wsproto event types for refusals.
    assert RejectConnection(status_code=401).has_body is False
    assert RejectData(data=b"x").body_finished is True


# --------------------------------------------------------------------------- fast socket stream


async def test_fast_socket_stream_round_trip_and_close_wakes_reader() -> None:
    a, b = socket.socketpair()
    left, right = FastSocketStream(a), FastSocketStream(b)
    for _ in range(SEND_SCHEDULE_EVERY * 2):
        await left.send_all(b"ping")
    data = b""
    while len(data) < 8 * SEND_SCHEDULE_EVERY:
        data += await right.receive_some(1 << 16)
    assert data == b"ping" * SEND_SCHEDULE_EVERY * 2
    # A large write waits for the reader instead of failing.
    big = b"x" * (4 << 20)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.send_all, big)
        got = 0
        while got < len(big):
            got += len(await right.receive_some(1 << 20))
    # Closing wakes a blocked reader with ClosedResourceError.
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:

            async def blocked() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await right.receive_some(10)

            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            await right.aclose()
    # The peer sees EOF, then a broken pipe on send.
    assert await left.receive_some(10) == b""
    with pytest.raises(trio.BrokenResourceError):
        await left.send_all(b"x" * (8 << 20))
    await left.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await left.send_all(b"x")


async def test_fast_socket_stream_send_is_a_cancellation_point() -> None:
    a, b = socket.socketpair()
    left = FastSocketStream(a)
    with trio.CancelScope() as scope:
        scope.cancel()
        await left.send_all(b"never")
    assert scope.cancelled_caught
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(10)  # nothing was sent
    await left.aclose()
    b.close()


async def test_fast_socket_stream_reads_waiting_data_in_the_same_scheduler_pass() -> None:
    a, b = socket.socketpair()
    stream = FastSocketStream(a)
    # Data already waiting: read at once, a schedule point only every
    # RECEIVE_SCHEDULE_EVERY reads (a full read leaves the socket likely non-empty).
    b.sendall(b"x" * (4 * RECEIVE_SCHEDULE_EVERY))
    for _ in range(2):
        for _ in range(RECEIVE_SCHEDULE_EVERY - 1):
            assert await without_schedule_point(partial(stream.receive_some, 2)) == b"xx"
        assert await with_schedule_point(partial(stream.receive_some, 2)) == b"xx"
    # A short read emptied the socket: the next read waits first (a schedule point),
    # even if data came meanwhile ...
    b.sendall(b"y")
    assert await stream.receive_some(10) == b"y"
    b.sendall(b"z")
    assert await with_schedule_point(partial(stream.receive_some, 10)) == b"z"
    # ... unless a reply is expected: then it looks first, and finds it.
    b.sendall(b"answer")
    stream.expect_data()
    assert await without_schedule_point(partial(stream.receive_some, 10)) == b"answer"
    # Nothing there after all: it waits as usual, until data comes.
    stream.expect_data()
    got: list[bytes] = []

    async def read() -> None:
        got.append(await stream.receive_some(10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # blocked in the wait
        b.sendall(b"late")
    assert got == [b"late"]
    # Cancelled before it starts, a read with data waiting reads nothing.
    b.sendall(b"kept")
    stream.expect_data()
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive_some(10)
    assert scope.cancelled_caught
    assert await stream.receive_some(10) == b"kept"
    await stream.aclose()
    b.close()


# --------------------------------------------------------------------------- pacing


async def test_pacing_wakes_in_deadline_order(autojump_clock: trio.abc.Clock) -> None:
    woke: list[tuple[str, float]] = []
    start = trio.current_time()

    async def sleeper(name: str, at: float) -> None:
        await pacing.sleep_until(start + at)
        woke.append((name, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        for name, at in (("c", 0.3), ("a", 0.1), ("b", 0.2), ("a2", 0.1)):
            nursery.start_soon(sleeper, name, at)
    assert sorted(name for name, _ in woke[:2]) == ["a", "a2"]
    assert [name for name, _ in woke[2:]] == ["b", "c"]
    for name, at in woke:
        assert at == pytest.approx({"a": 0.1, "a2": 0.1, "b": 0.2, "c": 0.3}[name])


async def test_pacing_earlier_deadline_rearms_the_timer(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    woke: list[float] = []

    async def late() -> None:
        await pacing.sleep(10)
        woke.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late)
        await trio.testing.wait_all_tasks_blocked()
        await pacing.sleep(1)
        woke.append(trio.current_time() - start)
    assert woke == [pytest.approx(1), pytest.approx(10)]


async def test_pacing_sleep_is_cancellable_and_checkpoints(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.move_on_after(1) as scope:
        await pacing.sleep(100)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await pacing.sleep_until(trio.current_time() - 1)  # past: still a checkpoint
    assert scope.cancelled_caught
    with pytest.raises(ValueError, match="non-negative"):
        await pacing.sleep(-1)
    with pytest.raises(ValueError, match="NaN"):
        await pacing.sleep_until(float("nan"))
    # A cancelled sleeper left in the heap does not disturb later ones.
    await pacing.sleep(200)
    assert trio.current_time() == pytest.approx(201)


class ClientFrames:
    """Every frame the client sends, read raw from the server's end of the stream (a
    wsproto server connection would reject some of what these tests send back)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.protocol = FrameProtocol(client=False, extensions=[])
        self.opcodes: list[str] = []

    async def until(self, opcode: str) -> None:
        while opcode not in self.opcodes:
            data = await self.server.stream.receive_some(65536)
            assert data, f"the client hung up before a {opcode} frame"
            self.protocol.receive_bytes(data)
            self.opcodes.extend(frame.opcode.name for frame in self.protocol.received_frames())

    async def rest(self) -> None:
        """Whatever else comes, until the client hangs up."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await self.server.stream.receive_some(65536):
                self.protocol.receive_bytes(data)
                self.opcodes.extend(frame.opcode.name for frame in self.protocol.received_frames())


def after_close_scenario(frames: list[ClientFrames], pinged: bool, late: bytes) -> Scenario:
    """Optionally a ping (answered before the close, so the client's wsproto state
    exists and is open), then wait for the client's Close frame, send ``late`` and read
    what else the client sends."""

    async def scenario(server: Server) -> None:
        client = ClientFrames(server)
        frames.append(client)
        if pinged:
            await server.stream.send_all(server_frame(9, b"hi") + server_frame(1, b"go"))
            await client.until("PONG")
        await client.until("CLOSE")
        await server.stream.send_all(late)
        if not late.endswith(HANG_UP):
            await client.rest()
        await server.stream.aclose()

    return scenario


HANG_UP = b"<hang up>"  # a marker at the end of ``late``: the server closes the stream

# Frames a server may send after the client's Close frame and before its answer: all are
# dropped, none is answered, and the answer still ends the close at once.
LATE_FRAMES = [
    pytest.param(server_frame(9, b"ping?"), id="ping"),
    pytest.param(server_frame(10, b"pong"), id="pong"),
    pytest.param(server_frame(1, b"frag", fin=False) + server_frame(0, b"ment"), id="fragments"),
    pytest.param(server_frame(1, b"\xff\xfe not utf-8"), id="bad-utf-8"),
    pytest.param(bytes((0x82, 0x83)) + b"mask" + b"abc", id="masked"),
    pytest.param(bytes((0xC2, 0x03)) + b"abc", id="reserved-bit"),
    pytest.param(bytes((0x83, 0x01)) + b"x", id="unknown-opcode"),
    pytest.param(server_frame(2, b"x" * 2048), id="oversized"),
]


@pytest.mark.parametrize("late", LATE_FRAMES)
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(server_frame(8, (1000).to_bytes(2, "big") + b"bye"), id="close-1000"),
        pytest.param(server_frame(8, b""), id="close-without-code"),
        pytest.param(server_frame(8, b"\x03"), id="close-one-byte"),
        pytest.param(server_frame(8, (999).to_bytes(2, "big")), id="close-bad-code"),
    ],
)
@pytest.mark.parametrize("pinged", [False, True], ids=["fresh", "after-a-ping"])
async def test_after_its_close_frame_the_client_sends_nothing_and_ends_at_the_answer(
    late: bytes, answer: bytes, pinged: bool, autojump_clock: trio.abc.Clock
) -> None:
    # pinged: the client answered a ping through wsproto first, whose state is then
    # open while the client closes; without a ping wsproto was never used. Both must
    # behave the same.
    frames: list[ClientFrames] = []
    scenario = after_close_scenario(frames, pinged, late + answer)
    async with connected(scenario, max_message_bytes=1024, close_timeout_s=5.0) as transport:
        if pinged:
            assert await transport.receive() == "go"  # the ping before it is answered
        before = trio.current_time()
        await transport.aclose(1000)
        assert trio.current_time() == before  # the answer ended it: no close timeout
        with pytest.raises(ConnectionClosedError) as info:
            await transport.receive()
    assert info.value.code == 1000
    assert frames[0].opcodes == (["PONG", "CLOSE"] if pinged else ["CLOSE"])


@settings(max_examples=200, derandomize=True)
@given(late=st.binary(max_size=300), hang_up=st.booleans(), pinged=st.booleans())
def test_whatever_follows_its_close_frame_aclose_ends_quietly_within_its_timeout(
    late: bytes, hang_up: bool, pinged: bool
) -> None:
    # Any bytes after the client's Close frame, then the server's Close frame or a hang
    # up: aclose() raises nothing, ends within its close timeout, and the Close frame is
    # the last thing the client sent.
    frames: list[ClientFrames] = []
    answer = HANG_UP if hang_up else server_frame(8, (1000).to_bytes(2, "big"))
    scenario = after_close_scenario(frames, pinged, late + answer)

    async def main() -> None:
        async with connected(scenario, max_message_bytes=1024, close_timeout_s=5.0) as transport:
            if pinged:
                assert await transport.receive() == "go"
            before = trio.current_time()
            await transport.aclose(1000)
            assert trio.current_time() - before <= 5.0
            with pytest.raises(ConnectionClosedError) as info:
                await transport.receive()
            assert info.value.code == 1000

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert frames[0].opcodes == (["PONG", "CLOSE"] if pinged else ["CLOSE"])

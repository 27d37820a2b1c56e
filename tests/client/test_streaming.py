"""Paced audio: ``WsprotoTransport.stream_bytes`` (frames written by the pacing timer),
``Session.stream_audio`` on both transports, the timer's callbacks, and the masking
routines behind every client frame.

The transport tests run over a real socket pair (so the timer's direct writes, short
writes and a full kernel buffer are the kernel's, not a simulation) against a wsproto
server; time is trio's autojump clock.
"""

from __future__ import annotations

import collections
import math
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from saynad._io import pacing as pacing_impl
from saynad._io.sockets import FastSocketStream
from saynad.client import pacing
from saynad.client._wsproto import WsprotoTransport, handshake
from saynad.client.session import open_session
from saynad.client.transport import Implementation
from saynad.emulator import Emulator
from saynad.errors import ConnectionClosedError, SessionClosedError, ValidationError
from saynad.protocol import framing
from saynad.protocol.messages import STTResult
from tests.support.samples import STT_CONFIG as STT
from tests.support.samples import TTS_CONFIG as TTS
from tests.support.scheduling import with_schedule_point, without_schedule_point
from tests.support.wspeer import ScriptedPeer as Server
from tests.timing import HANG_S


def chunks(count: int, size: int = 640) -> list[bytes]:
    """``count`` distinct chunks (each starts with its index)."""
    return [i.to_bytes(4, "big") + os.urandom(size - 4) for i in range(count)]


class Received:
    """What the server end got, message by message."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.closed = trio.Event()
        self.arrived = trio.lowlevel.ParkingLot()

    def append(self, message: str | bytes) -> None:
        self.messages.append(message)
        self.arrived.unpark_all()

    async def until(self, predicate: Callable[[Received], bool]) -> None:
        """Wait (at most 30 s) until ``predicate(self)`` holds."""
        with trio.fail_after(HANG_S):
            while not predicate(self):
                await self.arrived.park()

    @property
    def binary(self) -> list[bytes]:
        return [m for m in self.messages if isinstance(m, bytes)]


async def _serve(server: Server, received: Received) -> None:
    parts: list[str | bytes] = []
    while True:
        try:
            event = await server.next_event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the test hung up
        if isinstance(event, CloseConnection):
            received.closed.set()
            await server.send(event.response())
            return
        assert isinstance(event, TextMessage | BytesMessage), event
        data = event.data
        parts.append(data if isinstance(data, str) else bytes(data))
        if event.message_finished:  # large frames arrive in several events
            received.append(
                "".join(parts) if isinstance(data, str) else b"".join(parts)  # type: ignore[arg-type]
            )
            parts = []


@asynccontextmanager
async def socket_pair(
    *, client_sndbuf: int | None = None, serve: bool = True
) -> AsyncIterator[tuple[WsprotoTransport, Received, Server]]:
    """A client transport over a real socket pair, and a wsproto server reading it."""
    client_sock, server_sock = socket.socketpair()
    if client_sndbuf is not None:
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, client_sndbuf)
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, client_sndbuf)
    server = Server(trio.SocketStream(trio.socket.from_stdlib_socket(server_sock)))
    received = Received()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.accept)
        transport = await handshake(
            FastSocketStream(client_sock),
            host="sayna.test",
            resource="/ws",
            extra_headers=[],
            max_message_bytes=1 << 24,
            close_timeout_s=2.0,
        )
        if serve:
            nursery.start_soon(_serve, server, received)
        try:
            yield transport, received, server
        finally:
            await transport.aclose()
            await trio.aclose_forcefully(server.stream)
            nursery.cancel_scope.cancel()  # last: nothing may await in a cancelled scope


async def test_the_answer_to_a_command_is_read_in_the_same_scheduler_pass() -> None:
    # A speak's first audio, already waiting when the session reads next, is handled
    # without another pass of the scheduler (in a busy process a pass lasts tens of
    # milliseconds); audio that merely keeps coming is waited for as before.
    async with (
        socket_pair(serve=False) as (transport, received, server),
        trio.open_nursery() as nursery,
    ):
        await trio.testing.wait_all_tasks_blocked()  # the upgrade answer is out
        await server.send(TextMessage(data='{"type":"ready"}'))
        assert await transport.receive() == '{"type":"ready"}'  # a short read
        await transport.send_text('{"type":"speak","text":"hi"}')
        assert await server.message() == '{"type":"speak","text":"hi"}'
        await server.send(BytesMessage(data=b"first audio"))
        assert await without_schedule_point(transport.receive) == b"first audio"
        await server.send(BytesMessage(data=b"more audio"))
        assert await with_schedule_point(transport.receive) == b"more audio"
        nursery.start_soon(_serve, server, received)  # answers the Close
        await transport.aclose()


class Written:
    """What a paced stream reported written through ``on_sent``: frames and bytes."""

    def __init__(self, data: list[bytes]) -> None:
        self.data = data
        self.frames = 0
        self.bytes = 0

    def __call__(self, index: int, lag_s: float) -> None:
        self.frames += 1
        self.bytes += len(self.data[index])


# --------------------------------------------------------------------------- the fast path


async def test_every_chunk_leaves_on_schedule_in_order(autojump_clock: trio.abc.Clock) -> None:
    data = chunks(50)
    sent: list[tuple[int, float]] = []
    progress = Written(data)

    def on_sent(index: int, lag_s: float) -> None:
        sent.append((index, trio.current_time() - start))
        progress(index, lag_s)

    async with socket_pair() as (transport, received, _):
        start = trio.current_time() + 1
        await transport.stream_bytes(data, 0.02, start=start, on_sent=on_sent)
        assert trio.current_time() == pytest.approx(start + 49 * 0.02)
        await received.until(lambda r: len(r.binary) == 50)
    assert received.binary == data
    assert [i for i, _ in sent] == list(range(50))
    assert [t for _, t in sent] == pytest.approx([i * 0.02 for i in range(50)])
    assert (progress.frames, progress.bytes) == (50, 50 * 640)


async def test_overdue_chunks_catch_up_a_burst_per_timer_pass(
    autojump_clock: trio.abc.Clock,
) -> None:
    data = chunks(40)
    lags: list[float] = []
    timer = timer_of_this_run()
    pass_of_send: list[int] = []

    def on_sent(_: int, lag: float) -> None:
        lags.append(lag)
        pass_of_send.append(timer.passes)

    async with socket_pair() as (transport, received, _):
        # 20 chunks are overdue when the stream starts, the other 20 are due later.
        start = trio.current_time() - 20 * 0.02
        await transport.stream_bytes(data, 0.02, start=start, on_sent=on_sent)
        await received.until(lambda r: len(r.binary) == 40)
    assert received.binary == data
    assert all(lag >= 0 for lag in lags)
    assert lags[0] == pytest.approx(20 * 0.02)  # the backlog goes out at once...
    assert lags[25:] == pytest.approx([0] * 15)  # ...then the stream is on time again
    # At most one burst (16 frames) per timer pass, and other tasks run between passes.
    per_pass = collections.Counter(pass_of_send)
    assert max(per_pass.values()) == 16
    assert per_pass[pass_of_send[0]] == 16
    assert per_pass[pass_of_send[16]] >= 4


def frame_bytes(size: int) -> int:
    """The length on the wire of one client binary frame of ``size`` payload bytes."""
    return len(framing.masked_frame(framing.BINARY_FRAME, bytes(size), bytes(4)))


def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every write the pacing timer makes (the real writes, counted)."""
    lengths: list[int] = []
    try_send = FastSocketStream.try_send

    def counting_try_send(self: FastSocketStream, data: bytes | bytearray | memoryview) -> int:
        lengths.append(len(data))
        return try_send(self, data)

    monkeypatch.setattr(FastSocketStream, "try_send", counting_try_send)
    return lengths


async def test_overdue_frames_go_out_together_in_one_write(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    writes = record_writes(monkeypatch)
    data = chunks(40)
    progress = Written(data)
    frame = frame_bytes(640)
    async with socket_pair() as (transport, received, _):
        # Chunks 0-20 are overdue when the stream starts, 21-39 are due later.
        start = trio.current_time() - 0.41
        opened = len(writes)  # the handshake's
        await transport.stream_bytes(data, 0.02, start=start, on_sent=progress)
        streamed = writes[opened:]
        await received.until(lambda r: len(r.binary) == 40)
    assert received.binary == data
    assert progress.frames == 40
    assert all(length % frame == 0 for length in streamed)
    # One write for the first burst, one for the rest of the backlog in the next
    # timer pass, then one frame per write on schedule.
    assert [length // frame for length in streamed] == [16, 5] + [1] * 19


async def test_big_overdue_frames_are_not_joined_past_the_byte_bound(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    writes = record_writes(monkeypatch)
    data = chunks(20, size=30_000)
    progress = Written(data)
    async with socket_pair() as (transport, received, _):
        opened = len(writes)  # the handshake's
        await transport.stream_bytes(data, 0.02, start=trio.current_time() - 1, on_sent=progress)
        streamed = writes[opened:]
        await received.until(lambda r: len(r.binary) == 20)
    assert received.binary == data
    assert progress.frames == 20
    frame = frame_bytes(30_000)
    # Two 30,000-byte chunks fit in 64 KiB, three do not.
    assert all(length % frame == 0 for length in streamed)
    assert [length // frame for length in streamed] == [2] * 10


async def _busy(clock: trio.testing.MockClock, step_s: float) -> None:
    """Another session's work: each scheduler batch it takes ``step_s`` of CPU."""
    while True:
        clock.jump(step_s)
        await trio.lowlevel.checkpoint()


async def test_a_stream_started_in_a_busy_process_writes_its_due_chunks_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Four other tasks take 5 ms each per scheduler batch: 20 ms between two passes of
    # the pacing timer. The chunks due when the stream starts must not wait for one.
    async with socket_pair() as (transport, received, _), trio.open_nursery() as busy:
        for _ in range(4):
            busy.start_soon(_busy, autojump_clock, 0.005)
        await trio.lowlevel.checkpoint()
        begun = trio.current_time()
        at: list[float] = []
        await transport.stream_bytes(
            chunks(10), 0.02, start=begun, on_sent=lambda i, _: at.append(trio.current_time())
        )
        assert at[0] == begun  # chunk 0 left in the call, not a timer pass later

        # A stream whose schedule began earlier (the speak before it, a late task start):
        # what is overdue goes out back to back at once, then the schedule holds.
        sent: list[tuple[int, float]] = []
        start = trio.current_time() - 0.045  # chunks 0, 1 and 2 are overdue
        begun = trio.current_time()
        await transport.stream_bytes(
            chunks(10),
            0.02,
            start=start,
            on_sent=lambda i, lag: sent.append((i, trio.current_time() - begun)),
        )
        assert [t for _, t in sent[:3]] == [0, 0, 0]
        busy.cancel_scope.cancel()
        await received.until(lambda r: len(r.binary) == 20)
    assert [i for i, _ in sent] == list(range(10))


async def test_commands_from_other_tasks_go_out_between_intact_frames(
    autojump_clock: trio.abc.Clock,
) -> None:
    data = chunks(30)
    async with socket_pair() as (transport, received, _):

        async def commands() -> None:
            for i in range(10):
                await transport.send_text(f'{{"type":"speak","text":"{i}"}}')
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(commands)
            await transport.stream_bytes(data, 0.02, start=trio.current_time())
        await received.until(lambda r: len(r.messages) == 40)
    assert received.binary == data
    texts = [m for m in received.messages if isinstance(m, str)]
    assert texts == [f'{{"type":"speak","text":"{i}"}}' for i in range(10)]
    first_text = received.messages.index(texts[0])
    last_text = received.messages.index(texts[-1])
    assert 0 <= first_text < last_text < len(received.messages) - 1  # interleaved


@pytest.mark.parametrize("size", [96 * 1024, 4 * 1024])
async def test_short_writes_and_a_full_kernel_buffer_keep_frames_whole(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock, size: int
) -> None:
    # Big chunks (one per write) or smaller ones (16 per write), a tiny send buffer and a
    # server that does not read at first: the timer gets short writes, and the streaming
    # task must finish each write before the next.
    finished_by_the_task: list[int] = []  # the length of each write the task finished
    send_rest = FastSocketStream.send_rest

    async def counting_send_rest(self: FastSocketStream, data: bytes, sent: int) -> None:
        finished_by_the_task.append(len(data))
        await send_rest(self, data, sent)

    monkeypatch.setattr(FastSocketStream, "send_rest", counting_send_rest)
    data = chunks(24, size=size)
    progress = Written(data)
    async with (
        socket_pair(client_sndbuf=4096, serve=False) as (transport, received, server),
        trio.open_nursery() as nursery,
    ):

        async def late_reader() -> None:
            await trio.sleep(0.2)
            await _serve(server, received)

        nursery.start_soon(late_reader)
        with trio.fail_after(HANG_S):
            await transport.stream_bytes(data, 0, start=trio.current_time(), on_sent=progress)
        await transport.send_text("after")
        await received.until(lambda r: len(r.messages) == 25)
        nursery.cancel_scope.cancel()
    assert received.binary == data
    assert received.messages[-1] == "after"
    assert (progress.frames, progress.bytes) == (24, 24 * size)
    assert finished_by_the_task  # the timer's writes were short, the task finished them
    frame = frame_bytes(size)
    assert max(finished_by_the_task) == (frame if size > 64 * 1024 else 16 * frame)


async def test_a_broken_connection_ends_the_stream_with_connection_closed(
    autojump_clock: trio.abc.Clock,
) -> None:
    data = chunks(500)
    progress = Written(data)
    async with socket_pair() as (transport, received, server):

        async def hang_up() -> None:
            await received.until(lambda r: len(r.binary) >= 10)
            await server.stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hang_up)
            with pytest.raises(ConnectionClosedError) as caught:
                await transport.stream_bytes(
                    data, 0.02, start=trio.current_time(), on_sent=progress
                )
    assert caught.value.code == 1006
    assert 10 <= progress.frames < 500


async def test_cancelling_stops_the_stream_and_the_connection_stays_usable(
    autojump_clock: trio.abc.Clock,
) -> None:
    data = chunks(100)
    progress = Written(data)
    async with socket_pair() as (transport, received, _):
        with trio.move_on_after(0.51):
            await transport.stream_bytes(data, 0.02, start=trio.current_time(), on_sent=progress)
        await trio.sleep(1)  # nothing more is sent after the cancel
        await transport.send_text("still open")
        await received.until(lambda r: r.messages[-1:] == ["still open"])
    assert progress.frames == 26  # due at 0.00, 0.02, ..., 0.50
    assert len(received.binary) == 26


async def test_an_error_from_on_sent_stops_the_stream_and_is_raised(
    autojump_clock: trio.abc.Clock,
) -> None:
    def on_sent(index: int, _lag: float) -> None:
        if index == 3:
            raise RuntimeError("the callback failed")

    async with socket_pair() as (transport, received, _):
        with pytest.raises(RuntimeError, match="the callback failed"):
            await transport.stream_bytes(
                chunks(20), 0.02, start=trio.current_time(), on_sent=on_sent
            )
        await trio.sleep(1)
        await received.until(lambda r: len(r.binary) == 4)
    assert len(received.binary) == 4  # chunk 3 went out, then nothing


async def test_an_error_from_on_sent_in_a_write_of_several_frames(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Chunks 0-15 go out in one write; on_sent hears of every one of them (they are on
    # the wire), then the first error stops the stream.
    reported: list[int] = []

    def on_sent(index: int, _lag: float) -> None:
        reported.append(index)
        if index in (3, 5):
            raise RuntimeError(f"the callback failed at {index}")

    async with socket_pair() as (transport, received, _):
        with pytest.raises(RuntimeError, match="failed at 3"):
            await transport.stream_bytes(
                chunks(40), 0.02, start=trio.current_time() - 0.5, on_sent=on_sent
            )
        await trio.sleep(1)
        await received.until(lambda r: len(r.binary) == 16)
    assert len(received.binary) == 16
    assert reported == list(range(16))


async def test_stream_after_close_raises() -> None:
    async with socket_pair() as (transport, _, _):
        await transport.aclose()
        with pytest.raises(ConnectionClosedError):
            await transport.stream_bytes(chunks(2), 0.02, start=trio.current_time())


# --------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("implementation", ["wsproto", "trio-websocket"])
async def test_stream_audio_yields_transcripts_and_counts_frames(
    emulator: Emulator, implementation: Implementation
) -> None:
    audio = [b"\x00\x00" * 320] * 100  # 2 s of 16 kHz mono in 20 ms chunks
    lags: list[float] = []
    async with open_session(emulator.url, stt=STT, tts=TTS, transport=implementation) as session:
        # 1 ms apart: paced like real time, without taking 2 s of it.
        await session.stream_audio(audio, 0.001, on_sent=lambda _, lag: lags.append(lag))
        finals = []
        with trio.fail_after(HANG_S):
            async for event in session.events():
                if isinstance(event, STTResult) and event.is_final:
                    finals.append(event.transcript)
                    if len(finals) == 2:
                        break
        assert finals == ["hello there", "I would like to check my order"]
        assert session.stats.out_by_kind["audio"] == 100
        assert len(lags) == 100
        with pytest.raises(ValidationError):
            await session.stream_audio(audio, -1)
        for start in (math.nan, math.inf):
            with pytest.raises(ValidationError):
                await session.stream_audio(audio, start=start)
        assert session.stats.out_by_kind["audio"] == 100  # nothing went out
    with pytest.raises(SessionClosedError):
        await session.stream_audio(audio)


async def test_stream_audio_accepts_bytearray_and_memoryview(emulator: Emulator) -> None:
    async with open_session(emulator.url, stt=STT, tts=TTS) as session:
        pcm = bytearray(b"\x01\x00" * 320)
        await session.stream_audio([pcm, memoryview(pcm), bytes(pcm)], 0)
        assert session.stats.out_by_kind["audio"] == 3
        assert session.stats.bytes_out >= 3 * 640


# --------------------------------------------------------------------------- the timer


async def test_timer_callbacks_run_in_deadline_order(autojump_clock: trio.abc.Clock) -> None:
    ran: list[tuple[str, float]] = []
    start = trio.current_time()
    for name, at in (("b", 2.0), ("a", 1.0), ("c", 3.0)):
        pacing.call_at(start + at, partial(lambda n: ran.append((n, trio.current_time())), name))
    cancelled = pacing.call_at(start + 1.5, lambda: ran.append(("x", 0.0)))
    cancelled[2] = None
    await trio.sleep(5)
    assert ran == [("a", start + 1), ("b", start + 2), ("c", start + 3)]


class TimerSteps(trio.abc.Instrument):
    """Counts the steps of the pacing timer's task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == "saynad-pacing-timer":
            self.steps += 1


def timer_of_this_run() -> Any:
    """The pacing timer of the current trio run (started if need be)."""
    return pacing_impl._timer()


async def test_a_callback_adding_a_due_entry_runs_in_the_next_timer_pass() -> None:
    timer = timer_of_this_run()
    ran_in_pass: list[int] = []
    switches = 0
    switches_at_run: list[int] = []
    done = trio.Event()

    def again() -> None:
        ran_in_pass.append(timer.passes)
        switches_at_run.append(switches)
        if len(ran_in_pass) < 3:
            pacing.call_at(trio.current_time(), again)  # due at once
        else:
            done.set()

    async def other() -> None:
        nonlocal switches
        while True:
            switches += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        pacing.call_at(trio.current_time(), again)
        with trio.fail_after(HANG_S):
            await done.wait()
        nursery.cancel_scope.cancel()
    # Each in its own pass, a scheduler batch apart: other tasks ran meanwhile.
    assert len(set(ran_in_pass)) == 3
    assert switches_at_run == sorted(switches_at_run)
    assert switches_at_run[2] > switches_at_run[0]


async def test_due_entries_are_served_without_a_step_of_the_timer_task(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The timer makes its passes in trio's after-I/O-wait hook: the system task stays
    # parked (it steps once, to start) however many deadlines come due.
    steps = TimerSteps()
    trio.lowlevel.add_instrument(steps)
    timer_of_this_run()
    while not steps.steps:  # the timer task's first step
        await trio.lowlevel.checkpoint()
    steps.steps = 0
    start = trio.current_time()
    ran: list[float] = []
    for i in range(20):
        pacing.call_at(start + 0.01 * (i + 1), lambda: ran.append(trio.current_time()))
    await pacing.sleep(1)
    trio.lowlevel.remove_instrument(steps)
    assert ran == pytest.approx([start + 0.01 * (i + 1) for i in range(20)])
    assert steps.steps == 0


class _ClockSkip(trio.abc.Instrument):
    """Moves the mock clock on right after each I/O wait, after the timer's hook has
    looked: deadlines then pass between the hook and trio's own check of them."""

    def __init__(self, clock: trio.testing.MockClock, skip_s: float) -> None:
        self.clock = clock
        self.skip_s = skip_s

    def after_io_wait(self, timeout: float) -> None:
        self.clock.jump(self.skip_s)


async def test_the_timer_task_serves_what_comes_due_after_the_hook_looked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timer_of_this_run()  # its hook first, the skipping instrument after it
    steps = TimerSteps()
    skip = _ClockSkip(autojump_clock, 0.0007)
    trio.lowlevel.add_instrument(steps)
    trio.lowlevel.add_instrument(skip)
    start = trio.current_time()
    ran: list[tuple[int, float]] = []
    for i in range(30):
        due = start + 0.0011 * (i + 1)
        pacing.call_at(
            due, partial(lambda i, due: ran.append((i, trio.current_time() - due)), i, due)
        )
    with trio.fail_after(HANG_S):
        await pacing.sleep(1)
    trio.lowlevel.remove_instrument(skip)
    trio.lowlevel.remove_instrument(steps)
    assert [i for i, _ in ran] == list(range(30))  # each once, in deadline order
    assert all(lag >= 0 for _, lag in ran)
    assert steps.steps > 0  # some passes were the task's


def test_a_timer_callback_that_raises_ends_the_run() -> None:
    # Callbacks must not raise; one that does ends the run (as an error of trio's
    # system task), whether the hook or the task ran it.
    def boom() -> None:
        raise RuntimeError("a broken callback")

    async def main() -> None:
        pacing.call_at(trio.current_time() + 0.01, boom)
        await pacing.sleep(1)

    with pytest.raises(trio.TrioInternalError) as info:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    cause = info.value.__cause__
    while isinstance(cause, BaseExceptionGroup):
        (cause,) = cause.exceptions
    assert isinstance(cause, RuntimeError)


async def test_late_sleeps_are_cancellation_points_and_yield_now_and_then() -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await pacing.sleep_until(trio.current_time() - 1)
    assert scope.cancelled_caught
    switches: list[int] = []

    async def counter() -> None:
        for i in range(1000):
            switches.append(i)
            await trio.lowlevel.cancel_shielded_checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(counter)
        await trio.lowlevel.cancel_shielded_checkpoint()  # let the counter start
        before = len(switches)
        for _ in range(pacing.LATE_SCHEDULE_EVERY * 4):
            await pacing.sleep_until(trio.current_time() - 1)
        during = len(switches) - before
        nursery.cancel_scope.cancel()
    # 64 late sleeps took 4 schedule points (one every 16), not 64.
    assert 3 <= during <= 5


# --------------------------------------------------------------------------- masking


@settings(max_examples=300, derandomize=True)
@given(data=st.binary(max_size=2000), key=st.binary(min_size=4, max_size=4))
def test_both_masking_routines_agree(data: bytes, key: bytes) -> None:
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert framing.mask_in_python(data, key) == expected
    assert framing.apply_mask(data, key) == expected


def test_the_compiled_masking_routine_is_in_use() -> None:
    # The locks install the speedups extra (websockets).
    assert framing.apply_mask is not framing.mask_in_python


@pytest.mark.parametrize(
    "shadow",
    [
        "sys.modules['websockets.speedups'] = None",  # not installed: ImportError
        "import websockets.speedups as m; m.apply_mask = lambda data, key: bytes(data)",  # changed
    ],
    ids=["missing", "misbehaving"],
)
async def test_without_a_working_compiled_routine_the_pure_masking_is_used(shadow: str) -> None:
    code = (
        f"import sys; {shadow}\n"
        "from saynad.protocol import framing\n"
        "assert framing.apply_mask is framing.mask_in_python\n"
        "assert framing.apply_mask(b'abcd', b'\\x01\\x01\\x01\\x01') == b'`cbe'\n"
    )
    result = await trio.run_process([sys.executable, "-c", code], capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()


# --------------------------------------------------------------------------- connecting


async def test_numeric_hosts_connect_directly_and_refusals_are_errors(emulator: Emulator) -> None:
    from saynad._io.sockets import open_fast_tcp_stream

    port = int(emulator.url.rsplit(":", 1)[1].split("/")[0])
    stream = await open_fast_tcp_stream("127.0.0.1", port)
    assert stream.peer_and_local_addresses()[0] == ("127.0.0.1", port)
    await stream.aclose()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):  # the errno, not the OS's wording
        await open_fast_tcp_stream("127.0.0.1", closed_port)
    # A name still goes through DNS and trio's happy eyeballs.
    stream = await open_fast_tcp_stream("localhost", port)
    await stream.aclose()

"""The audio source: a file streamed through the session's pacing timer
(``Outbox.stream_audio``), against the emulator over loopback, on trio's autojump clock.

The session under the actor is the real one; :class:`Spy` only writes down what the
source asked of it (each pass: its start, chunk count and interval) and when each frame
left, then passes everything on.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from saynad.actors.behaviour import AUDIO_LATE_S, Behaviour, SessionCounters
from saynad.actors.behaviours.agent import Agent, EchoBackend
from saynad.actors.behaviours.audio import AudioSource
from saynad.actors.behaviours.greeting import Greeting
from saynad.actors.behaviours.transcripts import Journal
from saynad.actors.session import EndPolicy, serve_session
from saynad.actors.supervisor import ChildControl
from saynad.client.pacing import OnSent
from saynad.client.session import Session, SessionEvent, SessionStats, open_session
from saynad.emulator import Emulator, EmulatorOptions, open_emulator
from saynad.errors import ConnectionClosedError
from saynad.protocol.messages import LiveKitConfig, Ready, SessionCommand
from tests.actors.behaviours.fakes import control, plan
from tests.faultproxy import Fault, FaultProxy
from tests.support.samples import STT_CONFIG as STT
from tests.support.samples import TTS_CONFIG as TTS

PERIOD = 0.020
CHUNK = 640  # 20 ms of 16 kHz mono s16le
NO_LIMITS = EndPolicy()


class Spy:
    """A real session that records the audio source's passes and frames."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.passes: list[tuple[float, int, float]] = []  # (start, chunks, interval)
        self.frames: list[tuple[float, float]] = []  # (due, sent at)
        self.started = trio.Event()

    @property
    def ready(self) -> Ready:
        return self.session.ready

    @property
    def stats(self) -> SessionStats:
        return self.session.stats

    async def send(self, frame: SessionCommand) -> None:
        await self.session.send(frame)

    def events(self) -> AsyncIterator[SessionEvent]:
        return self.session.events()

    async def stream_audio(
        self,
        chunks: Sequence[bytes | bytearray | memoryview],
        interval_s: float = 0.020,
        *,
        start: float | None = None,
        on_sent: OnSent | None = None,
    ) -> None:
        begin = trio.current_time() if start is None else start
        self.passes.append((begin, len(chunks), interval_s))
        self.started.set()

        def sent(index: int, lag_s: float) -> None:
            self.frames.append((begin + index * interval_s, trio.current_time()))
            if on_sent is not None:
                on_sent(index, lag_s)

        await self.session.stream_audio(chunks, interval_s, start=start, on_sent=sent)

    @property
    def lags(self) -> list[float]:
        return [sent - due for due, sent in self.frames]


def pcm_file(tmp_path: Path, chunks: int) -> Path:
    path = tmp_path / "caller.pcm"
    path.write_bytes(b"\x01\x00" * (CHUNK // 2) * chunks)
    return path


@asynccontextmanager
async def serving(
    clock: trio.testing.MockClock,
    url: str,
    behaviours: Callable[[Journal], Sequence[Behaviour]],
    *,
    end: EndPolicy = NO_LIMITS,
    ctl: ChildControl | None = None,
    **session: Any,
) -> AsyncIterator[tuple[Spy, SessionCounters]]:
    """The session actor on a real session to ``url``, served while the block runs and
    waited for after it (the block ends it, or the plan's end policy does).

    The clock stands still until the source streams (it reads its file in a thread,
    which autojumping would not wait for); the block starts then. A deadline on that
    wait could never fire on a clock that stands still, so there is none: the wait is
    a thread reading a file of a few kilobytes."""
    counters = SessionCounters()
    p = plan(behaviours=behaviours, end=end, counters=counters)
    clock.autojump_threshold = math.inf
    async with open_session(url, stt=STT, tts=TTS, **session) as real:
        spy = Spy(real)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_session, p, spy, ctl or control())
            await spy.started.wait()
            clock.autojump_threshold = 0
            yield spy, counters


async def test_a_looping_source_keeps_one_schedule_across_passes_and_counts_its_chunks(
    emulator: Emulator, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    source = AudioSource(pcm_file(tmp_path, 5), fmt="pcm", loop=True)  # 100 ms a pass
    end = EndPolicy(max_duration_s=1.01)
    async with serving(autojump_clock, emulator.url, lambda journal: [source], end=end) as (
        spy,
        counters,
    ):
        pass
    # One stream_audio call per pass over the file, each starting where the previous
    # pass's schedule ends: chunk k of the looped stream is due at start + k * 20 ms.
    assert len(spy.passes) >= 10
    start = spy.passes[0][0]
    for number, (begin, count, interval) in enumerate(spy.passes):
        assert (count, interval) == (5, PERIOD)
        assert begin == pytest.approx(start + number * 5 * PERIOD, abs=1e-9)
    dues = [due for due, _ in spy.frames]
    assert dues == pytest.approx([start + k * PERIOD for k in range(len(dues))], abs=1e-9)
    assert 50 <= len(spy.frames) <= 52  # 1.01 s of 20 ms chunks
    # Never early; on time (nothing else is busy); none late.
    assert all(0 <= lag < 0.001 for lag in spy.lags)
    assert counters.audio_chunks_late == 0
    # Every chunk counted, by the source and by the session (the frames metric).
    assert counters.audio_chunks_sent == len(spy.frames)
    assert spy.stats.out_by_kind["audio"] == len(spy.frames)
    assert spy.stats.bytes_out >= len(spy.frames) * CHUNK
    assert counters.behaviour_errors == 0


async def test_a_late_chunk_does_not_delay_the_ones_after_it(
    emulator: Emulator, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    source = AudioSource(pcm_file(tmp_path, 7), fmt="pcm", loop=True)
    end = EndPolicy(max_duration_s=1.0)
    async with serving(autojump_clock, emulator.url, lambda journal: [source], end=end) as (
        spy,
        counters,
    ):
        await trio.sleep(0.405)
        # The process was busy for 200 ms: ten chunks came due meanwhile.
        autojump_clock.jump(0.2)
    start = spy.passes[0][0]
    dues = [due for due, _ in spy.frames]
    # The schedule did not move: the overdue chunks went out back to back at once, the
    # following ones at their own due times.
    assert dues == pytest.approx([start + k * PERIOD for k in range(len(dues))], abs=1e-9)
    lags = spy.lags
    assert all(lag >= 0 for lag in lags)
    overdue = [lag for lag in lags if lag >= 0.001]
    assert 9 <= len(overdue) <= 11
    assert max(overdue) > 0.18
    late = sum(lag > AUDIO_LATE_S for lag in lags)
    assert 6 <= late <= 9
    assert counters.audio_chunks_late == late
    # Every chunk after the catch-up is on time again.
    caught_up = max(i for i, lag in enumerate(lags) if lag >= 0.001)
    assert len(lags) - caught_up > 20
    assert all(lag < 0.001 for lag in lags[caught_up + 1 :])
    assert counters.audio_chunks_sent == len(lags)


async def test_replies_go_out_promptly_while_the_source_streams(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    source = AudioSource(pcm_file(tmp_path, 10), fmt="pcm", loop=True)

    def behaviours(journal: Journal) -> list[Behaviour]:
        return [Greeting("Hello."), Agent(EchoBackend(), journal=journal), source]

    options = EmulatorOptions(script=("one two",), utterance_ms=200, interim_ms=100)
    end = EndPolicy(max_duration_s=2.0)
    async with open_emulator(options) as emulator:
        async with serving(autojump_clock, emulator.url, behaviours, end=end) as (spy, counters):
            pass
        speaks = [text for text in emulator.state.wire_log if '"type":"speak"' in text]
    # The greeting and a reply per final transcript (one each 200 ms of audio) were
    # written between audio frames, each as soon as it was queued.
    assert counters.replies >= 5
    assert len(speaks) == counters.spoken >= 6
    latencies = list(counters.first_speak_latencies_s)
    assert len(latencies) == counters.replies
    assert all(latency < PERIOD for latency in latencies)
    # And the audio kept its pace meanwhile.
    assert counters.audio_chunks_late == 0
    assert all(0 <= lag < 0.001 for lag in spy.lags)
    assert 100 <= counters.audio_chunks_sent <= 102


async def test_a_drain_stops_the_stream_cleanly(
    emulator: Emulator, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    source = AudioSource(pcm_file(tmp_path, 50), fmt="pcm", loop=True)
    ctl = control()
    async with serving(autojump_clock, emulator.url, lambda journal: [source], ctl=ctl) as (
        spy,
        counters,
    ):
        await trio.sleep(0.5)
        ctl.drain_requested.set()
    ended_at = trio.current_time()
    sent = spy.stats.out_by_kind["audio"]
    assert 25 <= sent <= 27  # mid-file: the stream was cut, not finished
    assert counters.audio_chunks_sent == sent
    assert all(at <= ended_at for _, at in spy.frames)
    assert counters.behaviour_errors == 0


async def test_a_server_that_ends_the_session_mid_stream_is_a_normal_end(
    emulator: Emulator, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The participant leaves and the server closes the socket (1005 after
    ``participant_disconnected``) under the streaming source: no error, whoever of the
    reader and the stream sees the close first."""
    source = AudioSource(pcm_file(tmp_path, 50), fmt="pcm", loop=True)
    end = EndPolicy(on_participant_disconnected=False)  # the server's close ends it
    async with serving(
        autojump_clock,
        emulator.url,
        lambda journal: [source],
        end=end,
        livekit=LiveKitConfig(room_name="room-1"),
    ) as (_, counters):
        emulator.state.join("room-1", "caller")
        await trio.sleep(0.5)
        emulator.state.leave("room-1", "caller")
    assert counters.audio_chunks_sent >= 25
    assert counters.behaviour_errors == 0


async def test_a_broken_connection_mid_stream_fails_the_session_not_the_source(
    emulator: Emulator, autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    source = AudioSource(pcm_file(tmp_path, 50), fmt="pcm", loop=True)
    proxy = FaultProxy("127.0.0.1", int(emulator.url.rsplit(":", 1)[1]))
    async with trio.open_nursery() as proxies:
        await proxies.start(proxy.run)
        url = f"http://127.0.0.1:{proxy.port}"

        async def serve_until_reset() -> None:
            async with serving(autojump_clock, url, lambda journal: [source]) as (_, counters):
                got.append(counters)
                await trio.sleep(0.5)
                proxy.apply(Fault.RESET)
                await trio.sleep_forever()  # the session's error ends the block

        got: list[SessionCounters] = []
        with pytest.raises(ConnectionClosedError) as info:
            await serve_until_reset()
        proxies.cancel_scope.cancel()
    (counters,) = got
    assert info.value.code == 1006
    # The connection's failure, reported by the session: not the source's.
    assert counters.behaviour_errors == 0
    assert 25 <= counters.audio_chunks_sent <= 27

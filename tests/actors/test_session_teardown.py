"""A session that ends because its connection broke still delivers every final transcript
it received: finals counted = entries written + dropped, and none dropped while the sinks
have time (``flush_timeout_s``), whichever task saw the break first.

The soak found the race: the server's last transcript and the reset arrive together, the
reader hands the transcript over while the writer (blocked sending audio) fails, and the
nursery cancels everything, sinks and transcript recorder included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio.testing

from saynad.actors.behaviour import BehaviourContext
from saynad.actors.behaviours.transcripts import JsonlSink
from saynad.actors.session import RunTally, serve_session
from saynad.client.session import SessionEvent
from saynad.errors import ConnectionClosedError
from tests.actors.behaviours.fakes import FakeSession, control, plan


@dataclass
class SlowFile:
    """A transcript file whose writes take ``write_s`` (a worker thread on a busy host)."""

    write_s: float = 0.0
    lines: list[bytes] = field(default_factory=list)

    async def append(self, data: memoryview) -> int:
        await trio.sleep(self.write_s)
        self.lines.extend(bytes(data).splitlines())
        return len(data)

    async def sync(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@dataclass
class Talker:
    """Streams audio like the daemon's audio source: one chunk every 10 ms."""

    name: str = "audio"

    def wants(self, event: SessionEvent) -> bool:
        return False

    async def run(self, ctx: BehaviourContext) -> None:
        while True:
            await ctx.out.send_audio(b"\x00\x00" * 160)
            await trio.sleep(0.01)


@dataclass
class Tally:
    """The observer's view: the run's counted finals."""

    runs: list[RunTally] = field(default_factory=list)

    def run_started(self, run: RunTally) -> None:
        self.runs.append(run)

    def run_ended(self, run: RunTally) -> None:
        pass

    def observe_speak_to_audio(self, seconds: float) -> None:
        pass

    def observe_final_to_speak(self, seconds: float) -> None:
        pass


class ResetSession(FakeSession):
    """From ``reset_at`` on, a send waits for the reset and then fails, as on a socket
    the peer reset while the send buffer was full; the reader sees only the events."""

    def __init__(self, reset_at: float) -> None:
        super().__init__()
        self.reset_at = reset_at
        self.reset = trio.Event()

    async def send_audio(self, pcm: bytes) -> None:
        if trio.current_time() + 0.01 >= self.reset_at:
            await self.reset.wait()
            raise ConnectionClosedError(1006, "connection reset by peer")
        await super().send_audio(pcm)


async def _one_run(write_s: float) -> tuple[int, int, int, list[bytes]]:
    file = SlowFile(write_s)

    async def opener(path: Path) -> SlowFile:
        return file

    sink = JsonlSink("/unused/{session}.jsonl", opener=opener)
    tally = Tally()
    session = ResetSession(reset_at=0.5)
    p = plan(behaviours=lambda journal: [Talker()], sinks=[sink], observer=tally)

    async def server() -> None:
        session.say("1: first")
        await trio.sleep_until(0.5)
        # The last transcript and the reset in the same moment: the reader and the
        # writer wake in the same scheduling round, in either order.
        session.say("2: last")
        session.reset.set()
        await trio.sleep(1)
        session.hang_up()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        try:
            await serve_session(p, session, control())
        except* ConnectionClosedError:
            pass
        else:
            raise AssertionError("the session must end with the reset")
    (run,) = tally.runs
    return run.stt_finals, p.counters.sink_written, p.counters.sink_dropped, file.lines


async def test_the_last_transcript_before_a_reset_is_written(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # trio varies the order of a scheduling round: repeat to meet every interleaving.
    for write_s in (0.0, 0.0005) * 10:
        finals, written, dropped, lines = await _one_run(write_s)
        assert (finals, written, dropped) == (2, 2, 0), f"write_s={write_s}"
        assert [b'"1: first"' in lines[0], b'"2: last"' in lines[1]] == [True, True]

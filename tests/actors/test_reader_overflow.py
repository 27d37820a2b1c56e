"""The reader never waits on a behaviour: media is dropped, a stuck control lane ends
the session (overflow policy: disconnect)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio
import trio.testing

from saynad.actors.behaviour import BehaviourContext
from saynad.actors.session import serve_session
from saynad.client.session import SessionEvent
from saynad.errors import BehaviourOverloadError
from saynad.protocol.messages import STTResult, TTSAudio
from tests.actors.behaviours.fakes import control, fake_session, plan


@dataclass
class Stuck:
    """Wants every event and never reads one."""

    name: str = "stuck"

    def wants(self, event: SessionEvent) -> bool:
        return True

    async def run(self, ctx: BehaviourContext) -> None:
        await trio.sleep_forever()


async def test_media_overflow_is_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_session() as fake:
        p = plan(behaviours=lambda journal: [Stuck()], fanout_capacity=4)
        for _ in range(10):
            fake.push(TTSAudio(b"\x00\x00"))
        fake.hang_up()
        await serve_session(p, fake, control())  # type: ignore[arg-type]
    assert p.counters.dropped_events == 6


async def test_control_overflow_ends_the_session(autojump_clock: trio.testing.MockClock) -> None:
    async with fake_session() as fake:
        p = plan(behaviours=lambda journal: [Stuck()], fanout_capacity=4)
        for i in range(5):
            fake.push(
                STTResult(transcript=f"t{i}", is_final=True, is_speech_final=False, confidence=1)
            )
        # The session's boundary raises the cause itself, never an exception group.
        with (
            pytest.raises(BehaviourOverloadError, match="'stuck' is 4 events behind"),
            trio.fail_after(5),
        ):
            await serve_session(p, fake, control())  # type: ignore[arg-type]

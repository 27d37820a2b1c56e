"""Session end conditions and bounded teardown, on a fake session under the autojump
clock: max duration, idle timeout (what counts as activity), goodbye line, sink flush
deadline, participant leaving, behaviours that finish early."""

from __future__ import annotations

import httpx
import pytest
import structlog.testing
import trio
import trio.testing

from saynad.actors.behaviour import Behaviour, BehaviourContext, SessionCounters
from saynad.actors.behaviours.agent import Agent, EchoBackend
from saynad.actors.behaviours.greeting import Greeting
from saynad.actors.behaviours.transcripts import HttpSink, Journal
from saynad.actors.session import EndPolicy, serve_session
from saynad.client.session import SessionEvent
from saynad.protocol.messages import Participant, ParticipantDisconnected
from tests.actors.behaviours.fakes import FakeSession, control, fake_session, plan


async def run_until_end(fake: FakeSession, **kwargs: object) -> tuple[float, str]:
    """Serve until the session ends by itself; return (end time, end reason)."""
    with structlog.testing.capture_logs() as logs:
        await serve_session(plan(**kwargs), fake, control())  # type: ignore[arg-type]
    ended = next(e for e in logs if e["event"] == "session ended")
    return trio.current_time(), ended["reason"]


async def test_max_duration_ends_the_session_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_session() as fake:
        start = trio.current_time()
        ended_at, reason = await run_until_end(fake, end=EndPolicy(max_duration_s=30))
    assert reason == "max duration"
    assert ended_at - start == pytest.approx(30)


async def test_idle_timeout_restarts_on_transcripts_and_agent_speech(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_session(ms_per_char=100) as fake, trio.open_nursery() as nursery:
        start = trio.current_time()

        async def caller() -> None:
            await trio.sleep(5)
            fake.interim("um")  # a non-empty interim is speech
            await trio.sleep(7)
            # A turn at 12 s: the echo reply "You said: hi" (12 characters at 100 ms)
            # is generated until 13.2 s; idleness counts from its tts_playback_complete.
            fake.say("hi")

        nursery.start_soon(caller)
        ended_at, reason = await run_until_end(
            fake,
            end=EndPolicy(idle_timeout_s=10),
            behaviours=lambda journal: [Agent(EchoBackend(), journal=journal)],
        )
    assert reason == "idle timeout"
    assert ended_at - start == pytest.approx(23.2)


async def test_idle_timeout_without_any_speech(autojump_clock: trio.testing.MockClock) -> None:
    async with fake_session() as fake:
        start = trio.current_time()
        ended_at, reason = await run_until_end(fake, end=EndPolicy(idle_timeout_s=10))
    assert (reason, ended_at - start) == ("idle timeout", pytest.approx(10))


async def test_goodbye_is_said_after_a_clear_and_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_session(ms_per_char=100) as fake:
        start = trio.current_time()
        ended_at, reason = await run_until_end(
            fake, end=EndPolicy(max_duration_s=30, goodbye_text="Goodbye!")
        )
    assert reason == "max duration"
    assert fake.kinds() == ["clear", "speak"]
    assert fake.commands[1].args == {"text": "Goodbye!", "allow_interruption": False}
    assert ended_at - start == pytest.approx(30.8)  # 8 characters at 100 ms


async def test_every_teardown_phase_has_a_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """A goodbye that never completes and a sink that never answers still end the session
    at max_duration + goodbye_timeout + flush_timeout, with the sink's entries counted."""

    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError

    counters = SessionCounters()
    sink = HttpSink("http://sink.test", batch_size=1, transport=httpx.MockTransport(hang))
    async with fake_session(ms_per_char=1e9) as fake, trio.open_nursery() as nursery:
        start = trio.current_time()

        async def caller() -> None:
            await trio.sleep(1)
            fake.say("first")
            fake.say("second")

        nursery.start_soon(caller)
        ended_at, _ = await run_until_end(
            fake,
            end=EndPolicy(
                max_duration_s=20, goodbye_text="Bye.", goodbye_timeout_s=3, flush_timeout_s=2
            ),
            sinks=[sink],
            counters=counters,
        )
    assert ended_at - start == pytest.approx(25)
    # Two user lines and the goodbye: one was in flight, the rest queued: all dropped.
    assert counters.sink_dropped == 3
    assert counters.sink_written == 0


async def test_participant_leaving_ends_the_session_when_asked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fake_session() as fake:
        fake.push(
            ParticipantDisconnected(participant=Participant(identity="c", room="r", timestamp=0))
        )
        _, reason = await run_until_end(
            fake, end=EndPolicy(on_participant_disconnected=True, goodbye_text="Bye")
        )
    assert reason == "participant left"
    assert fake.kinds() == []  # nobody is left to hear a goodbye


class Once:
    """A behaviour that wants everything, reads one event and returns."""

    name = "once"

    def wants(self, event: SessionEvent) -> bool:
        return True

    async def run(self, ctx: BehaviourContext) -> None:
        await ctx.events.receive()


async def test_behaviours_that_finish_early_do_not_break_the_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def behaviours(journal: Journal) -> list[Behaviour]:
        return [Once(), Greeting("Welcome!", when="first_participant", journal=journal)]

    async with fake_session() as fake, trio.open_nursery() as nursery:

        async def caller() -> None:
            for _ in range(3):
                fake.join()
                fake.say("hello")
                await trio.sleep(1)
            fake.hang_up()

        nursery.start_soon(caller)
        _, reason = await run_until_end(fake, behaviours=behaviours)
    assert reason == "server closed"
    assert fake.speaks == ["Welcome!"]  # greeted once, at the first participant

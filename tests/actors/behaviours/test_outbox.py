"""The writer's two-lane inbox: control commands never wait behind queued audio."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pytest
import trio
import trio.testing

from saynad.actors.behaviour import Behaviour, BehaviourContext, Command, CommandQueue
from saynad.actors.behaviours.agent import Agent, EchoBackend
from saynad.actors.behaviours.transcripts import Journal
from saynad.actors.session import EndPolicy, serve_session
from saynad.client.session import SessionEvent
from saynad.protocol.messages import AudioFrame, ClearFrame, SpeakFrame
from tests.actors.behaviours.fakes import FakeSession, control, fake_session, plan

SPEAK = SpeakFrame(text="hi")
CLEAR = ClearFrame()


def audio(n: int) -> AudioFrame:
    return AudioFrame(bytes([n]) * 2)


async def test_control_lane_is_served_first_and_lanes_block_when_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = CommandQueue(control_capacity=2, media_capacity=2)
    await queue.put(audio(1), media=True)
    await queue.put(audio(2), media=True)
    with trio.move_on_after(1) as blocked:
        await queue.put(audio(3), media=True)
    assert blocked.cancelled_caught  # the media lane is full: the producer waits
    await queue.put(SPEAK)  # the control lane is not
    assert queue.statistics() == (1, 2)
    assert [await queue.get() for _ in range(3)] == [SPEAK, audio(1), audio(2)]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.put, CLEAR)
        nursery.start_soon(partial(queue.put, audio(4), media=True))
        await trio.testing.wait_all_tasks_blocked()
        queue.close()
    assert await queue.get() == CLEAR  # queued commands are still written
    assert await queue.get() == audio(4)
    with pytest.raises(trio.EndOfChannel):
        await queue.get()
    with pytest.raises(trio.ClosedResourceError):
        await queue.put(SPEAK)


async def test_producers_fail_once_the_writer_is_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = CommandQueue(control_capacity=1)
    await queue.put(SPEAK)
    async with trio.open_nursery() as nursery:

        async def blocked_producer() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await queue.put(SPEAK)

        nursery.start_soon(blocked_producer)
        await trio.testing.wait_all_tasks_blocked()
        queue.close_receiving()


@dataclass
class QueuedAudio:
    """Caller audio through the writer's media lane (``Outbox.send_audio``), as fast as
    the lane takes it: the lane stays full."""

    name: str = "queued-audio"

    def wants(self, event: SessionEvent) -> bool:
        return False

    async def run(self, ctx: BehaviourContext) -> None:
        chunk = b"\x00\x00" * 320
        while True:
            await ctx.out.send_audio(chunk)


async def test_a_reply_overtakes_queued_audio_on_a_slow_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def behaviours(journal: Journal) -> list[Behaviour]:
        return [Agent(EchoBackend(), journal=journal), QueuedAudio()]

    # Each audio frame takes 10 ms to leave: the media lane stays full.
    async with fake_session(audio_send_s=0.01) as fake, trio.open_nursery() as nursery:
        nursery.start_soon(
            serve_session,
            plan(behaviours=behaviours, end=EndPolicy(max_duration_s=5)),
            fake,
            control(),
        )
        await trio.sleep(1)
        fake.say("hello")
    assert isinstance(fake, FakeSession)
    speak = next(i for i, c in enumerate(fake.commands) if c.kind == "speak")
    said_at = fake.commands[speak].at
    # Written right after the audio frame in flight, not behind the 64 queued ones.
    assert said_at - 1.0 <= 0.011
    assert all(c.kind == "send_audio" for c in fake.commands[:speak])


class _Steps(trio.abc.Instrument):
    """Counts scheduler passes (one I/O check each) and each task's steps."""

    def __init__(self) -> None:
        self.passes = 0
        self.steps: dict[trio.lowlevel.Task, int] = {}

    def after_io_wait(self, timeout: float) -> None:
        self.passes += 1

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] = self.steps.get(task, 0) + 1


async def test_a_waiting_writer_gets_its_command_in_the_step_that_wakes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = CommandQueue()
    got: list[Command] = []
    writer: list[trio.lowlevel.Task] = []

    async def consume() -> None:
        writer.append(trio.lowlevel.current_task())
        got.append(await queue.get())

    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            await trio.testing.wait_all_tasks_blocked()  # the writer waits in get()
            assert steps.steps[writer[0]] == 1
            assert not got
            await queue.put(SPEAK)
    finally:
        trio.lowlevel.remove_instrument(steps)
    # Woken once, and that very step returned the command (the wait was its checkpoint).
    assert got == [SPEAK]
    assert steps.steps[writer[0]] == 2


async def test_a_final_transcript_is_answered_within_four_scheduler_passes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """reader → agent → reply → writer: one pass each, the ``speak`` written in the 4th.

    Every pass runs every runnable task of every session, so each extra one makes a reply
    wait behind all the others' work (transcripts of many sessions arriving together).
    """
    steps = _Steps()
    sent_in_pass: list[int] = []

    class Recording(FakeSession):
        async def speak(
            self, text: str, flush: bool = True, allow_interruption: bool = True
        ) -> None:
            sent_in_pass.append(steps.passes)
            await super().speak(text, flush, allow_interruption)

    def behaviours(journal: Journal) -> list[Behaviour]:
        return [Agent(EchoBackend(), journal=journal)]

    fake = Recording()
    p = plan(behaviours=behaviours)
    async with trio.open_nursery() as tts:
        tts.start_soon(fake.tts)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_session, p, fake, control())
            for answered, turn in enumerate(("hello there", "thank you"), start=1):
                await trio.sleep(5)  # the previous reply was generated: no barge-in
                await trio.testing.wait_all_tasks_blocked()  # every task waits
                trio.lowlevel.add_instrument(steps)
                try:
                    said_in_pass = steps.passes
                    fake.say(turn)
                    with trio.fail_after(1):
                        while len(sent_in_pass) < answered:
                            await trio.lowlevel.checkpoint()
                finally:
                    trio.lowlevel.remove_instrument(steps)
                assert sent_in_pass[-1] - said_in_pass == 4
            await trio.sleep(5)
            fake.hang_up()
        tts.cancel_scope.cancel()
    assert fake.speaks == ["You said: hello there", "You said: thank you"]
    assert len(p.counters.first_speak_latencies_s) == 2

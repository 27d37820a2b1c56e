"""The agent behaviour in a session actor, on a fake session under the autojump clock:
turns, sentence streaming, barge-in and what the caller heard, failures and fallback,
loading indicator, transfers, latency accounting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
import trio
import trio.testing

from saynad.actors.behaviour import Behaviour, SessionCounters
from saynad.actors.behaviours.agent import (
    INTERRUPTED_MARKER,
    Agent,
    AgentError,
    AgentRequest,
    ChatMessage,
    Conversation,
    EchoBackend,
    ReplyWriter,
    TurnAssembler,
)
from saynad.actors.behaviours.transcripts import Journal
from saynad.actors.session import EndPolicy, serve_session
from saynad.protocol.messages import STTResult
from tests.actors.behaviours.fakes import FakeSession, control, fake_session, plan

Step = str | float | tuple[str, str] | Exception


class Scripted:
    """A backend that plays one list of steps per request (the last one repeats):
    text chunks, sleeps (seconds), ``("transfer", number)`` and exceptions."""

    kind = "scripted"

    def __init__(self, *scripts: Sequence[Step]) -> None:
        self.scripts = scripts
        self.requests: list[AgentRequest] = []
        self.cancelled = 0

    async def reply(self, request: AgentRequest, out: ReplyWriter) -> None:
        script = self.scripts[min(len(self.requests), len(self.scripts) - 1)]
        self.requests.append(request)
        try:
            for step in script:
                if isinstance(step, int | float):
                    await trio.sleep(step)
                elif isinstance(step, Exception):
                    raise step
                elif isinstance(step, tuple):
                    out.transfer(step[1])
                else:
                    await out.text(step)
        except trio.Cancelled:
            self.cancelled += 1
            raise

    async def aclose(self) -> None:
        return None


async def run_agent(
    agent: Agent,
    script: Callable[[FakeSession], Awaitable[None]],
    *,
    end: EndPolicy | None = None,
    ms_per_char: float = 20.0,
) -> tuple[FakeSession, SessionCounters, list[Any]]:
    """Run a session actor with ``agent`` on a fake session while ``script`` plays the
    caller; return the fake, the counters and the transcript entries."""
    counters = SessionCounters()
    entries: list[Any] = []

    def behaviours(journal: Journal) -> list[Behaviour]:
        agent.journal = journal
        queue = journal.add_queue("test", 1000)
        entries.append(queue)
        return [agent]

    async with fake_session(ms_per_char=ms_per_char) as fake:
        p = plan(behaviours=behaviours, counters=counters, end=end or EndPolicy())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_session, p, fake, control())
            await script(fake)
            fake.hang_up()
    return fake, counters, list(entries[0]._items)


async def test_a_turn_is_answered_sentence_by_sentence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted(["Hello there. How ", "are you", " today? I am ", 0.5, "fine."])

    async def caller(fake: FakeSession) -> None:
        fake.interim("good")  # interims never make a turn
        fake.say("good morning")
        await trio.sleep(5)

    fake, counters, entries = await run_agent(Agent(backend), caller)
    assert fake.speaks == ["Hello there.", "How are you today?", "I am fine."]
    assert counters.agent_requests == 1
    assert counters.replies == 1
    assert counters.spoken == 3
    request = backend.requests[0]
    assert request.turn.text == "good morning"
    assert request.history == ()
    assert request.identity.caller == "+15550001"
    assert [(e.role, e.text, e.interrupted) for e in entries] == [
        ("user", "good morning", False),
        ("agent", "Hello there. How are you today? I am fine.", False),
    ]


async def test_first_speak_latency_is_measured_from_the_turn_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted(["Let me think", 0.25, ". Done."])

    async def caller(fake: FakeSession) -> None:
        fake.say("question")
        await trio.sleep(3)
        fake.say("again")
        await trio.sleep(3)

    _fake, counters, _ = await run_agent(Agent(backend), caller)
    assert list(counters.first_speak_latencies_s) == [pytest.approx(0.25)] * 2


async def test_barge_in_cuts_the_reply_and_history_keeps_what_was_heard(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Sentences of 20 characters take 0.4 s to generate (20 ms per character).
    backend = Scripted(
        ["First sentence here. ", 0.1, "Second sentence now. ", 30, "Never said."],
        ["Okay."],
    )
    agent = Agent(backend, fallback_text="Sorry.")

    async def caller(fake: FakeSession) -> None:
        fake.say("tell me a story")
        await trio.sleep(2)  # both sentences generated: tts_playback_complete arrived
        fake.interim("wait")  # barge-in: the backend is cancelled mid-request
        await trio.sleep(0.1)
        fake.say("wait a moment")
        await trio.sleep(2)

    fake, counters, entries = await run_agent(agent, caller)
    assert backend.cancelled == 1
    assert counters.barge_ins == 1
    assert fake.kinds() == ["speak", "speak", "clear", "speak"]
    assert fake.speaks == ["First sentence here.", "Second sentence now.", "Okay."]
    assert backend.requests[1].history == (
        ChatMessage("user", "tell me a story"),
        ChatMessage("assistant", f"First sentence here. Second sentence now. {INTERRUPTED_MARKER}"),
    )
    agent_lines = [(e.text, e.interrupted) for e in entries if e.role == "agent"]
    assert agent_lines == [
        ("First sentence here. Second sentence now.", True),
        ("Okay.", False),
    ]
    assert counters.agent_failures == 0  # a cut is not a failure


async def test_barge_in_before_generation_completes_counts_nothing_heard(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted(["A rather long first sentence to say. ", 30], ["Sure."])

    async def caller(fake: FakeSession) -> None:
        fake.say("hi")
        await trio.sleep(0.3)  # speak sent, its audio not generated yet
        fake.say("hello?")  # a final with text barges in too (interims may be dropped)
        await trio.sleep(2)

    fake, counters, entries = await run_agent(Agent(backend), caller)
    assert counters.barge_ins == 1
    assert fake.kinds() == ["speak", "clear", "speak"]
    # The cleared sentence produced no audio; the fake TTS dropped it.
    assert backend.requests[1].history == (
        ChatMessage("user", "hi"),
        ChatMessage("assistant", INTERRUPTED_MARKER),
    )
    assert [e.text for e in entries if e.role == "agent"] == ["Sure."]


async def test_barge_in_while_thinking_cancels_without_clear(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted([5, "Too late."], ["Now."])

    async def caller(fake: FakeSession) -> None:
        fake.say("one")
        await trio.sleep(1)
        fake.interim("two")
        fake.say("two")
        await trio.sleep(2)

    fake, counters, _ = await run_agent(Agent(backend), caller)
    assert backend.cancelled == 1
    assert counters.barge_ins == 1
    assert fake.kinds() == ["speak"]  # nothing was sent before the cut: no clear
    # Nothing was said: no assistant message, the caller's two turns follow each other.
    assert backend.requests[1].history == (ChatMessage("user", "one"),)
    assert backend.requests[1].turn.text == "two"


async def test_without_barge_in_replies_are_not_interruptible_and_turns_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted(["First answer.", 3, " Still first."], ["Second answer."])

    async def caller(fake: FakeSession) -> None:
        fake.say("one")
        await trio.sleep(1)
        fake.interim("two")
        fake.say("two")
        fake.say("three")  # both wait for the first reply, then go as one turn
        await trio.sleep(10)

    fake, counters, _ = await run_agent(Agent(backend, barge_in=False), caller)
    assert counters.barge_ins == 0
    assert backend.cancelled == 0
    assert "clear" not in fake.kinds()
    assert fake.speaks == ["First answer.", "Still first.", "Second answer."]
    assert all(c.args["allow_interruption"] is False for c in fake.commands if c.kind == "speak")
    assert [r.turn.text for r in backend.requests] == ["one", "two three"]
    assert backend.requests[1].history[-1] == ChatMessage("assistant", "First answer. Still first.")


async def test_timeout_speaks_the_fallback_and_counts_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted([60, "never"])
    agent = Agent(backend, timeout_s=2, fallback_text="Sorry, say that again? Thanks.")

    async def caller(fake: FakeSession) -> None:
        fake.say("hello")
        await trio.sleep(5)

    fake, counters, entries = await run_agent(agent, caller)
    assert fake.speaks == ["Sorry, say that again?", "Thanks."]
    speak = next(c for c in fake.commands if c.kind == "speak")
    assert speak.at == pytest.approx(2.0)
    assert counters.agent_failures == 1
    assert counters.agent_failure_reasons == {"timeout": 1}
    assert [e.text for e in entries if e.role == "agent"] == ["Sorry, say that again? Thanks."]


@pytest.mark.parametrize(
    ("error", "reason"),
    [(AgentError("status", "HTTP 503"), "status"), (RuntimeError("boom"), "exception")],
)
async def test_backend_errors_speak_the_fallback_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock, error: Exception, reason: str
) -> None:
    backend = Scripted([error], ["Better now."])

    async def caller(fake: FakeSession) -> None:
        fake.say("hello")
        await trio.sleep(2)
        fake.say("hello again")
        await trio.sleep(2)

    fake, counters, _ = await run_agent(Agent(backend, fallback_text="One moment."), caller)
    assert fake.speaks == ["One moment.", "Better now."]
    assert counters.agent_failure_reasons == {reason: 1}
    assert counters.behaviour_errors == 0


async def test_a_partly_spoken_reply_gets_no_fallback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted(["Here is the start. And then", AgentError("bad_reply", "cut")])

    async def caller(fake: FakeSession) -> None:
        fake.say("hello")
        await trio.sleep(2)

    fake, counters, _ = await run_agent(Agent(backend, fallback_text="Sorry."), caller)
    assert fake.speaks == ["Here is the start."]  # the unfinished sentence is dropped
    assert counters.agent_failure_reasons == {"bad_reply": 1}


async def test_loading_indicator_plays_only_around_slow_replies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted([2, "Slow answer."], [0.1, "Quick answer."])
    agent = Agent(backend, loading_indicator=True, loading_delay_s=0.5)

    async def caller(fake: FakeSession) -> None:
        fake.say("slow")
        await trio.sleep(4)
        fake.say("quick")
        await trio.sleep(2)

    fake, _, _ = await run_agent(agent, caller)
    timeline = [(c.kind, round(c.at, 3)) for c in fake.commands]
    assert timeline == [
        ("loading_start", 0.5),
        ("loading_stop", 2.0),
        ("speak", 2.0),
        ("speak", 4.1),
    ]


async def test_transfer_waits_until_the_reply_was_generated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = Scripted(["Transferring you now.", ("transfer", " +15550100 ")])

    async def caller(fake: FakeSession) -> None:
        fake.say("operator please")
        await trio.sleep(3)

    fake, counters, _ = await run_agent(Agent(backend), caller)
    speak, transfer = (c for c in fake.commands if c.kind in ("speak", "sip_transfer"))
    assert transfer.args == {"transfer_to": "+15550100"}
    # 21 characters at 20 ms: generated 0.42 s after the speak.
    assert transfer.at - speak.at == pytest.approx(0.42)
    assert counters.transfers == 1


async def test_echo_backend_and_forced_end_of_turn(autojump_clock: trio.testing.MockClock) -> None:
    async def caller(fake: FakeSession) -> None:
        fake.push(
            STTResult(transcript="book a", is_final=True, is_speech_final=False, confidence=1)
        )
        fake.push(STTResult(transcript="table", is_final=True, is_speech_final=False, confidence=1))
        fake.push(STTResult(transcript="", is_final=True, is_speech_final=True, confidence=1))
        fake.push(STTResult(transcript="", is_final=True, is_speech_final=True, confidence=1))
        await trio.sleep(2)

    fake, counters, _ = await run_agent(Agent(EchoBackend()), caller)
    assert fake.speaks == ["You said: book a table"]
    assert counters.agent_requests == 1


def test_turn_assembler() -> None:
    turns = TurnAssembler()

    def r(text: str, final: bool, speech_final: bool) -> STTResult:
        return STTResult(
            transcript=text, is_final=final, is_speech_final=speech_final, confidence=1.0
        )

    assert turns.feed(r("hel", False, False)) is None
    assert turns.feed(r("hello", True, False)) is None
    assert turns.feed(r(" there ", True, True)) == "hello there"
    assert turns.feed(r("", True, True)) is None  # a forced end alone is no turn


def test_conversation_keeps_the_last_turns() -> None:
    history = Conversation(max_turns=2)
    history.add("assistant", "greeting")
    for i in range(1, 4):
        history.add("user", f"u{i}")
        history.add("assistant", f"a{i}")
    assert [m.content for m in history.messages()] == ["u2", "a2", "u3", "a3"]
    assert len(history._messages) <= 7  # storage stays bounded too

    short = Conversation(max_turns=5)
    short.add("assistant", "greeting")
    short.add("user", "u1")
    assert [m.content for m in short.messages()] == ["greeting", "u1"]
    assert Conversation(max_turns=0).messages() == ()
    reply = short.add("assistant", "a long answer")
    short.replace(reply, "a long [interrupted]")
    assert short.messages()[-1] == ChatMessage("assistant", "a long [interrupted]")
    gone = history.messages()[0]  # "u2": trimmed below once more turns come
    history.add("user", "u4")
    history.add("user", "u5")
    history.replace(gone, "u2 again")  # no longer kept: added as a new message
    assert history.messages()[-1] == ChatMessage("user", "u2 again")
    none = Conversation(max_turns=0)
    none.add("user", "x")
    assert none.messages() == ()


async def test_a_cut_reply_records_the_sentence_that_was_playing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # "Yes." is generated (its audio arrives) while the long second sentence is still
    # being generated: no tts_playback_complete yet when the caller cuts in.
    backend = Scripted(["Yes. ", "This second sentence takes a long while to generate. ", 30])

    async def caller(fake: FakeSession) -> None:
        fake.say("is it open")
        await trio.sleep(0.5)  # "Yes." generated (80 ms); the second one is under way
        fake.say("thanks bye")
        await trio.sleep(2)

    _fake, counters, entries = await run_agent(Agent(backend), caller)
    assert counters.barge_ins == 1
    assert counters.tts_audio_frames >= 1
    agent_lines = [(e.text, e.interrupted) for e in entries if e.role == "agent"]
    assert agent_lines[0] == ("Yes.", True)
    assert backend.requests[1].history[-1] == ChatMessage("assistant", f"Yes. {INTERRUPTED_MARKER}")


async def test_transcript_lines_are_in_time_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Without barge-in the caller speaks while the reply plays: the reply's line is
    # recorded when it ends, after the caller's line, and its ts says so.
    backend = Scripted(["First answer. Then", 3, " more."], ["Second answer."])

    async def caller(fake: FakeSession) -> None:
        fake.say("one")
        await trio.sleep(1)
        fake.say("two")
        await trio.sleep(10)

    _fake, _counters, entries = await run_agent(Agent(backend, barge_in=False), caller)
    assert [(e.role, e.text) for e in entries] == [
        ("user", "one"),
        ("user", "two"),
        ("agent", "First answer. Then more."),
        ("agent", "Second answer."),
    ]
    stamps = [e.ts for e in entries]
    assert stamps == sorted(stamps)

"""The agent: turn a finished user turn into a spoken reply."""

from __future__ import annotations

from dataclasses import dataclass

from saynad.actors.behaviour import BehaviourContext
from saynad.actors.behaviours.transcripts import Journal
from saynad.client.session import SessionEvent
from saynad.protocol.messages import STTResult

__all__ = ["EchoAgent", "TurnAssembler"]


@dataclass
class TurnAssembler:
    """Accumulate final segments until ``is_speech_final`` closes the turn.

    A forced end of turn arrives as an empty final frame with both flags set; it closes
    the turn without adding text (never an empty utterance of its own).
    """

    parts: list[str]

    def __init__(self) -> None:
        self.parts = []

    def feed(self, event: STTResult) -> str | None:
        """Return the whole turn's text when ``event`` ends a non-empty turn."""
        if event.is_final and event.transcript.strip():
            self.parts.append(event.transcript.strip())
        if event.is_final and event.is_speech_final:
            text = " ".join(self.parts)
            self.parts = []
            return text or None
        return None


@dataclass
class EchoAgent:
    """Repeat each finished turn back (the demo's and the tests' agent)."""

    journal: Journal
    prefix: str = "You said: "
    name: str = "agent"

    def wants(self, event: SessionEvent) -> bool:
        return type(event) is STTResult and event.is_final

    async def run(self, ctx: BehaviourContext) -> None:
        turns = TurnAssembler()
        async for event in ctx.events:
            assert isinstance(event, STTResult)
            text = turns.feed(event)
            if text is None:
                continue
            reply = f"{self.prefix}{text}"
            self.journal.record("agent", reply)
            ctx.counters.replies += 1
            await ctx.out.speak(reply)

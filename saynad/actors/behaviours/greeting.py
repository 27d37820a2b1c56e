"""Greeting: speak a line when the session is ready, or when the first participant joins."""

from __future__ import annotations

from dataclasses import dataclass

from saynad.actors.behaviour import BehaviourContext
from saynad.actors.behaviours.agent import Conversation
from saynad.actors.behaviours.transcripts import Journal
from saynad.client.session import SessionEvent
from saynad.protocol.messages import ParticipantConnected

__all__ = ["Greeting"]


@dataclass
class Greeting:
    """``when``: ``ready`` (at once) or ``first_participant`` (LiveKit sessions).

    The line is recorded in the transcript (role ``agent``) and, when a conversation is
    given, becomes the first assistant message of the agent's history.
    """

    text: str
    when: str = "ready"
    allow_interruption: bool = True
    journal: Journal | None = None
    conversation: Conversation | None = None
    name: str = "greeting"

    def wants(self, event: SessionEvent) -> bool:
        return self.when == "first_participant" and type(event) is ParticipantConnected

    async def run(self, ctx: BehaviourContext) -> None:
        if self.when == "first_participant":
            async for _event in ctx.events:
                break
            else:
                return
        await ctx.out.speak(self.text, allow_interruption=self.allow_interruption)
        if self.journal is not None:
            self.journal.record("agent", self.text)
        if self.conversation is not None:
            self.conversation.add("assistant", self.text)

"""Greeting: speak a line when the session is ready, or when the first participant joins."""

from __future__ import annotations

from dataclasses import dataclass

from saynad.actors.behaviour import BehaviourContext
from saynad.client.session import SessionEvent
from saynad.protocol.messages import ParticipantConnected

__all__ = ["Greeting"]


@dataclass
class Greeting:
    """``when``: ``ready`` (at once) or ``first_participant`` (LiveKit sessions)."""

    text: str
    when: str = "ready"
    allow_interruption: bool = True
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
        ctx.counters.spoken += 1

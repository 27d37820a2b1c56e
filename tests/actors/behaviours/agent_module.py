"""A ``kind: python`` agent used by the tests (``tests.actors.behaviours.agent_module:reply``)."""

from __future__ import annotations

from saynad.actors.behaviours.backends import AgentSession


async def reply(session: AgentSession) -> str | None:
    """Answer with the turn's word count; transfer when asked for a human."""
    if "human" in session.turn.text:
        await session.speak("Connecting you to a human.")
        await session.transfer("+15550100")
        return None
    words = len(session.turn.text.split())
    return f"Python heard {words} words. That is turn {session.turn.index}."

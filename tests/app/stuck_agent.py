"""A ``kind: python`` agent that never lets go: its reply sleeps shielded from every
cancellation (the daemon's stop guard is what ends a process held like this)."""

from __future__ import annotations

import trio

from saynad.actors.behaviours.backends import AgentSession


async def reply(session: AgentSession) -> str | None:
    with trio.CancelScope(shield=True):
        await trio.sleep_forever()
    return None

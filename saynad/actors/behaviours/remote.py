"""Live actions on a running session: speak, transfer, hang up, from outside the session.

The HTTP API never touches a session's socket. Each ready session runs a :class:`Remote`
behaviour that registers a :class:`SessionHandle` in the daemon's :class:`Remotes`
table; an action put through the handle lands in the behaviour's bounded inbox, and the
behaviour carries it out through the session's outbox, like any other behaviour::

    POST /v1/sessions/{name}/speak ─► Remotes.get(name).act(Speak(…)) ─► inbox (16)
                                                                           │
                   socket ◄── writer ◄── outbox ◄── Remote.run ◄───────────┘

Overflow policy: an action that finds the inbox full is refused at once
(:class:`SessionBusyError`, the API answers 503); nothing waits. The handle is removed
when the session's run ends, so an action for an ended session finds no handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import structlog
import trio

from saynad.actors.behaviour import BehaviourContext
from saynad.actors.behaviours.transcripts import Journal
from saynad.client.session import SessionEvent
from saynad.errors import SessionBusyError

__all__ = [
    "DEFAULT_GOODBYE",
    "INBOX_SIZE",
    "ActOutcome",
    "Action",
    "Hangup",
    "Remote",
    "Remotes",
    "SessionHandle",
    "Speak",
    "Transfer",
]

log = structlog.get_logger("saynad.session")

INBOX_SIZE: Final = 16
"""Actions a session holds before more are refused (it acts on them at once)."""

DEFAULT_GOODBYE: Final = "Goodbye."
"""The line a hangup says when neither the request nor the template gives one."""


@dataclass(frozen=True)
class Speak:
    """Say ``text``; ``interrupt``: clear what is being said or queued first."""

    text: str
    interrupt: bool = False


@dataclass(frozen=True)
class Transfer:
    """Transfer the room's SIP participant to ``to`` (a number Sayna accepts)."""

    to: str


@dataclass(frozen=True)
class Hangup:
    """End the session after ``text`` (None: the session's goodbye line; ``""``: none)."""

    text: str | None = None


Action = Speak | Transfer | Hangup

ActOutcome = Literal["taken", "not_ready", "no_room", "unknown"]
"""What became of an action: the session took it; it is not ready (or ended meanwhile);
it is in no LiveKit room (a transfer); there is no such session."""


class SessionHandle:
    """What the outside holds of a ready session: its action inbox and what it is."""

    def __init__(self, send: trio.MemorySendChannel[Action], *, room: str | None) -> None:
        self._send = send
        self.room = room
        """The session's LiveKit room (None: WebSocket only, nothing to transfer)."""

    def act(self, action: Action) -> bool:
        """Hand ``action`` to the session without waiting. False when the session has
        ended meanwhile; :class:`SessionBusyError` when its inbox is full."""
        try:
            self._send.send_nowait(action)
        except trio.WouldBlock:
            raise SessionBusyError(f"{INBOX_SIZE} actions are waiting already") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True


class Remotes:
    """The daemon's table of ready sessions' handles, by session name."""

    def __init__(self) -> None:
        self._handles: dict[str, SessionHandle] = {}

    def get(self, name: str) -> SessionHandle | None:
        """The handle of the ready session ``name`` (None: no such session, or not
        ready, or ended)."""
        return self._handles.get(name)

    def add(self, name: str, handle: SessionHandle) -> None:
        self._handles[name] = handle

    def discard(self, name: str, handle: SessionHandle) -> None:
        if self._handles.get(name) is handle:
            del self._handles[name]

    def __len__(self) -> int:
        return len(self._handles)

    def act(self, name: str, action: Action, *, known: bool) -> ActOutcome:
        """Hand ``action`` to the ready session ``name`` without waiting (``known``: a
        session of that name is supervised, ready or not). Raises
        :class:`SessionBusyError` when its inbox is full."""
        handle = self._handles.get(name)
        if handle is None:
            return "not_ready" if known else "unknown"
        if isinstance(action, Transfer) and handle.room is None:
            return "no_room"
        return "taken" if handle.act(action) else "not_ready"


class Remote:
    """The behaviour that carries out live actions (see the module docstring).

    ``goodbye_text``: what a hangup without a text of its own says; None: the session's
    own goodbye line (the template's ``behaviours.end.goodbye_text``, its variables
    filled), which the daemon leaves to the session when there is one and else gives
    :data:`DEFAULT_GOODBYE`. Spoken lines go to the transcript as the agent's.
    """

    name = "remote"

    def __init__(
        self, remotes: Remotes, *, journal: Journal | None, goodbye_text: str | None
    ) -> None:
        self._remotes = remotes
        self._journal = journal
        self._goodbye = goodbye_text

    def wants(self, event: SessionEvent) -> bool:
        return False

    async def run(self, ctx: BehaviourContext) -> None:
        send, receive = trio.open_memory_channel[Action](INBOX_SIZE)
        name = ctx.identity.name
        handle = SessionHandle(send, room=ctx.identity.room)
        self._remotes.add(name, handle)
        try:
            async with receive:
                async for action in receive:
                    if await self._act(action, ctx):
                        return
        finally:
            self._remotes.discard(name, handle)
            send.close()

    async def _act(self, action: Action, ctx: BehaviourContext) -> bool:
        """Carry out one action; True when the session ends with it."""
        out = ctx.out
        if isinstance(action, Speak):
            if action.interrupt:
                await out.clear()
            await out.speak(action.text)
            if self._journal is not None:
                self._journal.record("agent", action.text)
            log.info("speak requested", chars=len(action.text), interrupt=action.interrupt)
            return False
        if isinstance(action, Transfer):
            ctx.counters.transfers += 1
            await out.sip_transfer(action.to)
            log.info("transfer requested", transfer_to=action.to)
            return False
        goodbye = self._goodbye if action.text is None else action.text
        log.info("hangup requested", goodbye=goodbye != "")
        out.end("hangup", goodbye=goodbye)
        return True

"""Outbound calls: the behaviour that asks Sayna to dial once the session is ready.

An outbound session (``POST /v1/calls``) joins its LiveKit room like any other; once it
is ready, its :class:`Dialler` asks the server to dial the callee into that room
(``POST /sip/call``), then waits for the callee to join::

    admitted ─► ready ─► POST /sip/call ─► participant_connected (the callee) ─► answered
    dialing     │        ringing            │
                │ refused, unreachable      │ nobody within answer_timeout_s
                ▼                           ▼
              failed: dial_failed         failed: no_answer          (the session ends)

The call's progress is a :class:`CallStatus`, which admission keeps while the session
runs and for a while after it ended, so ``/v1/sessions/{name}`` tells its outcome. The
dial request is never retried: a call must not be placed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog
import trio

from saynad.actors.behaviour import BehaviourContext
from saynad.client.rest import RestClient
from saynad.client.session import SessionEvent
from saynad.errors import HTTPStatusError, SaynadError
from saynad.protocol.messages import ParticipantConnected
from saynad.protocol.rest import SipCallSipConfig

__all__ = ["CALL_OUTCOMES", "CallState", "CallStatus", "Dial", "Dialler"]

log = structlog.get_logger("saynad.session")

CALL_OUTCOMES: Final = ("answered", "dial_failed", "no_answer", "cancelled", "session_failed")
"""How an outbound call turned out (``saynad_outbound_calls_total{outcome}``): the callee
joined the room; Sayna refused or failed the dial; nobody joined within
``outbound.answer_timeout_s``; the session was ended (hangup, delete, drain) before an
answer; the session failed (no connection, no ``ready``) before an answer."""

CallState = Literal["dialing", "ringing", "answered", "failed", "ended"]


@dataclass(frozen=True)
class Dial:
    """The outbound call a session places once ready (``POST /sip/call``): the numbers,
    the callee's name and identity in the room, how long it may ring, the trunk."""

    to: str
    from_: str
    participant_name: str
    participant_identity: str
    answer_timeout_s: float
    sip: SipCallSipConfig | None = None


@dataclass(eq=False)
class CallStatus:
    """An outbound call's progress, from admission to the end of its session.

    ``dialing`` (admitted; the session connects, then asks Sayna to dial) → ``ringing``
    (Sayna took the dial request) → ``answered`` (the callee joined the room) → ``ended``
    (the session ended); or ``failed`` with a ``reason`` of :data:`CALL_OUTCOMES`.
    ``on_outcome`` hears each call's outcome once (the metric).
    """

    to: str
    from_: str
    on_outcome: Callable[[str], None] = field(default=lambda outcome: None, repr=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False)
    state: CallState = "dialing"
    reason: str | None = None
    sip_call_id: str | None = None
    dialed_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None

    def ringing(self, sip_call_id: str) -> None:
        """Sayna accepted the dial request."""
        if self.state == "dialing":
            self.state = "ringing"
            self.sip_call_id = sip_call_id
            self.dialed_at = self.wall_clock()

    def answered(self) -> None:
        """The callee joined the room."""
        if self.state in ("dialing", "ringing"):
            self.state = "answered"
            self.answered_at = self.wall_clock()
            self.on_outcome("answered")

    def failed(self, reason: str) -> None:
        """The call will not be answered (``reason``: one of :data:`CALL_OUTCOMES`)."""
        if self.state in ("dialing", "ringing"):
            self.state = "failed"
            self.reason = reason
            self.on_outcome(reason)

    def ended(self, *, error: bool) -> None:
        """The session ended (``error``: abnormally)."""
        if self.state in ("dialing", "ringing"):
            self.failed("session_failed" if error else "cancelled")
        elif self.state == "answered":
            self.state = "ended"
        self.ended_at = self.wall_clock()

    def as_json(self) -> dict[str, object]:
        return {
            "to": self.to,
            "from": self.from_,
            "state": self.state,
            "reason": self.reason,
            "sip_call_id": self.sip_call_id,
            "dialed_at": self.dialed_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
        }


class Dialler:
    """Dial ``dial`` into the session's room once, then wait for the callee (see the
    module docstring). ``rest`` is the daemon's REST client of the Sayna server."""

    name = "dialler"

    def __init__(self, dial: Dial, status: CallStatus, rest: RestClient) -> None:
        self._dial = dial
        self._status = status
        self._rest = rest

    def wants(self, event: SessionEvent) -> bool:
        return type(event) is ParticipantConnected

    async def run(self, ctx: BehaviourContext) -> None:
        dial, status = self._dial, self._status
        room = ctx.identity.room
        if room is None:  # the template's livekit section is checked at load; the server's?
            log.warning("call not placed: the session has no LiveKit room")
            status.failed("dial_failed")
            ctx.out.end("dial failed")
            return
        try:
            response = await self._rest.sip_call(
                room,
                dial.participant_name,
                dial.participant_identity,
                dial.from_,
                dial.to,
                dial.sip,
            )
        except SaynadError as exc:
            # The error's kind, the server's status and code: never its free text.
            http = exc if isinstance(exc, HTTPStatusError) else None
            log.warning(
                "call not placed",
                error=type(exc).__name__,
                status=http.status_code if http is not None else None,
                code=http.code[:64] if http is not None and http.code else None,
            )
            status.failed("dial_failed")
            ctx.out.end("dial failed")
            return
        status.ringing(response.sip_call_id[:128])
        log.info("dialing", callee=dial.to, sip_call_id=status.sip_call_id)
        with trio.move_on_after(dial.answer_timeout_s):
            async for event in ctx.events:
                assert isinstance(event, ParticipantConnected)
                if event.participant.identity == dial.participant_identity:
                    status.answered()
                    log.info("call answered", callee=dial.to)
                    return
            return  # the session is ending
        log.info("call not answered", callee=dial.to, answer_timeout_s=dial.answer_timeout_s)
        status.failed("no_answer")
        ctx.out.end("no answer")

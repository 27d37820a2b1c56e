"""What a session's behaviours see and use.

A behaviour is one task in its session's nursery. It receives the session's events
through its own bounded channel and acts through an :class:`Outbox`, which queues
commands for the session's single writer task (one writer per socket: frames never
interleave mid-message and a slow behaviour never holds the socket).

Fan-out overflow policy (per behaviour channel, ``capacity`` events):

- *media* events — :class:`~saynad.protocol.messages.TTSAudio` and interim
  :class:`~saynad.protocol.messages.STTResult` — are dropped when the channel is full,
  and each drop is counted (``SessionCounters.dropped_events``);
- *control* events — everything else: final transcripts, room events, errors — are
  never dropped: the reader waits for room in the channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from saynad.client.session import SessionEvent
from saynad.protocol.messages import STTResult, TTSAudio

__all__ = [
    "Behaviour",
    "BehaviourContext",
    "Command",
    "Outbox",
    "SessionCounters",
    "SessionIdentity",
    "is_media",
]


@dataclass(frozen=True)
class SessionIdentity:
    """Who this session is, for logs, sinks and agents."""

    name: str
    template: str
    origin: str
    room: str | None = None
    stream_id: str | None = None
    caller: str | None = None
    callee: str | None = None
    sip_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class SessionCounters:
    """Counted while a session runs; reported in its summary line."""

    transcripts: int = 0
    replies: int = 0
    spoken: int = 0
    audio_chunks_sent: int = 0
    dropped_events: int = 0
    behaviour_errors: int = 0


@dataclass(frozen=True)
class Command:
    """One frame for the writer: ``kind`` names a :class:`~saynad.client.session.Session`
    method and ``args`` its keyword arguments (``audio`` carries raw PCM)."""

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)


class Outbox:
    """The behaviours' way to act on the session. Every method queues one command."""

    def __init__(self, send: trio.MemorySendChannel[Command], end: trio.Event) -> None:
        self._send = send
        self._end = end
        self.end_reason: str | None = None

    async def speak(self, text: str, *, allow_interruption: bool = True) -> None:
        await self._send.send(
            Command("speak", {"text": text, "allow_interruption": allow_interruption})
        )

    async def clear(self) -> None:
        await self._send.send(Command("clear"))

    async def send_audio(self, pcm: bytes) -> None:
        await self._send.send(Command("send_audio", {"pcm": pcm}))

    async def send_message(self, message: str, role: str, *, topic: str | None = None) -> None:
        await self._send.send(
            Command("send_message", {"message": message, "role": role, "topic": topic})
        )

    async def sip_transfer(self, transfer_to: str) -> None:
        await self._send.send(Command("sip_transfer", {"transfer_to": transfer_to}))

    async def loading_start(self) -> None:
        await self._send.send(Command("loading_start"))

    async def loading_stop(self) -> None:
        await self._send.send(Command("loading_stop"))

    def end(self, reason: str) -> None:
        """Ask the session to end (normally) as soon as possible."""
        if self.end_reason is None:
            self.end_reason = reason
        self._end.set()


@dataclass
class BehaviourContext:
    """Everything a behaviour's ``run`` gets."""

    identity: SessionIdentity
    events: trio.MemoryReceiveChannel[SessionEvent]
    out: Outbox
    counters: SessionCounters


class Behaviour(Protocol):
    """One thing a session does. ``wants`` filters the events it is sent."""

    name: str

    def wants(self, event: SessionEvent) -> bool: ...

    async def run(self, ctx: BehaviourContext) -> None: ...


def is_media(event: SessionEvent) -> bool:
    """Media events may be dropped under pressure; control events never are."""
    return type(event) is TTSAudio or (type(event) is STTResult and not event.is_final)

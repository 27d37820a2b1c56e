"""An in-memory Sayna session for the session actor, for tests under the autojump clock.

:class:`FakeSession` has the methods the actor uses (``SessionPort``). Tests push server
events into it (``say``, ``interim``, ``push``) and read what the actor sent
(``commands``, ``speaks``). Its TTS behaves like the server's: speech is generated at
``ms_per_char`` per character, FIFO; each utterance yields one ``TTSAudio`` and, when
the queue drains, one ``tts_playback_complete``; ``clear`` drops queued and playing
speech unless inside a non-interruptible utterance. No sockets, so ``MockClock`` with
``autojump_threshold=0`` runs the whole timeline instantly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from saynad.actors.behaviour import SessionIdentity
from saynad.actors.registry import Registry
from saynad.actors.session import SessionPlan
from saynad.actors.supervisor import ChildControl
from saynad.client.pacing import OnSent
from saynad.client.session import SessionEvent, SessionStats
from saynad.errors import SessionClosedError
from saynad.protocol.messages import (
    UNSET,
    AudioFrame,
    ClearFrame,
    LoadingStartFrame,
    LoadingStopFrame,
    Participant,
    ParticipantConnected,
    Ready,
    SendMessageFrame,
    SessionCommand,
    SipTransferFrame,
    SpeakFrame,
    STTResult,
    TTSAudio,
    TTSPlaybackComplete,
)


@dataclass
class Sent:
    at: float
    kind: str
    args: dict[str, Any] = field(default_factory=dict)


class FakeSession:
    def __init__(
        self, *, ms_per_char: float = 20.0, room: str | None = None, audio_send_s: float = 0.0
    ) -> None:
        self.ready = Ready(
            stream_id="fake-stream", livekit_room_name=room, livekit_url="http://localhost:7880"
        )
        self.stats = SessionStats()
        self.ms_per_char = ms_per_char
        self.audio_send_s = audio_send_s  # > 0: a slow socket for audio frames
        self.commands: list[Sent] = []
        self._events_send, self._events = trio.open_memory_channel[SessionEvent](10_000)
        self._tts_send, self._tts = trio.open_memory_channel[tuple[str, bool, int]](10_000)
        self._generation = 0
        self._no_interrupt_until = float("-inf")
        self.closed = False

    # ------------------------------------------------------------------ what tests read

    @property
    def speaks(self) -> list[str]:
        return [c.args["text"] for c in self.commands if c.kind == "speak"]

    def kinds(self) -> list[str]:
        return [c.kind for c in self.commands if c.kind != "send_audio"]

    # ------------------------------------------------------------------ server side

    def push(self, event: SessionEvent) -> None:
        self._events_send.send_nowait(event)

    def say(self, text: str) -> None:
        """The caller finished a turn: one final, speech-final transcript."""
        self.push(STTResult(transcript=text, is_final=True, is_speech_final=True, confidence=0.9))

    def interim(self, text: str) -> None:
        self.push(STTResult(transcript=text, is_final=False, is_speech_final=False, confidence=0.8))

    def join(self, identity: str = "caller") -> None:
        self.push(
            ParticipantConnected(
                participant=Participant(identity=identity, room="room", timestamp=0)
            )
        )

    def hang_up(self) -> None:
        """The server closes the session (the events end normally)."""
        self._events_send.close()

    async def tts(self) -> None:
        """The fake TTS worker (run it in a nursery)."""
        produced = False
        async for text, interruptible, generation in self._tts:
            if generation != self._generation:
                continue
            duration = len(text) * self.ms_per_char / 1000
            if not interruptible:
                self._no_interrupt_until = trio.current_time() + duration
            await trio.sleep(duration)
            if generation != self._generation:
                continue
            self.push(TTSAudio(b"\x00\x00" * 10))
            produced = True
            if produced and self._tts.statistics().current_buffer_used == 0:
                produced = False
                self.push(TTSPlaybackComplete(timestamp=0))

    # ------------------------------------------------------------------ SessionPort

    def _record(self, kind: str, **args: Any) -> None:
        if self.closed:
            raise SessionClosedError("closed")
        self.commands.append(Sent(trio.current_time(), kind, args))

    async def speak(self, text: str, flush: bool = True, allow_interruption: bool = True) -> None:
        self._record("speak", text=text, allow_interruption=allow_interruption)
        if text.strip():
            self._tts_send.send_nowait((text, allow_interruption, self._generation))
        await trio.lowlevel.checkpoint()

    async def send_audio(self, pcm: bytes) -> None:
        self._record("send_audio", n=len(pcm))
        if self.audio_send_s:
            await trio.sleep(self.audio_send_s)
        await trio.lowlevel.checkpoint()

    async def stream_audio(
        self,
        chunks: Sequence[bytes | bytearray | memoryview],
        interval_s: float = 0.020,
        *,
        start: float | None = None,
        on_sent: OnSent | None = None,
    ) -> None:
        """Paced audio, as the real session's: chunk ``i`` at ``start + i * interval_s``
        (never early), each recorded as a ``send_audio``."""
        start = trio.current_time() if start is None else start
        for index, chunk in enumerate(chunks):
            due = start + index * interval_s
            await trio.sleep_until(due)
            await self.send_audio(bytes(chunk))
            if on_sent is not None:
                on_sent(index, trio.current_time() - due)

    async def clear(self) -> None:
        self._record("clear")
        if trio.current_time() >= self._no_interrupt_until:
            self._generation += 1
        await trio.lowlevel.checkpoint()

    async def send_message(
        self, message: str, role: str, topic: str | None = None, debug: Any = None
    ) -> None:
        self._record("send_message", message=message, role=role, topic=topic)
        await trio.lowlevel.checkpoint()

    async def sip_transfer(self, transfer_to: str) -> None:
        self._record("sip_transfer", transfer_to=transfer_to)
        await trio.lowlevel.checkpoint()

    async def loading_start(self) -> None:
        self._record("loading_start")
        await trio.lowlevel.checkpoint()

    async def loading_stop(self) -> None:
        self._record("loading_stop")
        await trio.lowlevel.checkpoint()

    async def send(self, frame: SessionCommand) -> None:
        """The actor's writer sends every command here, as the real session's ``send``;
        each is recorded under its frame type, like the methods above."""
        if type(frame) is AudioFrame:
            await self.send_audio(frame.data)
        elif type(frame) is SpeakFrame:
            await self.speak(frame.text, frame.flush, frame.allow_interruption)
        elif type(frame) is ClearFrame:
            await self.clear()
        elif type(frame) is SendMessageFrame:
            topic = None if frame.topic is UNSET else frame.topic
            await self.send_message(frame.message, frame.role, topic)  # type: ignore[arg-type]
        elif type(frame) is SipTransferFrame:
            await self.sip_transfer(frame.transfer_to)
        elif type(frame) is LoadingStartFrame:
            await self.loading_start()
        elif type(frame) is LoadingStopFrame:
            await self.loading_stop()
        else:
            raise AssertionError(f"unexpected frame {frame!r}")

    def events(self) -> AsyncIterator[SessionEvent]:
        return self._events


def control(name: str = "s") -> ChildControl:
    registry = Registry()
    registry.add(name, origin="config", template="t")
    return ChildControl(name, registry)


def identity(name: str = "s") -> SessionIdentity:
    return SessionIdentity(name=name, template="t", origin="config", caller="+15550001")


def plan(**kwargs: Any) -> SessionPlan:
    kwargs.setdefault("identity", identity())
    return SessionPlan(url="ws://fake", **kwargs)


@asynccontextmanager
async def fake_session(**kwargs: Any) -> AsyncIterator[FakeSession]:
    """A :class:`FakeSession` with its TTS worker running."""
    session = FakeSession(**kwargs)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.tts)
        yield session
        nursery.cancel_scope.cancel()

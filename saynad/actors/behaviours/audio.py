"""Audio in and out: stream a file into the session; write received TTS audio to WAV."""

from __future__ import annotations

import contextlib
import io
import math
import os
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog
import trio

from saynad.actors.behaviour import AUDIO_LATE_S, BehaviourContext
from saynad.actors.behaviours.transcripts import ErrorLog, render_path
from saynad.client.session import SessionEvent
from saynad.paths import PathEscapeError, open_regular, safe_component
from saynad.protocol.messages import TTSAudio, TTSPlaybackComplete

__all__ = ["AUDIO_ERROR_LOG_INTERVAL_S", "AudioSink", "AudioSource", "load_pcm"]

log = structlog.get_logger("saynad.audio")


def load_pcm(path: Path, fmt: str = "wav") -> tuple[bytes, int, int]:
    """Read ``path`` as 16-bit PCM: returns (frames, sample_rate, channels).

    Raw PCM files carry no header; their rate and channels come from configuration, so
    (frames, 0, 0) is returned for them.
    """
    if fmt == "pcm":
        return path.read_bytes(), 0, 0
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels()


@dataclass
class AudioSource:
    """Stream a WAV or raw s16le file in ``chunk_ms`` chunks, at real-time pace or at once.

    The chunks are cut once; each pass over the file is one
    :meth:`~saynad.actors.behaviour.Outbox.stream_audio` call, whose pacing timer writes
    every frame at its due time straight to the socket (no task step, no queue, no
    allocation per chunk). In real time, chunk *k* of the whole (looped) stream is due
    at start + *k* × ``chunk_ms``: each pass starts where the previous one's schedule
    ends, so a loop never drifts and a late chunk does not delay the ones after it.
    ``realtime=False`` sends as fast as the socket takes the frames.

    Counts every chunk sent in ``SessionCounters.audio_chunks_sent``, and a real-time
    chunk written more than :data:`~saynad.actors.behaviour.AUDIO_LATE_S` after its due
    time in ``audio_chunks_late``.
    """

    path: Path
    fmt: str = "wav"
    sample_rate: int = 16_000
    channels: int = 1
    realtime: bool = True
    loop: bool = False
    chunk_ms: int = 20
    name: str = "audio-source"

    def wants(self, event: SessionEvent) -> bool:
        return False

    async def run(self, ctx: BehaviourContext) -> None:
        pcm, rate, channels = await trio.to_thread.run_sync(load_pcm, self.path, self.fmt)
        rate = rate or self.sample_rate
        channels = channels or self.channels
        step = max(2 * channels, rate * channels * 2 * self.chunk_ms // 1000)
        # Built once: a looping source allocates nothing per chunk.
        chunks = [pcm[offset : offset + step] for offset in range(0, len(pcm), step)]
        if not chunks:
            return
        counters = ctx.counters
        # Not in real time, every chunk is due at once: none counts as late.
        period, late_s = (self.chunk_ms / 1000, AUDIO_LATE_S) if self.realtime else (0.0, math.inf)

        def on_sent(index: int, lag_s: float) -> None:
            counters.audio_chunks_sent += 1
            if lag_s > late_s:
                counters.audio_chunks_late += 1

        # One absolute schedule for the whole stream: pass p starts at start + p * length.
        start = trio.current_time()
        length = len(chunks) * period
        passes = 0
        while True:
            await ctx.out.stream_audio(
                chunks, period, start=start + passes * length, on_sent=on_sent
            )
            if not self.loop:
                return
            passes += 1


AUDIO_ERROR_LOG_INTERVAL_S: Final = 60.0
"""A failing audio sink logs at most one error line per this interval."""


@dataclass
class AudioSink:
    """Write each utterance of TTS audio (up to ``tts_playback_complete``) to a WAV file.

    ``directory`` may hold ``{session}``, ``{date}`` and ``{stream_id}``; files are named
    ``{session}-{stream_id}-NNNN.wav``, every value made a safe file-name component
    (:mod:`saynad.paths`). Audio still buffered when the session ends is written too
    (bounded by ``flush_timeout_s``). In LiveKit sessions the server sends TTS audio to
    the room, not the socket, so there is nothing to write. TTS audio is a media event:
    under pressure the fan-out may drop chunks (counted).

    A write that fails (the directory cannot be created, the disk is full, EIO) never
    ends the session: that utterance is lost, the failure counts in ``errors`` and
    ``SessionCounters.audio_sink_errors``, at most one error line is logged per
    ``error_log_interval_s`` (with how many were not logged since), and the next
    utterance tries again (the directory too).
    """

    directory: str | Path
    sample_rate: int = 24_000
    flush_timeout_s: float = 2.0
    error_log_interval_s: float = AUDIO_ERROR_LOG_INTERVAL_S
    name: str = "audio-sink"
    files: int = 0
    errors: int = 0

    def wants(self, event: SessionEvent) -> bool:
        return type(event) in (TTSAudio, TTSPlaybackComplete)

    async def run(self, ctx: BehaviourContext) -> None:
        errors = ErrorLog(self.error_log_interval_s)
        chunks: list[bytes] = []
        try:
            async for event in ctx.events:
                if isinstance(event, TTSAudio):
                    chunks.append(event.data)
                elif chunks:
                    pcm = b"".join(chunks)
                    chunks.clear()
                    await self._write(ctx, pcm, errors)
        finally:
            if chunks:
                with trio.CancelScope(shield=True), trio.move_on_after(self.flush_timeout_s):
                    await self._write(ctx, b"".join(chunks), errors)

    async def _write(self, ctx: BehaviourContext, pcm: bytes, errors: ErrorLog) -> None:
        identity = ctx.identity
        number = self.files + 1
        name = (
            f"{safe_component(identity.name)}-{safe_component(identity.stream_id or 'x')}"
            f"-{number:04d}.wav"
        )
        path: Path | None = None
        try:
            path = render_path(str(self.directory), identity) / name
            await trio.to_thread.run_sync(_write_wav, path, pcm, self.sample_rate)
        except (OSError, PathEscapeError) as exc:
            self.errors += 1
            ctx.counters.audio_sink_errors += 1
            if errors.due(trio.current_time()):
                log.error(
                    "audio write failed",
                    sink=self.name,
                    path=str(path) if path is not None else str(self.directory),
                    error=str(exc),
                    errors=self.errors,
                    not_logged=errors.suppressed,
                )
                errors.suppressed = 0
            return
        self.files = number


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    """Write one 16-bit mono WAV; a partial file is removed. Raises OSError."""
    # Built in memory, then written with plain file calls: the wave module's writer
    # object prints a traceback from its finaliser when its own open() fails.
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(buffer.getbuffer())
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        raise

"""Audio in and out: stream a file into the session; write received TTS audio to WAV."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.lowlevel

from saynad.actors.behaviour import BehaviourContext, Command
from saynad.actors.behaviours.transcripts import render_path
from saynad.client.pacing import sleep_until
from saynad.client.session import SessionEvent
from saynad.protocol.messages import TTSAudio, TTSPlaybackComplete

__all__ = ["AudioSink", "AudioSource", "load_pcm"]


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
    """Stream a WAV or raw s16le file in ``chunk_ms`` chunks, at real-time pace or at once."""

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
        period = self.chunk_ms / 1000
        # Built once: a looping source allocates nothing per chunk.
        chunks = [
            Command("send_audio", {"pcm": pcm[offset : offset + step]})
            for offset in range(0, len(pcm), step)
        ]
        if not chunks:
            return
        # Real time: chunk i of the whole (looped) stream leaves at start + i * period, so
        # pacing never drifts, and a late chunk does not delay the ones after it.
        start = trio.current_time()
        sent = 0
        while True:
            for chunk in chunks:
                if self.realtime:
                    due = start + sent * period
                    if due > trio.current_time():  # late: no sleep (the send checkpoints)
                        await sleep_until(due)  # the shared timer: cheap for 1000s of sources
                await ctx.out.send(chunk)
                sent += 1
                ctx.counters.audio_chunks_sent += 1
            if not self.loop:
                return
            if not self.realtime:
                await trio.lowlevel.checkpoint()  # let the writer drain between loops


@dataclass
class AudioSink:
    """Write each utterance of TTS audio (up to ``tts_playback_complete``) to a WAV file.

    ``directory`` may hold ``{session}``, ``{date}`` and ``{stream_id}``; files are named
    ``{session}-{stream_id}-NNNN.wav``. Audio still buffered when the session ends is
    written too (bounded by ``flush_timeout_s``). In LiveKit sessions the server sends
    TTS audio to the room, not the socket, so there is nothing to write. TTS audio is a
    media event: under pressure the fan-out may drop chunks (counted).
    """

    directory: str | Path
    sample_rate: int = 24_000
    flush_timeout_s: float = 2.0
    name: str = "audio-sink"
    files: int = 0

    def wants(self, event: SessionEvent) -> bool:
        return type(event) in (TTSAudio, TTSPlaybackComplete)

    async def run(self, ctx: BehaviourContext) -> None:
        directory = render_path(str(self.directory), ctx.identity)
        await trio.Path(directory).mkdir(parents=True, exist_ok=True)
        chunks: list[bytes] = []
        try:
            async for event in ctx.events:
                if isinstance(event, TTSAudio):
                    chunks.append(event.data)
                elif chunks:
                    pcm = b"".join(chunks)
                    chunks.clear()
                    await self._write(directory, ctx, pcm)
        finally:
            if chunks:
                with trio.CancelScope(shield=True), trio.move_on_after(self.flush_timeout_s):
                    await self._write(directory, ctx, b"".join(chunks))

    async def _write(self, directory: Path, ctx: BehaviourContext, pcm: bytes) -> None:
        self.files += 1
        name = f"{ctx.identity.name}-{ctx.identity.stream_id or 'x'}-{self.files:04d}.wav"
        await trio.to_thread.run_sync(_write_wav, directory / name, pcm, self.sample_rate)


def _write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)

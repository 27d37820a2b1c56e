"""Checks across a resolved session: what no single section can see on its own.

``audio`` against ``stt``/``tts``, providers and their credentials, behaviours that need
a LiveKit room or a loading clip, and the audio files themselves: a WAV source must
match ``stt`` (Sayna does not resample) and the loading clip must be within the
server's limits (§5.4), so a bad file fails ``saynad check`` rather than every session.
Problems are yielded with paths relative to the template or session they came from.
"""

from __future__ import annotations

import os
import wave
from typing import Final

from saynad.config._schema import Problems
from saynad.config._specs import SessionSpec
from saynad.config._templates import (
    AudioSourceSettings,
    LoadingAudioSettings,
    ProviderAuthSettings,
    SttSettings,
)

__all__ = ["STT_PROVIDERS", "TTS_PROVIDERS", "spec_problems"]

STT_PROVIDERS: Final = frozenset(
    {"deepgram", "google", "elevenlabs", "microsoft-azure", "azure", "cartesia"}
)
TTS_PROVIDERS: Final = frozenset(
    {"deepgram", "elevenlabs", "google", "azure", "microsoft-azure", "cartesia"}
)

# Limits from the protocol (§5.4) for the loading clip, checked at load so a bad clip
# fails `saynad check` instead of producing a non-fatal server error at every session.
_LOADING_AUDIO_MAX_BYTES: Final = 1_924_096
_LOADING_AUDIO_MIN_MS: Final = 250
_LOADING_AUDIO_MAX_MS: Final = 10_000


def spec_problems(spec: SessionSpec) -> Problems:
    """Checks across a resolved spec's parts (paths relative to the template/session)."""
    if spec.audio:
        for part, value in (("stt", spec.stt), ("tts", spec.tts)):
            if value is None:
                yield (
                    (part,),
                    f"required when audio is true (the default); set {part} or audio: false",
                )
    else:
        for part, value in (("stt", spec.stt), ("tts", spec.tts)):
            if value is not None:
                yield (part,), f"set, but audio is false and the server ignores it; remove {part}"
    if spec.stt is not None:
        yield from _provider_problems("stt", spec.stt.provider, spec.stt.auth, STT_PROVIDERS)
    if spec.tts is not None:
        yield from _provider_problems("tts", spec.tts.provider, spec.tts.auth, TTS_PROVIDERS)
    if spec.loading_audio is not None:
        if spec.livekit is None or not spec.audio:
            yield (
                ("loading_audio",),
                "needs audio: true and a livekit section (the clip plays in the LiveKit room)",
            )
        problem = _loading_audio_problem(spec.loading_audio)
        if problem:
            yield ("loading_audio", "path"), problem
    b = spec.behaviours
    if b.greeting is not None:
        if not spec.audio:
            yield ("behaviours", "greeting"), "a greeting is spoken: it needs audio: true"
        if b.greeting.when == "first_participant" and spec.livekit is None:
            yield (
                ("behaviours", "greeting", "when"),
                "first_participant needs a livekit section (participants join a LiveKit room)",
            )
    if b.agent is not None:
        if not spec.audio:
            yield ("behaviours", "agent"), "an agent listens and speaks: it needs audio: true"
        if b.agent.loading_indicator and spec.loading_audio is None:
            yield (
                ("behaviours", "agent", "loading_indicator"),
                "needs a loading_audio clip (and a livekit section) to play while thinking",
            )
    if b.end is not None and b.end.on_participant_disconnected and spec.livekit is None:
        yield (
            ("behaviours", "end", "on_participant_disconnected"),
            "needs a livekit section (participants join a LiveKit room)",
        )
    if b.audio is not None and b.audio.source is not None:
        if not spec.audio:
            yield ("behaviours", "audio", "source"), "streaming audio needs audio: true"
        yield from _audio_source_problems(b.audio.source, spec.stt)


def _provider_problems(
    part: str, provider: str, auth: ProviderAuthSettings | None, known: frozenset[str]
) -> Problems:
    kind = provider.lower()
    if kind not in known:
        yield (
            (part, "provider"),
            f"unknown provider {provider!r} (expected one of: {', '.join(sorted(known))})",
        )
        return
    if auth is None:
        return
    required: tuple[str, ...]
    allowed: tuple[str, ...]
    if kind == "google":
        required = allowed = ("credentials",)
    elif kind in ("azure", "microsoft-azure"):
        required = allowed = ("api_key", "region")
    else:
        required = allowed = ("api_key",)
    for field in ("api_key", "region", "credentials"):
        value = getattr(auth, field)
        if field in required and value is None:
            yield (part, "auth"), f"missing {field!r}, required for provider {kind}"
        elif field not in allowed and value is not None:
            yield (
                (part, "auth", field),
                f"not used by provider {kind} (it takes: {', '.join(allowed)})",
            )


def _audio_source_problems(source: AudioSourceSettings, stt: SttSettings | None) -> Problems:
    where = ("behaviours", "audio", "source")
    if source.format == "pcm":
        problem = _readable_file_problem(source.path)
        if problem:
            yield (*where, "path"), problem
        elif stt is not None and source.sample_rate not in (None, stt.sample_rate):
            yield (
                (*where, "sample_rate"),
                f"{source.sample_rate} Hz, but stt.sample_rate is {stt.sample_rate} "
                "(Sayna does not resample)",
            )
        return
    info = _wav_info(source.path)
    if isinstance(info, str):
        yield (*where, "path"), info
        return
    rate, channels, _frames = info
    if stt is not None and (rate, channels) != (stt.sample_rate, stt.channels):
        yield (
            (*where, "path"),
            f"the WAV is {rate} Hz, {channels} channel(s), but stt expects "
            f"{stt.sample_rate} Hz, {stt.channels} channel(s) (Sayna does not resample)",
        )


def _loading_audio_problem(clip: LoadingAudioSettings) -> str | None:
    problem = _readable_file_problem(clip.path)
    if problem:
        return problem
    size = os.path.getsize(clip.path)
    if size > _LOADING_AUDIO_MAX_BYTES:
        return f"the clip has {size} bytes; the server accepts at most {_LOADING_AUDIO_MAX_BYTES}"
    fmt = clip.format
    if fmt is None:
        with open(clip.path, "rb") as fh:
            head = fh.read(12)
        fmt = "wav" if head[:4] == b"RIFF" and head[8:12] == b"WAVE" else "pcm"
        if fmt == "pcm" and clip.sample_rate is None:
            return "not a WAV file: give format: pcm and sample_rate for raw PCM"
    if fmt == "wav":
        info = _wav_info(clip.path)
        if isinstance(info, str):
            return info
        rate, channels, frames = info
        if channels not in (1, 2):
            return f"the clip has {channels} channels; the server takes mono or stereo"
        if not 8000 <= rate <= 48000:
            return f"the clip is {rate} Hz; the server takes 8000 to 48000 Hz"
    else:
        if clip.sample_rate is None:
            return None  # reported by LoadingAudioSettings itself
        rate = clip.sample_rate
        channels = clip.channels or 1
        frames = size // (2 * channels)
    duration_ms = frames * 1000 // rate if rate else 0
    if not _LOADING_AUDIO_MIN_MS <= duration_ms <= _LOADING_AUDIO_MAX_MS:
        return (
            f"the clip lasts {duration_ms} ms; the server takes "
            f"{_LOADING_AUDIO_MIN_MS} to {_LOADING_AUDIO_MAX_MS} ms"
        )
    return None


def _wav_info(path: str) -> tuple[int, int, int] | str:
    """(rate, channels, frames) of a 16-bit PCM WAV file, or why it is not one."""
    problem = _readable_file_problem(path)
    if problem:
        return problem
    try:
        with wave.open(path, "rb") as wav:
            if wav.getsampwidth() != 2:
                return f"{path} is not 16-bit PCM ({8 * wav.getsampwidth()}-bit)"
            return wav.getframerate(), wav.getnchannels(), wav.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        return f"{path} is not a readable WAV file ({exc})"


def _readable_file_problem(path: str) -> str | None:
    try:
        if not os.path.isfile(path):
            return (
                f"file {path} does not exist"
                if not os.path.exists(path)
                else f"{path} is not a file"
            )
        with open(path, "rb"):
            pass
    except (OSError, ValueError) as exc:
        return f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"
    return None

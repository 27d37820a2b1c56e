"""Deterministic synthetic speech for the emulator's TTS (REST ``/speak`` and WebSocket).

The emulator has no voice: "speech" is a 440 Hz sine tone whose length is proportional
to the text, as signed 16-bit little-endian mono PCM. The same text at the same rate
always yields the same bytes, so tests can compare audio exactly and predict its size:
``len(text) * ms_per_char`` milliseconds, i.e. ``sample_rate * ms // 1000`` samples.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from functools import lru_cache

__all__ = ["TONE_HZ", "prepare_tone", "speech_bytes", "synthesize", "tone", "wav_bytes"]

TONE_HZ = 440
# About -10 dBFS: clearly audible, far from clipping when mixed with other audio.
_AMPLITUDE = 10_000


@lru_cache(maxsize=16)
def _one_second(sample_rate: int) -> bytes:
    """One second of tone. An integer frequency completes whole periods in one second,
    so seconds can be tiled without a click at the seams."""
    samples = array(
        "h",
        (
            round(_AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * i / sample_rate))
            for i in range(sample_rate)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def prepare_tone(sample_rate: int) -> None:
    """Compute the tone for ``sample_rate`` now (about 6 ms of Python at 24 kHz), so
    that the first speech at that rate does not stall everything queued behind it."""
    _one_second(sample_rate)


def synthesize(text: str, sample_rate: int, ms_per_char: int) -> bytes:
    """Return ``len(text) * ms_per_char`` ms of tone as s16le mono PCM at ``sample_rate``.

    Empty text yields ``b""``. Raises :class:`ValueError` for a non-positive
    ``sample_rate`` or a negative ``ms_per_char``.
    """
    return tone(sample_rate, 0, speech_bytes(text, sample_rate, ms_per_char))


def speech_bytes(text: str, sample_rate: int, ms_per_char: int) -> int:
    """The length of :func:`synthesize`'s result, without making it. Raises like it."""
    if sample_rate <= 0:
        raise ValueError(f"invalid sample rate {sample_rate}")
    if ms_per_char < 0:
        raise ValueError(f"invalid ms_per_char {ms_per_char}")
    return sample_rate * len(text) * ms_per_char // 1000 * 2


def tone(sample_rate: int, start: int, stop: int) -> bytes:
    """Bytes ``start`` to ``stop`` of the endless tone at ``sample_rate`` (s16le mono;
    ``synthesize(text, …) == tone(rate, 0, speech_bytes(text, …))``). A speech played
    in chunks takes each chunk from here, so no whole speech is ever built: a fresh
    buffer of a speech's size costs more (page faults) than the tone it holds."""
    second = _one_second(sample_rate)
    size = len(second)
    if stop <= start:
        return b""
    first, offset = divmod(start, size)
    if stop - first * size <= size:  # within one second of tone: one slice
        return second[offset : stop - first * size]
    parts = [second[offset:]]
    full, rest = divmod(stop - (first + 1) * size, size)
    parts.extend([second] * full)
    parts.append(second[:rest])
    return b"".join(parts)


def wav_bytes(pcm: bytes, sample_rate: int, *, channels: int = 1) -> bytes:
    """Wrap s16le PCM in a canonical 44-byte RIFF/WAVE header."""
    block_align = 2 * channels
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        16,
        b"data",
        len(pcm),
    )
    return header + pcm

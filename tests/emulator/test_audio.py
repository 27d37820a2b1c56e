"""The emulator's synthetic TTS: a deterministic tone, proportional to the text."""

from __future__ import annotations

import array
import itertools
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saynad.emulator.audio import TONE_HZ, speech_bytes, synthesize, tone, wav_bytes


@pytest.mark.parametrize(
    ("text", "rate", "ms_per_char", "samples"),
    [
        ("", 24000, 20, 0),
        ("a", 24000, 20, 480),
        ("hello", 16000, 20, 1600),
        ("ab", 8000, 1000, 16000),
        ("x" * 7, 22050, 33, 22050 * 7 * 33 // 1000),
    ],
)
def test_length_is_proportional_to_the_text(
    text: str, rate: int, ms_per_char: int, samples: int
) -> None:
    assert len(synthesize(text, rate, ms_per_char)) == 2 * samples


def test_deterministic_and_a_tone() -> None:
    pcm = synthesize("hello there", 16000, 100)
    assert pcm == synthesize("hello there", 16000, 100)
    samples = array.array("h", pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    assert samples[0] == 0
    assert max(samples) > 9000
    assert min(samples) < -9000
    # Zero crossings of a 440 Hz tone: two per period.
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    seconds = len(samples) / 16000
    assert abs(crossings - 2 * TONE_HZ * seconds) <= 2
    expected = round(10_000 * math.sin(2 * math.pi * TONE_HZ * 5 / 16000))
    assert samples[5] == expected


def test_longer_audio_tiles_seamlessly() -> None:
    two_seconds = synthesize("ab", 8000, 1000)
    assert two_seconds[:16000] == two_seconds[16000:]


@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 24000, 44100, 48000]),
    length=st.integers(0, 300),
    ms_per_char=st.integers(0, 60),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_a_slice_of_the_tone_is_the_same_slice_of_the_speech(
    rate: int, length: int, ms_per_char: int, cut: tuple[float, float]
) -> None:
    # A speech played in chunks takes each from tone(); together they are synthesize().
    text = "x" * length
    speech = synthesize(text, rate, ms_per_char)
    assert speech_bytes(text, rate, ms_per_char) == len(speech)
    start, stop = sorted(round(c * len(speech)) for c in cut)
    assert tone(rate, start, stop) == speech[start:stop]
    if start < stop:
        assert tone(rate, stop, start) == b""  # an empty range, either way round


@pytest.mark.parametrize(("rate", "ms"), [(0, 20), (-1, 20), (16000, -1)])
def test_invalid_arguments(rate: int, ms: int) -> None:
    with pytest.raises(ValueError, match="invalid"):
        synthesize("x", rate, ms)
    with pytest.raises(ValueError, match="invalid"):
        speech_bytes("x", rate, ms)


def test_wav_header() -> None:
    wav = wav_bytes(b"\x01\x00" * 10, 16000)
    assert wav[:4] == b"RIFF"
    assert wav[8:16] == b"WAVEfmt "
    assert len(wav) == 44 + 20
    assert int.from_bytes(wav[24:28], "little") == 16000
    assert int.from_bytes(wav[40:44], "little") == 20

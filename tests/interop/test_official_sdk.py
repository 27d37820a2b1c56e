"""The official asyncio SDK (``sayna-client``, test-only dependency) against the emulator.

The emulator runs in a subprocess on its own trio loop; the SDK runs under
``asyncio.run`` in this (synchronous) test. Nothing here is imported by saynad.
"""

from __future__ import annotations

import asyncio
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from saynad.emulator.audio import synthesize

pytestmark = pytest.mark.slow

_EMULATOR = """
import trio
from saynad.emulator import EmulatorOptions, serve_emulator

async def main() -> None:
    async with trio.open_nursery() as nursery:
        emulator = await nursery.start(
            lambda task_status: serve_emulator(
                EmulatorOptions(numbered=True), port=0, task_status=task_status
            )
        )
        print(emulator.url, flush=True)

trio.run(main)
"""
SENTENCE = "hello from the official sdk"


@contextmanager
def emulator_process() -> Iterator[str]:
    """Start the emulator in a subprocess on a free loopback port; yield its URL."""
    proc = subprocess.Popen([sys.executable, "-c", _EMULATOR], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=60):  # a hang guard
                raise AssertionError("the emulator did not start within 60 s")
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Observed:
    stream_id: str | None = None
    audio: bytearray = field(default_factory=bytearray)
    completions: int = 0
    interims: list[str] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def full_session(url: str) -> Observed:
    from sayna_client import SaynaClient, STTConfig, TTSConfig

    seen = Observed()
    ready = asyncio.Event()
    complete = asyncio.Event()
    two_finals = asyncio.Event()

    def on_stt(message: object) -> None:
        transcript = str(getattr(message, "transcript", ""))
        if getattr(message, "is_final", False):
            seen.finals.append(transcript)
            if len(seen.finals) == 2:
                two_finals.set()
        else:
            seen.interims.append(transcript)

    def on_complete(_message: object) -> None:
        seen.completions += 1
        complete.set()

    client = SaynaClient(
        url=url,
        stt_config=STTConfig(
            provider="deepgram",
            language="en-US",
            sample_rate=16000,
            channels=1,
            punctuation=True,
            encoding="linear16",
            model="nova-3",
        ),
        tts_config=TTSConfig(provider="deepgram", model="aura-asteria-en"),
    )
    client.register_on_ready(lambda _message: ready.set())
    client.register_on_tts_audio(seen.audio.extend)
    client.register_on_tts_playback_complete(on_complete)
    client.register_on_stt_result(on_stt)
    client.register_on_error(lambda message: seen.errors.append(str(message.message)))
    await client.connect()
    try:
        await asyncio.wait_for(ready.wait(), 10)
        seen.stream_id = client.received_stream_id
        await client.speak(SENTENCE)
        await asyncio.wait_for(complete.wait(), 10)
        for _ in range(20):  # 2 s of 16 kHz mono s16le, 100 ms per frame
            await client.on_audio_input(b"\x00\x00" * 1600)
        await asyncio.wait_for(two_finals.wait(), 10)
    finally:
        await client.disconnect()
    return seen


def test_official_sdk_full_session() -> None:
    with emulator_process() as url:
        seen = asyncio.run(asyncio.wait_for(full_session(url), 30))
    assert seen.errors == []
    assert seen.stream_id is not None
    assert len(seen.stream_id) == 36
    assert bytes(seen.audio) == synthesize(SENTENCE, 24000, 20)
    assert seen.completions == 1
    assert seen.interims == ["hello", "I would like to"]
    assert seen.finals == ["1: hello there", "2: I would like to check my order"]

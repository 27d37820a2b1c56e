"""The same workload on the official asyncio SDK (bench-only dependency).

``python -m tests.bench.client_sdk URL N [--stagger-ms M] [--stream-s S --warmup-s W]``

``--stream-s``: stream S seconds of audio instead of 2 (the scale benchmark's
always-on streams), the send lags of the first W seconds left out (the connect burst).
"""

from __future__ import annotations

import asyncio
import sys
import time

from sayna_client import SaynaClient, STTConfig, TTSConfig

from tests.bench import common


async def one_session(url: str, c: common.Collector) -> None:
    began = time.monotonic()
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    done = asyncio.Event()
    state = {"finals": 0, "complete": False, "streamed": False, "first": False, "spoke": 0.0}
    stream_id: list[str | None] = [None]

    def check() -> None:
        if state["complete"] and state["finals"] >= common.FINALS_EXPECTED and state["streamed"]:
            done.set()

    def on_ready(msg: object) -> None:
        stream_id[0] = getattr(msg, "stream_id", None)
        ready.set()

    def on_audio(_data: bytes) -> None:
        if not state["first"]:
            state["first"] = True
            c.first_audio.append(loop.time() - float(state["spoke"]))
            c.heard(stream_id[0])

    def on_complete(_msg: object) -> None:
        state["complete"] = True
        check()

    def on_stt(msg: object) -> None:
        if getattr(msg, "is_final", False):
            state["finals"] = int(state["finals"]) + 1
            check()

    client = SaynaClient(
        url=url, stt_config=STTConfig(**common.STT), tts_config=TTSConfig(**common.TTS)
    )
    client.register_on_ready(on_ready)
    client.register_on_tts_audio(on_audio)
    client.register_on_tts_playback_complete(on_complete)
    client.register_on_stt_result(on_stt)
    await client.connect()
    try:
        await ready.wait()
        c.ready_at.append(loop.time())
        state["spoke"] = loop.time()
        c.spoke(stream_id[0], began)
        await client.speak(common.SENTENCE)
        lags = common.SessionLags(c)
        start = loop.time()
        for i in range(CHUNKS):
            due = start + i * common.CHUNK_MS / 1000
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await client.on_audio_input(common.CHUNK)
            if i >= SKIPPED:
                lags.sent(i, loop.time() - due)
        lags.done()
        state["streamed"] = True
        check()
        await done.wait()
    finally:
        await client.disconnect()


async def main(url: str, n: int, stagger: float) -> None:
    loop = asyncio.get_running_loop()
    c = common.Collector(n)
    rss0 = common.rss_kb()
    cpu0 = common.usage()
    t_start = loop.time()

    async def guarded(delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(one_session(url, c), common.SESSION_DEADLINE_S)
        except Exception as exc:
            c.fail(exc)

    async def sample_rss() -> None:
        while True:
            c.sample_rss()
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(guarded(i * stagger) for i in range(n)))
    sampler.cancel()
    common.finish("sdk", c, t_start=t_start, t_end=loop.time(), cpu0=cpu0, rss0=rss0)


def _option(name: str, default: float) -> float:
    return float(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


CHUNKS = int(_option("--stream-s", common.STREAM_S) * 1000 / common.CHUNK_MS)
SKIPPED = int(_option("--warmup-s", 0) * 1000 / common.CHUNK_MS)

if __name__ == "__main__":
    common.prepare_process()
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), common.stagger_s(sys.argv)))

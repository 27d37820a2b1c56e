"""The session workload on saynad's client.

``python -m tests.bench.client_saynad URL N [--transport wsproto|trio-websocket]
[--pacing stream|saynad|trio] [--stagger-ms M]``

The defaults are what a saynad user writes: :func:`saynad.open_session` and
:meth:`~saynad.client.session.Session.stream_audio` for the paced audio. The options
swap in the hand-written loop (``saynad``: :func:`saynad.client.pacing.sleep_until`
and :meth:`~saynad.client.session.Session.send_audio` per chunk; ``trio``: the same
with plain :func:`trio.sleep_until`) or the trio-websocket transport, to measure what
each saves.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import trio

from saynad import STTConfig, STTResult, TTSAudio, TTSConfig, TTSPlaybackComplete, open_session
from saynad.client import pacing
from saynad.client.transport import Implementation
from tests.bench import common

STT = STTConfig(**common.STT)  # type: ignore[arg-type]
TTS = TTSConfig(**common.TTS)  # type: ignore[arg-type]

sleep_until: Callable[[float], Awaitable[None]] = pacing.sleep_until
PACED = True  # stream_audio (the default) rather than a loop
TRANSPORT: Implementation = "wsproto"
CHUNKS = [common.CHUNK] * common.CHUNKS


async def one_session(url: str, c: common.Collector) -> None:
    began = time.monotonic()
    # Like the SDK (no connect timeout within the session deadline), wait as long as the
    # session may take; saynad's default connect_timeout_s is 10 s.
    async with open_session(
        url,
        stt=STT,
        tts=TTS,
        connect_timeout_s=common.SESSION_DEADLINE_S,
        ready_timeout_s=common.SESSION_DEADLINE_S,
        transport=TRANSPORT,
    ) as s:
        c.ready_at.append(trio.current_time())
        lags = common.SessionLags(c)

        async def stream(t0: float) -> None:
            # Chunk i is due at t0 + i × 20 ms, t0 being the moment speak returned: the
            # SDK client's schedule, and its definition of lateness.
            if PACED:
                await s.stream_audio(CHUNKS, common.CHUNK_MS / 1000, start=t0, on_sent=lags.sent)
                return
            for i in range(common.CHUNKS):
                due = t0 + i * common.CHUNK_MS / 1000
                await sleep_until(due)
                await s.send_audio(common.CHUNK)
                lags.sent(i, trio.current_time() - due)

        finals = 0
        complete = False
        stream_id = s.ready.stream_id

        async def receive(spoke: float) -> None:
            # Waits only for what the server sends (the last final needs the last chunk
            # anyway); the nursery waits for the stream.
            nonlocal finals, complete
            first_audio = False
            async for event in s.events():
                if isinstance(event, TTSAudio):
                    if not first_audio:
                        first_audio = True
                        c.first_audio.append(trio.current_time() - spoke)
                        c.heard(stream_id)
                elif isinstance(event, TTSPlaybackComplete):
                    complete = True
                elif isinstance(event, STTResult) and event.is_final:
                    finals += 1
                if complete and finals >= common.FINALS_EXPECTED:
                    break

        # As the SDK client does: speak, then stream from this task (its first chunk goes
        # out in the call), while another task handles the events.
        async with trio.open_nursery() as nursery:
            spoke = trio.current_time()
            nursery.start_soon(receive, spoke)
            c.spoke(stream_id, began)
            await s.speak(common.SENTENCE)
            await stream(trio.current_time())
        lags.done()


async def main(url: str, n: int, stagger: float) -> None:
    await common.run_trio_clients("saynad", url, n, one_session, stagger)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.client_saynad")
    parser.add_argument("url")
    parser.add_argument("n", type=int)
    parser.add_argument("--transport", choices=("wsproto", "trio-websocket"), default="wsproto")
    parser.add_argument("--pacing", choices=("stream", "saynad", "trio"), default="stream")
    parser.add_argument("--stagger-ms", type=float, default=0.0)
    args = parser.parse_args()
    TRANSPORT = args.transport
    PACED = args.pacing == "stream"
    if args.pacing == "trio":
        sleep_until = trio.sleep_until
    common.prepare_process()
    trio.run(main, args.url, args.n, args.stagger_ms / 1000)

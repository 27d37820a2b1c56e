"""The emulator process of the benchmarks: ``python -m tests.bench.emulator [--server S]``.

Like ``saynad emulator --port 0`` (prints ``... listening on URL`` and serves until
SIGTERM), with the choice of front server: ``direct`` (the default, WebSocket sessions
served straight over wsproto) or ``hypercorn`` (hypercorn serves everything; kept to
measure what the direct server saves), ``--collector off`` to run without CPython's
cyclic garbage collector (the session benchmark's setting, see
:func:`tests.bench.sessions.emulator_process`), and the TTS pacing of a differently
paced server (``--tts-first-audio-ms``, ``--tts-chunk-ms``), and the shortest time
between two passes of its frame reader (``--read-interval-ms``).
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
from pathlib import Path
from typing import Literal

import trio

from saynad.emulator import Emulator, EmulatorOptions, serve_emulator


def serve_until_signal(
    options: EmulatorOptions,
    *,
    server: Literal["direct", "hypercorn"] = "direct",
    timings: Path | None = None,
) -> None:
    """Serve the emulator on a free loopback port, print its ``listening on URL`` line,
    stop on SIGTERM or SIGINT. Every benchmark's emulator process runs this.

    ``timings``: record, per session, when its first ``speak`` was handled and its
    first audio frame written (``EmulatorState.speech_timings``), and write them there
    as JSON on the way out.
    """
    recorded = trio.run(_serve, options, server, timings is not None)
    if timings is not None:
        timings.write_text(json.dumps(recorded))


async def _serve(
    options: EmulatorOptions, server: Literal["direct", "hypercorn"], record_timings: bool
) -> dict[str, list[float]] | None:
    async with trio.open_nursery() as nursery:
        emulator: Emulator = await nursery.start(
            lambda task_status: serve_emulator(
                options, port=0, server=server, task_status=task_status
            )
        )
        if record_timings:
            emulator.state.speech_timings = {}
        print(f"saynad emulator ({server}) listening on {emulator.url}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    return emulator.state.speech_timings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.emulator")
    parser.add_argument("--server", choices=("direct", "hypercorn"), default="direct")
    parser.add_argument(
        "--collector",
        choices=("on", "off"),
        default="on",
        help="CPython's cyclic garbage collector in this process (see sessions.py)",
    )
    parser.add_argument("--timings", type=Path, help="write per-session speech timings here")
    parser.add_argument(
        "--tts-first-audio-ms",
        type=int,
        default=0,
        help="delay before the first TTS chunk of each speak (a real provider's latency)",
    )
    parser.add_argument("--tts-chunk-ms", type=int, default=EmulatorOptions().tts_chunk_ms)
    parser.add_argument(
        "--read-interval-ms",
        type=float,
        default=0.0,
        help="the shortest time between two passes of the frame reader (0: read at once)",
    )
    args = parser.parse_args()
    if args.collector == "off":
        gc.disable()
    options = EmulatorOptions(
        tts_first_audio_ms=args.tts_first_audio_ms,
        tts_chunk_ms=args.tts_chunk_ms,
        read_interval_ms=args.read_interval_ms,
    )
    serve_until_signal(options, server=args.server, timings=args.timings)


if __name__ == "__main__":
    main()

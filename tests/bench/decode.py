"""Decode throughput of ``stt_result`` frames: saynad (msgspec) vs the official SDK's path.

``python -m tests.bench.decode``

- ``saynad decode_server_event``: one msgspec Decoder over the tagged union of every
  server frame, straight to a frozen :class:`~saynad.protocol.messages.STTResult`;
- ``saynad Session._decode``: the same plus what a session does per frame (counters
  by kind, the disconnect check);
- ``sdk json + pydantic``: what ``sayna_client`` does per text frame: ``json.loads``
  into a dict, dispatch on ``type``, then ``STTResultMessage(**parsed)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

FRAMES = [
    '{"type":"stt_result","transcript":"I would like to check my order","is_final":true,'
    '"is_speech_final":true,"confidence":0.95}',
    '{"type":"stt_result","transcript":"I would like to","is_final":false,'
    '"is_speech_final":false,"confidence":0.8}',
]
ROUNDS = 50_000


def _measure(decode: Callable[[str], Any], rounds: int = ROUNDS) -> float:
    """Best of 5 runs, in frames per second."""
    frames = FRAMES * (rounds // len(FRAMES))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for frame in frames:
            decode(frame)
        best = min(best, time.perf_counter() - start)
    return len(frames) / best


def run() -> list[dict[str, Any]]:
    from sayna_client.types import STTResultMessage

    from saynad.client.session import Session
    from saynad.protocol.messages import STTResult, decode_server_event

    def sdk(data: str) -> object:
        parsed = json.loads(data)
        if parsed.get("type") == "stt_result":
            return STTResultMessage(**parsed)
        return parsed

    session = Session(None, url="ws://bench")  # type: ignore[arg-type]  # decode only
    assert isinstance(decode_server_event(FRAMES[0]), STTResult)
    assert isinstance(session._decode(FRAMES[0]), STTResult)
    assert sdk(FRAMES[0]).transcript == "I would like to check my order"  # type: ignore[attr-defined]
    rows = []
    for name, fn in (
        ("saynad decode_server_event (msgspec)", decode_server_event),
        ("saynad Session._decode (msgspec + stats)", session._decode),
        ("sdk json.loads + pydantic STTResultMessage", sdk),
    ):
        rate = _measure(fn)
        rows.append({"path": name, "frames_per_s": rate, "us_per_frame": 1e6 / rate})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    sdk = next(r for r in rows if r["path"].startswith("sdk"))
    head = "| decode path | frames/s | µs/frame | vs SDK |\n|---|---:|---:|---:|\n"
    return head + "".join(
        f"| {r['path']} | {r['frames_per_s']:,.0f} | {r['us_per_frame']:.2f} "
        f"| {r['frames_per_s'] / sdk['frames_per_s']:.1f}× |\n"
        for r in rows
    )


if __name__ == "__main__":
    print(markdown(run()))

"""Scale-out benchmark → ``docs/benchmarks-scale.md``.

Two parts, each kept in ``bench-results/scale.json`` so the document is rebuilt from
whatever was last measured:

- ``webhooks``: two shards share one webhook port (``SO_REUSEPORT``), a small one
  (``max_sessions`` 50) and a large one (400); 300 signed webhooks arrive, ``c`` at a
  time. With ``when_full: refuse`` the full shard answers 503; with ``close`` it steps
  aside. Counted: calls admitted, refused (503), lost to a connection error, and how
  they split.
- ``capacity``: the most always-on streaming sessions one shard holds with the audio
  send lag p99 ≤ 50 ms (≤ 1 % of chunks later than 50 ms: ``saynad_audio_chunks_late``
  over ``saynad_ws_frames{type="audio"}``), found by bisection; then two shards of the
  same configuration, each pinned to its own core; then the official SDK in one
  process on the same workload (``tests/bench/client_sdk.py --stream-s``). The
  emulator runs in its own process; its CPU is reported beside the shards'.

``python -m tests.bench.bench_scale [--part webhooks|capacity|all] [--reps 3]
[--which one,two,sdk]``
(``make bench`` runs both; run it under ``flock /tmp/saynad-heavy.lock``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from saynad._io.listener import MIGRATE_SYSCTL
from tests.bench.__main__ import machine
from tests.support.processes import daemon_process, shared_port
from tests.support.samples import daemon_config, signed_call

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results" / "scale.json"
DOC = ROOT / "docs" / "benchmarks-scale.md"

SMALL, LARGE, CALLS = 50, 400, 300
CONCURRENCY = (1, 3, 16)


# --------------------------------------------------------------------------- webhooks


async def _webhook_run(mode: str, concurrency: int, run: int) -> dict[str, Any]:
    with shared_port() as port:
        hooks = f'{{listen: "127.0.0.1:{port}", reuse_port: true, when_full: {mode}}}'
        url = f"http://127.0.0.1:{port}/webhooks/sip"
        outcomes: Counter[str] = Counter()
        with tempfile.TemporaryDirectory() as tmp:
            async with AsyncExitStack() as stack:
                shards = []
                for name, cap in (("small", SMALL), ("large", LARGE)):
                    config = Path(tmp) / f"{name}.yaml"
                    config.write_text(daemon_config(sessions=(), max_sessions=cap, webhooks=hooks))
                    process = await stack.enter_async_context(
                        daemon_process(config, keep_raw=False)
                    )
                    await process.event("webhook listener listening")
                    shards.append(process)
                client = await stack.enter_async_context(
                    httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
                )
                limit = trio.CapacityLimiter(concurrency)

                async def one(number: int) -> None:
                    headers, body = signed_call(f"sip-{number}", f"EV_bench_{run}_{number:04d}")
                    async with limit:
                        try:
                            response = await client.post(url, headers=headers, content=body)
                        except httpx.TransportError as exc:
                            outcomes[f"connection error ({type(exc).__name__})"] += 1
                            return
                    outcomes[str(response.status_code)] += 1

                async with trio.open_nursery() as nursery:
                    for number in range(CALLS):
                        nursery.start_soon(one, number)
                split = []
                for process in shards:
                    rows = (await client.get(f"{process.url}/sessions")).json()["sessions"]
                    split.append(sum(1 for row in rows if row["origin"] == "inbound"))
        lost = sum(n for key, n in outcomes.items() if key.startswith("connection"))
        return {
            "admitted": outcomes["202"],
            "refused": outcomes["503"],
            "lost": lost,
            "other": CALLS - outcomes["202"] - outcomes["503"] - lost,
            "small": split[0],
            "large": split[1],
            "errors": dict(outcomes),
        }


@contextmanager
def _migration(on: bool) -> Iterator[bool]:
    """``net.ipv4.tcp_migrate_req`` set to ``on`` for the block (restored after); yields
    False when it cannot be set (not root, no such sysctl)."""
    try:
        before = MIGRATE_SYSCTL.read_text()
        MIGRATE_SYSCTL.write_text("1\n" if on else "0\n")
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        MIGRATE_SYSCTL.write_text(before)


def webhooks(reps: int) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for label, mode, migrate in (
        ("refuse", "refuse", False),
        ("close", "close", False),
        ("close, tcp_migrate_req = 1", "close", True),
    ):
        for concurrency in CONCURRENCY:
            with _migration(migrate) as applied:
                if not applied:
                    print(f"{label}: cannot set {MIGRATE_SYSCTL}; skipped", flush=True)
                    continue
                runs = [trio.run(_webhook_run, mode, concurrency, rep) for rep in range(reps)]
            key = f"{label}/{concurrency}"
            cells[key] = {
                field: statistics.median(r[field] for r in runs)
                for field in ("admitted", "refused", "lost", "other", "small", "large")
            }
            cells[key]["worst_refused_or_lost"] = max(r["refused"] + r["lost"] for r in runs)
            print(key, cells[key], flush=True)
    return {"reps": reps, "cells": cells}


def _webhooks_section(data: dict[str, Any] | None) -> list[str]:
    lines = [
        "## Inbound calls across shards: close the listener, or answer 503?",
        "",
        f"Two shards share one webhook port (`SO_REUSEPORT`): a small one (`max_sessions` "
        f"{SMALL}) and a large one ({LARGE}); {CALLS} signed webhooks arrive, *c* at a "
        f"time. The fleet has room for all {CALLS}: every refusal is a call lost while "
        "the other shard had room (Sayna does not retry webhooks).",
        "",
    ]
    if data is None:
        return [*lines, "*Not measured yet.*", ""]
    lines += [
        f"Medians of {data['reps']} runs ({data['date']}, {data['machine']}).",
        "",
        "| when_full | c | admitted | refused (503) | connection errors | small / large "
        "shard | worst run: refused + lost |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, cell in data["cells"].items():
        mode, concurrency = key.rsplit("/", 1)
        lines.append(
            f"| `{mode}` | {concurrency} | {cell['admitted']:g} | {cell['refused']:g} | "
            f"{cell['lost']:g} | {cell['small']:g} / {cell['large']:g} | "
            f"{cell['worst_refused_or_lost']:g} |"
        )
    lines.append("")
    return lines


# --------------------------------------------------------------------------- report


def write_doc(saved: dict[str, Any]) -> None:
    from tests.bench import bench_scale_capacity

    lines = [
        "# Scale-out benchmarks",
        "",
        "Produced by `python -m tests.bench.bench_scale` (part of `make bench`); raw "
        "results in `bench-results/scale.json`. What sharding is and how to run it: "
        "[operations](operations.md#scaling-out-shards).",
        "",
        *bench_scale_capacity.section(saved.get("capacity")),
        *_webhooks_section(saved.get("webhooks")),
        *FINDINGS,
    ]
    DOC.write_text("\n".join(lines).rstrip() + "\n")


FINDINGS = [
    "## What the webhook figures show",
    "",
    "- **Answering 503 does not move calls.** The kernel hands each new connection to a "
    "listening socket by a hash of its addresses, whatever the process behind it will "
    "answer: with `when_full: refuse` about half the calls keep reaching the small "
    "shard after it is full, and each of them is refused while the large shard has "
    "room.",
    "- **Closing the listener does.** A closed socket leaves the port's group and the "
    "kernel hashes new connections over the sockets left. With `when_full: close` "
    "(the default with `reuse_port: true`) the full shard steps aside the moment the "
    "connections it holds could fill its last slots, and comes back when a call ends.",
    "- **The queue of a closing socket.** Connections the kernel had already queued on "
    "the socket are reset when it closes (unless `net.ipv4.tcp_migrate_req = 1` moves "
    "them to another socket of the group). saynad accepts every queued connection "
    "before it closes, with no checkpoint in between, so none is reset: they are "
    "answered. When more of them arrived than the shard had slots left (only possible "
    "with several deliveries in flight at once), the extra ones are answered 503 — the "
    "`close` rows with *c* > 1 count them. With `tcp_migrate_req = 1` (Linux ≥ 5.14, a "
    "sysctl of the network namespace) saynad closes at once and lets the kernel move "
    "them to another shard instead (the last rows).",
    "- **A whole fleet full.** When every shard has stepped aside, nothing listens on "
    "the port: a call gets a refused connection instead of a 503. Both mean the same "
    "to Sayna (no retry); the fleet-wide cap is the sum of the shards' `max_sessions`, "
    "and `saynad_webhook_listener_open` (0 on every shard) says the fleet is full.",
    "",
]


def load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_scale")
    parser.add_argument("--part", choices=("webhooks", "capacity", "all"), default="all")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--which",
        default="one,two,sdk",
        help="capacity: the configurations to measure again (one, two, sdk); the others "
        "are kept from bench-results/scale.json",
    )
    args = parser.parse_args(argv)
    saved = load()
    stamp = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}
    if not args.report_only and args.part in ("webhooks", "all"):
        saved["webhooks"] = {**webhooks(args.reps), **stamp}
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=2))
    if not args.report_only and args.part in ("capacity", "all"):
        from tests.bench import bench_scale_capacity

        which = tuple(args.which.split(","))
        measured = bench_scale_capacity.measure(args.reps, which, saved.get("capacity"))
        saved["capacity"] = {**measured, **stamp}
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(saved, indent=2))
    write_doc(saved)
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The webhook corpus (``webhooks.yaml``) over HTTP, against a running daemon.

Each attack is POSTed to the daemon's webhook route and must get its documented status
and move exactly one ``saynad_webhook_requests_total`` outcome by one. The reason of a
refusal goes to the log and the metric, never to the sender (the body says only
"unauthorized", "invalid payload", ...). The daemon stays healthy throughout.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from saynad.app import Daemon
from tests.corpus._corpus import load_items
from tests.corpus._daemon import corpus_daemon
from tests.corpus._webhooks import CLOCK_SLACK_S, MAX_BODY_BYTES, build_request
from tests.support.http import raw_request
from tests.timing import HANG_S

WEBHOOK_PATH = "/webhooks/sip"
# How the route reports each refusal (saynad/http.py): the status is the error's
# http_status, the metric outcome is named after the class.
OUTCOMES = {
    "WebhookSignatureError": "unauthorized",
    "WebhookTimestampError": "stale",
    "WebhookReplayError": "replay",
    "WebhookTooLargeError": "too_large",
    "WebhookPayloadError": "bad_payload",
}


async def webhook_outcomes(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "saynad_webhook_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["outcome"]] = sample.value
    return counts


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    return {k: v for k, v in changed.items() if v}


async def post_item(daemon: Daemon, item: dict[str, Any], index: int) -> list[int]:
    """Deliver ``item`` (as many times as it says); the status of each delivery."""
    statuses = []
    for delivery in range(item.get("deliveries", 1)):
        key = "timestamp_second" if delivery and "timestamp_second" in item else "timestamp"
        headers, body = build_request(
            item,
            timestamp_key=key,
            now=int(time.time()),
            slack_s=CLOCK_SLACK_S,
            default_event_id=f"EV_http_{index:03d}",
        )
        status, _ = await raw_request(daemon.http_urls[0], "POST", WEBHOOK_PATH, headers, body)
        statuses.append(status)
    return statuses


def expected(item: dict[str, Any], deliveries: int) -> tuple[int, dict[str, float]]:
    """The status of the last delivery and how the outcome counters move."""
    expect = item["expect"]
    if expect.get("accepted"):
        status, outcome = 202, "accepted"
    else:
        status, outcome = expect["http_status"], OUTCOMES[expect["error"]]
    http = expect.get("http", {})
    status = http.get("status", status)
    outcome = http.get("outcome", outcome)
    moves = {outcome: 1.0} if outcome else {}
    if deliveries > 1:  # the first delivery of a replay pair is accepted
        moves["accepted"] = moves.get("accepted", 0) + 1.0
    return status, moves


async def test_every_webhook_attack_over_http(tmp_path: Path) -> None:
    items = load_items("webhooks.yaml")
    wrong: dict[str, str] = {}
    options = {"sessions": (), "max_sessions": 50, "max_body_bytes": MAX_BODY_BYTES}
    async with corpus_daemon(tmp_path, **options) as daemon:
        client = httpx.AsyncClient(base_url=daemon.http_urls[0], timeout=HANG_S)
        async with client:
            for index, item in enumerate(items):
                before = await webhook_outcomes(client)
                with trio.fail_after(HANG_S):
                    statuses = await post_item(daemon, item, index)
                moved = delta(before, await webhook_outcomes(client))
                status, moves = expected(item, len(statuses))
                if (statuses[-1], moved) != (status, moves):
                    wrong[item["name"]] = f"got {statuses} {moved}, expected {status} {moves}"
            # Still healthy after all of it.
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
    assert not wrong, "\n".join(f"{name}: {why}" for name, why in wrong.items())


async def test_http_layer_refusals(tmp_path: Path) -> None:
    """What exists only at the HTTP layer: a declared Content-Length over the limit is
    refused before any body byte is read (the body here never comes), a body over the
    limit without a usable declaration is cut off while reading, other methods get 405."""
    async with corpus_daemon(tmp_path, sessions=(), max_body_bytes=MAX_BODY_BYTES) as daemon:
        url = daemon.http_urls[0]
        with trio.fail_after(HANG_S):
            status, _ = await raw_request(url, "POST", WEBHOOK_PATH, declared_length=10**9)
            assert status == 413
            body = b"x" * (MAX_BODY_BYTES + 1)
            status, _ = await raw_request(url, "POST", WEBHOOK_PATH, body=body, chunked=True)
            assert status == 413
            status, head = await raw_request(url, "GET", WEBHOOK_PATH)
            assert status == 405
            assert re.search(rb"(?im)^allow: POST\r?$", head)
            status, _ = await raw_request(url, "GET", "/healthz")
            assert status == 200

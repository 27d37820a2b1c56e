"""Webhook attacks (``webhooks.yaml``) against :class:`WebhookVerifier`.

The verifier's own unit and property tests live in ``tests/protocol/test_webhooks.py``;
this module only runs the corpus, so each attack and its answer are listed as data.
"""

from __future__ import annotations

from typing import Any

import pytest

from saynad import errors
from saynad.errors import WebhookError
from saynad.protocol.webhooks import WebhookVerifier
from tests.corpus._corpus import load_items, params
from tests.corpus._webhooks import MAX_BODY_BYTES, NOW, SECRET, build_request


def make_verifier() -> WebhookVerifier:
    return WebhookVerifier(SECRET, max_body_bytes=MAX_BODY_BYTES, clock=lambda: NOW)


def deliver(verifier: WebhookVerifier, item: dict[str, Any]) -> WebhookError | None:
    """Deliver ``item`` as many times as it says; the outcome of the last delivery."""
    outcome: WebhookError | None = None
    for index in range(item.get("deliveries", 1)):
        key = "timestamp_second" if index and "timestamp_second" in item else "timestamp"
        headers, body = build_request(item, timestamp_key=key)
        try:
            verifier.verify(headers, body)
        except WebhookError as exc:
            outcome = exc
        else:
            outcome = None
    return outcome


@pytest.mark.parametrize("item", params("webhooks.yaml"))
def test_webhook_attack(item: dict[str, Any]) -> None:
    expect = item["expect"]
    verifier = make_verifier()
    outcome = deliver(verifier, item)
    if expect.get("accepted"):
        assert outcome is None, f"refused: {outcome!r}"
        return
    assert outcome is not None, "accepted"
    assert type(outcome) is getattr(errors, expect["error"]), repr(outcome)
    assert outcome.http_status == expect["http_status"]
    assert str(outcome).startswith(expect.get("message", "")), str(outcome)
    if expect["error"] != "WebhookReplayError":
        # A refused delivery claims nothing: the genuine one is still accepted after it.
        headers, body = build_request({"name": "genuine", "expect": {}})
        verifier.verify(headers, body)


def test_corpus_covers_every_attack_of_the_issue() -> None:
    names = {item["name"] for item in load_items("webhooks.yaml")}
    assert {
        "signature-one-digit-flipped",  # bad signature
        "signature-missing",
        "timestamp-stale",
        "timestamp-future",
        "timestamp-arabic-indic-digits",  # non-ASCII digits
        "timestamp-leading-space",  # spaces
        "duplicate-event-id",
        "body-over-the-limit",
        "wrong-content-type",
        "raw-header-value-not-utf8",  # non-ASCII in headers
        "event-id-non-ascii",
        "colon-in-event-id",
    } <= names

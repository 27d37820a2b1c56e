"""Webhook attacks (``webhooks.yaml``) against :class:`WebhookVerifier`.

The verifier's own unit and property tests live in ``tests/protocol/test_webhooks.py``;
this module only runs the corpus, so each attack and its answer are listed as data.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import pytest

from saynad import errors
from saynad.errors import WebhookError
from saynad.protocol.webhooks import WebhookVerifier
from tests.corpus._corpus import expand, load_items, params

SECRET = "corpus-webhook-secret-0123456789"
OTHER_SECRET = "another-secret-entirely-987654321"
NOW = 1700000120
EVENT_ID = "EV_corpus_0001"
MAX_BODY_BYTES = 4096
BODY = (
    '{"participant":{"name":"SIP Caller","identity":"sip_caller_15559876543",'
    '"sid":"PA_abc123"},"room":{"name":"sip-+15551234567","sid":"RM_xyz789"},'
    '"from_phone_number":"+15559876543","to_phone_number":"+15551234567",'
    '"room_prefix":"sip-","sip_host":"example.com",'
    '"sip_headers":{"to":"<sip:+15551234567@example.com>"}}'
)
_NOW_FORM = re.compile(r"\{now([+-]\d+)?\}")


def _timestamp(value: str) -> str:
    return _NOW_FORM.sub(lambda m: str(NOW + int(m.group(1) or 0)), value)


def _mac(secret: str, timestamp: str, event_id: str, body: bytes) -> str:
    canonical = f"v1:{timestamp}:{event_id}:".encode("utf-8", "surrogatepass") + body
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def _body(item: dict[str, Any], key: str = "body") -> bytes:
    if f"{key}_hex" in item:
        return bytes.fromhex(item[f"{key}_hex"])
    text = expand(item.get(key, BODY), item.get("expand"))
    return text.encode("utf-8", "surrogatepass")


def build_request(
    item: dict[str, Any], *, timestamp_key: str = "timestamp"
) -> tuple[list[tuple[str, str]] | list[tuple[bytes, bytes]], bytes]:
    """The headers and body of one delivery of ``item``."""
    body = _body(item)
    signed_body = _body(item, "signed_body") if "signed_body" in item else body
    timestamp = _timestamp(item.get(timestamp_key, item.get("timestamp", "{now}")))
    event_id = expand(item.get("event_id", EVENT_ID), item.get("expand"))
    secret = OTHER_SECRET if item.get("signed_with") == "other" else SECRET
    sig = _mac(secret, timestamp, event_id, signed_body)
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")

    def fill(value: str) -> str:
        value = value.replace("{sig}", sig).replace("{SIG}", sig.upper())
        return _timestamp(value.replace("{sig_flipped}", flipped))

    if "raw_headers" in item:
        raw = [(n.encode("latin-1"), fill(v).encode("latin-1")) for n, v in item["raw_headers"]]
        return raw, body
    headers: dict[str, str] = {
        "Content-Type": "application/json",
        "X-Sayna-Signature": fill(item.get("signature", "v1={sig}")),
        "X-Sayna-Timestamp": timestamp,
        "X-Sayna-Event-Id": event_id,
        "X-Sayna-Signature-Version": "v1",
    }
    for name, value in (item.get("headers") or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = fill(value)
    pairs = list(headers.items())
    pairs += [(name, fill(value)) for name, value in item.get("extra_headers", [])]
    return pairs, body


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

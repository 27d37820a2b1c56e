"""Building the deliveries of ``webhooks.yaml``: headers and body, signed as each item says."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from tests.corpus._corpus import expand

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


WINDOW_S = 300
CLOCK_SLACK_S = 5
"""``slack_s`` for a receiver on the wall clock, which reads it after the test signed."""


def _timestamp(value: str, now: int, slack_s: int = 0) -> str:
    """``{now±N}`` → digits. ``slack_s`` moves an offset that sits near the edge of the
    ±300 s window away from it (outward when outside, inward when inside), for a
    receiver whose clock keeps running between signing and checking."""

    def offset(match: re.Match[str]) -> str:
        n = int(match.group(1) or 0)
        if n and slack_s:
            sign = 1 if n > 0 else -1
            n += sign * slack_s if abs(n) > WINDOW_S else -sign * slack_s
        return str(now + n)

    return _NOW_FORM.sub(offset, value)


def _mac(secret: str, timestamp: str, event_id: str, body: bytes) -> str:
    canonical = f"v1:{timestamp}:{event_id}:".encode("utf-8", "surrogatepass") + body
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def _body(item: dict[str, Any], key: str = "body") -> bytes:
    if f"{key}_hex" in item:
        return bytes.fromhex(item[f"{key}_hex"])
    text = expand(item.get(key, BODY), item.get("expand"))
    return text.encode("utf-8", "surrogatepass")


def build_request(
    item: dict[str, Any],
    *,
    timestamp_key: str = "timestamp",
    now: int = NOW,
    slack_s: int = 0,
    default_event_id: str = EVENT_ID,
) -> tuple[list[tuple[str, str]] | list[tuple[bytes, bytes]], bytes]:
    """The headers and body of one delivery of ``item`` at ``now``.

    ``default_event_id`` replaces the corpus event id wherever it appears, so several
    items can be delivered to one receiver without replaying each other.
    """
    body = _body(item)
    signed_body = _body(item, "signed_body") if "signed_body" in item else body
    timestamp = _timestamp(item.get(timestamp_key, item.get("timestamp", "{now}")), now, slack_s)
    event_id = expand(item.get("event_id", default_event_id), item.get("expand"))
    secret = OTHER_SECRET if item.get("signed_with") == "other" else SECRET
    sig = _mac(secret, timestamp, event_id, signed_body)
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")

    def fill(value: str) -> str:
        value = value.replace("{sig}", sig).replace("{SIG}", sig.upper())
        value = value.replace("{sig_flipped}", flipped).replace(EVENT_ID, default_event_id)
        return _timestamp(value, now, slack_s)

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

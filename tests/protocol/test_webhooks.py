"""SIP webhook verification: the §10.5 vector, every refusal path, replay cache, properties."""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from saynad.errors import (
    WebhookError,
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSecretError,
    WebhookSignatureError,
    WebhookTimestampError,
    WebhookTooLargeError,
)
from saynad.protocol import webhooks
from saynad.protocol.webhooks import (
    MAX_EVENT_ID_LENGTH,
    SipWebhook,
    VerifiedSipWebhook,
    WebhookParticipant,
    WebhookRoom,
    WebhookVerifier,
    encode_webhook_payload,
    parse_webhook_payload,
    sign_webhook,
)

# --------------------------------------------------------------------------- §10.5 vector

SECRET = "saynad-test-secret-0123456789abcdef"
TIMESTAMP = 1700000000
EVENT_ID = "EV_saynad_0001"
BODY = (
    b'{"participant":{"name":"SIP Caller","identity":"sip_caller_15559876543",'
    b'"sid":"PA_abc123"},"room":{"name":"sip-+15551234567","sid":"RM_xyz789"},'
    b'"from_phone_number":"+15559876543","to_phone_number":"+15551234567",'
    b'"room_prefix":"sip-","sip_host":"example.com",'
    b'"sip_headers":{"to":"<sip:+15551234567@example.com>"}}'
)
VECTOR_HMAC = "51c70270b4fc357de09acc6c79ca115ac1053b60c54eb67989e795d299742b5b"
VECTOR_HEADERS = {
    "Content-Type": "application/json",
    "X-Sayna-Signature": f"v1={VECTOR_HMAC}",
    "X-Sayna-Timestamp": "1700000000",
    "X-Sayna-Event-Id": "EV_saynad_0001",
    "X-Sayna-Signature-Version": "v1",
}
NOW = 1700000120

SIGNATURE_FAILED = (
    "Signature verification failed. The webhook may have been tampered with or the "
    "secret is incorrect."
)


def make_verifier(secrets: Any = SECRET, **kwargs: Any) -> WebhookVerifier:
    kwargs.setdefault("clock", lambda: NOW)
    return WebhookVerifier(secrets, **kwargs)


def signed(body: bytes, *, event_id: str = EVENT_ID, ts: int = TIMESTAMP) -> dict[str, str]:
    return sign_webhook(SECRET, body, timestamp=ts, event_id=event_id)


def hmac_hex(body: bytes) -> str:
    canonical = b"v1:1700000000:EV_saynad_0001:" + body
    return hmac.new(SECRET.encode(), canonical, hashlib.sha256).hexdigest()


def test_vector_body_is_312_bytes() -> None:
    assert len(BODY) == 312


def test_sign_webhook_produces_the_vector_headers_in_order() -> None:
    headers = sign_webhook(SECRET, BODY, timestamp=TIMESTAMP, event_id=EVENT_ID)
    assert headers == VECTOR_HEADERS
    assert list(headers) == list(VECTOR_HEADERS)
    assert hmac_hex(BODY) == VECTOR_HMAC


def test_vector_is_accepted_and_decoded() -> None:
    webhook = make_verifier().verify(VECTOR_HEADERS, BODY)
    assert isinstance(webhook, SipWebhook)
    assert isinstance(webhook, VerifiedSipWebhook)
    assert webhook.event_id == EVENT_ID
    assert webhook.timestamp == TIMESTAMP
    assert webhook.participant == WebhookParticipant(
        name="SIP Caller", identity="sip_caller_15559876543", sid="PA_abc123"
    )
    assert webhook.room == WebhookRoom(name="sip-+15551234567", sid="RM_xyz789")
    assert webhook.from_phone_number == "+15559876543"
    assert webhook.to_phone_number == "+15551234567"
    assert webhook.room_prefix == "sip-"
    assert webhook.sip_host == "example.com"
    assert webhook.sip_headers == {"to": "<sip:+15551234567@example.com>"}


def test_vector_accepted_as_str_body() -> None:
    assert make_verifier().verify(VECTOR_HEADERS, BODY.decode()).event_id == EVENT_ID


def test_encode_reproduces_the_server_bytes() -> None:
    webhook = make_verifier().verify(VECTOR_HEADERS, BODY)
    # The delivery fields (event_id, timestamp) are not part of the payload.
    assert encode_webhook_payload(webhook) == BODY
    assert encode_webhook_payload(parse_webhook_payload(BODY)) == BODY


def test_encode_is_compact_raw_utf8_without_slash_escapes() -> None:
    webhook = SipWebhook(
        participant=WebhookParticipant(identity="i", sid="s"),
        room=WebhookRoom(name="sip-é/1", sid="r"),
        from_phone_number="+1",
        to_phone_number="+2",
        room_prefix="sip-",
        sip_host="example.com",
    )
    encoded = encode_webhook_payload(webhook)
    assert (
        encoded
        == (
            '{"participant":{"identity":"i","sid":"s"},"room":{"name":"sip-é/1","sid":"r"},'
            '"from_phone_number":"+1","to_phone_number":"+2","room_prefix":"sip-",'
            '"sip_host":"example.com"}'
        ).encode()
    )


# --------------------------------------------------------------------------- §10.5 negatives


def test_changed_phone_digit_is_rejected() -> None:
    tampered = BODY.replace(b"+15559876543", b"+15559876544", 1)
    assert tampered != BODY
    assert hmac_hex(tampered) == "5d6188758d4bef63b33b1c7258a1d0c3c26466a089f04967662c4c876ea178bb"
    with pytest.raises(WebhookSignatureError) as info:
        make_verifier().verify(VECTOR_HEADERS, tampered)
    assert str(info.value) == SIGNATURE_FAILED
    assert info.value.http_status == 401


def test_trailing_newline_is_rejected() -> None:
    tampered = BODY + b"\n"
    assert hmac_hex(tampered) == "499511758319ce61608883e1aa5c9da12ad075b8ec7086cb49800993b35481f1"
    with pytest.raises(WebhookSignatureError, match=r"^Signature verification failed"):
        make_verifier().verify(VECTOR_HEADERS, tampered)


@pytest.mark.parametrize("now", [1700000300, 1700000300.999, 1699999700])
def test_window_edges_are_accepted(now: float) -> None:
    assert make_verifier().verify(VECTOR_HEADERS, BODY, now=now).event_id == EVENT_ID


@pytest.mark.parametrize(("now", "difference"), [(1700000301, 301), (1699999699, 301)])
def test_outside_window_is_rejected_with_the_sdk_text(now: int, difference: int) -> None:
    with pytest.raises(WebhookTimestampError) as info:
        make_verifier(clock=lambda: now).verify(VECTOR_HEADERS, BODY)
    assert str(info.value) == (
        f"Timestamp outside replay protection window. Difference: {difference} seconds "
        "(max allowed: 300). This webhook may be a replay attack or there may be "
        "significant clock skew."
    )
    assert info.value.http_status == 401


def test_custom_tolerance_is_reported() -> None:
    verifier = make_verifier(tolerance_s=60)
    with pytest.raises(WebhookTimestampError, match=r"Difference: 120 seconds \(max allowed: 60\)"):
        verifier.verify(VECTOR_HEADERS, BODY)


def test_padded_secret_is_trimmed() -> None:
    verifier = make_verifier(f"  {SECRET}  ")
    assert verifier.verify(VECTOR_HEADERS, BODY).event_id == EVENT_ID


def test_upper_case_hex_is_accepted() -> None:
    headers = {**VECTOR_HEADERS, "X-Sayna-Signature": f"v1={VECTOR_HMAC.upper()}"}
    assert make_verifier().verify(headers, BODY).event_id == EVENT_ID


def test_signature_version_header_is_not_required() -> None:
    headers = dict(VECTOR_HEADERS)
    del headers["X-Sayna-Signature-Version"]
    del headers["Content-Type"]
    assert make_verifier().verify(headers, BODY).event_id == EVENT_ID


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("removed", "expected"),
    [
        ({"X-Sayna-Signature"}, "x-sayna-signature"),
        ({"X-Sayna-Timestamp"}, "x-sayna-timestamp"),
        ({"X-Sayna-Event-Id"}, "x-sayna-event-id"),
        ({"X-Sayna-Signature", "X-Sayna-Timestamp", "X-Sayna-Event-Id"}, "x-sayna-signature"),
        ({"X-Sayna-Timestamp", "X-Sayna-Event-Id"}, "x-sayna-timestamp"),
    ],
)
def test_missing_headers_in_order(removed: set[str], expected: str) -> None:
    headers = {k: v for k, v in VECTOR_HEADERS.items() if k not in removed}
    with pytest.raises(WebhookSignatureError) as info:
        make_verifier().verify(headers, BODY)
    assert str(info.value) == f"Missing required header: {expected}"


@pytest.mark.parametrize("name", ["X-Sayna-Signature", "X-Sayna-Timestamp", "X-Sayna-Event-Id"])
def test_empty_header_value_counts_as_missing(name: str) -> None:
    headers = {**VECTOR_HEADERS, name: ""}
    with pytest.raises(WebhookSignatureError, match=f"^Missing required header: {name.lower()}$"):
        make_verifier().verify(headers, BODY)


def test_header_lookup_is_case_insensitive_and_accepts_pairs() -> None:
    verifier = make_verifier()
    lower = {k.lower(): v for k, v in VECTOR_HEADERS.items()}
    assert verifier.verify(lower, BODY, record=False).event_id == EVENT_ID
    shouting = [(k.upper(), v) for k, v in VECTOR_HEADERS.items()]
    assert verifier.verify(shouting, BODY, record=False).event_id == EVENT_ID
    # Raw ASGI headers: lower-case byte names and byte values.
    asgi = [(k.lower().encode(), v.encode()) for k, v in VECTOR_HEADERS.items()]
    assert verifier.verify(asgi, BODY, record=False).event_id == EVENT_ID


def test_duplicate_header_is_refused() -> None:
    pairs = [*VECTOR_HEADERS.items(), ("x-sayna-timestamp", "1700000001")]
    with pytest.raises(WebhookSignatureError, match=r"^Duplicate header: x-sayna-timestamp$"):
        make_verifier().verify(pairs, BODY)
    # An empty duplicate is just "missing" and does not count.
    pairs = [*VECTOR_HEADERS.items(), ("x-sayna-timestamp", "")]
    assert make_verifier().verify(pairs, BODY).event_id == EVENT_ID


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (
            f"sha256={VECTOR_HMAC}",
            "Invalid signature format. Expected 'v1=<hex>' but got: sha256=51c...",
        ),
        (
            f"V1={VECTOR_HMAC}",
            "Invalid signature format. Expected 'v1=<hex>' but got: V1=51c7027...",
        ),
        (VECTOR_HMAC, "Invalid signature format. Expected 'v1=<hex>' but got: 51c70270b4..."),
        ("v1=" + VECTOR_HMAC[:63], "Invalid signature: must be 64 hex characters (HMAC-SHA256)"),
        ("v1=" + VECTOR_HMAC + "0", "Invalid signature: must be 64 hex characters (HMAC-SHA256)"),
        ("v1=" + "g" * 64, "Invalid signature: must be 64 hex characters (HMAC-SHA256)"),
        ("v1=" + VECTOR_HMAC + "\n", "Invalid signature: must be 64 hex characters (HMAC-SHA256)"),
        ("v1=" + "é" * 64, "Invalid signature: must be 64 hex characters (HMAC-SHA256)"),
        ("v1=" + "٠" * 64, "Invalid signature: must be 64 hex characters (HMAC-SHA256)"),
    ],
)
def test_bad_signature_formats(signature: str, message: str) -> None:
    headers = {**VECTOR_HEADERS, "X-Sayna-Signature": signature}
    with pytest.raises(WebhookSignatureError) as info:
        make_verifier().verify(headers, BODY)
    assert str(info.value) == message


def test_signature_format_is_checked_before_the_timestamp() -> None:
    headers = {**VECTOR_HEADERS, "X-Sayna-Signature": "v1=00", "X-Sayna-Timestamp": "x"}
    with pytest.raises(WebhookSignatureError, match="must be 64 hex"):
        make_verifier().verify(headers, BODY)


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "1700000000.0",
        " 1700000000",
        "1700000000 ",
        "+1700000000",
        "-1700000000",
        "1_700_000_000",
        "١٧٠٠٠٠٠٠٠٠",  # Arabic-Indic digits: int() accepts them
        "１７００００００００",  # full-width digits: int() accepts them too
        "1" * 21,
        "1e9",
        "0x6553f100",
    ],
)
def test_bad_timestamp_formats(timestamp: str) -> None:
    assert timestamp != "1700000000"
    headers = {**VECTOR_HEADERS, "X-Sayna-Timestamp": timestamp}
    with pytest.raises(WebhookTimestampError) as info:
        make_verifier().verify(headers, BODY)
    assert str(info.value) == (
        f"Invalid timestamp format: expected Unix seconds but got '{timestamp}'"
    )


def test_long_timestamp_is_echoed_truncated() -> None:
    headers = {**VECTOR_HEADERS, "X-Sayna-Timestamp": "x" * 5000}
    with pytest.raises(WebhookTimestampError) as info:
        make_verifier().verify(headers, BODY)
    assert str(info.value).endswith("'" + "x" * 64 + "...'")


def test_leading_zeros_are_verbatim_in_the_canonical_string() -> None:
    # "01700000000" parses to the same instant but is a different signed string.
    headers = {**VECTOR_HEADERS, "X-Sayna-Timestamp": "01700000000"}
    with pytest.raises(WebhookSignatureError, match=r"^Signature verification failed"):
        make_verifier().verify(headers, BODY)
    resigned = sign_webhook(SECRET, BODY, timestamp=TIMESTAMP, event_id=EVENT_ID)
    resigned["X-Sayna-Timestamp"] = "01700000000"
    mac = hmac.new(SECRET.encode(), b"v1:01700000000:EV_saynad_0001:" + BODY, hashlib.sha256)
    resigned["X-Sayna-Signature"] = "v1=" + mac.hexdigest()
    assert make_verifier().verify(resigned, BODY).timestamp == TIMESTAMP


@pytest.mark.parametrize(
    "event_id",
    [
        "EV_é",
        "EV 1",
        "EV\t1",
        "EV\x001",
        "EV:1",
        "x" * (MAX_EVENT_ID_LENGTH + 1),
    ],
)
def test_bad_event_ids_are_refused_cleanly(event_id: str) -> None:
    headers = signed(BODY, event_id=event_id)
    with pytest.raises(WebhookSignatureError) as info:
        make_verifier().verify(headers, BODY)
    assert str(info.value) == (
        "Invalid event id: expected 1-256 visible ASCII characters without ':'"
    )


def test_longest_event_id_is_accepted() -> None:
    event_id = "E" * MAX_EVENT_ID_LENGTH
    assert make_verifier().verify(signed(BODY, event_id=event_id), BODY).event_id == event_id


def test_non_ascii_asgi_header_bytes_are_refused_cleanly() -> None:
    asgi = [(k.lower().encode(), v.encode()) for k, v in VECTOR_HEADERS.items()]
    asgi = [(k, b"EV_\xc3\xa9" if k == b"x-sayna-event-id" else v) for k, v in asgi]
    with pytest.raises(WebhookSignatureError, match=r"^Invalid event id"):
        make_verifier().verify(asgi, BODY)
    asgi = [(k, b"v1=" + b"\xff" * 64 if k == b"x-sayna-signature" else v) for k, v in asgi]
    with pytest.raises(WebhookSignatureError, match=r"^Invalid signature: must be 64 hex"):
        make_verifier().verify(asgi, BODY)


def test_surrogates_in_a_str_body_fail_as_a_signature_mismatch() -> None:
    with pytest.raises(WebhookSignatureError, match=r"^Signature verification failed"):
        make_verifier().verify(VECTOR_HEADERS, BODY.decode() + "\udc80")


# --------------------------------------------------------------------------- body size


def test_too_large_body_is_refused_before_anything_else() -> None:
    verifier = make_verifier(max_body_bytes=100)
    # No headers at all: the size check comes first, so no header parsing or HMAC.
    with pytest.raises(WebhookTooLargeError) as info:
        verifier.verify({}, b"x" * 101)
    assert info.value.http_status == 413
    assert str(info.value) == "Webhook body too large: 101 bytes (max allowed: 100)"
    with pytest.raises(WebhookTooLargeError):
        verifier.verify({}, "x" * 101)
    # Multi-byte characters are counted in bytes.
    with pytest.raises(WebhookTooLargeError, match="102 bytes"):
        verifier.verify({}, "é" * 51)


def test_too_large_body_never_reaches_the_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> bool:
        raise AssertionError("HMAC compared for an oversized body")

    monkeypatch.setattr(hmac, "compare_digest", boom)
    with pytest.raises(WebhookTooLargeError):
        make_verifier(max_body_bytes=311).verify(VECTOR_HEADERS, BODY)


def test_body_at_the_limit_is_accepted() -> None:
    assert make_verifier(max_body_bytes=312).verify(VECTOR_HEADERS, BODY).event_id == EVENT_ID


def test_bytearray_and_memoryview_bodies() -> None:
    verifier = make_verifier()
    assert verifier.verify(VECTOR_HEADERS, bytearray(BODY), record=False).event_id == EVENT_ID
    assert verifier.verify(VECTOR_HEADERS, memoryview(BODY), record=False).event_id == EVENT_ID


# --------------------------------------------------------------------------- secrets


def test_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAYNA_WEBHOOK_SECRET", raising=False)
    values: tuple[str | list[str] | None, ...] = (None, "", [])
    for value in values:
        with pytest.raises(WebhookSecretError) as info:
            WebhookVerifier(value)
        assert str(info.value) == (
            "Webhook secret is required. Provide it as a constructor parameter or set "
            "SAYNA_WEBHOOK_SECRET environment variable."
        )
        assert info.value.http_status == 500
    monkeypatch.setenv("SAYNA_WEBHOOK_SECRET", "")
    with pytest.raises(WebhookSecretError, match=r"^Webhook secret is required"):
        WebhookVerifier()


@pytest.mark.parametrize(
    ("secret", "length"), [("short", 5), ("  " + "x" * 15 + "  ", 15), (" ", 0)]
)
def test_short_secret(secret: str, length: int) -> None:
    with pytest.raises(WebhookSecretError) as info:
        WebhookVerifier(secret)
    assert str(info.value) == (
        f"Webhook secret must be at least 16 characters long. Received {length} characters. "
        "Generate a secure secret with: openssl rand -hex 32"
    )


def test_sixteen_characters_is_enough() -> None:
    assert WebhookVerifier("x" * 16).secret_count == 1


def test_env_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAYNA_WEBHOOK_SECRET", f" {SECRET}\n")
    for value in (None, "", ()):
        verifier = WebhookVerifier(value, clock=lambda: NOW)
        assert verifier.verify(VECTOR_HEADERS, BODY).event_id == EVENT_ID


def test_env_holds_one_secret_not_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    other = "another-secret-0123456789"
    monkeypatch.setenv("SAYNA_WEBHOOK_SECRET", f"{SECRET},{other}")
    with pytest.raises(WebhookSignatureError, match=r"^Signature verification failed"):
        WebhookVerifier(clock=lambda: NOW).verify(VECTOR_HEADERS, BODY)


def test_argument_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAYNA_WEBHOOK_SECRET", "short")
    assert make_verifier(SECRET).verify(VECTOR_HEADERS, BODY).event_id == EVENT_ID


def test_short_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAYNA_WEBHOOK_SECRET", "short")
    with pytest.raises(WebhookSecretError, match="Received 5 characters"):
        WebhookVerifier()


def test_bytes_secret_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        WebhookVerifier(SECRET.encode())  # type: ignore[arg-type]


def test_rotation_accepts_old_and_new_secrets() -> None:
    old, new, unknown = SECRET, "the-new-secret-after-rotation", "a-secret-nobody-uses-0000"
    verifier = make_verifier([new, f" {old} ", new])
    assert verifier.secret_count == 2
    for n, secret in enumerate((old, new)):
        headers = sign_webhook(secret, BODY, timestamp=TIMESTAMP, event_id=f"EV_{n}")
        assert verifier.verify(headers, BODY).event_id == f"EV_{n}"
    headers = sign_webhook(unknown, BODY, timestamp=TIMESTAMP, event_id="EV_x")
    with pytest.raises(WebhookSignatureError, match=r"^Signature verification failed"):
        verifier.verify(headers, BODY)


def test_rotation_checks_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # Matching the first secret must not skip the others (no timing hint of which matched).
    calls: list[bool] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        result = real(a, b)
        calls.append(result)
        return result

    monkeypatch.setattr(hmac, "compare_digest", counting)
    verifier = make_verifier([SECRET, "second-secret-0123456789", "third-secret-0123456789"])
    verifier.verify(VECTOR_HEADERS, BODY)
    assert calls == [True, False, False]


def test_rotation_refuses_a_short_secret_in_the_list() -> None:
    with pytest.raises(WebhookSecretError, match="Received 3 characters"):
        WebhookVerifier([SECRET, "abc"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tolerance_s": -1},
        {"tolerance_s": float("nan")},
        {"max_body_bytes": 0},
        {"replay_cache_size": 0},
    ],
)
def test_bad_verifier_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        WebhookVerifier(SECRET, **kwargs)


# --------------------------------------------------------------------------- sign_webhook


def test_sign_webhook_round_trip_with_str_body_and_trimmed_secret() -> None:
    body = BODY.decode()
    headers = sign_webhook(f"\t{SECRET} ", body, timestamp=NOW, event_id="EV_round")
    webhook = make_verifier().verify(headers, body)
    assert (webhook.event_id, webhook.timestamp) == ("EV_round", NOW)


def test_sign_webhook_needs_a_secret() -> None:
    with pytest.raises(WebhookSecretError):
        sign_webhook("   ", BODY, timestamp=TIMESTAMP, event_id=EVENT_ID)


# --------------------------------------------------------------------------- replay


def test_replay_is_rejected_with_409() -> None:
    verifier = make_verifier()
    verifier.verify(VECTOR_HEADERS, BODY)
    with pytest.raises(WebhookReplayError) as info:
        verifier.verify(VECTOR_HEADERS, BODY)
    assert info.value.event_id == EVENT_ID
    assert info.value.http_status == 409
    # A re-delivery signed later (same event id) is a duplicate too.
    with pytest.raises(WebhookReplayError):
        verifier.verify(signed(BODY, ts=TIMESTAMP + 60), BODY)
    stats = verifier.statistics()
    assert (stats.replay_cache_size, stats.replays_rejected) == (1, 2)


def test_replay_check_needs_a_good_signature_first() -> None:
    verifier = make_verifier()
    verifier.verify(VECTOR_HEADERS, BODY)
    with pytest.raises(WebhookSignatureError):
        verifier.verify(VECTOR_HEADERS, BODY + b" ")


def test_rejected_deliveries_are_not_remembered() -> None:
    verifier = make_verifier()
    with pytest.raises(WebhookSignatureError):
        verifier.verify(VECTOR_HEADERS, BODY + b"\n")
    bad_payload = b'{"participant":{}}'
    with pytest.raises(WebhookPayloadError):
        verifier.verify(signed(bad_payload), bad_payload)
    assert verifier.statistics().replay_cache_size == 0
    assert verifier.verify(VECTOR_HEADERS, BODY).event_id == EVENT_ID


def test_record_false_then_remember() -> None:
    verifier = make_verifier()
    first = verifier.verify(VECTOR_HEADERS, BODY, record=False)
    second = verifier.verify(VECTOR_HEADERS, BODY, record=False)
    assert first == second
    assert verifier.statistics().replay_cache_size == 0
    verifier.remember(first)
    # The claim is atomic: a second claimant loses.
    with pytest.raises(WebhookReplayError):
        verifier.remember(second)
    with pytest.raises(WebhookReplayError):
        verifier.verify(VECTOR_HEADERS, BODY, record=False)


def test_forget_releases_a_claim() -> None:
    verifier = make_verifier()
    webhook = verifier.verify(VECTOR_HEADERS, BODY)
    assert verifier.forget(webhook.event_id) is True
    assert verifier.forget(webhook.event_id) is False
    assert verifier.verify(VECTOR_HEADERS, BODY).event_id == EVENT_ID


def test_entries_expire_with_the_window() -> None:
    clock = [float(NOW)]
    verifier = make_verifier(clock=lambda: clock[0])
    verifier.verify(VECTOR_HEADERS, BODY)
    # Kept one full window after acceptance (NOW + 300), even though the signed
    # timestamp leaves the window at TIMESTAMP + 300.
    clock[0] = NOW + 300
    with pytest.raises(WebhookReplayError):
        verifier.verify(signed(BODY, ts=NOW + 200), BODY)
    clock[0] = NOW + 301
    assert verifier.verify(signed(BODY, ts=NOW + 200), BODY).timestamp == NOW + 200


def test_expired_entries_are_purged_when_new_ones_arrive() -> None:
    clock = [float(NOW)]
    verifier = make_verifier(clock=lambda: clock[0])
    for n in range(10):
        verifier.verify(signed(BODY, event_id=f"EV_{n}"), BODY)
    assert verifier.statistics().replay_cache_size == 10
    clock[0] = NOW + 1000
    verifier.verify(signed(BODY, event_id="EV_late", ts=NOW + 1000), BODY)
    stats = verifier.statistics()
    assert (stats.replay_cache_size, stats.evicted_unexpired) == (1, 0)


def test_cache_stays_bounded_under_many_ids() -> None:
    verifier = make_verifier(replay_cache_size=100)
    for n in range(1000):
        verifier.verify(signed(BODY, event_id=f"EV_{n}"), BODY)
    stats = verifier.statistics()
    assert stats.replay_cache_size == 100
    assert stats.replay_cache_capacity == 100
    assert stats.evicted_unexpired == 900
    # The newest are remembered; the oldest were dropped (and counted above).
    with pytest.raises(WebhookReplayError):
        verifier.verify(signed(BODY, event_id="EV_999"), BODY)
    assert verifier.verify(signed(BODY, event_id="EV_0"), BODY).event_id == "EV_0"


# --------------------------------------------------------------------------- payload


def payload(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.json.decode(BODY)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = doc
        for parent in parents:
            target = target[parent]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return doc


def verify_payload(doc: Any) -> VerifiedSipWebhook:
    body = msgspec.json.encode(doc)
    return make_verifier().verify(signed(body), body)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"participant": ...}, "participant: Field required"),
        ({"participant": "x"}, "participant: Input should be a valid dictionary"),
        ({"participant__identity": ...}, "participant.identity: Field required"),
        ({"participant__identity": 5}, "participant.identity: Input should be a valid string"),
        ({"participant__sid": None}, "participant.sid: Input should be a valid string"),
        ({"participant__name": 1}, "participant.name: Input should be a valid string"),
        ({"room": []}, "room: Input should be a valid dictionary"),
        ({"room__name": ""}, "room.name: String should have at least 1 character"),
        ({"room__sid": ...}, "room.sid: Field required"),
        ({"from_phone_number": 15559876543}, "from_phone_number: Input should be a valid string"),
        ({"to_phone_number": ""}, "to_phone_number: String should have at least 1 character"),
        ({"room_prefix": ""}, "room_prefix: String should have at least 1 character"),
        ({"sip_host": ...}, "sip_host: Field required"),
        ({"sip_headers": ["to"]}, "sip_headers: Input should be a valid dictionary"),
        ({"sip_headers__to": 1}, "sip_headers.to: Input should be a valid string"),
        # The first failing field in declaration order is reported.
        (
            {"participant__identity": ..., "room__sid": ..., "sip_host": 1},
            "participant.identity: Field required",
        ),
        ({"room__sid": "", "sip_host": ""}, "room.sid: String should have at least 1 character"),
    ],
)
def test_payload_errors_name_the_dotted_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        verify_payload(payload(**changes))
    assert str(info.value) == f"Webhook payload validation failed: {message}"
    assert info.value.http_status == 400


@pytest.mark.parametrize("doc", [[], "x", 1, None])
def test_payload_must_be_an_object(doc: Any) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        verify_payload(doc)
    assert (
        str(info.value)
        == "Webhook payload validation failed: $: Input should be a valid dictionary"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b'{"a":1} trailing',
        b'{"a":"\xff"}',
        b"[" * 5000 + b"]" * 5000,
        b"1e999",
    ],
)
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError, match=r"^Invalid JSON payload: "):
        make_verifier().verify(signed(body), body)


def test_optional_fields_and_extra_keys() -> None:
    webhook = verify_payload(
        payload(participant__name=..., sip_headers=..., extra={"nested": [1, 2]})
    )
    assert webhook.participant.name is None
    assert webhook.sip_headers is None
    webhook = verify_payload(payload(participant__name=None, sip_headers=None))
    assert (webhook.participant.name, webhook.sip_headers) == (None, None)
    # The server sends "" for a caller without a display name: not a required string.
    assert verify_payload(payload(participant__name="")).participant.name == ""
    assert verify_payload(payload(sip_headers={})).sip_headers == {}
    assert verify_payload(payload(sip_headers={"x-empty": ""})).sip_headers == {"x-empty": ""}


def test_parse_webhook_payload_without_signature() -> None:
    assert parse_webhook_payload(BODY.decode()) == parse_webhook_payload(BODY)
    with pytest.raises(WebhookPayloadError):
        parse_webhook_payload(b"[]")


# --------------------------------------------------------------------------- colon in event ids


def test_a_colon_in_the_event_id_would_allow_a_forged_split() -> None:
    """The scheme itself is ambiguous when ids contain ':'; the verifier closes the gap.

    ``v1:{ts}:{id}:{body}`` for (id="EV_saynad_0001", body=BODY) is byte-for-byte the
    canonical string of (id='EV_saynad_0001:{"participant"', body=BODY after its first
    ':'), so the genuine signature is also valid for the forged split.
    """
    cut = BODY.index(b":")
    forged_id = EVENT_ID + ":" + BODY[:cut].decode()
    forged_body = BODY[cut + 1 :]
    genuine = b"v1:1700000000:" + EVENT_ID.encode() + b":" + BODY
    forged = b"v1:1700000000:" + forged_id.encode() + b":" + forged_body
    assert genuine == forged
    forged_mac = hmac.new(SECRET.encode(), forged, hashlib.sha256).hexdigest()
    assert forged_mac == VECTOR_HMAC

    forged_headers = {**VECTOR_HEADERS, "X-Sayna-Event-Id": forged_id}
    verifier = make_verifier()
    with pytest.raises(WebhookSignatureError, match="without ':'"):
        verifier.verify(forged_headers, forged_body)
    # The same happens after the genuine delivery was seen: the forged id cannot be
    # used to get past the replay cache under a fresh name either.
    verifier.verify(VECTOR_HEADERS, BODY)
    with pytest.raises(WebhookSignatureError, match="without ':'"):
        verifier.verify(forged_headers, forged_body)


def test_the_timestamp_cannot_absorb_part_of_the_event_id() -> None:
    # ("1700000000", "EV_saynad_0001") vs ("1700000000:EV", "saynad_0001"): same
    # canonical string, but a timestamp is digits only.
    headers = {
        **VECTOR_HEADERS,
        "X-Sayna-Timestamp": "1700000000:EV",
        "X-Sayna-Event-Id": "saynad_0001",
    }
    with pytest.raises(WebhookTimestampError, match=r"^Invalid timestamp format"):
        make_verifier().verify(headers, BODY)


def _split_canonical(canonical: bytes) -> tuple[str, str, bytes]:
    # The unique parse once ts is digits-only and the id has no ':'.
    assert canonical.startswith(b"v1:")
    ts, _, rest = canonical[3:].partition(b":")
    event_id, _, body = rest.partition(b":")
    return ts.decode(), event_id.decode(), body


_ID_ALPHABET = st.sampled_from([chr(c) for c in range(0x21, 0x7F) if c != 0x3A])
event_ids = st.text(_ID_ALPHABET, min_size=1, max_size=40)
timestamps_text = st.from_regex(r"[0-9]{1,20}", fullmatch=True)


@settings(derandomize=True, max_examples=1000)
@given(ts=timestamps_text, event_id=event_ids, body=st.binary(max_size=200))
def test_canonical_strings_split_one_way(ts: str, event_id: str, body: bytes) -> None:
    canonical = webhooks._canonical_prefix(ts, event_id) + body
    assert _split_canonical(canonical) == (ts, event_id, body)


# --------------------------------------------------------------------------- properties

non_empty = st.text(min_size=1, max_size=30)
participants = st.builds(
    WebhookParticipant,
    name=st.none() | st.text(max_size=20),
    identity=non_empty,
    sid=non_empty,
)
payloads = st.builds(
    SipWebhook,
    participant=participants,
    room=st.builds(WebhookRoom, name=non_empty, sid=non_empty),
    from_phone_number=non_empty,
    to_phone_number=non_empty,
    room_prefix=non_empty,
    sip_host=non_empty,
    sip_headers=st.none() | st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
)
secrets_ = st.text(
    st.characters(codec="utf-8", exclude_categories=["Zs", "Zl", "Zp", "Cc"]),
    min_size=16,
    max_size=40,
)
deltas = st.integers(min_value=-300, max_value=300)


def _mutate_text(draw: st.DrawFn, value: str, alphabet: st.SearchStrategy[str]) -> str:
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    if kind == "delete" and len(value) > 1:
        i = draw(st.integers(0, len(value) - 1))
        return value[:i] + value[i + 1 :]
    if kind == "insert":
        i = draw(st.integers(0, len(value)))
        return value[:i] + draw(alphabet) + value[i:]
    i = draw(st.integers(0, len(value) - 1))
    replacement = draw(alphabet.filter(lambda c: c != value[i]))
    return value[:i] + replacement + value[i + 1 :]


def _mutate_bytes(draw: st.DrawFn, value: bytes) -> bytes:
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    if kind == "delete" and value:
        i = draw(st.integers(0, len(value) - 1))
        return value[:i] + value[i + 1 :]
    if kind == "replace" and value:
        i = draw(st.integers(0, len(value) - 1))
        new = draw(st.integers(0, 255).filter(lambda b: b != value[i]))
        return value[:i] + bytes([new]) + value[i + 1 :]
    i = draw(st.integers(0, len(value)))
    return value[:i] + bytes([draw(st.integers(0, 255))]) + value[i:]


@st.composite
def tampered_requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes, int, str]:
    secret = draw(secrets_)
    body = encode_webhook_payload(draw(payloads))
    ts = TIMESTAMP + draw(deltas)
    event_id = draw(event_ids)
    headers = sign_webhook(secret, body, timestamp=ts, event_id=event_id)
    part = draw(st.sampled_from(["body", "timestamp", "instant", "event_id", "signature"]))
    if part == "body":
        body = _mutate_bytes(draw, body)
    elif part == "timestamp":
        headers["X-Sayna-Timestamp"] = _mutate_text(
            draw, headers["X-Sayna-Timestamp"], st.characters(codec="utf-8")
        )
    elif part == "instant":
        # Another well-formed instant inside the window: only the MAC can tell.
        shift = draw(st.integers(-300, 300).filter(bool))
        headers["X-Sayna-Timestamp"] = str(ts + shift)
        ts += shift // 2
    elif part == "event_id":
        headers["X-Sayna-Event-Id"] = _mutate_text(
            draw, headers["X-Sayna-Event-Id"], st.characters(codec="utf-8")
        )
    else:
        # Any other signature value: hex digits differing from the original *value*
        # (a case change of a hex digit is the same signature, not a forgery).
        hex_ = headers["X-Sayna-Signature"][3:]
        i = draw(st.integers(0, 63))
        digit = draw(st.sampled_from("0123456789abcdef").filter(lambda c: c != hex_[i]))
        headers["X-Sayna-Signature"] = "v1=" + hex_[:i] + digit + hex_[i + 1 :]
    return secret, headers, body, ts, part


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(secret=secrets_, webhook=payloads, delta=deltas, event_id=event_ids)
def test_every_correctly_signed_request_is_accepted(
    secret: str, webhook: SipWebhook, delta: int, event_id: str
) -> None:
    body = encode_webhook_payload(webhook)
    headers = sign_webhook(secret, body, timestamp=TIMESTAMP, event_id=event_id)
    verifier = WebhookVerifier(secret, clock=lambda: TIMESTAMP + delta)
    result = verifier.verify(headers, body)
    assert result.event_id == event_id
    assert result.timestamp == TIMESTAMP
    assert encode_webhook_payload(result) == body
    assert parse_webhook_payload(body) == webhook


@settings(
    derandomize=True,
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(request=tampered_requests())
def test_no_single_change_is_ever_accepted(
    request: tuple[str, dict[str, str], bytes, int, str],
) -> None:
    secret, headers, body, ts, part = request
    verifier = WebhookVerifier(secret, clock=lambda: ts)
    with pytest.raises((WebhookSignatureError, WebhookTimestampError)) as info:
        verifier.verify(headers, body)
    event(f"{part}: {str(info.value)[:24]}")


header_names = st.sampled_from(
    ["X-Sayna-Signature", "x-sayna-timestamp", "X-SAYNA-EVENT-ID", "Content-Type", "x"]
)
header_values = st.one_of(
    st.text(max_size=80),
    st.just("v1=" + VECTOR_HMAC),
    st.from_regex(r"v1=[0-9a-fA-F]{64}", fullmatch=True),
    st.from_regex(r"[0-9]{1,25}", fullmatch=True),
    st.integers(1699999000, 1700001000).map(str),
)
arbitrary_headers = st.one_of(
    st.dictionaries(header_names, header_values, max_size=5),
    st.lists(st.tuples(header_names, header_values), max_size=6),
    st.lists(
        st.tuples(header_names.map(str.encode), st.binary(max_size=80)),
        max_size=6,
    ),
)
arbitrary_bodies = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200),
    st.text(st.characters(categories=["Cs", "Lu"]), max_size=20),
    st.just(BODY),
    payloads.map(encode_webhook_payload),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    ).map(msgspec.json.encode),
)


@settings(derandomize=True, max_examples=1000, deadline=None)
@given(headers=arbitrary_headers, body=arbitrary_bodies, sign=st.booleans())
def test_verify_only_ever_raises_webhook_errors(
    headers: Any, body: bytes | str, sign: bool
) -> None:
    verifier = make_verifier(max_body_bytes=300)
    if sign:
        # Give the body a valid signature so payload checks are exercised too.
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
        headers = signed(raw, event_id="EV_prop")
    try:
        verifier.verify(headers, body)
    except WebhookError as exc:
        event(type(exc).__name__)
    else:
        event("accepted")


# --------------------------------------------------------------------------- SDK parity


@pytest.fixture
def sdk_receive(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, dict[str, str], str], str]:
    receiver_module = pytest.importorskip("sayna_client.webhook_receiver")
    errors = pytest.importorskip("sayna_client.errors")

    def receive(now: int, headers: dict[str, str], body: str) -> str:
        monkeypatch.setattr(receiver_module.time, "time", lambda: float(now))
        try:
            receiver_module.WebhookReceiver(SECRET).receive(headers, body)
        except errors.SaynaValidationError as exc:
            return str(exc)
        return "ok"

    return receive


sdk_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Sayna-Signature": st.sampled_from(
            [f"v1={VECTOR_HMAC}", f"v1={VECTOR_HMAC.upper()}", "v1=" + "0" * 64, "sha=1", ""]
        ),
        "X-Sayna-Timestamp": st.sampled_from(["1700000000", "1699999000", "abc", ""]),
        "X-Sayna-Event-Id": st.sampled_from([EVENT_ID, "EV_other", ""]),
    },
)


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    headers=sdk_headers,
    body=st.sampled_from([BODY, BODY + b"\n"]),
    now=st.sampled_from([NOW, 1700000300, 1700000301]),
)
def test_same_verdict_and_message_as_the_official_sdk(
    sdk_receive: Callable[[int, dict[str, str], str], str],
    headers: dict[str, str],
    body: bytes,
    now: int,
) -> None:
    expected = sdk_receive(now, headers, body.decode())
    try:
        make_verifier(clock=lambda: now).verify(headers, body)
    except WebhookError as exc:
        actual = str(exc)
    else:
        actual = "ok"
    assert actual == expected


# --------------------------------------------------------------------------- sans-IO


def test_module_imports_neither_trio_nor_httpx() -> None:
    tree = ast.parse(inspect.getsource(webhooks))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "httpx", "trio_websocket"}

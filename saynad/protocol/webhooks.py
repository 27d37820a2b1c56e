"""SIP webhooks (Sayna → customer): signature verification, replay cache, payload types.

Sayna signs every SIP webhook with HMAC-SHA256 over the canonical string
``v1:{X-Sayna-Timestamp}:{X-Sayna-Event-Id}:{raw body}`` (protocol reference §7.4).
:class:`WebhookVerifier` checks a delivery exactly as the official Python SDK's
``WebhookReceiver`` does (same check order, same messages), and is stricter where a
production receiver should be:

* the body size is checked first, before any header parsing or HMAC work (413);
* the timestamp must be 1-20 plain ASCII digits (``int()``, which the SDK uses, also
  takes ``" 1700000000 "``, ``"+1700000000"``, ``"1_700_000_000"`` or Arabic-Indic
  digits, none of which the server produces);
* the event id must be 1-256 visible ASCII characters without ``:`` (see below);
* a header given twice (case-insensitively) is refused instead of silently picking one;
* several secrets may be active at once (rotation); every one is tried, in constant time;
* a bounded replay cache rejects an event id seen before (409);
* required payload strings must be non-empty (the Node SDK's rule; the Python SDK
  accepts ``""`` for, say, ``room.sid``, which no real call carries). The one
  conceivable casualty is an environment-configured server with an empty
  ``SIP_ROOM_PREFIX``, which the Node SDK refuses as well.

Why ``:`` is refused in event ids: the canonical string is not injective when the id
may contain a colon. A signed delivery ``(id="EV_1", body='{"a":1}')`` has the same
canonical string, hence the same valid signature, as
``(id='EV_1:{"a"', body="1}")``. The timestamp is digits only, so its end is the first
``:`` after ``v1:``; with ``:`` also barred from the id, the id ends at the next one and
the body is the rest: every canonical string then splits exactly one way. LiveKit event
ids (``EV_…``) never contain a colon, so nothing legitimate is refused. Without the rule
a forged split would usually fail the payload check (a JSON suffix cut at a ``:`` is
rarely a document), but it would pass the MAC under a fresh id, past the replay cache,
and the safety would rest on the payload format instead of on the signature.

This module is sans-IO: the clock is injected and it imports neither trio nor httpx.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NoReturn

import msgspec

from saynad.errors import (
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSecretError,
    WebhookSignatureError,
    WebhookTimestampError,
    WebhookTooLargeError,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_REPLAY_CACHE_SIZE",
    "DEFAULT_TOLERANCE_S",
    "MAX_EVENT_ID_LENGTH",
    "MIN_SECRET_LENGTH",
    "SECRET_ENV_VAR",
    "HeadersLike",
    "SipWebhook",
    "VerifiedSipWebhook",
    "WebhookParticipant",
    "WebhookRoom",
    "WebhookVerifier",
    "WebhookVerifierStatistics",
    "encode_webhook_payload",
    "parse_webhook_payload",
    "sign_webhook",
]

SECRET_ENV_VAR: Final = "SAYNA_WEBHOOK_SECRET"
"""Environment variable read when the verifier is given no secret (one secret, as in the SDK)."""

MIN_SECRET_LENGTH: Final = 16
"""Shortest accepted secret, in characters after trimming (the SDKs' rule)."""

DEFAULT_TOLERANCE_S: Final = 300
"""Accepted clock difference between the signed timestamp and now, inclusive."""

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
"""Largest accepted body. A real payload is well under 2 KiB."""

DEFAULT_REPLAY_CACHE_SIZE: Final = 10_000
"""Event ids remembered for replay detection."""

MAX_EVENT_ID_LENGTH: Final = 256
"""Longest accepted ``X-Sayna-Event-Id`` (LiveKit ids are about 15 characters)."""

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
"""Request headers: a mapping, or ``(name, value)`` pairs as ``str`` or as raw ASGI ``bytes``."""

_SIGNATURE_HEADER: Final = "x-sayna-signature"
_TIMESTAMP_HEADER: Final = "x-sayna-timestamp"
_EVENT_ID_HEADER: Final = "x-sayna-event-id"
_REQUIRED_HEADERS: Final = (_SIGNATURE_HEADER, _TIMESTAMP_HEADER, _EVENT_ID_HEADER)

# Explicit ASCII classes: ``\d`` and ``str.isdigit`` would also accept non-ASCII digits.
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
# 20 digits hold any u64; longer strings are not something the server sends.
_TIMESTAMP: Final = re.compile(r"[0-9]{1,20}")
# Visible ASCII (0x21-0x7e) minus ':' (0x3a); see the module docstring for the colon.
_EVENT_ID: Final = re.compile(rf"[\x21-\x39\x3b-\x7e]{{1,{MAX_EVENT_ID_LENGTH}}}")
# Longest header value echoed back in an error message (messages end up in logs).
_ECHO_LIMIT: Final = 64

# --------------------------------------------------------------------------- payload types


class WebhookParticipant(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The SIP participant who joined. ``name`` may be ``""`` or absent: treat both alike."""

    name: str | None = None
    identity: str
    sid: str


class WebhookRoom(msgspec.Struct, frozen=True):
    """The LiveKit room the call was placed in (e.g. ``sip-+15551234567``)."""

    name: str
    sid: str


class SipWebhook(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The JSON payload of a SIP webhook, fields in the server's order (§7.3).

    ``from_phone_number`` is the caller, ``to_phone_number`` the number called,
    ``sip_host`` the lower-cased domain whose hook matched, and ``sip_headers`` every
    ``sip.h.*`` attribute with the prefix removed (the server always sends it; it is
    optional here, as in the SDK).
    """

    participant: WebhookParticipant
    room: WebhookRoom
    from_phone_number: str
    to_phone_number: str
    room_prefix: str
    sip_host: str
    sip_headers: dict[str, str] | None = None


class VerifiedSipWebhook(SipWebhook, frozen=True, kw_only=True):
    """What :meth:`WebhookVerifier.verify` returns: the payload plus its delivery.

    It *is* a :class:`SipWebhook`, so code written against the payload type works
    unchanged; ``event_id`` (``X-Sayna-Event-Id``, the key to deduplicate on) and
    ``timestamp`` (``X-Sayna-Timestamp``, Unix seconds) come from the signed headers.
    :func:`encode_webhook_payload` leaves both out.
    """

    event_id: str
    timestamp: int


class WebhookVerifierStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a verifier's replay cache, for gauges and ``/sessions``-style reports.

    ``evicted_unexpired`` counts ids dropped only because the cache was full while their
    timestamp was still inside the window: replays of those would go unnoticed, so a
    growing count means ``replay_cache_size`` is too small for the delivery rate.
    """

    replay_cache_size: int
    replay_cache_capacity: int
    replays_rejected: int
    evicted_unexpired: int


# --------------------------------------------------------------------------- encoding

_encoder: Final = msgspec.json.Encoder()
_PAYLOAD_FIELDS: Final = SipWebhook.__struct_fields__


def encode_webhook_payload(webhook: SipWebhook) -> bytes:
    """Encode ``webhook`` the way the server does: compact JSON in §7.3 field order.

    No spaces, non-ASCII as raw UTF-8, ``/`` not escaped, absent optionals omitted
    (never ``null``). The delivery fields of a :class:`VerifiedSipWebhook` are dropped.
    """
    if type(webhook) is not SipWebhook:
        webhook = SipWebhook(**{field: getattr(webhook, field) for field in _PAYLOAD_FIELDS})
    return _encoder.encode(webhook)


def _canonical_prefix(timestamp: str, event_id: str) -> bytes:
    # The canonical string minus the body; the body is fed to the MAC separately so a
    # large body is never copied. ``surrogatepass`` keeps arbitrary ``str`` input from
    # raising: such bytes are invalid UTF-8 and can only fail to match.
    return f"v1:{timestamp}:{event_id}:".encode("utf-8", "surrogatepass")


def _normalise_secret(secret: str) -> str:
    trimmed = secret.strip()
    if len(trimmed) < MIN_SECRET_LENGTH:
        raise WebhookSecretError(
            f"Webhook secret must be at least {MIN_SECRET_LENGTH} characters long. "
            f"Received {len(trimmed)} characters. "
            "Generate a secure secret with: openssl rand -hex 32"
        )
    return trimmed


def _body_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"body must be bytes or str, not {type(body).__name__}")


def sign_webhook(
    secret: str, body: bytes | str, *, timestamp: int, event_id: str
) -> dict[str, str]:
    """Return the headers Sayna sends with ``body`` (§7.2), in the server's order.

    The secret is trimmed, as the server does; it is not length-checked because an
    environment-configured server signs with short secrets too. Neither ``timestamp`` nor
    ``event_id`` is validated, so tests can sign exactly what a hostile sender would.
    """
    key = secret.strip()
    if not key:
        raise WebhookSecretError("Webhook secret is required to sign a webhook.")
    ts = str(timestamp)
    mac = hmac.new(key.encode("utf-8"), _canonical_prefix(ts, event_id), hashlib.sha256)
    mac.update(_body_bytes(body))
    return {
        "Content-Type": "application/json",
        "X-Sayna-Signature": f"v1={mac.hexdigest()}",
        "X-Sayna-Timestamp": ts,
        "X-Sayna-Event-Id": event_id,
        "X-Sayna-Signature-Version": "v1",
    }


# --------------------------------------------------------------------------- payload checks

_FIELD_REQUIRED: Final = "Field required"
_NOT_A_STRING: Final = "Input should be a valid string"
_EMPTY_STRING: Final = "String should have at least 1 character"
_NOT_AN_OBJECT: Final = "Input should be a valid dictionary"


def _invalid(path: str, reason: str) -> NoReturn:
    raise WebhookPayloadError(f"Webhook payload validation failed: {path}: {reason}")


def _required_object(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    if key not in obj:
        _invalid(path, _FIELD_REQUIRED)
    value = obj[key]
    if not isinstance(value, dict):
        _invalid(path, _NOT_AN_OBJECT)
    return value


def _required_string(obj: dict[str, Any], key: str, path: str) -> str:
    if key not in obj:
        _invalid(path, _FIELD_REQUIRED)
    value = obj[key]
    if not isinstance(value, str):
        _invalid(path, _NOT_A_STRING)
    if not value:
        _invalid(path, _EMPTY_STRING)
    return value


def _optional_string(obj: dict[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        _invalid(path, _NOT_A_STRING)
    return value


def _optional_headers(obj: dict[str, Any], key: str) -> dict[str, str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        _invalid(key, _NOT_AN_OBJECT)
    for name, item in value.items():
        if not isinstance(item, str):
            _invalid(f"{key}.{name}", _NOT_A_STRING)
    return value


def _build_payload(obj: Any) -> SipWebhook:
    # Fields are checked in declaration order and the first failure is reported, as
    # pydantic (and so the SDK) does; the reasons reuse pydantic's wording.
    if not isinstance(obj, dict):
        _invalid("$", _NOT_AN_OBJECT)
    participant = _required_object(obj, "participant", "participant")
    participant_name = _optional_string(participant, "name", "participant.name")
    participant_identity = _required_string(participant, "identity", "participant.identity")
    participant_sid = _required_string(participant, "sid", "participant.sid")
    room = _required_object(obj, "room", "room")
    room_name = _required_string(room, "name", "room.name")
    room_sid = _required_string(room, "sid", "room.sid")
    return SipWebhook(
        participant=WebhookParticipant(
            name=participant_name, identity=participant_identity, sid=participant_sid
        ),
        room=WebhookRoom(name=room_name, sid=room_sid),
        from_phone_number=_required_string(obj, "from_phone_number", "from_phone_number"),
        to_phone_number=_required_string(obj, "to_phone_number", "to_phone_number"),
        room_prefix=_required_string(obj, "room_prefix", "room_prefix"),
        sip_host=_required_string(obj, "sip_host", "sip_host"),
        sip_headers=_optional_headers(obj, "sip_headers"),
    )


def parse_webhook_payload(body: bytes | str) -> SipWebhook:
    """Decode and check a SIP webhook payload *without* any signature check.

    Unknown keys are ignored; ``participant.name`` and ``sip_headers`` may be absent or
    ``null``; every other field must be a non-empty string. Raises
    :class:`~saynad.errors.WebhookPayloadError` with the SDK's texts
    (``Invalid JSON payload: …`` / ``Webhook payload validation failed: {field}: {reason}``,
    ``{field}`` dotted, ``$`` for the document itself).
    """
    try:
        obj = msgspec.json.decode(_body_bytes(body))
    # msgspec raises UnicodeDecodeError for invalid UTF-8 inside strings, ValidationError
    # for out-of-range numbers and RecursionError for deep nesting; all are bad JSON here.
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError) as exc:
        raise WebhookPayloadError(f"Invalid JSON payload: {exc}") from exc
    return _build_payload(obj)


# --------------------------------------------------------------------------- verifier


def _header_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        # ASGI hands raw header bytes; latin-1 maps every byte to one code point, so
        # nothing is lost and non-ASCII simply fails the format checks below.
        return bytes(value).decode("latin-1")
    return str(value)


def _echo(value: str) -> str:
    return value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "..."


class WebhookVerifier:
    """Verifies signed SIP webhooks and remembers their event ids.

    ``secrets`` is one secret or several (rotation: a signature valid under any of them
    is accepted). Each is trimmed and must be at least 16 characters. ``None``, ``""`` or
    an empty sequence falls back to the ``SAYNA_WEBHOOK_SECRET`` environment variable
    (one secret, exactly as the SDK reads it). A problem raises
    :class:`~saynad.errors.WebhookSecretError` with the SDK's text.

    ``tolerance_s`` is the accepted ``|now - timestamp|`` (inclusive), ``max_body_bytes``
    the body limit, ``replay_cache_size`` how many event ids are remembered, and
    ``clock`` returns Unix seconds (wall-clock time: the server signs wall-clock time).

    Replay design: :meth:`verify` checks *and claims* the event id in one synchronous
    step by default, so two concurrent deliveries of the same event can never both be
    admitted, whatever the caller awaits afterwards. A caller that then cannot act on
    the webhook (draining, at capacity) calls :meth:`forget` to release the claim, so a
    re-delivery is accepted later. ``verify(..., record=False)`` only checks, and
    :meth:`remember` claims afterwards (raising if someone else claimed first).

    Overflow policy of the cache: ids expire once their timestamp has left the window
    (a replay would then fail the timestamp check anyway); when the cache is full the
    oldest claim is dropped and counted in :meth:`statistics`. Methods are safe to call
    from several threads.
    """

    def __init__(
        self,
        secrets: str | Sequence[str] | None = None,
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        replay_cache_size: int = DEFAULT_REPLAY_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secrets, bytes | bytearray):
            raise TypeError("secrets must be str or a sequence of str, not bytes")
        if not math.isfinite(tolerance_s) or tolerance_s < 0:
            raise ValueError(f"tolerance_s must be a finite number >= 0, got {tolerance_s!r}")
        if isinstance(max_body_bytes, bool) or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
        if isinstance(replay_cache_size, bool) or replay_cache_size < 1:
            raise ValueError(f"replay_cache_size must be >= 1, got {replay_cache_size!r}")

        given = [secrets] if isinstance(secrets, str) else list(secrets or ())
        if not any(given):
            env = os.environ.get(SECRET_ENV_VAR)
            given = [env] if env else []
        if not given:
            raise WebhookSecretError(
                "Webhook secret is required. Provide it as a constructor parameter "
                f"or set {SECRET_ENV_VAR} environment variable."
            )
        keys: list[bytes] = []
        for secret in given:
            if not isinstance(secret, str):
                raise TypeError(f"a webhook secret must be str, not {type(secret).__name__}")
            key = _normalise_secret(secret).encode("utf-8")
            if key not in keys:
                keys.append(key)
        # Keyed once: each verification copies the prepared state instead of re-keying.
        self._macs = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)

        self._tolerance_s = tolerance_s
        self._max_body_bytes = max_body_bytes
        self._capacity = replay_cache_size
        self._clock = clock
        self._lock = threading.Lock()
        # event id -> Unix second after which the entry may be dropped; insertion order.
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._replays_rejected = 0
        self._evicted_unexpired = 0

    # ----------------------------------------------------------------- properties

    @property
    def tolerance_s(self) -> float:
        """Accepted ``|now - timestamp|`` in seconds (inclusive)."""
        return self._tolerance_s

    @property
    def max_body_bytes(self) -> int:
        """Largest accepted body in bytes."""
        return self._max_body_bytes

    @property
    def secret_count(self) -> int:
        """How many distinct secrets are accepted (more than one during a rotation)."""
        return len(self._macs)

    def statistics(self) -> WebhookVerifierStatistics:
        """Return a snapshot of the replay cache counters."""
        with self._lock:
            return WebhookVerifierStatistics(
                replay_cache_size=len(self._seen),
                replay_cache_capacity=self._capacity,
                replays_rejected=self._replays_rejected,
                evicted_unexpired=self._evicted_unexpired,
            )

    # ----------------------------------------------------------------- verification

    def verify(
        self,
        headers: HeadersLike,
        body: bytes | bytearray | memoryview | str,
        *,
        now: float | None = None,
        record: bool = True,
    ) -> VerifiedSipWebhook:
        """Verify one delivery and return its payload, or raise a ``WebhookError``.

        ``body`` must be the raw request body (bytes as received; a ``str`` is encoded
        as UTF-8). ``now`` overrides the clock. Checks, in order (first failure wins):
        body size (413); the three ``X-Sayna-*`` headers present, once each (401);
        signature format; timestamp format and window; event id format; HMAC under
        any secret (401); replay (409); payload (400). With ``record`` (the default) the
        event id is claimed on success; see the class docstring.
        """
        raw = self._check_size(body)
        signature, timestamp, event_id = self._required_headers(headers)

        if not signature.startswith("v1="):
            raise WebhookSignatureError(
                f"Invalid signature format. Expected 'v1=<hex>' but got: {signature[:10]}..."
            )
        received = signature[3:]
        if not _HEX64.fullmatch(received):
            raise WebhookSignatureError(
                "Invalid signature: must be 64 hex characters (HMAC-SHA256)"
            )

        current = self._clock() if now is None else now
        ts = self._check_timestamp(timestamp, current)

        # Checked after the SDK's own checks so that any input the SDK also refuses is
        # refused with the SDK's message.
        if not _EVENT_ID.fullmatch(event_id):
            raise WebhookSignatureError(
                f"Invalid event id: expected 1-{MAX_EVENT_ID_LENGTH} visible ASCII "
                "characters without ':'"
            )

        if not self._signature_matches(timestamp, event_id, raw, received):
            raise WebhookSignatureError(
                "Signature verification failed. The webhook may have been tampered "
                "with or the secret is incorrect."
            )

        with self._lock:
            self._raise_if_seen(event_id, current)
        payload = parse_webhook_payload(raw)
        webhook = VerifiedSipWebhook(
            **{field: getattr(payload, field) for field in _PAYLOAD_FIELDS},
            event_id=event_id,
            timestamp=ts,
        )
        if record:
            self.remember(webhook, now=current)
        return webhook

    def remember(self, webhook: VerifiedSipWebhook, *, now: float | None = None) -> None:
        """Claim ``webhook.event_id``: later deliveries of it raise ``WebhookReplayError``.

        Raises :class:`~saynad.errors.WebhookReplayError` if the id is already claimed,
        so check-then-claim via ``verify(..., record=False)`` stays race-free.
        """
        current = self._clock() if now is None else now
        with self._lock:
            self._raise_if_seen(webhook.event_id, current)
            self._drop_expired(current)
            if len(self._seen) >= self._capacity:
                _, expires = self._seen.popitem(last=False)
                if expires >= math.floor(current):
                    self._evicted_unexpired += 1
            # Kept while the signed timestamp is in the window, and at least one window
            # after acceptance, so a re-delivery signed later is still recognised.
            self._seen[webhook.event_id] = max(webhook.timestamp, current) + self._tolerance_s

    def forget(self, event_id: str) -> bool:
        """Release a claim (the webhook could not be acted on). Returns whether it existed."""
        with self._lock:
            return self._seen.pop(event_id, None) is not None

    # ----------------------------------------------------------------- internals

    def _check_size(self, body: bytes | bytearray | memoryview | str) -> bytes:
        # A str has at least one byte per character: refuse a huge one before encoding.
        if isinstance(body, str) and len(body) > self._max_body_bytes:
            self._too_large(len(body))
        raw = _body_bytes(body)
        if len(raw) > self._max_body_bytes:
            self._too_large(len(raw))
        return raw

    def _too_large(self, size: int) -> NoReturn:
        raise WebhookTooLargeError(
            f"Webhook body too large: {size} bytes (max allowed: {self._max_body_bytes})"
        )

    @staticmethod
    def _required_headers(headers: HeadersLike) -> tuple[str, str, str]:
        items: Iterable[tuple[object, object]]
        items = headers.items() if isinstance(headers, Mapping) else headers
        found: dict[str, list[str]] = {name: [] for name in _REQUIRED_HEADERS}
        for name, value in items:
            if value is None:
                continue
            values = found.get(_header_text(name).lower())
            text = _header_text(value)
            # An empty value counts as missing, as in both SDKs.
            if values is not None and text:
                values.append(text)
        result: list[str] = []
        for name in _REQUIRED_HEADERS:
            values = found[name]
            if not values:
                raise WebhookSignatureError(f"Missing required header: {name}")
            if len(values) > 1:
                # Two values leave the choice to whoever parses first (proxy or app).
                raise WebhookSignatureError(f"Duplicate header: {name}")
            result.append(values[0])
        return result[0], result[1], result[2]

    def _check_timestamp(self, timestamp: str, now: float) -> int:
        if not _TIMESTAMP.fullmatch(timestamp):
            raise WebhookTimestampError(
                f"Invalid timestamp format: expected Unix seconds but got '{_echo(timestamp)}'"
            )
        ts = int(timestamp)
        # Whole seconds, as the SDK (int(time.time())): 300.9 s later is still "300".
        difference = abs(math.floor(now) - ts)
        if difference > self._tolerance_s:
            tolerance = self._tolerance_s
            shown = int(tolerance) if tolerance == int(tolerance) else tolerance
            raise WebhookTimestampError(
                "Timestamp outside replay protection window. "
                f"Difference: {difference} seconds (max allowed: {shown}). "
                "This webhook may be a replay attack or there may be significant clock skew."
            )
        return ts

    def _signature_matches(self, timestamp: str, event_id: str, body: bytes, received: str) -> bool:
        prefix = _canonical_prefix(timestamp, event_id)
        expected_hex = received.lower().encode("ascii")
        matched = False
        # Every secret is tried and the results OR-ed without short-circuiting, so the
        # time taken does not tell which secret (if any) matched.
        for base in self._macs:
            mac = base.copy()
            mac.update(prefix)
            mac.update(body)
            matched |= hmac.compare_digest(mac.hexdigest().encode("ascii"), expected_hex)
        return matched

    def _raise_if_seen(self, event_id: str, now: float) -> None:
        # Caller holds the lock.
        expires = self._seen.get(event_id)
        if expires is None:
            return
        if expires < math.floor(now):
            # Expired entries are treated as absent whether or not a purge reached them.
            del self._seen[event_id]
            return
        self._replays_rejected += 1
        raise WebhookReplayError(
            f"Webhook event {event_id} was already received (replay or duplicate delivery).",
            event_id=event_id,
        )

    def _drop_expired(self, now: float) -> None:
        # Caller holds the lock. Insertion order is only roughly expiry order, so this
        # stops at the first live entry; stragglers go when reached or on lookup.
        cutoff = math.floor(now)
        while self._seen:
            event_id, expires = next(iter(self._seen.items()))
            if expires >= cutoff:
                break
            del self._seen[event_id]

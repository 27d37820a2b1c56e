"""The client's side of the WebSocket opening handshake (RFC 6455 §4.1), sans-IO.

saynad opens one WebSocket per session, thousands at a time when a fleet starts, so
the upgrade is written and checked here in a few operations rather than through a
general HTTP/1.1 state machine (h11 behind wsproto's ``H11Handshake`` spends about
80 µs per handshake; this about 6):

- :func:`upgrade_request` writes the ``GET`` request with a fresh key, after checking
  every part that goes on the wire (no CR, LF or other control character can smuggle a
  header or a second request in);
- :func:`check_answer` reads the head of the server's answer: a ``101`` is checked
  completely (``Upgrade: websocket``, ``Connection: upgrade``, the
  ``Sec-WebSocket-Accept`` value that proves the server read this key, and no extension
  or subprotocol, since saynad offers none) and accepted or refused with
  :class:`UpgradeError`; anything else is not an upgrade, and the caller hands the
  whole answer to an HTTP parser for the status and body of the refusal.

The answer's bytes are hostile: :func:`check_answer` never raises anything but
:class:`UpgradeError`, and its messages quote nothing the server sent.
"""

from __future__ import annotations

import base64
import encodings.idna  # noqa: F401  (the codec of _host_bytes, see there)
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Final

__all__ = [
    "MAX_ANSWER_HEAD_BYTES",
    "UpgradeError",
    "accept_value",
    "check_answer",
    "check_request",
    "checked_request",
    "new_key",
    "upgrade_request",
]

MAX_ANSWER_HEAD_BYTES: Final = 16 * 1024
"""The longest answer head (status line and headers) a client reads (h11's bound)."""

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 9110 §5.1: a field name is a token; §5.5: a value is visible characters with
# spaces and tabs inside, never at the ends. The request target and the host are
# visible characters only.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_VISIBLE = re.compile(rb"[\x21-\x7e\x80-\xff]+")


class UpgradeError(ValueError):
    """A ``101`` answer that does not complete the WebSocket handshake."""


def new_key() -> bytes:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16))


def accept_value(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server answers ``key`` with (§4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def check_request(host: str, resource: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Raise :class:`ValueError` unless every part of the request can go on the wire as
    it is: a host of visible characters (IDNA-encoded), a visible ASCII target, token
    header names, header values without control characters or surrounding whitespace.
    The message names the part, never a header's value (it may be a secret)."""
    if not _VISIBLE.fullmatch(_host_bytes(host)):
        raise ValueError("the host cannot go in an HTTP request")
    if not resource.isascii() or not _VISIBLE.fullmatch(resource.encode("ascii")):
        raise ValueError("the request target cannot go in an HTTP request")
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name[:40]!r} is not an HTTP token")
        if not _VALUE.fullmatch(value):
            raise ValueError(
                f"the value of header {name.decode('ascii')!r} holds a control character "
                "or starts or ends with whitespace"
            )


def _host_bytes(host: str) -> bytes:
    """``host`` as it goes on the wire: IDNA, as wsproto and the resolver write it.

    The codec's module (and the ``stringprep`` tables it loads) is imported with this
    module: looked up by name on first use instead, it made the process's first
    connection about 0.5 ms longer (2.31 against 1.75 ms median)."""
    try:
        return host.encode("idna")
    except UnicodeError:
        raise ValueError("the host cannot go in an HTTP request") from None


def upgrade_request(
    host: str, resource: str, headers: Sequence[tuple[bytes, bytes]], key: bytes
) -> bytes:
    """The upgrade request for ``resource`` on ``host`` (``host[:port]``) with ``key``
    and the extra ``headers``; checked by :func:`check_request` first."""
    check_request(host, resource, headers)
    return checked_request(host, resource, headers, key)


def checked_request(
    host: str, resource: str, headers: Sequence[tuple[bytes, bytes]], key: bytes
) -> bytes:
    """:func:`upgrade_request` for parts that already passed :func:`check_request` (a
    client checks them once per connection, before it connects)."""
    parts = [
        b"GET ",
        resource.encode("ascii"),
        b" HTTP/1.1\r\nHost: ",
        _host_bytes(host),
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ",
        key,
        b"\r\nSec-WebSocket-Version: 13\r\n",
    ]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def check_answer(head: bytes, key: bytes) -> bool:
    """Whether ``head`` (an answer's status line and headers, without the blank line
    that ends them) accepts the upgrade sent with ``key``.

    ``False``: the answer is not a ``101`` (a refusal, or not HTTP at all) — the caller
    parses it as HTTP. ``True``: a complete, valid acceptance. A ``101`` that is not
    valid raises :class:`UpgradeError`.
    """
    lines = head.split(b"\r\n")
    status = lines[0]
    if not status.startswith(b"HTTP/1.1 101") or status[12:13] not in (b"", b" "):
        return False
    upgrade: bytes | None = None
    accept: bytes | None = None
    connection: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise UpgradeError("malformed header line in the 101 answer")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise UpgradeError("malformed header value in the 101 answer")
        lowered = name.lower()
        if lowered == b"upgrade":
            if upgrade is not None:
                raise UpgradeError("more than one Upgrade header in the 101 answer")
            upgrade = value
        elif lowered == b"connection":
            connection += (token.strip(b" \t").lower() for token in value.split(b","))
        elif lowered == b"sec-websocket-accept":
            if accept is not None:
                raise UpgradeError("more than one Sec-WebSocket-Accept header")
            accept = value
        elif lowered == b"sec-websocket-extensions":
            raise UpgradeError("the server chose an extension saynad did not offer")
        elif lowered == b"sec-websocket-protocol":
            raise UpgradeError("the server chose a subprotocol saynad did not offer")
    if upgrade is None or upgrade.lower() != b"websocket":
        raise UpgradeError("the 101 answer does not upgrade to websocket")
    if b"upgrade" not in connection:
        raise UpgradeError("the 101 answer lacks Connection: upgrade")
    if accept != accept_value(key):
        raise UpgradeError("wrong or missing Sec-WebSocket-Accept")
    return True

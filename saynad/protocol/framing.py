"""RFC 6455 framing, sans-IO: the bytes of WebSocket frames, both ways, for both roles.

The one codec for every place saynad reads or writes frames itself: the client
transport (:mod:`saynad.client._wsproto`), the emulator's WebSocket server
(:mod:`saynad.emulator.server`) and the test peers. Bytes in, bytes or values out; no
I/O, no clock. wsproto's ``frame_protocol`` is the model; this one is narrower, and
fast on the frames a voice session is made of (whole, unfragmented text and binary
frames, thousands a second):

- opcodes, first header bytes and close codes (§5.2, §7.4);
- masking (§5.3): :func:`apply_mask`, the websockets package's compiled loop when it
  can be imported, the big-integer XOR of :func:`mask_in_python` otherwise;
- encoding: :func:`masked_frame` (what clients send), :func:`unmasked_frame` (what
  servers send), :func:`close_payload`;
- cutting: :func:`cut_frames` takes every whole data frame out of a buffer in one pass
  and stops at the first frame its caller must look at itself (a control frame, a
  fragment, anything malformed, an unfinished frame), saying where that frame lies;
  :func:`read_frame` decodes one frame without judging it (for peers and tools);
- the server's side: :class:`ClientFrameParser` checks everything a server must check
  in the frames a client sends and raises :class:`ProtocolViolation` with the close
  code to answer.

The client transport hands every frame :func:`cut_frames` leaves to it to wsproto's
``Connection``, which answers pings, runs the closing handshake and chooses the close
code of a protocol error.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, Protocol

__all__ = [
    "ABNORMAL_CLOSURE",
    "BINARY",
    "BINARY_FRAME",
    "CLOSE",
    "CLOSE_FRAME",
    "CONTINUATION",
    "FIN",
    "INCOMPLETE",
    "INVALID_PAYLOAD_DATA",
    "MAX_CLOSE_REASON_BYTES",
    "MESSAGE_TOO_BIG",
    "NORMAL_CLOSURE",
    "NO_STATUS_RCVD",
    "PING",
    "PING_FRAME",
    "PONG",
    "PONG_FRAME",
    "PROTOCOL_ERROR",
    "TEXT",
    "TEXT_FRAME",
    "ClientFrameParser",
    "ProtocolViolation",
    "Taker",
    "apply_mask",
    "close_payload",
    "cut_frames",
    "is_valid_close_code",
    "mask_in_python",
    "masked_frame",
    "parse_close_payload",
    "read_frame",
    "unmasked_frame",
]

# --------------------------------------------------------------------------- constants

FIN: Final = 0x80
"""The FIN bit of the first header byte: the last frame of a message."""

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

# First header bytes of unfragmented frames: FIN + opcode.
TEXT_FRAME: Final = FIN | TEXT
BINARY_FRAME: Final = FIN | BINARY
CLOSE_FRAME: Final = FIN | CLOSE
PING_FRAME: Final = FIN | PING
PONG_FRAME: Final = FIN | PONG

NORMAL_CLOSURE: Final = 1000
PROTOCOL_ERROR: Final = 1002
NO_STATUS_RCVD: Final = 1005
"""Reported when a Close frame carried no code; never sent on the wire (§7.4.1)."""
ABNORMAL_CLOSURE: Final = 1006
"""Reported when the connection ended without a Close frame; never sent on the wire."""
INVALID_PAYLOAD_DATA: Final = 1007
MESSAGE_TOO_BIG: Final = 1009

MAX_CLOSE_REASON_BYTES: Final = 123
"""A control frame carries at most 125 bytes: the code's two, and the reason's."""

# The codes a peer may send (§7.4): the defined ones, then 3000–4999.
_SENDABLE_CLOSE_CODES: Final = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})

INCOMPLETE: Final = -1
"""What :func:`cut_frames` reports as a frame's bounds while its header is unfinished."""

_HEADER_16: Final = struct.Struct("!BBH")
_HEADER_64: Final = struct.Struct("!BBQ")
_CLOSE_CODE: Final = struct.Struct("!H")


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a Close frame (§7.4)."""
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


# --------------------------------------------------------------------------- masking


def mask_in_python(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask``, as one big integer (several times
    faster in CPython than a loop over the bytes)."""
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def _compiled_mask() -> Callable[[bytes | bytearray | memoryview, bytes | bytearray], bytes] | None:
    """The websockets package's masking loop, in C: about 0.1 µs for a 640-byte audio
    chunk against 1.5 µs for the big-integer XOR, on every frame saynad sends."""
    try:  # optional (the speedups extra), and a private module of websockets
        from websockets.speedups import apply_mask

        sample = bytes(range(13))
        if apply_mask(sample, b"\x01\x02\x03\x04") != mask_in_python(sample, b"\x01\x02\x03\x04"):
            return None
    except Exception:  # not installed, no compiled wheel, or its interface changed
        return None
    return apply_mask


apply_mask: Final = _compiled_mask() or mask_in_python
"""``apply_mask(data, key)``: ``data`` XOR the repeated 4-byte ``key`` (§5.3); masks
and unmasks alike."""

# --------------------------------------------------------------------------- encoding


def masked_frame(first_byte: int, payload: bytes, masking_key: bytes) -> bytes:
    """One complete masked frame (what a client sends): header, ``masking_key`` and the
    masked payload, in one buffer.

    ``first_byte`` is FIN, the reserved bits and the opcode (:data:`TEXT_FRAME`,
    :data:`BINARY_FRAME`...). Clients mask every frame with a fresh key (§5.3).
    """
    n = len(payload)
    if n < 126:
        header = bytes((first_byte, 0x80 | n))
    elif n < 0x10000:
        header = _HEADER_16.pack(first_byte, 0xFE, n)
    else:
        header = _HEADER_64.pack(first_byte, 0xFF, n)
    if not n:
        return header + masking_key
    return b"".join((header, masking_key, apply_mask(payload, masking_key)))


def unmasked_frame(first_byte: int, payload: bytes) -> bytes:
    """One complete unmasked frame (what a server sends): header and payload."""
    n = len(payload)
    if n < 126:
        return bytes((first_byte, n)) + payload
    if n < 0x10000:
        return _HEADER_16.pack(first_byte, 126, n) + payload
    return _HEADER_64.pack(first_byte, 127, n) + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a Close frame: the code and the UTF-8 reason, cut to
    :data:`MAX_CLOSE_REASON_BYTES`; empty (a Close frame without code) for ``None``
    and for :data:`NO_STATUS_RCVD`, which may not go on the wire."""
    if code is None or code == NO_STATUS_RCVD:
        return b""
    return _CLOSE_CODE.pack(code) + reason.encode()[:MAX_CLOSE_REASON_BYTES]


# --------------------------------------------------------------------------- decoding


class ProtocolViolation(Exception):
    """The peer broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """The code and reason of a received Close frame (:data:`NO_STATUS_RCVD` and ``""``
    when it carried none); raises :class:`ProtocolViolation` for a payload no peer may
    send."""
    if not payload:
        return NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolViolation(PROTOCOL_ERROR, "CLOSE with 1 byte payload")
    (code,) = _CLOSE_CODE.unpack_from(payload)
    if not is_valid_close_code(code):
        raise ProtocolViolation(PROTOCOL_ERROR, f"CLOSE with invalid code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(INVALID_PAYLOAD_DATA, "invalid UTF-8 in the close reason") from None
    return code, reason


class Taker(Protocol):
    """Where :func:`cut_frames` puts whole messages: a list, a deque..."""

    def append(self, message: str | bytes, /) -> object: ...


class _TakeNothing:
    def append(self, message: str | bytes, /) -> None:
        raise AssertionError("cut_frames takes nothing without a taker")


_TAKE_NOTHING: Final = _TakeNothing()


def cut_frames(
    buf: bytes | bytearray, pos: int, into: Taker | None, masked: bool, max_payload: int
) -> tuple[int, int, int]:
    """Cut whole data frames out of ``buf`` from ``pos`` on; stop at the first other one.

    Each frame that is final, unfragmented, text (valid UTF-8, handed out as ``str``)
    or binary (``bytes``), masked when ``masked`` (a server reading a client) and
    unmasked otherwise, no longer than ``max_payload``, with its length in the fewest
    bytes and all of it in ``buf``, is appended to ``into`` (its payload unmasked). The
    first frame that is not — or every frame, when ``into`` is ``None`` — is left where
    it is, and the answer is ``(start, payload_start, end)``: it begins at ``start``,
    its payload (after the masking key, if any) at ``payload_start``, and it ends at
    ``end``, which may lie beyond ``buf`` when the frame is not all there yet. While its
    header is unfinished (or ``buf`` ends at ``start``), ``payload_start`` and ``end``
    are :data:`INCOMPLETE`.

    Nothing is judged here but what the fast path needs: the caller checks whatever
    frame is left to it (or hands it to a protocol engine). This runs once per socket
    read and once per frame of a read, for every session: its arguments are
    positional, and the loop touches no global but :func:`apply_mask`.
    """
    if into is None:
        into = _TAKE_NOTHING
        max_payload = -1  # every frame is over the limit: none is taken
    size = len(buf)
    while size - pos >= 2:
        first = buf[pos]
        second = buf[pos + 1]
        length = second & 0x7F
        if length < 126:
            head = pos + 2
            minimal = True
        elif length == 126:
            if size - pos < 4:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            head = pos + 4
            minimal = length >= 126
        else:
            if size - pos < 10:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            head = pos + 10
            minimal = 0x10000 <= length < 1 << 63
        if second & 0x80:
            head += 4
        end = head + length
        if end > size or length > max_payload or not minimal or second >> 7 != masked:
            return pos, head, end
        payload = (
            apply_mask(buf[head:end], buf[head - 4 : head]) if masked else bytes(buf[head:end])
        )
        if first == 0x82:  # BINARY_FRAME
            into.append(payload)
        elif first == 0x81:  # TEXT_FRAME
            try:
                into.append(payload.decode())
            except UnicodeDecodeError:
                return pos, head, end
        else:
            return pos, head, end
        pos = end
    return pos, -1, -1  # INCOMPLETE


def read_frame(buf: bytes | bytearray, pos: int = 0) -> tuple[int, bytes, int] | None:
    """The frame at ``buf[pos]``, unjudged: ``(first header byte, unmasked payload,
    end)``, or ``None`` until all of it is in ``buf``. For peers and tools that look at
    frames in passing; a party to the connection checks them (:class:`ClientFrameParser`,
    wsproto)."""
    _, head, end = cut_frames(buf, pos, None, False, 0)
    if head == INCOMPLETE or end > len(buf):
        return None
    payload = bytes(buf[head:end])
    if buf[pos + 1] & 0x80:
        payload = apply_mask(payload, buf[head - 4 : head])
    return buf[pos], payload, end


class ClientFrameParser:
    """Sans-IO parser of the frames a client sends (masked, RFC 6455 §5): the server's
    side.

    :meth:`feed` returns complete messages (``str`` for text, ``bytes`` for binary,
    fragments reassembled), ``("ping", payload)`` and ``("close", code, reason)``
    tuples, in order; it raises :class:`ProtocolViolation` for anything a server must
    refuse (unmasked or reserved-bit frames, bad control frames, invalid UTF-8, a
    message over ``max_message_bytes``...) as soon as the header shows it. wsproto does
    the same job with a generator and several copies per frame; this is the emulator's
    hottest loop.
    """

    __slots__ = ("_buffer", "_kind", "_max", "_parts", "_parts_size")

    def __init__(self, max_message_bytes: int) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._kind = 0  # opcode of the fragmented message in progress (0: none)
        self._parts: list[bytes] = []
        self._parts_size = 0

    def feed(self, data: bytes) -> list[str | bytes | tuple[object, ...]]:
        # Data that starts on a frame boundary (nothing held back: the usual case) is
        # parsed where it lies; only an unfinished frame is copied into the buffer.
        held = self._buffer
        buf: bytes | bytearray
        if held:
            held += data
            buf = held
        else:
            buf = data
        out: list[str | bytes | tuple[object, ...]] = []
        pos = 0
        size = len(buf)
        while True:
            # Whole messages are cut in one pass; what is left is judged here.
            pos, head, end = cut_frames(buf, pos, None if self._kind else out, True, self._max)
            if size - pos < 2:
                break
            b0 = buf[pos]
            if b0 & 0x70:
                raise ProtocolViolation(PROTOCOL_ERROR, "reserved bits set")
            if not buf[pos + 1] & 0x80:
                raise ProtocolViolation(PROTOCOL_ERROR, "client frames must be masked")
            if head == INCOMPLETE:
                break
            opcode = b0 & 0x0F
            length = end - head
            if opcode >= 8:
                if not b0 & FIN or length > 125:
                    raise ProtocolViolation(PROTOCOL_ERROR, "fragmented or oversized control frame")
            elif self._parts_size + length > self._max:
                raise ProtocolViolation(
                    MESSAGE_TOO_BIG, f"Exceeded maximum message size: {self._max} bytes"
                )
            if end > size:
                break
            payload = apply_mask(buf[head:end], buf[head - 4 : head])
            pos = end
            if opcode >= 8:
                if opcode == CLOSE:
                    out.append(("close", *parse_close_payload(payload)))
                    break  # nothing after a Close frame counts
                if opcode == PING:
                    out.append(("ping", payload))
                elif opcode != PONG:
                    raise ProtocolViolation(PROTOCOL_ERROR, f"unknown opcode {opcode}")
                continue
            if opcode == CONTINUATION:
                if not self._kind:
                    raise ProtocolViolation(PROTOCOL_ERROR, "continuation without a message")
            elif opcode in (TEXT, BINARY):
                if self._kind:
                    raise ProtocolViolation(PROTOCOL_ERROR, "new message inside a fragmented one")
                self._kind = opcode
            else:
                raise ProtocolViolation(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if not b0 & FIN:
                self._parts.append(payload)
                self._parts_size += length
                continue
            if self._parts:
                self._parts.append(payload)
                payload = b"".join(self._parts)
                self._parts = []
                self._parts_size = 0
            if self._kind == TEXT:
                try:
                    out.append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    raise ProtocolViolation(
                        INVALID_PAYLOAD_DATA, "invalid UTF-8 in a text message"
                    ) from None
            else:
                out.append(payload)
            self._kind = 0
        if buf is held:
            del held[:pos]
        elif pos < size:
            held += buf[pos:]
        return out

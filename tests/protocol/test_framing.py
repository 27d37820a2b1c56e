"""The sans-IO frame codec (saynad.protocol.framing): encoders checked against wsproto's
decoder, the frame cutter on every kind of frame and every split of a stream, the
unjudging reader, close payloads, the server's parser on every split of a stream. (The
masking routines and their fallback: tests/client/test_streaming.py.)"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from saynad.protocol.framing import (
    BINARY,
    BINARY_FRAME,
    CLOSE_FRAME,
    CONTINUATION,
    FIN,
    INCOMPLETE,
    MAX_CLOSE_REASON_BYTES,
    NO_STATUS_RCVD,
    PING_FRAME,
    TEXT,
    TEXT_FRAME,
    ClientFrameParser,
    ProtocolViolation,
    close_payload,
    cut_frames,
    is_valid_close_code,
    masked_frame,
    parse_close_payload,
    read_frame,
    unmasked_frame,
)

KEY = b"\x11\x22\x33\x44"
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70001]

# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("size", SIZES)
def test_unmasked_frames_decode_on_the_client_side(size: int) -> None:
    payload = os.urandom(size)
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(unmasked_frame(BINARY_FRAME, payload))
    (frame,) = client.received_frames()
    assert frame.opcode is Opcode.BINARY
    assert frame.message_finished
    assert frame.payload == payload


@pytest.mark.parametrize("size", SIZES)
def test_masked_frames_decode_on_the_server_side(size: int) -> None:
    payload = b"x" * size
    server = FrameProtocol(client=False, extensions=[])
    server.receive_bytes(masked_frame(TEXT_FRAME, payload, os.urandom(4)))
    (frame,) = server.received_frames()
    assert frame.opcode is Opcode.TEXT
    assert frame.payload == payload.decode()


def test_unmasked_frame_lengths_use_the_fewest_bytes() -> None:
    assert unmasked_frame(BINARY_FRAME, b"ab") == b"\x82\x02ab"
    assert unmasked_frame(TEXT_FRAME, b"a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert unmasked_frame(BINARY_FRAME, b"a" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(
        8, "big"
    )


# --------------------------------------------------------------------------- close payloads


def test_close_payloads_round_trip() -> None:
    assert close_payload(1000, "bye") == b"\x03\xe8bye"
    assert parse_close_payload(b"\x03\xe8bye") == (1000, "bye")
    assert parse_close_payload(close_payload(4001, "é")) == (4001, "é")


def test_a_close_without_code_has_an_empty_payload() -> None:
    assert close_payload(None) == b""
    assert close_payload(NO_STATUS_RCVD, "ignored") == b""
    assert parse_close_payload(b"") == (NO_STATUS_RCVD, "")


def test_close_reasons_are_cut_to_fit_a_control_frame() -> None:
    payload = close_payload(1000, "r" * 500)
    assert len(payload) == 2 + MAX_CLOSE_REASON_BYTES == 125


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # one byte
        (b"\x03\xed", 1002),  # 1005 may not be sent
        (b"\x03\xee", 1002),  # 1006 neither
        (b"\x03\xf7", 1002),  # 1015 neither
        (b"\x0b\xb7", 1002),  # 2999: reserved
        (b"\x13\x88", 1002),  # 5000: out of range
        (b"\x03\xe8\xff", 1007),  # a reason that is not UTF-8
    ],
)
def test_close_payloads_no_peer_may_send_are_violations(payload: bytes, code: int) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_close_payload(payload)
    assert info.value.code == code


def test_valid_close_codes() -> None:
    assert all(is_valid_close_code(c) for c in (1000, 1001, 1002, 1003, 1007, 1011, 3000, 4999))
    assert not any(is_valid_close_code(c) for c in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000))


# --------------------------------------------------------------------------- cutting


def cut_all(
    buf: bytes | bytearray, *, masked: bool = False, max_payload: int = 1 << 20
) -> tuple[list[str | bytes], tuple[int, int, int]]:
    taken: list[str | bytes] = []
    left = cut_frames(buf, 0, taken, masked, max_payload)
    return taken, left


def test_whole_data_frames_are_taken_and_a_control_frame_stops_the_cut() -> None:
    ping = unmasked_frame(PING_FRAME, b"hi")
    data = unmasked_frame(TEXT_FRAME, "héllo".encode()) + unmasked_frame(BINARY_FRAME, b"\x00")
    buf = data + ping + unmasked_frame(TEXT_FRAME, b"after")
    taken, (start, head, end) = cut_all(buf)
    assert taken == ["héllo", b"\x00"]
    assert (start, head, end) == (len(data), len(data) + 2, len(data) + len(ping))
    assert buf[head:end] == b"hi"


def test_masked_frames_are_unmasked_for_a_server() -> None:
    buf = masked_frame(BINARY_FRAME, b"audio", KEY) + masked_frame(TEXT_FRAME, b"{}", KEY)
    taken, left = cut_all(buf, masked=True)
    assert taken == [b"audio", "{}"]
    assert left == (len(buf), INCOMPLETE, INCOMPLETE)


@pytest.mark.parametrize(
    ("frame", "masked", "length"),
    [
        (masked_frame(BINARY_FRAME, b"x", KEY), False, 1),  # a masked frame from a server
        (unmasked_frame(BINARY_FRAME, b"x"), True, 1),  # an unmasked frame from a client
        (unmasked_frame(BINARY, b"x"), False, 1),  # not final: a fragment
        (unmasked_frame(FIN | CONTINUATION, b"x"), False, 1),
        (unmasked_frame(0xC0 | TEXT, b"x"), False, 1),  # a reserved bit
        (unmasked_frame(FIN | 0x3, b"x"), False, 1),  # a reserved opcode
        (unmasked_frame(CLOSE_FRAME, b""), False, 0),
        (unmasked_frame(TEXT_FRAME, b"\xff\xfe"), False, 2),  # not UTF-8
        (bytes((BINARY_FRAME, 126)) + (3).to_bytes(2, "big") + b"abc", False, 3),  # over-long
        (bytes((BINARY_FRAME, 127)) + (3).to_bytes(8, "big") + b"abc", False, 3),
        (unmasked_frame(BINARY_FRAME, b"x" * 11), False, 11),  # over max_payload
    ],
)
def test_every_other_frame_is_left_to_the_caller_with_its_bounds(
    frame: bytes, masked: bool, length: int
) -> None:
    before = (
        masked_frame(BINARY_FRAME, b"ok", KEY) if masked else unmasked_frame(BINARY_FRAME, b"ok")
    )
    taken, (start, head, end) = cut_all(before + frame, masked=masked, max_payload=10)
    assert taken == [b"ok"]
    assert start == len(before)
    assert end == len(before) + len(frame)
    assert end - head == length


def test_an_unfinished_frame_reports_its_bounds_once_its_header_is_there() -> None:
    frame = unmasked_frame(BINARY_FRAME, b"a" * 300)
    assert cut_all(frame[:1])[1] == (0, INCOMPLETE, INCOMPLETE)
    assert cut_all(frame[:3])[1] == (0, INCOMPLETE, INCOMPLETE)  # the length is not all there
    taken, (start, head, end) = cut_all(frame[:100])
    assert taken == []
    assert (start, head, end) == (0, 4, 304)  # the caller knows how much is still to come


def test_without_a_taker_every_frame_is_left_to_the_caller() -> None:
    buf = unmasked_frame(TEXT_FRAME, b"a") + unmasked_frame(TEXT_FRAME, b"b")
    assert cut_frames(buf, 0, None, False, 10) == (0, 2, 3)
    assert cut_frames(buf, 3, None, False, 10) == (3, 5, 6)


MESSAGES = st.lists(
    st.one_of(st.binary(max_size=300), st.text(max_size=100)), min_size=1, max_size=8
)


@settings(max_examples=200, derandomize=True)
@given(messages=MESSAGES, cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=6))
@pytest.mark.parametrize("masked", [False, True])
def test_a_stream_split_anywhere_cuts_into_the_same_messages(
    masked: bool, messages: list[str | bytes], cuts: list[int]
) -> None:
    def frame(message: str | bytes) -> bytes:
        first, payload = (
            (TEXT_FRAME, message.encode()) if isinstance(message, str) else (BINARY_FRAME, message)
        )
        return masked_frame(first, payload, KEY) if masked else unmasked_frame(first, payload)

    stream = b"".join(frame(m) for m in messages)
    taken: list[str | bytes] = []
    buffer = bytearray()
    offset = 0
    for piece in [*cuts, len(stream)]:
        buffer += stream[offset : offset + piece]
        offset += piece
        pos, head, _ = cut_frames(buffer, 0, taken, masked, 1 << 20)
        assert head == INCOMPLETE or pos < len(buffer)  # only an unfinished frame is left
        del buffer[:pos]
    assert taken == messages
    assert not buffer


# --------------------------------------------------------------------------- reading


def test_read_frame_unmasks_and_waits_for_the_whole_frame() -> None:
    frame = masked_frame(FIN | 0x3, b"anything", KEY)  # a reserved opcode: not judged here
    assert read_frame(frame[:-1]) is None
    assert read_frame(frame) == (FIN | 0x3, b"anything", len(frame))
    both = unmasked_frame(TEXT_FRAME, b"a") + frame
    assert read_frame(both, 3) == (FIN | 0x3, b"anything", len(both))
    assert read_frame(b"") is None


# --------------------------------------------------------------------------- the server's side

CLIENT_FRAMES = st.lists(
    st.one_of(
        st.binary(max_size=300).map(lambda b: (BINARY_FRAME, b)),
        st.text(max_size=100).map(lambda t: (TEXT_FRAME, t.encode())),
        st.binary(max_size=125).map(lambda b: (PING_FRAME, b)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, derandomize=True)
@given(frames=CLIENT_FRAMES, cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=6))
def test_the_server_parser_reads_a_stream_split_anywhere(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(masked_frame(first, payload, KEY) for first, payload in frames)
    expected = [
        payload.decode()
        if first == TEXT_FRAME
        else ("ping", payload)
        if first == PING_FRAME
        else payload
        for first, payload in frames
    ]
    parser = ClientFrameParser(1 << 20)
    items: list[object] = []
    offset = 0
    for piece in [*cuts, len(stream)]:
        items += parser.feed(stream[offset : offset + piece])
        offset += piece
    assert items == expected

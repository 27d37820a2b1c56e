"""The client's opening handshake, sans-IO: the request saynad writes, the answers it
accepts and the ones it refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from saynad.protocol.upgrade import (
    UpgradeError,
    accept_value,
    check_answer,
    check_request,
    new_key,
    upgrade_request,
)

SECRET = b"Bearer s3cret-key"


def head_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[0]


def test_a_wsproto_server_reads_the_request_and_its_101_is_accepted() -> None:
    key = new_key()
    request = upgrade_request("sayna.test:8443", "/ws?x=1", [(b"Authorization", SECRET)], key)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    (event,) = list(server.events())
    assert isinstance(event, Request)
    assert (event.host, event.target) == ("sayna.test:8443", "/ws?x=1")
    assert (b"authorization", SECRET) in event.extra_headers
    assert event.extensions == []  # no permessage-deflate offer
    assert event.subprotocols == []
    answer = server.send(AcceptConnection())
    assert check_answer(head_of(answer), key) is True


def test_the_key_is_fresh_and_the_accept_value_is_rfc_6455s() -> None:
    assert new_key() != new_key()
    # RFC 6455 §1.3's worked example.
    assert accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_idna_hosts_go_on_the_wire_encoded() -> None:
    request = upgrade_request("bücher.example", "/ws", [], new_key())
    assert b"\r\nHost: xn--bcher-kva.example\r\n" in request


@pytest.mark.parametrize(
    ("host", "resource", "headers"),
    [
        ("h", "/ws", [(b"Authorization", SECRET + b"\r\nX-Injected: 1")]),
        ("h", "/ws", [(b"Authorization", SECRET + b"\n")]),
        ("h", "/ws", [(b"Authorization", b" " + SECRET)]),
        ("h", "/ws", [(b"Authorization", SECRET + b"\x00")]),
        ("h", "/ws", [(b"Bad Name", b"v")]),
        ("h", "/ws", [(b"", b"v")]),
        ("h", "/ws x", []),
        ("h", "/ws\r\nHost: other", []),
        ("h", "", []),
        ("h h", "/ws", []),
        ("", "/ws", []),
    ],
)
def test_parts_that_cannot_go_on_the_wire_are_refused_without_quoting_values(
    host: str, resource: str, headers: list[tuple[bytes, bytes]]
) -> None:
    refused = "cannot go in an HTTP request|is not an HTTP token|holds a control character"
    with pytest.raises(ValueError, match=refused) as caught:
        check_request(host, resource, headers)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValueError, match=refused):
        upgrade_request(host, resource, headers, new_key())


def answer(key: bytes, *lines: bytes, status: bytes = b"HTTP/1.1 101 Switching Protocols") -> bytes:
    return b"\r\n".join((status, *lines))


def good_lines(key: bytes) -> list[bytes]:
    return [
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept_value(key),
    ]


def test_header_names_and_tokens_are_case_insensitive_and_lists_are_read() -> None:
    key = new_key()
    head = answer(
        key,
        b"uPgRaDe:WebSocket",
        b"connection: keep-alive,  UPGRADE ",
        b"SEC-WEBSOCKET-ACCEPT:\t" + accept_value(key),
        b"Server: anything at all",
    )
    assert check_answer(head, key) is True
    assert check_answer(answer(key, *good_lines(key), status=b"HTTP/1.1 101"), key) is True


@pytest.mark.parametrize(
    "status",
    [
        b"HTTP/1.1 401 Unauthorized",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.0 101 Switching Protocols",
        b"HTTP/1.1 1010 Nope",
        b"SSH-2.0-OpenSSH",
        b"",
    ],
)
def test_anything_but_a_101_is_left_to_the_http_parser(status: bytes) -> None:
    key = new_key()
    assert check_answer(answer(key, *good_lines(key), status=status), key) is False


@pytest.mark.parametrize(
    "change",
    [
        lambda lines: lines[1:],  # no Upgrade
        lambda lines: [b"Upgrade: h2c", *lines[1:]],
        lambda lines: [lines[0], b"Connection: keep-alive", lines[2]],  # no upgrade token
        lambda lines: lines[:2],  # no accept
        lambda lines: [*lines[:2], b"Sec-WebSocket-Accept: " + accept_value(b"other")],
        lambda lines: [*lines, lines[2]],  # two accepts
        lambda lines: [*lines, lines[0]],  # two upgrades
        lambda lines: [*lines, b"Sec-WebSocket-Extensions: permessage-deflate"],
        lambda lines: [*lines, b"Sec-WebSocket-Protocol: chat"],
        lambda lines: [*lines, b"no colon here"],
        lambda lines: [*lines, b" folded: continuation"],
        lambda lines: [*lines, b"Bad Name: v"],
        lambda lines: [*lines, b"X-Control: a\x01b"],
    ],
)
def test_an_invalid_101_is_refused(change: object) -> None:
    key = new_key()
    lines = change(good_lines(key))  # type: ignore[operator]
    with pytest.raises(UpgradeError):
        check_answer(answer(key, *lines), key)


@given(st.binary(max_size=300), st.lists(st.binary(max_size=60), max_size=6))
def test_hostile_answers_raise_nothing_but_upgrade_error(
    status_tail: bytes, lines: list[bytes]
) -> None:
    key = new_key()
    for status in (b"HTTP/1.1 101" + status_tail, status_tail):
        message = ""
        try:
            result = check_answer(b"\r\n".join((status, *lines)), key)
        except UpgradeError as exc:
            message, result = str(exc), False
        # Nothing the server sent is quoted back; only the right key is accepted.
        assert all(len(part) < 4 or part not in message.encode() for part in lines)
        assert result is False or accept_value(key) in b"".join(lines)

"""Connection faults (``connections.yaml``): what open_session and RestClient raise.

Every server is on 127.0.0.1 (or a name that cannot resolve); TLS certificates come from
a throwaway trustme CA. Each case is bounded by the clients' own timeouts (3 s) and a
``trio.fail_after`` above them.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trustme

from saynad import errors
from saynad.client import RestClient
from saynad.client.session import Session, open_session
from saynad.emulator import EmulatorOptions, open_emulator
from saynad.errors import ConnectionClosedError
from saynad.protocol.messages import STTResult
from tests.corpus._corpus import load_items
from tests.faultproxy import Fault, FaultProxy
from tests.support.processes import closed_port
from tests.support.samples import STT_CONFIG, TTS_CONFIG
from tests.timing import HANG_S

TIMEOUT_S = 3.0  # only the silent server waits it out; the rest answer at once
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def read_head(stream: trio.abc.Stream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            return
        data += chunk


Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def rst_at_accept(stream: trio.SocketStream) -> None:
    reset(stream)


async def rst_after_request(stream: trio.SocketStream) -> None:
    await read_head(stream)
    reset(stream)


async def rst_mid_answer(stream: trio.SocketStream) -> None:
    await read_head(stream)
    await stream.send_all(b"HTTP/1.1 101 Switch")
    await trio.sleep(0.05)  # let the half line arrive before the RST discards it
    reset(stream)


async def fin_after_request(stream: trio.SocketStream) -> None:
    await read_head(stream)
    await stream.aclose()


async def garbage_answer(stream: trio.SocketStream) -> None:
    await read_head(stream)
    await stream.send_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await stream.aclose()


async def http_200(stream: trio.SocketStream) -> None:
    await read_head(stream)
    body = b"<html>it works</html>"
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    await stream.aclose()


async def http_401_deep_json(stream: trio.SocketStream) -> None:
    """A refusal whose JSON body nests 10,000 arrays deep."""
    await read_head(stream)
    body = b'{"error":"invalid_api_key","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    await stream.send_all(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    await stream.aclose()


async def http_400_at_once(stream: trio.SocketStream) -> None:
    """A plain HTTP server that answers whatever arrives, as nginx does to a TLS hello."""
    await stream.receive_some()
    await stream.send_all(
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    await stream.aclose()


async def silent(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def tls_then_fin(stream: trio.SSLStream[trio.SocketStream]) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.do_handshake()
        await read_head(stream)
    await trio.aclose_forcefully(stream)


PLAIN_HANDLERS: dict[str, Handler] = {
    "rst-at-accept": rst_at_accept,
    "rst-after-request": rst_after_request,
    "rst-mid-answer": rst_mid_answer,
    "fin-after-request": fin_after_request,
    "garbage-answer": garbage_answer,
    "http-200": http_200,
    "http-401-deep-json": http_401_deep_json,
    "silent": silent,
}


class Target:
    """Where a client connects and with which TLS context."""

    def __init__(self, host: str, port: int, *, tls: bool, context: ssl.SSLContext | None):
        self.host = host
        self.port = port
        self.tls = tls
        self.context = context

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


@asynccontextmanager
async def fault_server(name: str, ca: trustme.CA) -> AsyncIterator[Target]:
    trusted = client_context(ca)
    async with trio.open_nursery() as nursery:

        async def serve(handler: Handler) -> int:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            return int(listeners[0].socket.getsockname()[1])

        async def serve_tls(cert: trustme.LeafCert) -> int:
            listeners = await nursery.start(
                partial(
                    trio.serve_ssl_over_tcp,
                    tls_then_fin,
                    0,
                    server_context(cert),
                    host="127.0.0.1",
                )
            )
            return int(listeners[0].transport_listener.socket.getsockname()[1])

        now = datetime.datetime.now(datetime.UTC)
        if name == "refused":
            with closed_port() as port:
                yield Target("127.0.0.1", port, tls=False, context=None)
        elif name == "dns-failure":
            yield Target("saynad-test.invalid", 1, tls=False, context=None)
        elif name in PLAIN_HANDLERS:
            yield Target("127.0.0.1", await serve(PLAIN_HANDLERS[name]), tls=False, context=None)
        elif name == "proxy-dead-upstream":
            with closed_port() as dead:
                proxy = FaultProxy("127.0.0.1", dead)
                port = await nursery.start(proxy.run)
                yield Target("127.0.0.1", port, tls=False, context=None)
        elif name == "tls-to-plain-server":
            yield Target("127.0.0.1", await serve(http_400_at_once), tls=True, context=trusted)
        elif name == "plain-to-tls-server":
            port = await serve_tls(ca.issue_cert("127.0.0.1"))
            yield Target("127.0.0.1", port, tls=False, context=None)
        else:
            certs = {
                "tls-valid": lambda: ca.issue_cert("127.0.0.1"),
                "tls-expired": lambda: ca.issue_cert(
                    "127.0.0.1", not_before=now - 30 * DAY, not_after=now - DAY
                ),
                "tls-not-yet-valid": lambda: ca.issue_cert(
                    "127.0.0.1", not_before=now + DAY, not_after=now + 30 * DAY
                ),
                "tls-wrong-host": lambda: ca.issue_cert("saynad.example"),
                "tls-untrusted-ca": lambda: trustme.CA().issue_cert("127.0.0.1"),
            }
            port = await serve_tls(certs[name]())
            yield Target("127.0.0.1", port, tls=True, context=trusted)
        nursery.cancel_scope.cancel()


async def connect_session(target: Target) -> None:
    async with open_session(
        target.ws_url,
        stt=STT_CONFIG,
        tts=TTS_CONFIG,
        connect_timeout_s=TIMEOUT_S,
        ready_timeout_s=TIMEOUT_S,
        ssl_context=target.context,
    ):
        raise AssertionError("the session opened")


async def call_rest(target: Target) -> None:
    transport = httpx.AsyncHTTPTransport(verify=target.context) if target.context else None
    async with RestClient(
        target.http_url, "key", timeout_s=TIMEOUT_S, max_retries=0, transport=transport
    ) as rest:
        await rest.get_sip_hooks()
        raise AssertionError("the request succeeded")


CLIENTS = {"session": connect_session, "rest": call_rest}

CASES = [
    pytest.param(item, client, id=f"{item['name']}-{client}")
    for item in load_items("connections.yaml")
    for client in item["expect"]
]


@pytest.mark.parametrize(("item", "client"), CASES)
async def test_connection_fault(item: dict[str, Any], client: str, ca: trustme.CA) -> None:
    expect = item["expect"][client]
    error_class = getattr(errors, expect["error"])
    async with fault_server(item["server"], ca) as target:
        with trio.fail_after(HANG_S), pytest.raises(error_class) as info:
            await CLIENTS[client](target)
    error = info.value
    assert type(error) is error_class, f"{type(error).__name__}: {error}"
    assert re.search(expect["match"], str(error)), str(error)
    if "status_code" in expect:
        assert getattr(error, "status_code", None) == expect["status_code"]
    if "verify_code" in expect:
        # Why the certificate was refused, as OpenSSL's X509_V_ERR number (stable across
        # releases, unlike its wording): 9 not yet valid, 10 expired, 20 untrusted issuer,
        # 64 IP address mismatch (the test servers are reached as 127.0.0.1).
        assert _verify_code(error) == expect["verify_code"]


def _verify_code(error: BaseException) -> int | None:
    """The ``verify_code`` of the certificate error behind ``error`` (its cause chain)."""
    seen: set[int] = set()
    node: BaseException | None = error
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, ssl.SSLCertVerificationError):
            return node.verify_code
        node = node.__cause__ or node.__context__
    return None


# --------------------------------------------------------------------------- mid-session


async def send_then_read_all(session: Session) -> None:
    await session.send_audio(b"\x00\x00" * 16000)  # traffic for the fault to act on
    async for _ in session.events():
        pass


@pytest.mark.parametrize(
    ("fault", "code"),
    [(Fault.RESET, 1006), (Fault.HALF_CLOSE, 1006), (Fault.CORRUPT, 1002)],
)
async def test_fault_after_ready_ends_the_session_with_a_close_code(
    fault: Fault, code: int
) -> None:
    """Through the fault proxy, in front of the emulator: a fault after ``ready`` ends
    events() with ConnectionClosedError and the documented code, without a hang."""
    async with open_emulator(EmulatorOptions(utterance_ms=100, interim_ms=50)) as emu:
        proxy = FaultProxy("127.0.0.1", int(emu.url.rsplit(":", 1)[1]))
        async with trio.open_nursery() as nursery:
            port = await nursery.start(proxy.run)
            with trio.fail_after(HANG_S):
                async with open_session(
                    f"http://127.0.0.1:{port}", stt=STT_CONFIG, tts=TTS_CONFIG, close_timeout_s=0.2
                ) as session:
                    await session.send_audio(b"\x00\x00" * 1600)  # 100 ms: one transcript
                    event = await session.events().__anext__()
                    assert isinstance(event, STTResult)
                    assert proxy.apply(fault)
                    # Either the send (after a reset) or the next read reports the end.
                    with pytest.raises(ConnectionClosedError) as info:
                        await send_then_read_all(session)
            assert info.value.code == code
            nursery.cancel_scope.cancel()

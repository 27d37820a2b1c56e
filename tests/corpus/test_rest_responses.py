"""REST answers (``rest_responses.yaml``) from a raw HTTP server on loopback.

A socket is used rather than ``httpx.MockTransport`` because several items only exist
on the wire: a body shorter than its Content-Length, a chunked body cut short, a broken
status line, a connection closed without an answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from saynad import errors
from saynad.client import RestClient
from saynad.emulator import Emulator
from tests.corpus._corpus import expand, params
from tests.timing import HANG_S

HEAD_LIMIT = 64 * 1024


def answer_bytes(item: dict[str, Any]) -> bytes:
    """The whole answer the server writes for ``item``."""
    if "raw" in item:
        return str(item["raw"]).encode()
    if "body_hex" in item:
        body = bytes.fromhex(item["body_hex"])
    else:
        body = expand(item.get("body", ""), item.get("expand")).encode()
    status = item["status"]
    lines = [f"HTTP/1.1 {status} Corpus", "connection: close"]
    lines += [f"{name}: {value}" for name, value in (item.get("headers") or {}).items()]
    if item.get("chunked_truncated"):
        lines.append("transfer-encoding: chunked")
        # One chunk, then the connection ends without the terminating 0-size chunk.
        payload = b"%x\r\n%s\r\n" % (len(body), body)
    elif status in (204, 304):
        payload = b""
    else:
        lines.append(f"content-length: {item.get('content_length', len(body))}")
        payload = body
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + payload


class ScriptedHttp:
    """Answers every request with the same bytes and counts the requests."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            remaining = int(match.group(1)) - len(rest) if match else 0
            while remaining > 0:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                remaining -= len(chunk)
            self.requests += 1
            await stream.send_all(self.answer)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def scripted_http(answer: bytes) -> AsyncIterator[tuple[str, ScriptedHttp]]:
    server = ScriptedHttp(answer)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
        yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", server
        nursery.cancel_scope.cancel()


async def call(rest: RestClient, kind: str) -> None:
    if kind == "get":
        await rest.get_sip_hooks()
    else:
        await rest.get_livekit_token("room", "Caller", "caller")
    raise AssertionError("the call succeeded")


MISSING = object()


@pytest.mark.parametrize("item", params("rest_responses.yaml"))
async def test_rest_answer(item: dict[str, Any]) -> None:
    expect = item["expect"]
    error_class = getattr(errors, expect["error"])
    async with scripted_http(answer_bytes(item)) as (url, server):
        rest = RestClient(
            url,
            "corpus-key",
            timeout_s=HANG_S,  # the server answers at once: only a hang guard
            max_retries=2,
            retry_after_max_s=0.0,
            backoff_base_s=0.001,
            backoff_max_s=0.001,
        )
        async with rest:
            with trio.fail_after(HANG_S), pytest.raises(error_class) as info:
                await call(rest, item.get("call", "get"))
    error = info.value
    assert type(error) is error_class, f"{type(error).__name__}: {error}"
    assert server.requests == expect["attempts"]
    fields = {
        "status_code": "status_code",
        "error_field": "error",
        "code": "code",
        "detail": "detail",
        "retry_after_s": "retry_after_s",
    }
    for key, attribute in fields.items():
        if key in expect:
            assert getattr(error, attribute, MISSING) == expect[key], attribute
    if "match" in expect:
        assert re.search(expect["match"], str(error)), str(error)
    if "body_contains" in expect:
        assert expect["body_contains"] in error.body  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the emulator's side


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"text":"hi","extra":' + b"[" * 10_000 + b"]" * 10_000 + b"}", "recursion"),
        (b'{"text":"\xff","tts_config":{"provider":"deepgram","model":""}}', "unicode"),
    ],
    ids=["deeply-nested", "invalid-utf8"],
)
async def test_emulator_refuses_hostile_request_bodies_with_400(
    emulator: Emulator, body: bytes, detail: str
) -> None:
    """The test server itself must not fall over (500) on hostile JSON."""
    async with RestClient(emulator.url, max_retries=0) as rest:
        client = rest._client
        response = await client.post(
            "/speak", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert detail in response.text

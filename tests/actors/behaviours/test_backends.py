"""Agent backends on mock HTTP transports: the OpenAI request and SSE parsing, the http
agent's request and answers, the python agent's session API, and their failures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from saynad.actors.behaviours.agent import (
    AgentError,
    AgentRequest,
    ChatMessage,
    Turn,
)
from saynad.actors.behaviours.backends import (
    AgentSession,
    HttpBackend,
    OpenAIBackend,
    PythonBackend,
    SSEDecoder,
    load_function,
)
from tests.actors.behaviours.fakes import identity
from tests.actors.behaviours.servers import SSE_DONE, sse


class Collect:
    """A ReplyWriter that records what a backend wrote."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.flushes = 0
        self.transfer_to: str | None = None
        self.actions: list[tuple[str, ...]] = []

    async def text(self, chunk: str) -> None:
        self.chunks.append(chunk)

    async def flush(self) -> None:
        self.flushes += 1

    def transfer(self, transfer_to: str) -> None:
        self.transfer_to = transfer_to

    async def clear(self) -> None:
        self.actions.append(("clear",))

    async def send_message(self, message: str, role: str, *, topic: str | None = None) -> None:
        self.actions.append(("send_message", message, role, str(topic)))


REQUEST = AgentRequest(
    Turn("what time is it", 2, 0.0),
    (ChatMessage("user", "hi"), ChatMessage("assistant", "Hello!")),
    identity(),
)


def mock(
    status: int, body: list[bytes] | bytes, content_type: str, seen: list[httpx.Request]
) -> httpx.MockTransport:
    async def stream() -> AsyncIterator[bytes]:
        for piece in body if isinstance(body, list) else [body]:
            yield piece

    async def handler(request: httpx.Request) -> httpx.Response:
        await request.aread()
        seen.append(request)
        return httpx.Response(status, headers={"content-type": content_type}, content=stream())

    return httpx.MockTransport(handler)


def test_sse_decoder() -> None:
    sse_events = SSEDecoder()
    lines = [": keep-alive", "event: x", "data: one", "data:two", "", "", "data: {}", "id: 1"]
    out = [sse_events.line(line) for line in lines]
    assert [d for d in out if d is not None] == ["one\ntwo"]
    assert sse_events.end() == "{}"


async def openai(
    body: list[bytes] | bytes, status: int = 200, content_type: str = "text/event-stream"
) -> tuple[Collect, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    backend = OpenAIBackend(
        model="gpt-test",
        base_url="https://llm.test/v1/",
        api_key="sk-test",
        system_prompt="Be brief.",
        temperature=0.3,
        transport=mock(status, body, content_type, seen),
    )
    out = Collect()
    try:
        await backend.reply(REQUEST, out)
    finally:
        await backend.aclose()
    return out, seen


async def test_openai_request_and_streamed_deltas() -> None:
    body = [
        sse("It is ").encode(),
        (sse("noon") + sse("")).encode()[:-7],  # an event split across reads
        (sse("noon") + sse("")).encode()[-7:],
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        SSE_DONE.encode(),
    ]
    out, seen = await openai(body)
    assert "".join(out.chunks).startswith("It is noon")
    request = seen[0]
    assert str(request.url) == "https://llm.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert json.loads(request.content) == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "what time is it"},
        ],
        "stream": True,
        "temperature": 0.3,
    }


@pytest.mark.parametrize(
    ("body", "status", "reason", "text"),
    [
        ([b'{"error": {"message": "overloaded"}}'], 503, "status", "HTTP 503"),
        ([sse("Hi").encode()], 200, "bad_reply", "before [DONE]"),
        ([b"data: {not json\n\n"], 200, "bad_reply", "undecodable"),
        ([b'data: {"error": {"message": "quota"}}\n\n'], 200, "bad_reply", "quota"),
    ],
)
async def test_openai_failures(body: list[bytes], status: int, reason: str, text: str) -> None:
    with pytest.raises(AgentError) as caught:
        await openai(body, status)
    assert caught.value.reason == reason
    assert text in str(caught.value)


async def test_openai_unreachable_is_a_transport_failure() -> None:
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(AgentError) as caught:
        await backend.reply(REQUEST, Collect())
    await backend.aclose()
    assert caught.value.reason == "transport"


async def http_agent(
    status: int, body: list[bytes] | bytes, content_type: str = "text/plain"
) -> tuple[Collect, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    backend = HttpBackend(
        "https://agent.test/reply",
        headers={"authorization": "Bearer t"},
        transport=mock(status, body, content_type, seen),
    )
    out = Collect()
    try:
        await backend.reply(REQUEST, out)
    finally:
        await backend.aclose()
    return out, seen


async def test_http_agent_request_and_streamed_text() -> None:
    out, seen = await http_agent(200, [b"It is noon.\n", b"Anything ", b"else?\n"])
    assert out.chunks == ["It is noon.\n", "Anything ", "else?\n"]
    assert seen[0].headers["authorization"] == "Bearer t"
    assert json.loads(seen[0].content) == {
        "session": "s",
        "room": None,
        "caller": "+15550001",
        "stream_id": None,
        "transcript": "what time is it",
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}],
    }


async def test_http_agent_json_answer_with_transfer() -> None:
    body = b'{"text": "Transferring you.", "transfer_to": "+15550100"}'
    out, _ = await http_agent(200, body, "application/json; charset=utf-8")
    assert out.chunks == ["Transferring you."]
    assert out.transfer_to == "+15550100"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (500, b"oops", "text/plain", "status"),
        (200, b'{"txt": "typo"}', "application/json", "bad_reply"),
        (200, b"not json", "application/json", "bad_reply"),
    ],
)
async def test_http_agent_failures(
    status: int, body: bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(AgentError) as caught:
        await http_agent(status, body, content_type)
    assert caught.value.reason == reason


async def test_http_agent_may_say_nothing() -> None:
    out, _ = await http_agent(204, b"")
    assert out.chunks == []


async def test_python_agent_session_api() -> None:
    async def fn(session: AgentSession) -> str | None:
        assert session.turn.text == "what time is it"
        assert session.history[-1].content == "Hello!"
        assert session.identity.name == "s"
        await session.stream("It is ")
        await session.stream("noon. ")
        await session.speak("Right now")
        await session.send_message("noon", topic="clock")
        await session.clear()
        await session.transfer("+15550100")
        return "Bye."

    out = Collect()
    await PythonBackend(fn).reply(REQUEST, out)
    assert out.chunks == ["It is ", "noon. ", "Right now", "Bye."]
    assert out.flushes == 1
    assert out.actions == [("send_message", "noon", "assistant", "clock"), ("clear",)]
    assert out.transfer_to == "+15550100"


async def test_python_agent_returning_a_non_string_fails() -> None:
    async def fn(session: AgentSession) -> str | None:
        return 42  # type: ignore[return-value]

    with pytest.raises(AgentError) as caught:
        await PythonBackend(fn).reply(REQUEST, Collect())
    assert caught.value.reason == "bad_reply"


def test_load_function() -> None:
    fn: Callable[..., object] = load_function("tests.actors.behaviours.agent_module:reply")
    assert fn.__name__ == "reply"

"""Agent backends beyond echo: OpenAI-compatible streaming, a user HTTP endpoint, Python.

Each backend produces one reply per call of ``reply(request, out)``, writing text to
``out`` as it arrives; the :class:`~saynad.actors.behaviours.agent.Agent` splits it
into sentences, speaks them, and runs the call in the reply's cancel scope under
``timeout_s`` — so a barge-in or a timeout abandons an HTTP request mid-stream (its
connection is closed) and a Python function mid-``await``.

Failures raise :class:`~saynad.actors.behaviours.agent.AgentError` with a reason:
``status`` (HTTP answer ≥ 400), ``transport`` (connect/read errors), ``timeout``
(httpx's own per-read timeout), ``bad_reply`` (unparsable stream or body, an ``error``
event, a stream cut before its end), ``exception`` (a Python agent raised).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import httpx
import msgspec
import trio

from saynad._io.httpclient import async_client
from saynad.actors.behaviour import SessionIdentity
from saynad.actors.behaviours.agent import (
    AgentError,
    AgentRequest,
    ChatMessage,
    ReplyWriter,
    Turn,
)

__all__ = [
    "AgentFunction",
    "AgentSession",
    "HttpBackend",
    "OpenAIBackend",
    "PythonBackend",
    "SSEDecoder",
    "load_function",
]

MAX_JSON_REPLY_BYTES: Final = 1024 * 1024
_ERROR_PREVIEW: Final = 300


# --------------------------------------------------------------------------- SSE


class SSEDecoder:
    """Server-sent events, line by line (sans-IO): returns each event's ``data``.

    Only ``data`` fields matter for chat completions; comments (``:…``), ``event``,
    ``id`` and ``retry`` fields are ignored. Multi-line data is joined with ``\\n``.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[str] = []

    def line(self, line: str) -> str | None:
        """Feed one line (without its line break); the event's data when it ends."""
        if not line:
            return self.end()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def end(self) -> str | None:
        """The stream or an event ended: pending data, if any."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None
    index: int = 0


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    error: Any = None


_chunk_decoder: Final = msgspec.json.Decoder(_Chunk)


def _client(timeout_s: float, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
    return async_client(timeout=httpx.Timeout(timeout_s), transport=transport)


def _transport_error(exc: httpx.HTTPError) -> AgentError:
    if isinstance(exc, httpx.TimeoutException):
        return AgentError("timeout", f"{type(exc).__name__}: {exc}")
    return AgentError("transport", f"{type(exc).__name__}: {exc}")


@asynccontextmanager
async def _body(
    response: httpx.Response, unit: Literal["lines", "text", "bytes"]
) -> AsyncIterator[AsyncIterator[Any]]:
    """Iterate ``response``'s body, and leave no suspended generator behind.

    httpx's iterators are chains of async generators; leaving one early (an error, a
    barge-in) abandons the inner ones, which trio reports as a ResourceWarning
    (encode/httpx#3686). Closing the response and then driving the chain to its end
    — the next read fails at once — finishes every generator.
    """
    if unit == "lines":
        chunks: AsyncIterator[Any] = response.aiter_lines()
    elif unit == "text":
        chunks = response.aiter_text()
    else:
        chunks = response.aiter_bytes()
    try:
        yield chunks
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await response.aclose()
            try:
                async for _ in chunks:
                    pass
            except Exception:  # the expected ReadError/StreamClosed of a closed stream
                pass


async def _status_error(response: httpx.Response) -> AgentError:
    try:
        body = (await response.aread())[:_ERROR_PREVIEW].decode("utf-8", "replace")
    except httpx.HTTPError:
        body = ""
    return AgentError("status", f"HTTP {response.status_code}: {body}".rstrip(": "))


# --------------------------------------------------------------------------- openai


class OpenAIBackend:
    """Any OpenAI-compatible ``POST {base_url}/chat/completions`` with ``stream: true``.

    Messages: the system prompt (if any), the kept history, the turn. The streamed
    ``choices[0].delta.content`` pieces are the reply; the stream must end with
    ``data: [DONE]`` or a ``finish_reason``.
    """

    kind = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        system_prompt: str | None = None,
        temperature: float | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.system_prompt = system_prompt
        self.temperature = temperature
        self._headers = {"accept": "text/event-stream"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def body(self, request: AgentRequest) -> dict[str, Any]:
        """The request body for ``request`` (exposed for tests and docs)."""
        messages: list[dict[str, str]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.extend(m.as_json() for m in request.history)
        messages.append({"role": "user", "content": request.turn.text})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    async def reply(self, request: AgentRequest, out: ReplyWriter) -> None:
        if self._http is None:
            self._http = _client(self._timeout_s, self._transport)
        try:
            async with self._http.stream(
                "POST", self.url, json=self.body(request), headers=self._headers
            ) as response:
                if response.status_code >= 400:
                    raise await _status_error(response)
                await self._read(response, out)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc

    async def _read(self, response: httpx.Response, out: ReplyWriter) -> None:
        sse = SSEDecoder()
        finished = False
        async with _body(response, "lines") as lines:
            async for line in lines:
                data = sse.line(line)
                if data is None:
                    continue
                if data.strip() == "[DONE]":
                    return
                try:
                    chunk = _chunk_decoder.decode(data)
                except msgspec.DecodeError as exc:
                    raise AgentError("bad_reply", f"undecodable stream event: {exc}") from exc
                if chunk.error is not None:
                    error = str(chunk.error)[:_ERROR_PREVIEW]
                    raise AgentError("bad_reply", f"error event: {error}")
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.delta.content:
                        await out.text(choice.delta.content)
                    if choice.finish_reason is not None:
                        finished = True
        if not finished:
            raise AgentError("bad_reply", "the stream ended before [DONE]")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


# --------------------------------------------------------------------------- http


class _HttpReply(msgspec.Struct, forbid_unknown_fields=True):
    text: str | None = None
    transfer_to: str | None = None


_http_reply_decoder: Final = msgspec.json.Decoder(_HttpReply)


class HttpBackend:
    """POST ``{session, room, caller, stream_id, transcript, history}`` to ``url``.

    The answer: ``204`` or an empty body (say nothing); ``application/json``
    ``{"text": …, "transfer_to": …}`` (both optional; the transfer happens after the
    text was spoken); anything else is plain text, spoken as it streams in — every line
    break and sentence end is a point where speech starts.
    """

    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    @staticmethod
    def body(request: AgentRequest) -> dict[str, Any]:
        identity = request.identity
        body: dict[str, Any] = {
            "session": identity.name,
            "room": identity.room,
            "caller": identity.caller,
            "stream_id": identity.stream_id,
            "transcript": request.turn.text,
            "history": [m.as_json() for m in request.history],
        }
        if identity.variables:  # a session started over the API with variables
            body["variables"] = dict(identity.variables)
        return body

    async def reply(self, request: AgentRequest, out: ReplyWriter) -> None:
        if self._http is None:
            self._http = _client(self._timeout_s, self._transport)
        try:
            async with self._http.stream(
                "POST", self.url, json=self.body(request), headers=self._headers
            ) as response:
                if response.status_code >= 400:
                    raise await _status_error(response)
                if response.status_code == 204:
                    return
                media = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if media == "application/json":
                    await self._json(response, out)
                else:
                    async with _body(response, "text") as text:
                        async for chunk in text:
                            await out.text(chunk)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc

    @staticmethod
    async def _json(response: httpx.Response, out: ReplyWriter) -> None:
        raw = bytearray()
        async with _body(response, "bytes") as body:
            async for chunk in body:
                raw += chunk
                if len(raw) > MAX_JSON_REPLY_BYTES:
                    raise AgentError("bad_reply", f"JSON reply over {MAX_JSON_REPLY_BYTES} bytes")
        try:
            answer = _http_reply_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise AgentError(
                "bad_reply", f'expected {{"text": …, "transfer_to": …}}: {exc}'
            ) from exc
        if answer.text:
            await out.text(answer.text)
        if answer.transfer_to is not None:
            out.transfer(answer.transfer_to)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


# --------------------------------------------------------------------------- python


class AgentSession:
    """What a ``kind: python`` agent function gets, once per finished user turn.

    ::

        async def reply(session: AgentSession) -> str | None:
            ...

    - ``session.turn``: the :class:`~saynad.actors.behaviours.agent.Turn` (``.text``);
    - ``session.history``: the conversation before this turn, as
      :class:`~saynad.actors.behaviours.agent.ChatMessage` (``.role``, ``.content``);
    - ``session.identity``: session name, template, room, stream id, caller, callee,
      SIP headers;
    - ``await session.speak(text)``: say ``text`` now (one ``speak`` per sentence);
    - ``await session.stream(chunk)``: a piece of streamed text (LLM tokens): each
      sentence is spoken as soon as it is complete; the rest when the function returns;
    - ``await session.clear()``: drop queued speech (``clear``);
    - ``await session.send_message(message, role="assistant", topic=None)``: a LiveKit
      data message;
    - ``await session.transfer(phone_number)``: a SIP transfer, sent once this reply's
      speech has been generated.

    A returned string is spoken too. The call runs in the reply's cancel scope: a
    barge-in or ``timeout_s`` cancels it at its next ``await``; an exception is a
    counted failure (reason ``exception``) and the fallback line is spoken.
    """

    __slots__ = ("_out", "_request")

    def __init__(self, request: AgentRequest, out: ReplyWriter) -> None:
        self._request = request
        self._out = out

    @property
    def turn(self) -> Turn:
        return self._request.turn

    @property
    def history(self) -> tuple[ChatMessage, ...]:
        return self._request.history

    @property
    def identity(self) -> SessionIdentity:
        return self._request.identity

    async def speak(self, text: str) -> None:
        await self._out.text(text)
        await self._out.flush()

    async def stream(self, chunk: str) -> None:
        await self._out.text(chunk)

    async def clear(self) -> None:
        await self._out.clear()

    async def send_message(
        self, message: str, role: str = "assistant", topic: str | None = None
    ) -> None:
        await self._out.send_message(message, role, topic=topic)

    async def transfer(self, phone_number: str) -> None:
        self._out.transfer(phone_number)


AgentFunction = Callable[[AgentSession], Awaitable[str | None]]


def load_function(reference: str) -> AgentFunction:
    """Import ``"module:function"`` (``function`` may be dotted: ``module:Class.method``).

    The configuration loader already checked that it imports and is ``async def``.
    """
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


class PythonBackend:
    """Call a user ``async def fn(session: AgentSession) -> str | None`` per turn."""

    kind = "python"

    def __init__(self, function: AgentFunction) -> None:
        self.function = function

    async def reply(self, request: AgentRequest, out: ReplyWriter) -> None:
        result = await self.function(AgentSession(request, out))
        if result is None:
            return
        if not isinstance(result, str):
            raise AgentError(
                "bad_reply", f"the agent function returned {type(result).__name__}, not str"
            )
        await out.text(result)

    async def aclose(self) -> None:
        return None

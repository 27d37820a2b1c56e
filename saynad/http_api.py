"""The call control API (``/v1``): outbound calls, sessions on demand, live actions.

:mod:`saynad.api` describes the API (bodies, routes, the OpenAPI document); this module
serves it for :class:`saynad.http.HttpApp`, against the daemon seen through
:class:`ApiSurface`. Every request goes through the same steps, and every refusal is
answered with an :class:`~saynad.api.ErrorBody` and counted in
``saynad_api_requests_total{route, outcome}``::

    route? ─► token? ─► scope? ─► body ─► decode ─► the daemon ─► 2xx
    404/405   401       403       413/415  400       404/409/422/502/503

- **Tokens**: ``Authorization: Bearer <token>``, compared in constant time with every
  token of ``http.tokens`` (and ``http.control_token``, which holds ``control``). A route
  whose scope no token holds does not exist (404). Reads need a ``read`` token once
  ``http.tokens`` is set, and are open before.
- **Bodies**: ``application/json`` only (415), at most :data:`~saynad.api.MAX_BODY_BYTES`
  (413, checked on ``Content-Length`` before reading and while reading), decoded
  strictly (unknown fields, wrong types, bounds: 400).
- **Idempotency**: ``POST /v1/calls`` and ``POST /v1/sessions`` take an
  ``Idempotency-Key``; admission remembers it
  (:class:`~saynad.actors.admission.IdempotencyKeys`).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, TypeVar

import msgspec
import structlog
import trio

from saynad.actors.admission import Verdict
from saynad.actors.behaviours.remote import Action, ActOutcome, Hangup, Speak, Transfer
from saynad.api import (
    DECODERS,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_BODY_BYTES,
    ActionAccepted,
    CallAccepted,
    CallRequest,
    ErrorBody,
    HangupRequest,
    SessionAccepted,
    SessionRequest,
    SpeakRequest,
    TransferRequest,
    openapi_document,
    phone_problem,
)
from saynad.config import ApiTokenSettings
from saynad.errors import SessionBusyError
from saynad.observability.metrics import Metrics

__all__ = [
    "RETRY_AFTER_DRAINING_S",
    "RETRY_AFTER_SATURATED_S",
    "Answer",
    "ApiRoutes",
    "ApiSurface",
    "BodyRefused",
    "Caller",
    "authorize",
    "no_such_session",
]

log = structlog.get_logger("saynad.http")

RETRY_AFTER_SATURATED_S: Final = 5
RETRY_AFTER_DRAINING_S: Final = 30
REFUSAL_LOG_INTERVAL_S: Final = 1.0

_IDEMPOTENCY_KEY: Final = re.compile(IDEMPOTENCY_KEY_PATTERN)
_json: Final = msgspec.json.Encoder()
_B = TypeVar("_B", bound=msgspec.Struct)
ActionKind = Literal["speak", "transfer", "hangup", "delete", "restart"]


@dataclass
class Answer:
    """What a route answers: a status, a JSON body, extra headers."""

    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "accepted"


class BodyRefused(Exception):
    """Raised by the body reader: the body is too large (413) or too slow (408)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token holder's name (``anonymous`` for an open read)."""

    name: str


class ApiSurface(Protocol):
    """What the API needs from the daemon (:class:`saynad.app.Daemon` implements it)."""

    @property
    def draining(self) -> bool: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def reads_need_token(self) -> bool: ...

    def api_tokens(self) -> tuple[ApiTokenSettings, ...]: ...

    def placement(self) -> Mapping[str, int]:
        """This process's shard: ``{"index": I, "count": N}`` (0 of 1 unsharded)."""
        ...

    def api_session(self, name: str) -> Mapping[str, object] | None: ...

    def api_sessions(self) -> Sequence[Mapping[str, object]]: ...

    async def admit_call(
        self, request: CallRequest, *, client: str, idempotency_key: str | None
    ) -> Verdict: ...

    async def admit_session(
        self, request: SessionRequest, *, client: str, idempotency_key: str | None
    ) -> Verdict: ...

    def act(self, name: str, action: Action) -> ActOutcome: ...

    def origin_of(self, name: str) -> str | None: ...

    def stop_session(self, name: str) -> bool: ...


def authorize(
    tokens: Sequence[ApiTokenSettings], authorization: bytes | None, scope: str
) -> Caller | Answer:
    """The token holder of ``authorization`` if their token holds ``scope``, else the
    refusal: 404 (no token holds it: the route is not enabled), 401, 403.

    The header is compared with every token, each in constant time, whichever matches:
    the time taken says nothing of which token (if any) was close.
    """
    if not any(scope in token.scopes for token in tokens):
        return _refusal(404, "not_found", "not found (no API token holds the scope)")
    given = authorization or b""
    holder: ApiTokenSettings | None = None
    for token in tokens:
        if hmac.compare_digest(given, b"Bearer " + token.token.reveal().encode()):
            holder = token
    if holder is None:
        return _refusal(401, "unauthorized", headers={"www-authenticate": 'Bearer realm="saynad"'})
    if scope not in holder.scopes:
        return _refusal(403, "forbidden", f"this token lacks the {scope} scope")
    return Caller(holder.name)


def no_such_session(placement: Mapping[str, int]) -> str:
    """What a 404 for an unknown session name says. A shard knows only its own sessions
    (those it admitted, and the always-on ones the shard table gives it): in a sharded
    fleet the answer names the shard that answered, so the client knows to ask another."""
    index, count = placement.get("index", 0), placement.get("count", 1)
    if count <= 1:
        return "no such session"
    return (
        f"no such session on shard {index} of {count}: a session runs on the shard that "
        "started it (saynad shards names the shard of an always-on session)"
    )


def _refusal(
    status: int, outcome: str, detail: str | None = None, headers: dict[str, str] | None = None
) -> Answer:
    """A refusal: the body's ``error`` is the counted outcome, ``detail`` says more."""
    body = ErrorBody(error=outcome, detail=detail)
    return Answer(status, body, headers or {}, outcome=outcome)


_VERDICTS: Final[Mapping[str, tuple[int, str]]] = {
    "draining": (503, "draining"),
    "saturated": (503, "saturated"),
    "duplicate": (409, "conflict"),
    "conflict": (409, "conflict"),
    "invalid": (422, "invalid"),
    "upstream": (502, "upstream"),
    "not_configured": (404, "not_found"),
}


def _refused_verdict(verdict: Verdict) -> Answer:
    status, outcome = _VERDICTS.get(verdict.reason, (503, "draining"))
    headers = {}
    if verdict.reason == "draining":
        headers["retry-after"] = str(RETRY_AFTER_DRAINING_S)
    elif verdict.reason == "saturated":
        headers["retry-after"] = str(RETRY_AFTER_SATURATED_S)
    detail = verdict.detail
    if detail is None and verdict.reason == "saturated":
        detail = "max_sessions reached"
    return _refusal(status, outcome, detail, headers)


ReadBody = Callable[[int], Awaitable[bytes]]
"""Reads the request body up to a limit; raises :class:`BodyRefused`."""


class ApiRoutes:
    """The ``/v1`` routes over one daemon. :meth:`answer` serves one request."""

    def __init__(self, daemon: ApiSurface) -> None:
        self.daemon = daemon
        self._openapi = _json.encode(openapi_document())
        # outcome → (trio time of its last line, refusals not logged since)
        self._refusal_lines: dict[str, tuple[float, int]] = {}

    @property
    def openapi(self) -> bytes:
        """The OpenAPI document, encoded once."""
        return self._openapi

    async def answer(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        read_body: ReadBody,
    ) -> Answer:
        """Serve ``method path`` (``path`` under ``/v1``; not the OpenAPI document)."""
        route, needs, handler = self._match(method, path)
        if handler is None:
            if route is None:
                return _refusal(404, "not_found", "not found")
            return _refusal(405, "bad_request", "method not allowed", {"allow": needs})
        try:
            answer = await handler(_Request(self.daemon, headers, read_body))
        except BodyRefused as exc:
            if exc.status == 413:
                answer = _refusal(413, "too_large", "request body too large", _CLOSE)
            else:
                answer = _refusal(408, "bad_request", "request body too slow", _CLOSE)
        self.daemon.metrics.api_request(route or "read", answer.outcome)
        if answer.status >= 400:
            self._log_refusal(route or "read", answer)
        return answer

    def _log_refusal(self, route: str, answer: Answer) -> None:
        """At most one ``api request refused`` line per outcome per
        :data:`REFUSAL_LOG_INTERVAL_S` (a flood of bad requests must not flood the
        journal); ``not_logged`` counts the others. Every refusal is counted anyway."""
        now = trio.current_time()
        last, skipped = self._refusal_lines.get(answer.outcome, (None, 0))
        if last is not None and now - last < REFUSAL_LOG_INTERVAL_S:
            self._refusal_lines[answer.outcome] = (last, skipped + 1)
            return
        self._refusal_lines[answer.outcome] = (now, 0)
        log.info(
            "api request refused",
            route=route,
            status=answer.status,
            outcome=answer.outcome,
            not_logged=skipped,
        )

    def _match(
        self, method: str, path: str
    ) -> tuple[str | None, str, Callable[[_Request], Awaitable[Answer]] | None]:
        """(metric route, the allowed methods, the handler for ``method`` or None)."""
        if path == "/v1/calls":
            return "calls", "POST", self._calls if method == "POST" else None
        if path == "/v1/sessions":
            if method in ("GET", "HEAD"):
                return "read", "GET, HEAD, POST", self._list
            if method == "POST":
                return "sessions", "GET, HEAD, POST", self._start
            return "read", "GET, HEAD, POST", None
        if not path.startswith("/v1/sessions/"):
            return None, "", None
        name, _, action = path[len("/v1/sessions/") :].partition("/")
        if not name:
            return None, "", None
        if not action:
            if method in ("GET", "HEAD"):
                return "read", "GET, HEAD, DELETE", lambda r: self._one(r, name)
            if method == "DELETE":
                return "delete", "GET, HEAD, DELETE", lambda r: self._delete(r, name)
            return "read", "GET, HEAD, DELETE", None
        handlers: dict[str, Callable[[_Request, str], Awaitable[Answer]]] = {  # by action
            "speak": self._speak,
            "transfer": self._transfer,
            "hangup": self._hangup,
        }
        act = handlers.get(action)
        if act is None:
            return None, "", None
        if method != "POST":
            return action, "POST", None
        return action, "POST", lambda r: act(r, name)

    # ----------------------------------------------------------------- reads

    async def _list(self, request: _Request) -> Answer:
        refused = request.read_access()
        if refused is not None:
            return refused
        return Answer(
            200, {"shard": self.daemon.placement(), "sessions": self.daemon.api_sessions()}
        )

    async def _one(self, request: _Request, name: str) -> Answer:
        refused = request.read_access()
        if refused is not None:
            return refused
        row = self.daemon.api_session(name)
        if row is None:
            return self._unknown()
        return Answer(200, row)

    # ----------------------------------------------------------------- admission

    @staticmethod
    async def _admission(
        request: _Request, cls: type[_B]
    ) -> tuple[Caller, str | None, _B] | Answer:
        """What every admission route checks first: the ``calls`` scope, the
        ``Idempotency-Key``, the body."""
        caller = request.authorize("calls")
        if isinstance(caller, Answer):
            return caller
        key = request.idempotency_key()
        if isinstance(key, Answer):
            return key
        body = await request.body(cls)
        if isinstance(body, Answer):
            return body
        return caller, key, body

    async def _calls(self, request: _Request) -> Answer:
        checked = await self._admission(request, CallRequest)
        if isinstance(checked, Answer):
            return checked
        caller, key, body = checked
        verdict = await self.daemon.admit_call(body, client=caller.name, idempotency_key=key)
        if not verdict.accepted:
            return _refused_verdict(verdict)
        assert verdict.session is not None
        assert verdict.room is not None
        accepted = CallAccepted(
            session=verdict.session, room=verdict.room, replayed=verdict.replayed
        )
        return Answer(202, accepted, outcome="replayed" if verdict.replayed else "accepted")

    async def _start(self, request: _Request) -> Answer:
        checked = await self._admission(request, SessionRequest)
        if isinstance(checked, Answer):
            return checked
        caller, key, body = checked
        verdict = await self.daemon.admit_session(body, client=caller.name, idempotency_key=key)
        if not verdict.accepted:
            return _refused_verdict(verdict)
        assert verdict.session is not None
        accepted = SessionAccepted(
            session=verdict.session,
            room=verdict.room,
            livekit=verdict.livekit,
            replayed=verdict.replayed,
        )
        return Answer(202, accepted, outcome="replayed" if verdict.replayed else "accepted")

    # ----------------------------------------------------------------- live actions

    async def _speak(self, request: _Request, name: str) -> Answer:
        caller = request.authorize("control")
        if isinstance(caller, Answer):
            return caller
        body = await request.body(SpeakRequest)
        if isinstance(body, Answer):
            return body
        return self._act(name, "speak", Speak(body.text, interrupt=body.interrupt))

    async def _transfer(self, request: _Request, name: str) -> Answer:
        caller = request.authorize("control")
        if isinstance(caller, Answer):
            return caller
        body = await request.body(TransferRequest)
        if isinstance(body, Answer):
            return body
        problem = phone_problem("to", body.to)
        if problem is not None:
            return _refusal(422, "invalid", problem)
        return self._act(name, "transfer", Transfer(body.to.strip()))

    async def _hangup(self, request: _Request, name: str) -> Answer:
        caller = request.authorize("control")
        if isinstance(caller, Answer):
            return caller
        body = await request.body(HangupRequest, optional=True)
        if isinstance(body, Answer):
            return body
        refused = self._admitted_only(name, "hangup")
        if refused is not None:
            return refused
        return self._act(name, "hangup", Hangup(body.text))

    async def _delete(self, request: _Request, name: str) -> Answer:
        caller = request.authorize("control")
        if isinstance(caller, Answer):
            return caller
        refused = self._admitted_only(name, "delete")
        if refused is not None:
            return refused
        if not self.daemon.stop_session(name):
            return self._unknown()
        return Answer(202, ActionAccepted(session=name, action="delete"))

    def _admitted_only(self, name: str, action: str) -> Answer | None:
        origin = self.daemon.origin_of(name)
        if origin is None:
            return self._unknown()
        if origin == "config":
            return _refusal(
                409,
                "conflict",
                f"a configured session cannot {action}: remove it from the configuration "
                "(or restart it)",
            )
        return None

    def _unknown(self) -> Answer:
        return _refusal(404, "not_found", no_such_session(self.daemon.placement()))

    def _act(self, name: str, kind: ActionKind, action: Action) -> Answer:
        try:
            taken = self.daemon.act(name, action)
        except SessionBusyError as exc:
            return _refusal(503, "busy", str(exc), {"retry-after": "1"})
        if taken == "unknown":
            return self._unknown()
        if taken == "not_ready":
            return _refusal(409, "conflict", "the session is not ready")
        if taken == "no_room":
            return _refusal(409, "conflict", "the session is in no LiveKit room")
        return Answer(202, ActionAccepted(session=name, action=kind))


_CLOSE: Final = {"connection": "close"}


class _Request:
    """One request's headers and body, as the handlers need them."""

    def __init__(
        self, daemon: ApiSurface, headers: Sequence[tuple[bytes, bytes]], read_body: ReadBody
    ) -> None:
        self._daemon = daemon
        self._headers = headers
        self._read_body = read_body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self._headers:
            if key.lower() == name:
                return bytes(value)
        return None

    def authorize(self, scope: str) -> Caller | Answer:
        return authorize(self._daemon.api_tokens(), self.header(b"authorization"), scope)

    def read_access(self) -> Answer | None:
        if not self._daemon.reads_need_token:
            return None
        caller = self.authorize("read")
        return caller if isinstance(caller, Answer) else None

    def idempotency_key(self) -> str | Answer | None:
        raw = self.header(b"idempotency-key")
        if raw is None:
            return None
        key = raw.decode("latin-1")
        if not _IDEMPOTENCY_KEY.match(key):
            return _refusal(
                400,
                "bad_request",
                "Idempotency-Key: 1 to 255 printable ASCII characters, no spaces",
            )
        return key

    async def body(self, cls: type[_B], *, optional: bool = False) -> _B | Answer:
        """The body decoded as ``cls``; ``optional``: an empty body is ``cls()``."""
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _refusal(413, "too_large", "request body too large", _CLOSE)
        raw = await self._read_body(MAX_BODY_BYTES)
        if not raw and optional:
            return cls()
        media = (self.header(b"content-type") or b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            return _refusal(415, "unsupported_media", "the body must be application/json")
        try:
            decoded: _B = DECODERS[cls].decode(raw)  # type: ignore[index]
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return _refusal(400, "bad_request", f"invalid body: {str(exc)[:300]}")
        return decoded

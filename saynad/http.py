"""The daemon's HTTP surface: a small ASGI app served by hypercorn's trio worker.

::

    GET  /metrics                   Prometheus text (OpenMetrics when the scraper asks for it);
                                    rendered at most once a second, 16 answered at a time
    GET  /healthz                   200 while the event loop and the supervisor answer
    GET  /readyz                    200 when config loaded, supervisor up, not draining and
                                    admission open; 503 otherwise (JSON says which check)
    GET  /sessions                  every supervised session, and this process's shard (JSON)
    GET  /sessions/{name}           one session (JSON), 404 when unknown
    POST /sessions/{name}/restart   control: restart one session
    POST /reload                    control: reload the configuration
    POST {inbound.sip_webhook.path} a signed SIP webhook → 202 and a temporary session
    *    /v1/...                    the call control API (saynad.http_api, saynad.api)

Every GET route answers ``HEAD`` (the same headers, no body); any other method gets 405
with ``Allow``. A request target (path and query) over :data:`MAX_URL_BYTES` gets 414, a
request head over :data:`MAX_HEAD_BYTES` 431.

The control routes exist only when a token holds the ``control`` scope (``http.tokens``
or ``http.control_token``); they take ``Authorization: Bearer <token>``, compared in
constant time. Once ``http.tokens`` is set, the session reads need a ``read`` token.

The routes see the daemon through :class:`DaemonSurface`, a small protocol defined here
(readiness, liveness, the sessions, restart, reload, webhook admission, metrics) that
:class:`saynad.app.Daemon` implements; this module knows nothing else of it.

The webhook route answers fast and never waits for the session: the body is read up to
``max_body_bytes`` (``Content-Length`` is checked before reading), verified on the raw
bytes by :class:`~saynad.protocol.webhooks.WebhookVerifier` (which claims the event id),
then :meth:`DaemonSurface.admit_webhook` starts the session or refuses (admission
releases the event id of a refused webhook so a re-delivery can be admitted later).
Statuses: 202 accepted, 400 bad payload, 401 bad or missing signature (no detail in the
body; the reason is logged and counted), 405, 409 replayed event id, 413 too large,
503 + ``Retry-After`` when ``max_sessions`` is reached or the daemon is draining.

Serving (:func:`serve_http`) follows the rest of the daemon: ``task_status.started``
reports the bound addresses, and ``shutdown_trigger`` starts hypercorn's graceful
shutdown (stop accepting, let in-flight requests finish within ``graceful_timeout_s``).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import msgspec
import structlog
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from prometheus_client.exposition import choose_encoder

from saynad._groups import cause_of
from saynad._io.asgi import Message, Receive, Scope, Send, serve_lifespan
from saynad._io.listener import ReusePortListener
from saynad.actors.admission import Verdict
from saynad.errors import (
    WebhookError,
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSignatureError,
    WebhookTimestampError,
    WebhookTooLargeError,
)
from saynad.http_api import (
    RETRY_AFTER_DRAINING_S,
    RETRY_AFTER_SATURATED_S,
    Answer,
    ApiRoutes,
    ApiSurface,
    BodyRefused,
    authorize,
    no_such_session,
)
from saynad.observability.metrics import Metrics
from saynad.protocol.webhooks import VerifiedSipWebhook, WebhookVerifier

__all__ = ["DaemonSurface", "HttpApp", "ReloadOutcome", "WebhookServer", "serve_http"]

log = structlog.get_logger("saynad.http")


HEALTH_TIMEOUT_S: Final = 5.0
"""How long ``/healthz`` waits for the supervisor's answer."""

BODY_TIMEOUT_S: Final = 10.0
"""A request body must arrive within this (Sayna gives up after 5 s anyway)."""

REFUSAL_LOG_INTERVAL_S: Final = 1.0
"""At most one ``webhook rejected``/``webhook refused`` line per outcome per second: a
flood of bad webhooks would otherwise write one line per request, and journald's rate
limit would then drop every line of the service (a slow log reader would even block the
event loop on stdout). Every request is still counted in the metrics."""

METRICS_CACHE_S: Final = 1.0
"""A rendered ``/metrics`` answer is reused for this long (per format): however many
scrapes arrive at once, the catalog is rendered at most once per interval. Prometheus
scrapes every 15 s or so: the answer it gets is never more than this old."""

MAX_CONCURRENT_SCRAPES: Final = 16
"""At most this many ``/metrics`` requests are answered at a time; the others wait their
turn. With a thousand scrapes at once, answering them all in one go would hold the event
loop — and the sessions' audio — for as long as that takes; a few at a time, the sessions
run between them (docs/benchmarks-reliability.md: audio stall under a scrape flood)."""

SCRAPE_TIMEOUT_S: Final = 10.0
"""A ``/metrics`` answer that is not sent within this (a client that does not read) is
abandoned and its connection closed, so no client holds one of the scrape slots for long."""

MAX_URL_BYTES: Final = 8 * 1024
"""A longer request target (path and query) is answered 414. The request head as a whole
may take up to :data:`MAX_HEAD_BYTES`; beyond that the HTTP server answers 431."""

MAX_HEAD_BYTES: Final = 64 * 1024

MAX_CONTROL_BODY_BYTES: Final = 64 * 1024

Routes = Literal["all", "webhook", "all_but_webhook"]

_json: Final = msgspec.json.Encoder()
# Sent when a request body was left unread: the connection cannot carry another request.
_CLOSE: Final = {"connection": "close"}


@dataclass
class ReloadOutcome:
    """What a reload did, as ``POST /reload`` answers it (``Daemon.reload`` returns one)."""

    ok: bool
    error: str | None = None
    added: int = 0
    removed: int = 0
    changed: int = 0


class DaemonSurface(ApiSurface, Protocol):
    """What the routes need from the daemon (:class:`saynad.app.Daemon` implements it);
    the ``/v1`` routes' part is :class:`~saynad.http_api.ApiSurface`."""

    @property
    def draining(self) -> bool:
        """Shutting down: control routes and webhooks answer 503."""
        ...

    @property
    def metrics(self) -> Metrics:
        """The catalog ``/metrics`` renders and the webhook outcomes are counted in."""
        ...

    @property
    def webhook_path(self) -> str | None:
        """Where SIP webhooks are posted (None: no webhook route)."""
        ...

    @property
    def verifier(self) -> WebhookVerifier | None:
        """Verifies (and claims) SIP webhooks; set whenever ``webhook_path`` is."""
        ...

    def readiness(self) -> Mapping[str, bool]:
        """The ``/readyz`` checks; ready when every value is True."""
        ...

    async def alive(self, timeout_s: float) -> bool:
        """True when the supervisor answers within ``timeout_s``."""
        ...

    def sessions(self) -> Sequence[Mapping[str, object]]:
        """Every supervised session as a JSON object, by name."""
        ...

    def session(self, name: str) -> Mapping[str, object] | None:
        """One session as a JSON object (None when there is none)."""
        ...

    async def restart_session(self, name: str) -> bool:
        """Restart ``name``; False when no such session runs."""
        ...

    async def reload(self) -> ReloadOutcome:
        """Load the configuration file again and converge on it."""
        ...

    async def admit_webhook(self, webhook: VerifiedSipWebhook) -> Verdict:
        """Start a session for a verified SIP webhook, or say why not."""
        ...


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = {"content-type": content_type, **(headers or {})}

    async def send(self, send: Send, *, head: bool = False) -> None:
        """Send the response; ``head``: the headers a GET would get, and no body."""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else self.body})


def _json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, _json.encode(obj) + b"\n", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return _json_response(status, {"error": message}, headers)


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, or :class:`_BodyTooLarge` as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


class HttpApp:
    """The ASGI application over one daemon (anything that implements :class:`DaemonSurface`)."""

    def __init__(
        self,
        daemon: DaemonSurface,
        *,
        metrics_cache_s: float = METRICS_CACHE_S,
        max_concurrent_scrapes: int = MAX_CONCURRENT_SCRAPES,
        routes: Routes = "all",
    ) -> None:
        """``metrics_cache_s``: how long a rendered ``/metrics`` answer is reused (0:
        never); ``max_concurrent_scrapes``: how many ``/metrics`` requests are answered
        at a time; ``routes``: ``all``, ``webhook`` (the SIP webhook alone, for the
        listener of ``http.webhooks``) or ``all_but_webhook``."""
        self.daemon = daemon
        self.routes = routes
        self.api = ApiRoutes(daemon)
        self.metrics_cache_s = metrics_cache_s
        self._scrapes = trio.CapacityLimiter(max_concurrent_scrapes)
        # outcome → (trio time of its last line, refusals not logged since)
        self._refusal_lines: dict[str, tuple[float, int]] = {}
        # content type → (trio time it was rendered, body)
        self._rendered: dict[str, tuple[float, bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await serve_lifespan(receive, send)
            return
        if kind != "http":  # websockets: nothing here speaks them
            return
        if scope["path"] == "/metrics":
            # Rendering and sending both take the event loop: a few scrapes at a time.
            async with self._scrapes:
                with trio.move_on_after(SCRAPE_TIMEOUT_S):
                    await self._answer(scope, receive, send)
        else:
            await self._answer(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > (
                MAX_URL_BYTES
            ):
                response = _error(414, "URI too long", _CLOSE)
            else:
                response = await self._route(scope, receive)
        except _Disconnected:
            return
        except Exception:
            log.exception("http handler failed", path=scope.get("path"))
            response = _error(500, "internal error")
        await response.send(send, head=scope["method"] == "HEAD")

    # ----------------------------------------------------------------- routing

    async def _route(self, scope: Scope, receive: Receive) -> _Response:
        path: str = scope["path"]
        method: str = scope["method"]
        webhook_path = self.daemon.webhook_path if self.routes != "all_but_webhook" else None
        if self.routes == "webhook":
            if webhook_path is not None and path == webhook_path:
                return await self._webhook(scope, receive, method)
            return _error(404, "not found")
        if path == "/metrics":
            return self._only(method, "GET") or self._metrics(scope)
        if path == "/healthz":
            return self._only(method, "GET") or await self._healthz()
        if path == "/readyz":
            return self._only(method, "GET") or self._readyz()
        if path == "/sessions":
            return self._only(method, "GET") or self._read(scope) or self._sessions()
        if path.startswith("/sessions/"):
            name, _, action = path[len("/sessions/") :].partition("/")
            if not action:
                return self._only(method, "GET") or self._read(scope) or self._session(name)
            if action == "restart":
                return self._only(method, "POST") or await self._control(
                    scope, receive, lambda: self._restart(name)
                )
            return _error(404, "not found")
        if path in ("/reload", "/v1/reload"):
            return self._only(method, "POST") or await self._control(scope, receive, self._reload)
        if path.startswith("/v1/"):
            return await self._v1(scope, receive, path, method)
        if webhook_path is not None and path == webhook_path:
            return await self._webhook(scope, receive, method)
        return _error(404, "not found")

    @staticmethod
    def _only(method: str, allowed: str) -> _Response | None:
        # Every GET route answers HEAD too (the same headers, no body), as Prometheus-style
        # endpoints do.
        if method == allowed or (method == "HEAD" and allowed == "GET"):
            return None
        return _error(
            405, "method not allowed", {"allow": "GET, HEAD" if allowed == "GET" else allowed}
        )

    # ----------------------------------------------------------------- read-only routes

    def _metrics(self, scope: Scope) -> _Response:
        accept = (_header(scope, b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        now = trio.current_time()
        cached = self._rendered.get(content_type)
        if cached is not None and now - cached[0] < self.metrics_cache_s:
            body = cached[1]
        else:
            body = encoder(self.daemon.metrics.registry)
            self._rendered[content_type] = (now, body)
        return _Response(200, body, content_type=content_type)

    async def _healthz(self) -> _Response:
        # Answering at all proves the event loop runs; the supervisor must answer too.
        if await self.daemon.alive(HEALTH_TIMEOUT_S):
            return _json_response(200, {"status": "ok"})
        return _json_response(503, {"status": "supervisor not answering"})

    def _readyz(self) -> _Response:
        checks = self.daemon.readiness()
        ready = all(checks.values())
        return _json_response(
            200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks}
        )

    def _sessions(self) -> _Response:
        return _json_response(
            200, {"shard": self.daemon.placement(), "sessions": self.daemon.sessions()}
        )

    def _session(self, name: str) -> _Response:
        row = self.daemon.session(name)
        if row is None:
            return _error(404, no_such_session(self.daemon.placement()))
        return _json_response(200, row)

    # ----------------------------------------------------------------- control routes

    def _read(self, scope: Scope) -> _Response | None:
        """The refusal of a read without a ``read`` token, once ``http.tokens`` is set."""
        if not self.daemon.reads_need_token:
            return None
        caller = authorize(self.daemon.api_tokens(), _header(scope, b"authorization"), "read")
        if isinstance(caller, Answer):
            self.daemon.metrics.api_request("read", caller.outcome)
            return _answer(caller)
        return None

    async def _v1(self, scope: Scope, receive: Receive, path: str, method: str) -> _Response:
        """The call control API (:mod:`saynad.http_api`)."""
        if path == "/v1/openapi.json":
            return self._only(method, "GET") or _Response(200, self.api.openapi)
        if path.startswith("/v1/sessions/") and path.endswith("/restart"):
            name = path[len("/v1/sessions/") : -len("/restart")]
            if name and "/" not in name:
                return self._only(method, "POST") or await self._control(
                    scope, receive, lambda: self._restart(name, v1=True)
                )

        async def read_body(limit: int) -> bytes:
            try:
                with trio.move_on_after(BODY_TIMEOUT_S) as deadline:
                    return await _read_body(receive, limit)
            except _BodyTooLarge:
                raise BodyRefused(413) from None
            assert deadline.cancelled_caught
            raise BodyRefused(408)

        answer = await self.api.answer(method, path, scope["headers"], read_body)
        return _answer(answer)

    async def _control(
        self, scope: Scope, receive: Receive, action: Callable[[], Awaitable[_Response]]
    ) -> _Response:
        route = "reload" if scope["path"].endswith("/reload") else "restart"
        caller = authorize(self.daemon.api_tokens(), _header(scope, b"authorization"), "control")
        if isinstance(caller, Answer):
            self.daemon.metrics.api_request(route, caller.outcome)
            return _answer(caller)
        try:
            with trio.move_on_after(BODY_TIMEOUT_S) as scope_:
                await _read_body(receive, MAX_CONTROL_BODY_BYTES)  # ignored, but consumed
        except _BodyTooLarge:
            response = _error(413, "request body too large", _CLOSE)
        else:
            if scope_.cancelled_caught:
                response = _error(408, "request body too slow", _CLOSE)
            else:
                response = await action()
        self.daemon.metrics.api_request(route, _OUTCOMES.get(response.status, "accepted"))
        return response

    async def _restart(self, name: str, *, v1: bool = False) -> _Response:
        if self.daemon.draining:
            return _error(503, "draining", {"retry-after": str(RETRY_AFTER_DRAINING_S)})
        if not await self.daemon.restart_session(name):
            return _error(404, no_such_session(self.daemon.placement()))
        log.info("restart requested over http", session=name)
        if v1:
            return _json_response(202, {"session": name, "action": "restart"})
        return _json_response(202, {"restarting": name})

    async def _reload(self) -> _Response:
        if self.daemon.draining:
            return _error(503, "draining", {"retry-after": str(RETRY_AFTER_DRAINING_S)})
        log.info("reload requested over http")
        outcome = await self.daemon.reload()
        body = {
            "ok": outcome.ok,
            "added": outcome.added,
            "removed": outcome.removed,
            "changed": outcome.changed,
            "error": outcome.error,
        }
        return _json_response(200 if outcome.ok else 422, body)

    # ----------------------------------------------------------------- SIP webhook

    async def _webhook(self, scope: Scope, receive: Receive, method: str) -> _Response:
        if method != "POST":
            return self._refuse(
                "method_not_allowed", _error(405, "method not allowed", {"allow": "POST"})
            )
        daemon = self.daemon
        if daemon.draining:
            return self._refuse("draining", _unavailable("draining", RETRY_AFTER_DRAINING_S))
        verifier = daemon.verifier
        assert verifier is not None  # set whenever inbound.sip_webhook is configured
        limit = verifier.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return self._refuse("too_large", _error(413, "payload too large", _CLOSE))
        try:
            with trio.move_on_after(BODY_TIMEOUT_S) as deadline:
                body = await _read_body(receive, limit)
        except _BodyTooLarge:
            return self._refuse("too_large", _error(413, "payload too large", _CLOSE))
        if deadline.cancelled_caught:
            return self._refuse("bad_payload", _error(408, "request body too slow", _CLOSE))
        try:
            webhook = verifier.verify(scope["headers"], body)
        except WebhookError as exc:
            return self._rejected(exc)
        try:
            verdict = await daemon.admit_webhook(webhook)
        except Exception:
            log.exception("webhook admission failed", event_id=webhook.event_id)
            return self._refuse("error", _error(500, "internal error"))
        if not verdict.accepted:
            if verdict.reason == "draining":
                return self._refuse("draining", _unavailable("draining", RETRY_AFTER_DRAINING_S))
            if verdict.reason == "duplicate":
                return self._refuse("replay", _error(409, "duplicate event"))
            return self._refuse(
                "saturated", _unavailable("max_sessions reached", RETRY_AFTER_SATURATED_S)
            )
        daemon.metrics.webhook("accepted")
        return _json_response(202, {"session": verdict.session, "room": webhook.room.name})

    def _refuse(self, outcome: str, response: _Response) -> _Response:
        self.daemon.metrics.webhook(outcome)
        if outcome in ("saturated", "draining"):
            self._log_refusal("webhook refused", outcome)
        return response

    def _log_refusal(self, event: str, outcome: str, **fields: object) -> None:
        """Log at most one line per outcome per :data:`REFUSAL_LOG_INTERVAL_S`;
        ``not_logged`` says how many of that outcome went unlogged since the last one."""
        now = trio.current_time()
        last, skipped = self._refusal_lines.get(outcome, (None, 0))
        if last is not None and now - last < REFUSAL_LOG_INTERVAL_S:
            self._refusal_lines[outcome] = (last, skipped + 1)
            return
        self._refusal_lines[outcome] = (now, 0)
        log.warning(event, outcome=outcome, not_logged=skipped, **fields)

    def _rejected(self, exc: WebhookError) -> _Response:
        # The reason goes to the log and the metrics, never to the sender.
        if isinstance(exc, WebhookTooLargeError):
            outcome, response = "too_large", _error(413, "payload too large")
        elif isinstance(exc, WebhookTimestampError):
            outcome, response = "stale", _error(401, "unauthorized")
        elif isinstance(exc, WebhookSignatureError):
            outcome, response = "unauthorized", _error(401, "unauthorized")
        elif isinstance(exc, WebhookReplayError):
            outcome, response = "replay", _error(409, "duplicate event")
        elif isinstance(exc, WebhookPayloadError):
            outcome, response = "bad_payload", _error(400, "invalid payload")
        else:
            outcome, response = "error", _error(500, "internal error")
        self._log_refusal("webhook rejected", outcome, reason=str(exc)[:200])
        self.daemon.metrics.webhook(outcome)
        return response


_OUTCOMES: Final = {
    404: "not_found",
    408: "bad_request",
    413: "too_large",
    422: "invalid",
    503: "draining",
    500: "error",
}
"""The outcome a control route's answer is counted under, by status (else ``accepted``)."""


def _answer(answer: Answer) -> _Response:
    """An API answer as a response (a request body left unread closes the connection)."""
    return _json_response(answer.status, answer.body, answer.headers)


def _unavailable(message: str, retry_after_s: int) -> _Response:
    return _error(503, message, {"retry-after": str(retry_after_s)})


def hypercorn_config(host: str, port: int, *, graceful_timeout_s: float) -> HypercornConfig:
    """hypercorn settings for the daemon: quiet (structlog logs), bounded, graceful."""
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = graceful_timeout_s
    config.keep_alive_timeout = 30  # Prometheus keeps its scrape connection open
    config.backlog = 1024  # bursts of inbound calls
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    return config


async def serve_http(
    app: HttpApp,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    graceful_timeout_s: float = 5.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then shut down gracefully.

    ``task_status.started`` receives the bound URLs (``["http://127.0.0.1:9464"]``).
    """
    config = hypercorn_config(host, port, graceful_timeout_s=graceful_timeout_s)
    try:
        await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=task_status)  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        # hypercorn binds inside its own nurseries: a bind failure (address in use, no
        # permission) arrives wrapped. Hand it on bare so the caller can report it.
        cause = cause_of(group)
        if isinstance(cause, OSError):
            raise cause from None
        raise


# --------------------------------------------------------------------------- webhook listener

_TRANSIENT_ACCEPT_ERRORS: Final = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
_RESOURCE_ACCEPT_ERRORS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)
WEBHOOK_CONNECTION_S: Final = BODY_TIMEOUT_S
"""How long a connection to the listener of ``http.webhooks`` may last (Sayna gives up
on a delivery after 5 s): until then it counts among the calls not yet decided."""

ACCEPT_RETRY_S: Final = 0.1
"""How long the webhook listener waits after running out of file descriptors or memory."""


class _Pending:
    """One accepted webhook connection whose request is not decided yet."""

    __slots__ = ("decided", "server")

    def __init__(self, server: WebhookServer) -> None:
        self.server = server
        self.decided = False

    def decide(self) -> None:
        if not self.decided:
            self.decided = True
            self.server._decided()


class _Deciding:
    """The webhook app for one connection: the request counts as decided (admitted or
    refused) when its answer starts; every answer closes the connection, so that each
    call arrives on a new connection, which the kernel hands to a shard with room."""

    __slots__ = ("app", "pending")

    def __init__(self, app: HttpApp, pending: _Pending) -> None:
        self.app = app
        self.pending = pending

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def deciding_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
                self.pending.decide()
            await send(message)

        await self.app(scope, receive, deciding_send)


class WebhookServer:
    """The SIP webhook on a listener of its own (``http.webhooks``).

    With ``has_room`` (``when_full: close``), the listener steps aside while the daemon
    cannot take a call: :meth:`changed` (called whenever admission may have changed)
    asks ``has_room(undecided)`` — room for the calls accepted and not yet decided plus
    one more — and closes the listener when not, opening it again when there is. A
    connection is counted from its accept to its answer, so the listener closes as soon
    as the connections it holds could fill the last free slots: no connection beyond
    them is accepted. The connections queued in the kernel when it closes are accepted
    and served (:meth:`ReusePortListener.close`). Without ``has_room``
    (``when_full: refuse``) the listener stays open and a full daemon answers 503.
    """

    def __init__(
        self,
        app: HttpApp,
        listener: ReusePortListener,
        *,
        has_room: Callable[[int], bool] | None,
        graceful_timeout_s: float = 5.0,
        on_listening: Callable[[bool], None] | None = None,
    ) -> None:
        self.app = app
        self.listener = listener
        self._has_room = has_room
        self._graceful_timeout_s = graceful_timeout_s
        self._on_listening = on_listening or (lambda listening: None)
        self._undecided = 0
        self._stopping = False
        self._nursery: trio.Nursery | None = None
        self._context = WorkerContext(None)
        self._config = hypercorn_config(
            listener.host, listener.port, graceful_timeout_s=graceful_timeout_s
        )

    @property
    def url(self) -> str:
        host, port = self.listener.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def undecided(self) -> int:
        """Connections accepted whose request has not been answered yet."""
        return self._undecided

    def changed(self) -> None:
        """Admission may have changed: step aside, or come back, as room says."""
        if self._nursery is None or (self._has_room is None and not self._stopping):
            return
        listener = self.listener
        room = not self._stopping and self._has_room is not None and self._has_room(self._undecided)
        if listener.is_open and not room:
            queued = listener.close()
            for conn in queued:
                self._serve(conn)
            self._on_listening(False)
            log.info(
                "webhook listener stepped aside",
                undecided=self._undecided,
                queued=len(queued),
                stopping=self._stopping,
            )
        elif room and not listener.is_open:
            try:
                listener.open()
            except OSError as exc:
                log.error("cannot listen for webhooks again", url=self.url, error=str(exc))
                return
            self._on_listening(True)
            log.info("webhook listener back", undecided=self._undecided)

    def _decided(self) -> None:
        self._undecided -= 1
        self.changed()

    def _serve(self, conn: socket.socket) -> None:
        assert self._nursery is not None
        self._undecided += 1
        self._nursery.start_soon(self._connection, conn, _Pending(self))

    async def _connection(self, conn: socket.socket, pending: _Pending) -> None:
        # One request per connection, within WEBHOOK_CONNECTION_S: a connection that
        # sends nothing holds a place among the undecided calls for that long at most.
        try:
            with trio.move_on_after(WEBHOOK_CONNECTION_S):
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                state = ConnectionState({})
                app = ASGIWrapper(_Deciding(self.app, pending))  # type: ignore[arg-type]
                await TCPServer(app, self._config, self._context, state, stream).run()  # type: ignore[arg-type]
        except OSError:
            pass  # the caller went away before its answer
        finally:
            conn.close()
            pending.decide()

    async def _accept(self) -> None:
        while True:
            try:
                conn = await self.listener.accept()
            except OSError as exc:
                if exc.errno in _TRANSIENT_ACCEPT_ERRORS:
                    continue
                if exc.errno not in _RESOURCE_ACCEPT_ERRORS:
                    raise
                log.error("webhook listener cannot accept", error=str(exc))
                await trio.sleep(ACCEPT_RETRY_S)
                continue
            self._serve(conn)
            self.changed()

    async def serve(
        self,
        *,
        shutdown_trigger: Callable[[], Awaitable[None]],
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen (OSError when the address cannot be had) until ``shutdown_trigger``
        returns; then stop listening (the queued connections are still answered) and
        give the requests in flight ``graceful_timeout_s``."""
        self.listener.open()
        try:
            async with trio.open_nursery() as connections:
                self._nursery = connections
                self._on_listening(True)
                self.changed()
                task_status.started(self.url)
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(self._accept)
                    await shutdown_trigger()
                    self._stopping = True
                    self.changed()
                    accepting.cancel_scope.cancel()
                connections.cancel_scope.deadline = trio.current_time() + self._graceful_timeout_s
        finally:
            self._nursery = None
            for conn in self.listener.close():
                conn.close()
            self._on_listening(False)

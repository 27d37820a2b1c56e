"""The one exception hierarchy of saynad.

Every error saynad raises on purpose derives from :class:`SaynadError`. Errors from
third-party libraries (httpx, trio-websocket, msgspec) are translated once, at the
boundary of the client layer, and chained with ``from`` so the original stays visible.

::

    SaynadError
    ├── UnreachableError            marker: the peer could not be reached, nothing was established
    ├── ConfigError                 the daemon's YAML file is invalid (all problems at once)
    ├── BehaviourOverloadError      a session behaviour fell too far behind its events
    ├── SessionBusyError            a live action found the session's action inbox full
    ├── ProtocolError               bytes from the peer do not form a valid Sayna frame
    │   └── FrameDecodeError        .kind: not_json|not_object|unknown_type|invalid|too_large
    ├── WebhookError                a SIP webhook was refused; .http_status says how to answer
    │   ├── WebhookSecretError      the verifier was built without a usable secret
    │   ├── WebhookSignatureError   missing/garbled headers or a signature that does not match (401)
    │   ├── WebhookTimestampError   timestamp unparsable or outside the window (401)
    │   ├── WebhookReplayError      event id already seen (409)
    │   ├── WebhookTooLargeError    body over the size limit (413)
    │   └── WebhookPayloadError     signed, but the JSON payload is not a SIP webhook (400)
    └── ClientError                 talking to a Sayna server failed
        ├── ValidationError         rejected client-side, before any byte was sent
        ├── TransportError          could not reach the server (refused, DNS, TLS, reset);
        │                           also an UnreachableError
        ├── RequestTimeoutError     a REST request exceeded its deadline
        ├── HTTPStatusError         the server answered a REST call with a status >= 400
        │   ├── BadRequestError     400, 405, 413, 415, 422
        │   ├── AuthenticationError 401
        │   ├── AccessDeniedError   403 (room owned by another tenant)
        │   ├── NotFoundError       404 (absent, or masked: not accessible to this tenant)
        │   ├── RateLimitedError    429
        │   └── ServerError         >= 500
        ├── ResponseDecodeError     a 2xx REST answer whose body does not match the schema
        └── SessionError            a WebSocket session failed
            ├── HandshakeRejectedError  the upgrade was answered with an HTTP status (e.g. 401)
            ├── SessionConfigError      the server sent a fatal ``error`` before ``ready``
            ├── ReadyTimeoutError       no ``ready`` within the deadline
            ├── ConnectionClosedError   the peer closed or the connection broke (.code, .reason)
            └── SessionClosedError      this side already closed the session
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "BadRequestError",
    "BehaviourOverloadError",
    "ClientError",
    "ConfigError",
    "ConnectionClosedError",
    "FrameDecodeError",
    "HTTPStatusError",
    "HandshakeRejectedError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitedError",
    "ReadyTimeoutError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "SaynadError",
    "ServerError",
    "SessionBusyError",
    "SessionClosedError",
    "SessionConfigError",
    "SessionError",
    "TransportError",
    "UnreachableError",
    "ValidationError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookReplayError",
    "WebhookSecretError",
    "WebhookSignatureError",
    "WebhookTimestampError",
    "WebhookTooLargeError",
]


class SaynadError(Exception):
    """Base of every error saynad raises on purpose."""


class UnreachableError(SaynadError):
    """Marker base: the peer could not be reached at all, so nothing was established.

    A connection refused or reset before the protocol handshake completed, a DNS or TLS
    failure, a connect timeout. It says nothing about the peer's answer (a rejected
    handshake is *not* one). The supervisor treats a run that ends with it before
    ``ready`` as an outage, not a crash: it backs off but does not count the attempt
    toward the restart intensity (see :mod:`saynad.actors.supervisor`).
    """


# --------------------------------------------------------------------------- config


class ConfigError(SaynadError):
    """The configuration file is invalid. ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class BehaviourOverloadError(SaynadError):
    """A session behaviour fell a whole channel of control events behind the reader.

    The session ends with this error (its restart policy decides what follows): the
    reader never blocks and control events are never dropped.
    """


class SessionBusyError(SaynadError):
    """A live action (speak, transfer, hangup) found the session's action inbox full;
    the API answers 503 and nothing waits."""


# --------------------------------------------------------------------------- protocol


class ProtocolError(SaynadError):
    """Bytes received from the peer do not form a valid Sayna frame."""


class FrameDecodeError(ProtocolError):
    """A text frame could not be decoded.

    ``kind`` is one of ``not_json``, ``not_object``, ``unknown_type``, ``invalid`` or
    ``too_large``; ``frame_type`` is the frame's ``type`` when it could be read.
    """

    def __init__(self, kind: str, detail: str, *, frame_type: str | None = None) -> None:
        self.kind = kind
        self.detail = detail
        self.frame_type = frame_type
        super().__init__(f"{kind}: {detail}")


# --------------------------------------------------------------------------- webhooks


class WebhookError(SaynadError):
    """A SIP webhook was refused. ``http_status`` is the status a receiver should answer."""

    http_status = 400


class WebhookSecretError(WebhookError):
    """The verifier has no usable secret (missing, or shorter than 16 characters)."""

    http_status = 500


class WebhookSignatureError(WebhookError):
    """A signature header is missing or malformed, or the signature does not match."""

    http_status = 401


class WebhookTimestampError(WebhookError):
    """The timestamp header is not Unix seconds, or lies outside the accepted window."""

    http_status = 401


class WebhookReplayError(WebhookError):
    """This event id was already accepted: the webhook is a replay or a re-delivery."""

    http_status = 409

    def __init__(self, message: str, *, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(message)


class WebhookTooLargeError(WebhookError):
    """The body is larger than the verifier's limit."""

    http_status = 413


class WebhookPayloadError(WebhookError):
    """The signature is good but the body is not a valid SIP webhook payload."""

    http_status = 400


# --------------------------------------------------------------------------- client


class ClientError(SaynadError):
    """Talking to a Sayna server failed."""


class ValidationError(ClientError):
    """A call was rejected client-side, before anything was sent."""


class TransportError(ClientError, UnreachableError):
    """The server could not be reached: connection refused, DNS, TLS or reset.

    Raised only before a WebSocket session is established (connect and handshake) or
    for a REST request that got no answer; a connection that breaks later is a
    :class:`ConnectionClosedError`.
    """


class RequestTimeoutError(ClientError):
    """A REST request did not complete within its deadline."""


class HTTPStatusError(ClientError):
    """The server answered a REST request with a status of 400 or more.

    ``error`` is the body's ``error`` field (for authentication failures that is the
    code, e.g. ``missing_auth_header``), ``code`` its optional ``code`` field and
    ``detail`` its optional ``message`` field; ``body`` is the raw body text (framework
    rejections such as 415/422 answer in plain text, not JSON).
    """

    def __init__(
        self,
        status_code: int,
        *,
        method: str,
        endpoint: str,
        error: str | None = None,
        code: str | None = None,
        detail: str | None = None,
        body: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.endpoint = endpoint
        self.error = error
        self.code = code
        self.detail = detail
        self.body = body
        self.retry_after_s = retry_after_s
        reason = error or (body.strip()[:200] if body.strip() else f"HTTP {status_code}")
        super().__init__(f"{method} {endpoint} -> {status_code}: {reason}")


class BadRequestError(HTTPStatusError):
    """400, 405, 413, 415 or 422: the server refused the request as malformed."""


class AuthenticationError(HTTPStatusError):
    """401: missing or invalid API key."""


class AccessDeniedError(HTTPStatusError):
    """403: the room belongs to a different tenant. Never retry with another room name."""


class NotFoundError(HTTPStatusError):
    """404: the resource is absent, or hidden because it belongs to another tenant."""


class RateLimitedError(HTTPStatusError):
    """429: too many requests; ``retry_after_s`` holds the server's hint, if any."""


class ServerError(HTTPStatusError):
    """A status of 500 or more."""


class ResponseDecodeError(ClientError):
    """A successful REST answer whose body does not match the documented schema.

    ``body`` holds the start of the raw body (at most 500 characters) and ``detail``
    the decoder's explanation, including the JSON path of the offending field.
    """

    def __init__(
        self, status_code: int, *, method: str, endpoint: str, detail: str, body: str = ""
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.endpoint = endpoint
        self.detail = detail
        self.body = body
        super().__init__(f"{method} {endpoint} -> {status_code}: undecodable body: {detail}")


def http_status_error_class(status_code: int) -> type[HTTPStatusError]:
    """Return the :class:`HTTPStatusError` subclass for ``status_code``."""
    if status_code >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status_code, BadRequestError)


_STATUS_CLASSES: dict[int, type[HTTPStatusError]] = {
    401: AuthenticationError,
    403: AccessDeniedError,
    404: NotFoundError,
    429: RateLimitedError,
}


class SessionError(ClientError):
    """A WebSocket session failed."""


class HandshakeRejectedError(SessionError):
    """The WebSocket upgrade was answered with an HTTP status instead of ``101``."""

    def __init__(self, status_code: int, body: str, *, error: str | None = None) -> None:
        self.status_code = status_code
        self.body = body
        self.error = error
        super().__init__(f"WebSocket handshake rejected with HTTP {status_code}: {error or body}")


class SessionConfigError(SessionError):
    """The server answered ``config`` with a fatal ``error`` frame; no ``ready`` will follow."""

    def __init__(self, message: str) -> None:
        self.server_message = message
        super().__init__(message)


class ReadyTimeoutError(SessionError):
    """No ``ready`` frame arrived within the deadline."""


class ConnectionClosedError(SessionError):
    """The peer closed the session or the connection broke.

    ``code`` is the WebSocket close code (1005 when the peer sent none, 1006 when the
    connection broke without a close frame) and ``reason`` the close reason.
    """

    def __init__(self, code: int | None, reason: str | None) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed (code={code}, reason={reason!r})")


class SessionClosedError(SessionError):
    """This side has already closed the session."""

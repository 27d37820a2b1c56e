"""The daemon's HTTP API (``/v1``), described once: its bodies and its OpenAPI document.

Every request body is a frozen msgspec Struct that rejects unknown fields and carries
its bounds (lengths, counts, patterns) in its types; the server decodes with them
(:data:`DECODERS`), the command line encodes with them, and :func:`openapi_document`
builds the OpenAPI 3.1 document the daemon serves at ``/v1/openapi.json`` from them and
from :data:`ROUTES`. ``docs/openapi.json`` is a copy of that document (a test keeps
them equal: regenerate it with ``saynad openapi > docs/openapi.json``).

Routes and the scope each needs (tokens come from ``http.tokens``)::

    GET    /v1/openapi.json               -          this document
    GET    /v1/sessions                   read       every session
    GET    /v1/sessions/{name}            read       one session (ended ones for a while)
    POST   /v1/calls                      calls      dial a number with an outbound template
    POST   /v1/sessions                   calls      start a session (+ a visitor's token)
    POST   /v1/sessions/{name}/speak      control    say something now
    POST   /v1/sessions/{name}/transfer   control    transfer the SIP caller
    POST   /v1/sessions/{name}/hangup     control    goodbye line, then end
    DELETE /v1/sessions/{name}            control    end at once
    POST   /v1/sessions/{name}/restart    control    restart
    POST   /v1/reload                     control    reload the configuration

This module is pure (msgspec and the protocol's phone rule): the HTTP server, admission
and the command line all stand on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from saynad.protocol.phone import phone_number_problem

__all__ = [
    "API_VERSION",
    "DECODERS",
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_BODY_BYTES",
    "MAX_VARIABLES",
    "ROUTES",
    "ActionAccepted",
    "CallAccepted",
    "CallRequest",
    "ErrorBody",
    "HangupRequest",
    "LiveKitAccess",
    "Route",
    "Scope",
    "SessionAccepted",
    "SessionRequest",
    "SpeakRequest",
    "TransferRequest",
    "Visitor",
    "openapi_document",
    "phone_problem",
]

Scope = Literal["read", "calls", "control"]

API_VERSION: Final = "1.0.0"
"""The version of the ``/v1`` API the document describes (not saynad's own version:
the document stays the same from one saynad release to the next unless the API
changes)."""

MAX_BODY_BYTES: Final = 64 * 1024
"""A request body over this is refused (413) before it is read."""

MAX_VARIABLES: Final = 32
MAX_VARIABLE_CHARS: Final = 1000
MAX_TEXT_CHARS: Final = 4000
IDEMPOTENCY_KEY_PATTERN: Final = r"^[\x21-\x7e]{1,255}$"
"""An ``Idempotency-Key`` header: 1 to 255 printable ASCII characters, no spaces."""

TemplateName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=128,
        description="a template of the configuration",
    ),
]
PhoneNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description="digits with an optional leading '+', as Sayna accepts them",
        examples=["+15551234567"],
    ),
]
RoomName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[^\x00-\x1f\x7f]+$",
        max_length=256,
        description="a LiveKit room, used exactly as given",
    ),
]
VariableName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Variables = Annotated[
    dict[VariableName, Annotated[str, msgspec.Meta(max_length=MAX_VARIABLE_CHARS)]],
    msgspec.Meta(
        max_length=MAX_VARIABLES,
        description="values for the template's {name} placeholders (greeting, goodbye) "
        "and for its agent",
    ),
]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]
Identity = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]+$", max_length=128)]


class _Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of the request bodies: frozen, unknown fields rejected."""


class CallRequest(_Body, frozen=True, kw_only=True):
    """``POST /v1/calls``: dial ``to_phone_number`` with ``template`` (one marked
    ``outbound: true``). ``from_phone_number`` defaults to ``outbound.from_phone_number``;
    ``room`` to the session's name."""

    template: TemplateName
    to_phone_number: PhoneNumber
    from_phone_number: PhoneNumber | None = None
    room: RoomName | None = None
    variables: Variables = msgspec.field(default_factory=dict)


class Visitor(_Body, frozen=True, kw_only=True):
    """Who will join the session's room: a LiveKit token is minted for them."""

    identity: Identity
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] = "Visitor"


class SessionRequest(_Body, frozen=True, kw_only=True):
    """``POST /v1/sessions``: start a session of ``template`` (in ``room``, default: the
    session's name); with ``visitor``, the answer carries a LiveKit token for them."""

    template: TemplateName
    room: RoomName | None = None
    variables: Variables = msgspec.field(default_factory=dict)
    visitor: Visitor | None = None


class SpeakRequest(_Body, frozen=True, kw_only=True):
    """``POST /v1/sessions/{name}/speak``: say ``text``; ``interrupt`` first clears what
    the session is saying or has queued."""

    text: Text
    interrupt: bool = False


class TransferRequest(_Body, frozen=True, kw_only=True):
    """``POST /v1/sessions/{name}/transfer``: transfer the room's SIP caller to ``to``."""

    to: PhoneNumber


class HangupRequest(_Body, frozen=True, kw_only=True):
    """``POST /v1/sessions/{name}/hangup`` (the body is optional): ``text`` replaces the
    goodbye line (the template's ``behaviours.end.goodbye_text``, else "Goodbye.");
    ``""`` ends without one."""

    text: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)] | None = None


class LiveKitAccess(msgspec.Struct, frozen=True, kw_only=True):
    """What a visitor needs to join the session's room."""

    token: str
    url: str
    room: str
    identity: str


class CallAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """``202`` to ``POST /v1/calls``: the call's session (follow it at
    ``/v1/sessions/{session}``). ``replayed``: an earlier request with the same
    ``Idempotency-Key`` placed it."""

    session: str
    room: str
    replayed: bool = False


class SessionAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """``202`` to ``POST /v1/sessions``."""

    session: str
    room: str | None
    livekit: LiveKitAccess | None = None
    replayed: bool = False


class ActionAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """``202`` to a live action: the session took it (it acts on it at once)."""

    session: str
    action: Literal["speak", "transfer", "hangup", "delete", "restart"]


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every refusal: ``error`` says what kind, ``detail`` (when present) what exactly."""

    error: str
    detail: str | None = None


DECODERS: Final[Mapping[type[_Body], msgspec.json.Decoder[Any]]] = {
    tp: msgspec.json.Decoder(tp)
    for tp in (
        CallRequest,
        SessionRequest,
        SpeakRequest,
        TransferRequest,
        HangupRequest,
    )
}
"""One decoder per request body, built once."""


def phone_problem(field: str, value: str) -> str | None:
    """``Invalid {field}: {the server's detail}``, or None: the rule Sayna applies."""
    problem = phone_number_problem(value)
    return None if problem is None else f"Invalid {field}: {problem}"


# --------------------------------------------------------------------------- routes


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """One route of the API, for the OpenAPI document."""

    method: Literal["get", "post", "delete"]
    path: str
    scope: Scope | None
    summary: str
    body: type[msgspec.Struct] | None = None
    body_required: bool = True
    answer: type[msgspec.Struct] | None = None
    status: int = 202
    idempotent: bool = False
    refusals: tuple[int, ...] = ()


_SESSION_ROW: Final = "SessionRow"
ROUTES: Final = (
    Route(
        method="get",
        path="/v1/sessions",
        scope="read",
        summary="Every supervised session",
        status=200,
    ),
    Route(
        method="get",
        path="/v1/sessions/{name}",
        scope="read",
        summary="One session: a running one, or an admitted one that ended recently "
        "(state stopped, with its call's outcome)",
        status=200,
        refusals=(404,),
    ),
    Route(
        method="post",
        path="/v1/calls",
        scope="calls",
        summary="Place an outbound call: a temporary session joins a LiveKit room, then "
        "Sayna dials the number into it",
        body=CallRequest,
        answer=CallAccepted,
        idempotent=True,
        refusals=(400, 409, 413, 415, 422, 503),
    ),
    Route(
        method="post",
        path="/v1/sessions",
        scope="calls",
        summary="Start a temporary session (and, with a visitor, mint their LiveKit token)",
        body=SessionRequest,
        answer=SessionAccepted,
        idempotent=True,
        refusals=(400, 409, 413, 415, 422, 502, 503),
    ),
    Route(
        method="post",
        path="/v1/sessions/{name}/speak",
        scope="control",
        summary="Say something in a ready session",
        body=SpeakRequest,
        answer=ActionAccepted,
        refusals=(400, 404, 409, 413, 415, 503),
    ),
    Route(
        method="post",
        path="/v1/sessions/{name}/transfer",
        scope="control",
        summary="Transfer the SIP participant of a ready session's room",
        body=TransferRequest,
        answer=ActionAccepted,
        refusals=(400, 404, 409, 413, 415, 422, 503),
    ),
    Route(
        method="post",
        path="/v1/sessions/{name}/hangup",
        scope="control",
        summary="End a session gracefully: its goodbye line, then the end",
        body=HangupRequest,
        body_required=False,
        answer=ActionAccepted,
        refusals=(400, 404, 409, 413, 415),
    ),
    Route(
        method="delete",
        path="/v1/sessions/{name}",
        scope="control",
        summary="End a session started from outside at once (no goodbye)",
        answer=ActionAccepted,
        refusals=(404, 409),
    ),
    Route(
        method="post",
        path="/v1/sessions/{name}/restart",
        scope="control",
        summary="Restart a session",
        answer=ActionAccepted,
        refusals=(404, 503),
    ),
    Route(
        method="post",
        path="/v1/reload",
        scope="control",
        summary="Reload the configuration file",
        status=200,
        refusals=(422, 503),
    ),
)
"""The API's routes, as the OpenAPI document describes them."""

_STATUS_TEXT: Final = {
    200: "OK",
    202: "Accepted",
    400: "The body is not JSON, or does not match the schema (unknown fields included)",
    401: "No token, or an unknown one",
    403: "The token lacks the scope this route needs",
    404: "No such session (or the route is not enabled: no token has its scope)",
    409: "The session cannot take it now (not ready, ended, no room), or the "
    "Idempotency-Key was used for a different request, or the room is in use",
    413: "The body is larger than 64 KiB",
    415: "The body is not application/json",
    422: "Well-formed but not acceptable: an unknown template, a template that cannot "
    "place calls, a phone number Sayna would refuse",
    502: "Sayna refused or did not answer the request saynad made for this one",
    503: "At capacity (max_sessions) or draining; Retry-After says when to come back",
}


def _session_row_schema() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    call = {
        "type": ["object", "null"],
        "description": "an outbound call's progress (null for other sessions)",
        "properties": {
            "to": {"type": "string"},
            "from": {"type": "string"},
            "state": {"enum": ["dialing", "ringing", "answered", "failed", "ended"]},
            "reason": {
                "type": ["string", "null"],
                "description": "why it failed: dial_failed, no_answer, cancelled, session_failed",
            },
            "sip_call_id": nullable_str,
            "dialed_at": {"type": ["number", "null"]},
            "answered_at": {"type": ["number", "null"]},
            "ended_at": {"type": ["number", "null"]},
        },
        "required": ["to", "from", "state"],
    }
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "origin": {"enum": ["config", "inbound", "outbound", "on_demand"]},
            "template": {"type": "string"},
            "state": {
                "enum": [
                    "starting",
                    "connecting",
                    "ready",
                    "backoff",
                    "draining",
                    "stopped",
                    "failed",
                ]
            },
            "since": {"type": "number"},
            "restarts": {"type": "integer"},
            "last_error": nullable_str,
            "room": nullable_str,
            "stream_id": nullable_str,
            "call": call,
        },
        "required": ["name", "origin", "template", "state", "since"],
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (what ``/v1/openapi.json`` serves)."""
    bodies: list[type[msgspec.Struct]] = [ErrorBody]
    for route in ROUTES:
        for tp in (route.body, route.answer):
            if tp is not None and tp not in bodies:
                bodies.append(tp)
    _, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    components[_SESSION_ROW] = _session_row_schema()

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_content(schema: dict[str, Any]) -> dict[str, Any]:
        return {"application/json": {"schema": schema}}

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.method
            + route.path.replace("/", "_").replace("{", "").replace("}", ""),
        }
        params: list[dict[str, Any]] = []
        if "{name}" in route.path:
            params.append(
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            )
        if route.idempotent:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Retries with the same key (and the same body) get the "
                    "same session: the call is placed once. Remembered for "
                    "admission.idempotency_ttl_s.",
                    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                }
            )
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {
                "required": route.body_required,
                "content": json_content(ref(route.body.__name__)),
            }
        if route.answer is not None:
            ok = json_content(ref(route.answer.__name__))
        elif route.path == "/v1/sessions":
            ok = json_content(
                {
                    "type": "object",
                    "properties": {
                        "shard": {
                            "type": "object",
                            "description": "the shard that answered (index 0 of count 1: "
                            "not sharded); it lists only its own sessions",
                            "properties": {
                                "index": {"type": "integer", "minimum": 0},
                                "count": {"type": "integer", "minimum": 1},
                            },
                            "required": ["index", "count"],
                        },
                        "sessions": {"type": "array", "items": ref(_SESSION_ROW)},
                    },
                    "required": ["shard", "sessions"],
                }
            )
        elif route.path.startswith("/v1/sessions/"):
            ok = json_content(ref(_SESSION_ROW))
        else:
            ok = json_content({"type": "object"})
        responses: dict[str, Any] = {
            str(route.status): {"description": _STATUS_TEXT[route.status], "content": ok}
        }
        refusals = (*(() if route.scope is None else (401, 403)), *route.refusals)
        for status in sorted(set(refusals)):
            answer: dict[str, Any] = {
                "description": _STATUS_TEXT[status],
                "content": json_content(ref("ErrorBody")),
            }
            if status == 503:
                answer["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}
                }
            responses[str(status)] = answer
        op["responses"] = responses
        if route.scope is not None:
            op["security"] = [{"bearer": []}]
            op["x-saynad-scope"] = route.scope
        paths.setdefault(route.path, {})[route.method] = op
    paths["/v1/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_v1_openapi.json",
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": json_content({"type": "object"})}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "saynad call control API",
            "version": API_VERSION,
            "description": "Outbound calls, sessions on demand and live actions on the "
            "sessions a saynad daemon supervises. Every route but this document needs "
            "Authorization: Bearer <token>, a token of http.tokens holding the scope "
            "named by x-saynad-scope.",
        },
        "servers": [{"url": "http://127.0.0.1:9464"}],
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
    }

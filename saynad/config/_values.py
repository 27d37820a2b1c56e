"""The value types of the configuration and the checks of a single value.

:class:`Secret` (a resolved secret that never prints), :class:`FrozenMap` (a hashable
mapping, so specs can be compared and hashed), and the annotated scalar types the
schema's fields use (``Seconds``, ``Name``, ``ListenAddress``, ``TranscriptPath``…).
A type may carry a :class:`Check`: a function of the decoded value that returns what
is wrong with it, or None. Checks of one value live here, on its type, so they run even
when a sibling field is broken; checks between fields sit on the Structs
(:mod:`saynad.config._schema`), checks across a resolved session in
:mod:`saynad.config._checks`.
"""

from __future__ import annotations

import hmac
import importlib
import inspect
import ipaddress
import re
import string
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Final, Literal, TypeVar, final
from urllib.parse import urlsplit

import msgspec

from saynad.errors import ValidationError
from saynad.paths import fixed_prefix
from saynad.protocol.messages import UNSET
from saynad.protocol.phone import phone_number_problem
from saynad.protocol.urls import rest_base_url

__all__ = [
    "API_TOKEN_MIN_CHARS",
    "AUDIO_SINK_PLACEHOLDERS",
    "NAME_PATTERN",
    "ROOM_NAME_PLACEHOLDERS",
    "STREAM_ID_PLACEHOLDERS",
    "TRANSCRIPT_PATH_PLACEHOLDERS",
    "ApiToken",
    "AsyncFunction",
    "AudioSinkDir",
    "Check",
    "FrozenMap",
    "HeaderValue",
    "HttpUrl",
    "ListenAddress",
    "LiteralAllowed",
    "Name",
    "NonNegativeInt",
    "PhoneNumber",
    "PositiveInt",
    "RestartPolicy",
    "RoomName",
    "SaynaUrl",
    "Seconds",
    "Secret",
    "StreamId",
    "Text",
    "TranscriptPath",
    "WebhookPath",
    "WebhookSecret",
    "parse_listen",
    "render_placeholders",
    "unset",
]

NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"
"""Session and template names: they appear in logs, metrics and file names."""

# Placeholders each templated string may use. Everything else is a load-time error, so a
# typo such as ``{sesion}`` is caught before the daemon starts.
STREAM_ID_PLACEHOLDERS: Final = frozenset({"session"})
ROOM_NAME_PLACEHOLDERS: Final = frozenset({"session"})
TRANSCRIPT_PATH_PLACEHOLDERS: Final = frozenset({"session", "date", "stream_id"})
AUDIO_SINK_PLACEHOLDERS: Final = frozenset({"session", "date", "stream_id"})

# The HTTP routes the daemon serves itself; the SIP webhook must not shadow them.
_RESERVED_HTTP_PATHS: Final = ("/metrics", "/healthz", "/readyz", "/sessions", "/reload", "/v1")

API_TOKEN_MIN_CHARS: Final = 16
"""The shortest bearer token ``http.tokens`` accepts (after trimming)."""

_V = TypeVar("_V")


@final
class Secret:
    """A secret string resolved from ``${env:…}``, ``${file:…}`` or ``${credential:…}``.

    ``repr`` and ``str`` print ``***`` so a secret never lands in a log line, a traceback
    or ``saynad check`` output by accident; :meth:`reveal` returns the value for the one
    place that must send it. Secrets compare by value (in constant time), so a rotated
    key makes a session's spec differ and a reload restarts it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Call it only where the value leaves the process."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


class FrozenMap(Mapping[str, _V]):
    """An immutable, hashable ``str``-keyed mapping (for HTTP headers).

    A ``dict`` inside a frozen Struct could still be mutated and would make the Struct
    unhashable; the supervisor keys children by their (hashable) spec.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, _V] | None = None) -> None:
        self._data: dict[str, _V] = dict(data or {})

    def __getitem__(self, key: str) -> _V:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


class LiteralAllowed:
    """Marker in ``Annotated[Secret, …]``: the field also accepts a literal string."""


class Check:
    """Marker in ``Annotated[T, …]``: a check of the decoded value (message or None).

    Single-value checks live on the type rather than in ``_problems`` so they run even
    when a sibling field is broken (``_problems`` needs the whole struct).
    """

    __slots__ = ("check",)

    def __init__(self, check: Callable[[Any], str | None]) -> None:
        self.check = check


Seconds = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Text = Annotated[str, msgspec.Meta(min_length=1)]
Name = Annotated[
    str,
    msgspec.Meta(
        pattern=NAME_PATTERN,
        max_length=128,
        description="a name made of letters, digits, '_', '.' and '-'",
    ),
]
HeaderValue = Annotated[Secret, LiteralAllowed()]
"""A header value: literal (``application/json``) or a reference (``${env:TOKEN}``).
Every header value is redacted in ``repr`` because headers usually carry tokens."""


def _placeholders(allowed: frozenset[str]) -> Check:
    return Check(lambda value: _placeholder_problem(value, allowed))


def _webhook_secret_problem(secret: Secret) -> str | None:
    length = len(secret.reveal().strip())
    if length < 16:
        return (
            f"a webhook secret needs at least 16 characters after trimming; this one has {length}"
        )
    return None


def _api_token_problem(secret: Secret) -> str | None:
    value = secret.reveal()
    if value != value.strip() or any(not 0x21 <= ord(c) <= 0x7E for c in value):
        return "a token is printable ASCII without spaces (it travels in an HTTP header)"
    if len(value) < API_TOKEN_MIN_CHARS:
        return f"a token needs at least {API_TOKEN_MIN_CHARS} characters; this one has {len(value)}"
    return None


def _phone_problem(value: str) -> str | None:
    problem = phone_number_problem(value)
    return None if problem is None else f"not a phone number Sayna accepts: {problem}"


def _webhook_path_problem(path: str) -> str | None:
    if not path.startswith("/"):
        return f"expected a path starting with '/', got {path!r}"
    for reserved in _RESERVED_HTTP_PATHS:
        if path == reserved or path.startswith(reserved + "/"):
            return f"{path!r} is served by the daemon itself ({reserved})"
    return None


def _listen_problem(value: str) -> str | None:
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


# The lambdas defer the lookup: those validators are defined with the other helpers below.
SaynaUrl = Annotated[str, Check(lambda url: _sayna_url_problem(url))]
HttpUrl = Annotated[str, Check(lambda url: _http_url_problem(url))]
ListenAddress = Annotated[
    str,
    msgspec.Meta(description='a "host:port" string, e.g. "127.0.0.1:9464"'),
    Check(_listen_problem),
]
StreamId = Annotated[
    str, msgspec.Meta(min_length=1), Check(lambda value: _stream_id_problem(value))
]
RoomName = Annotated[str, msgspec.Meta(min_length=1), _placeholders(ROOM_NAME_PLACEHOLDERS)]
TranscriptPath = Annotated[
    str,
    msgspec.Meta(min_length=1),
    Check(lambda value: _path_template_problem(value, TRANSCRIPT_PATH_PLACEHOLDERS)),
]
AudioSinkDir = Annotated[
    str,
    msgspec.Meta(min_length=1),
    Check(lambda value: _path_template_problem(value, AUDIO_SINK_PLACEHOLDERS)),
]
AsyncFunction = Annotated[str, Check(lambda value: _async_function_problem(value))]
WebhookSecret = Annotated[Secret, Check(_webhook_secret_problem)]
ApiToken = Annotated[Secret, Check(_api_token_problem)]
PhoneNumber = Annotated[str, Check(_phone_problem)]
WebhookPath = Annotated[str, Check(_webhook_path_problem)]

RestartPolicy = Literal["permanent", "transient", "temporary"]

# --------------------------------------------------------------------------- the checks


def render_placeholders(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{name}`` placeholders (``{{``/``}}`` are literal braces).

    Templates are checked at load, so only known names reach this function.
    """
    out: list[str] = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(values[field])
    return "".join(out)


def _stream_id_problem(stream_id: str) -> str | None:
    problem = _placeholder_problem(stream_id, STREAM_ID_PLACEHOLDERS)
    if problem is None and ("/" in stream_id or ".." in stream_id):
        # The server accepts it, but the recording then cannot be downloaded over REST.
        problem = "must not contain '/' or '..' (it is the recording's storage key)"
    return problem


def unset(value: Any) -> Any:
    return UNSET if value is None else value


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError says what is wrong.

    Port 0 asks the system for a free port when the daemon binds (tests, several
    daemons on one host); the address actually bound is logged (``http server
    listening``) and kept in ``Daemon.http_urls``."""
    example = "expected host:port, e.g. 127.0.0.1:9464 or [::1]:9464"
    if value.startswith("["):
        match = re.fullmatch(r"\[([^\]]*)\]:([^:]*)", value)
        if match is None:
            raise ValueError(f"{example}, got {value!r}")
        host, port_text = match.group(1), match.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{example}, got {value!r}")
        if ":" in host:
            raise ValueError(f"write IPv6 addresses in brackets, e.g. [::1]:9464, got {value!r}")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
            raise ValueError(f"{host!r} is not a host name or IPv4 address")
        if re.fullmatch(r"[0-9.]+", host):
            # All digits and dots: an IPv4 address, never a host name (999.1.1.1 would
            # pass `saynad check` and fail only when `saynad run` binds).
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif len(host) > 253 or any(not 1 <= len(label) <= 63 for label in host.split(".")):
            raise ValueError(f"{host!r} is not a host name (labels of 1 to 63 characters)")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(
            f"the port must be a number from 0 to 65535 (0: any free port), got {port_text!r}"
        )
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"the port must be from 0 to 65535 (0: any free port), got {port}")
    return host, port


# RFC 3986 has no unencoded whitespace or control characters; urlsplit keeps them in the
# host, so "https://sayna example.com" would otherwise load and fail only at connect time.
_URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f]")


def _sayna_url_problem(url: str) -> str | None:
    if _URL_FORBIDDEN.search(url.strip()):
        return f"not a valid URL (whitespace or a control character inside it): {url!r}"
    try:
        rest_base_url(url)
        port = urlsplit(url.strip()).port
    except ValidationError:
        return f"expected an http://, https://, ws:// or wss:// URL with a host, got {url!r}"
    except ValueError as exc:
        return f"not a valid URL ({exc}): {url!r}"
    if port == 0:
        return f"the port must be from 1 to 65535: {url!r}"
    return None


def _http_url_problem(url: str) -> str | None:
    if _URL_FORBIDDEN.search(url.strip()):
        return f"not a valid URL (whitespace or a control character inside it): {url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc}): {url!r}"
    if parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        return f"expected an http:// or https:// URL with a host, got {url!r}"
    return None


def _placeholder_problem(template: str, allowed: frozenset[str]) -> str | None:
    known = ", ".join("{" + name + "}" for name in sorted(allowed))
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"malformed placeholder in {template!r} ({exc}); write literal braces as {{{{ }}}}"
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in allowed or spec or conversion:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            return f"unknown placeholder {shown} (known: {known})"
    return None


def _path_template_problem(template: str, allowed: frozenset[str]) -> str | None:
    """Placeholders as for any template, and no ``..`` after the first one: an expanded
    path stays under the template's fixed directory (see :mod:`saynad.paths`)."""
    problem = _placeholder_problem(template, allowed)
    if problem is not None:
        return problem
    prefix = fixed_prefix(template)
    if ".." in template[len(prefix) :].split("/"):
        return (
            f"'..' after a placeholder in {template!r} could leave the directory "
            f"{prefix or './'!r}; write the directory before the placeholders"
        )
    return None


def _async_function_problem(reference: str) -> str | None:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        return f"expected 'module:function', got {reference!r}"
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing user code is a config problem
        return f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            return f"module {module_name!r} has no attribute {attribute!r}"
    if not inspect.iscoroutinefunction(target):
        return f"{reference!r} is not an async function (define it with 'async def')"
    return None

"""structlog, configured once: JSON lines off a TTY (journald), console on a TTY.

Every record passes through :func:`redact`: values under secret-looking keys are
replaced by ``"***"``, and so is any occurrence of a registered secret value (the
resolved ``${…}`` secrets of the configuration) inside any string field.

Then through :func:`cap`: values can come from the network (SIP headers, room names,
caller numbers, server errors), so no field may make a line unbounded. A string field
keeps at most :data:`MAX_FIELD_CHARS` characters, a string inside a mapping or a list
:data:`MAX_NESTED_CHARS`, a mapping or list at most :data:`MAX_ITEMS` items (nested two
levels deep at most); what is cut is said (``…[+N chars]``, ``"…": "+N more"``). A
traceback keeps :data:`MAX_EXCEPTION_CHARS`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Final, TextIO

import structlog

__all__ = [
    "MAX_EXCEPTION_CHARS",
    "MAX_FIELD_CHARS",
    "MAX_ITEMS",
    "MAX_NESTED_CHARS",
    "cap",
    "configure_logging",
    "redact",
    "register_secrets",
]

MAX_FIELD_CHARS: Final = 2048
MAX_NESTED_CHARS: Final = 256
MAX_ITEMS: Final = 32
MAX_EXCEPTION_CHARS: Final = 16384
_MAX_DEPTH: Final = 2

_SECRET_KEYS = frozenset(
    {"api_key", "secret", "secrets", "token", "control_token", "authorization", "password"}
)
_secret_values: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Never log these values (secrets resolved from the configuration)."""
    _secret_values.update(v for v in values if len(v) >= 4)


def _scrub(value: Any) -> Any:
    if isinstance(value, str) and _secret_values:
        for secret in _secret_values:
            if secret in value:
                value = value.replace(secret, "***")
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hide secrets by key and by value."""
    for key, value in event_dict.items():
        if key.lower() in _SECRET_KEYS and value is not None:
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _cap_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


def _cap_value(value: Any, limit: int, depth: int) -> Any:
    if isinstance(value, str):
        return _cap_text(value, limit)
    if isinstance(value, bytes | bytearray):
        return _cap_text(repr(bytes(value[: limit + 1])), limit)
    if isinstance(value, dict | MutableMapping):
        if depth >= _MAX_DEPTH:
            return _cap_text(repr(value), MAX_NESTED_CHARS)
        out: dict[Any, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index == MAX_ITEMS:
                out["…"] = f"+{len(value) - MAX_ITEMS} more"
                break
            out[_cap_value(key, MAX_NESTED_CHARS, depth + 1)] = _cap_value(
                item, MAX_NESTED_CHARS, depth + 1
            )
        return out
    if isinstance(value, list | tuple | set | frozenset):
        if depth >= _MAX_DEPTH:
            return _cap_text(repr(value), MAX_NESTED_CHARS)
        items = [_cap_value(item, MAX_NESTED_CHARS, depth + 1) for item in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"…+{len(value) - MAX_ITEMS} more")
        return items
    return value


def cap(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: bound every field (see the module docstring)."""
    for key, value in event_dict.items():
        if key == "exception" and isinstance(value, str):
            event_dict[key] = _cap_text(value, MAX_EXCEPTION_CHARS)
        elif not isinstance(value, int | float | bool | None):
            event_dict[key] = _cap_value(value, MAX_FIELD_CHARS, 0)
    return event_dict


class _Printer(structlog.PrintLogger):
    """A PrintLogger that survives its stream going away.

    Under systemd, stdout is a pipe to journald; ``saynad run | head`` closes it early.
    A log line that cannot be written is lost, but the daemon and its sessions carry on
    (a dead log pipe must never take the fleet down with it).
    """

    def msg(self, message: str) -> None:
        # OSError covers BrokenPipeError; ValueError is a write to a closed file.
        with contextlib.suppress(OSError, ValueError):
            super().msg(message)

    log = debug = info = warn = warning = err = error = critical = exception = msg
    fatal = failure = msg


def configure_logging(
    level: str = "info", fmt: str = "auto", *, stream: TextIO | None = None
) -> None:
    """Configure structlog for the whole process. ``fmt``: auto | json | console."""
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            cap,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *args: _Printer(out),
        cache_logger_on_first_use=True,
    )

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

When the output stream is journald's (systemd sets ``$JOURNAL_STREAM`` to the device
and inode of the stream it connected; :func:`journal_stream` compares them with the
stream's own), each line starts with its syslog priority, ``<3>`` for errors to ``<7>``
for debug (sd-daemon(3)): journald strips the prefix and files the line at that
priority, so ``journalctl -p err`` finds saynad's errors.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final, TextIO, cast

import structlog

__all__ = [
    "MAX_EXCEPTION_CHARS",
    "MAX_FIELD_CHARS",
    "MAX_ITEMS",
    "MAX_NESTED_CHARS",
    "SYSLOG_PRIORITIES",
    "PriorityLines",
    "cap",
    "configure_logging",
    "errors_to_journal",
    "journal_stream",
    "redact",
    "register_secrets",
]

SYSLOG_PRIORITIES: Final = {
    "critical": 2,
    "error": 3,
    "exception": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
}
"""structlog level → syslog priority (the ``<N>`` prefix journald understands)."""

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


def journal_stream(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is connected to journald: ``$JOURNAL_STREAM`` (``DEV:INODE``)
    names this very stream (not one a parent process had)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor (a StringIO), or closed
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


class _SyslogPrefixed:
    """A renderer wrapper: ``<N>`` + the rendered line, N the record's syslog priority."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        priority = SYSLOG_PRIORITIES.get(str(event_dict.get("level", method)), 6)
        return f"<{priority}>{self._renderer(logger, method, event_dict)}"


class PriorityLines(io.TextIOBase):
    """A text stream that starts every line written to ``stream`` with ``<priority>``.

    For what bypasses structlog under journald (the configuration's problems before
    exit 78, a traceback, a warning on stderr): ``errors_to_journal`` wraps stderr in
    one, so ``journalctl -p err`` shows them too.
    """

    def __init__(self, stream: TextIO, priority: int) -> None:
        super().__init__()
        self._stream = stream
        self._prefix = f"<{priority}>"
        self._at_line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            if i:
                out.append("\n")
                self._at_line_start = True
            if line:
                if self._at_line_start:
                    out.append(self._prefix)
                out.append(line)
                self._at_line_start = False
        self._stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def errors_to_journal(env: Mapping[str, str] | None = None) -> None:
    """Under journald, give everything written to stderr the error priority (``<3>``)."""
    if journal_stream(sys.stderr, env) and not isinstance(sys.stderr, PriorityLines):
        sys.stderr = cast(TextIO, PriorityLines(sys.stderr, SYSLOG_PRIORITIES["error"]))


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
    syslog_prefix: bool | None = None,
) -> None:
    """Configure structlog for the whole process. ``fmt``: auto | json | console.

    ``syslog_prefix``: start each line with its ``<N>`` syslog priority; by default
    exactly when ``stream`` is journald's (:func:`journal_stream`).
    """
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    if journal_stream(out) if syslog_prefix is None else syslog_prefix:
        renderer = _SyslogPrefixed(renderer)
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

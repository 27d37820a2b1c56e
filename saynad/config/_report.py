"""How problems are collected, located and worded.

Every stage of a load (reading the YAML, resolving secrets, decoding values, checking
specs) reports into one :class:`Report` instead of raising, so one pass finds every
problem; :meth:`Report.raise_if_problems` then raises one
:class:`~saynad.errors.ConfigError` listing them as ``FILE:LINE: PATH: message``, in
file order. The helpers below word the messages: how a key path, a type and a value
are shown to the reader (never a resolved secret's content).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, get_args
from typing import get_origin as _get_origin

import msgspec

from saynad.config._secrets import Ref
from saynad.errors import ConfigError

__all__ = [
    "BAD",
    "INVALID",
    "Bad",
    "KeyPath",
    "Report",
    "describe_type",
    "describe_value",
    "format_path",
    "is_number",
    "literal_choices",
    "unannotated",
    "unknown_key_message",
]

KeyPath = tuple[str | int, ...]
"""Where a value sits in the document: ``("sessions", 3, "template")``."""


class Bad:
    """A value already reported as a problem; decoding it adds no second message."""


BAD: Final = Bad()
"""Left by the YAML reader where a value could not be read (already reported)."""

INVALID: Final = object()
"""Returned by the converter where a value could not be decoded (already reported)."""


class Report:
    """The problems of one load, and the line of every key path seen."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[tuple[KeyPath, str, int | None]] = []

    def problem(self, path: KeyPath, message: str, *, line: int | None = None) -> None:
        self.problems.append((path, message, line))

    def line_of(self, path: KeyPath) -> int | None:
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def raise_if_problems(self) -> None:
        if not self.problems:
            return
        formatted: list[tuple[float, int, str]] = []
        seen: set[str] = set()
        for index, (path, message, line) in enumerate(self.problems):
            line = line if line is not None else self.line_of(path)
            where = f"{self.source}:{line}" if line is not None else self.source
            # One problem per line of output, whatever an exception's text contained.
            message = re.sub(r"\s*\n\s*", " ", message)
            text = f"{where}: {format_path(path)}: {message}" if path else f"{where}: {message}"
            if text not in seen:
                seen.add(text)
                formatted.append((line if line is not None else math.inf, index, text))
        formatted.sort()
        raise ConfigError([text for _line, _index, text in formatted])


# --------------------------------------------------------------------------- wording


def format_path(path: KeyPath) -> str:
    """``("sessions", 3, "template")`` → ``sessions[3].template``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def unknown_key_message(key: str, known: Sequence[str], context: str = "") -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown key {key!r}{context} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}{context} (expected one of: {', '.join(known)})"


def unannotated(tp: Any) -> Any:
    return get_args(tp)[0] if _get_origin(tp) is Annotated else tp


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def literal_choices(tp: Any) -> tuple[Any, ...]:
    if _get_origin(tp) is Literal:
        return get_args(tp)
    return ()


def describe_type(tp: Any) -> str:
    """A reader's name for a scalar type: ``a number > 0``, ``one of: a, b``."""
    meta: list[msgspec.Meta] = []
    if _get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        meta = [m for m in extra if isinstance(m, msgspec.Meta)]
    choices = literal_choices(tp)
    if choices:
        return "one of: " + ", ".join(str(c) for c in choices)
    base = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )
    for m in meta:
        if m.description:
            return m.description
        if m.min_length == 1:
            return "a non-empty string"
        low = m.gt if m.gt is not None else m.ge
        if low is not None and m.le is not None:
            return f"{base} from {low:g} to {m.le:g}"
        if m.gt is not None:
            return f"{base} > {m.gt:g}"
        if m.ge is not None:
            return f"{base} >= {m.ge:g}"
    return base


def describe_value(value: Any, *, secret: bool = False) -> str:
    """How a value is shown in a message (never a resolved secret's content)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Ref):
        return f"a string (from {value.reference})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return repr(shown)
    if isinstance(value, int | float):
        return "a number" if secret else repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} value"

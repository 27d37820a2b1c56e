"""File paths built from templates: no value from outside can leave the configured directory.

Transcript files (``path``) and audio sinks (``dir``, and the WAV file names) expand
placeholders such as ``{session}`` and ``{stream_id}``. Some of those values come from
outside the configuration: the ``stream_id`` and room the Sayna server answers in
``ready``, the session names derived from webhook event ids. One rule holds for every
placeholder value, whatever its source:

1. The value is reduced to a **safe file-name component** (:func:`safe_component`):
   characters outside ``A-Z a-z 0-9 _ - .`` become ``_``; a leading ``.`` becomes ``_``
   (never ``.``, ``..`` or a hidden file); an empty value becomes ``none``; at most
   :data:`MAX_COMPONENT_CHARS` characters. A value that had to change gets ``-`` and 8
   hex digits of its SHA-256, so distinct values stay distinct files.
2. The expanded path must stay under the template's **fixed prefix**, the directory
   part before the first placeholder (:func:`expand_path_template`); a path that would
   not raises :class:`PathEscapeError` and nothing is created.

Values that are already safe are used unchanged, so ordinary names give the file names
the operator expects.

The files a sink writes must be regular files (:func:`open_regular`): a FIFO or a device
put where a transcript or a WAV file goes is refused with an error, never a write that
blocks its worker thread for ever.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_COMPONENT_CHARS",
    "PathEscapeError",
    "expand_path_template",
    "fixed_prefix",
    "open_regular",
    "safe_component",
]

MAX_COMPONENT_CHARS: Final = 80
"""The longest placeholder value, after sanitising (well under any file system's 255)."""

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
_HASH_CHARS: Final = 8


class PathEscapeError(ValueError):
    """An expanded path template would leave its fixed directory prefix."""


def safe_component(value: str) -> str:
    """``value`` as one safe file-name component (see the module docstring)."""
    safe = _UNSAFE.sub("_", value)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    if not safe:
        safe = "none"
    if safe != value or len(safe) > MAX_COMPONENT_CHARS:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        safe = f"{safe[: MAX_COMPONENT_CHARS - _HASH_CHARS - 1]}-{digest[:_HASH_CHARS]}"
    return safe


def fixed_prefix(template: str) -> str:
    """The directory part of ``template`` before its first placeholder (may be ``""``)."""
    literal = ""
    for text, field, _spec, _conversion in string.Formatter().parse(template):
        literal += text
        if field is not None:
            break
    else:
        return template
    head, sep, _ = literal.rpartition("/")
    return head + sep


def expand_path_template(template: str, values: Mapping[str, str | None]) -> Path:
    """Expand ``{name}`` placeholders of ``template`` with safe components of ``values``.

    ``None`` values expand to ``none``. Raises :class:`PathEscapeError` when the result
    is not under :func:`fixed_prefix` (after ``..`` is resolved lexically), ``KeyError``
    for a placeholder ``values`` lacks.
    """
    out: list[str] = []
    for text, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(text)
        if field is not None:
            value = values[field]
            out.append(safe_component(value if value is not None else "none"))
    expanded = "".join(out)
    prefix = fixed_prefix(template)
    if not _within(expanded, prefix):
        raise PathEscapeError(f"the path {expanded!r} would leave {prefix or '.'!r}")
    return Path(expanded)


def _within(path: str, prefix: str) -> bool:
    base = os.path.normpath(prefix) if prefix else "."
    target = os.path.normpath(path)
    if base == ".":
        return not (os.path.isabs(target) or target == ".." or target.startswith("../"))
    if base == "/":
        return target.startswith("/")
    return target == base or target.startswith(base + os.sep)


def open_regular(path: Path, flags: int, mode: int = 0o640) -> int:
    """``os.open`` for a file a sink writes, refusing anything but a regular file.

    Opened without blocking (a FIFO without a reader fails at once with ``ENXIO``), then
    checked on the descriptor; the descriptor returned is in blocking mode. Raises
    ``OSError``.
    """
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd

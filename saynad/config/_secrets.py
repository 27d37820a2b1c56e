"""Secrets by reference: ``${env:NAME}``, ``${file:/abs/path}``, ``${credential:NAME}``.

A whole scalar value of that form is resolved when the file is read (:class:`References`)
into a :class:`Ref`: a string that remembers the reference it came from, so a message
about the value quotes the reference, never the secret. Files, secret ones and the
configuration file itself, are read by :func:`read_regular_file`, which refuses
anything that could hang or exhaust the reader (a FIFO, a device, a huge file).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "SECRET_FILE_MAX_BYTES",
    "FileTooLargeError",
    "Ref",
    "References",
    "Unresolved",
    "read_regular_file",
]

SECRET_FILE_MAX_BYTES: Final = 1 << 20

_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Ref(str):
    """A string produced by resolving a reference; remembers the reference text.

    Only secret fields check for it (a literal string there is refused); everywhere
    else it is converted back to a plain ``str``.
    """

    reference: str


class Unresolved(str):
    """Why a reference could not be resolved (distinct from a resolved value)."""


class References:
    """Resolves the references of one load against ``env`` and ``credentials_dir``."""

    def __init__(self, env: Mapping[str, str], credentials_dir: Path | None) -> None:
        self.env = env
        self.credentials_dir = credentials_dir

    def resolve(self, body: str) -> Ref | Unresolved:
        """The value ``${body}`` stands for, or why there is none."""
        kind, sep, argument = body.partition(":")
        if not sep or kind not in ("env", "file", "credential"):
            return Unresolved(
                f"unknown reference ${{{body}}}: expected ${{env:NAME}}, ${{file:/absolute/path}} "
                "or ${credential:NAME}"
            )
        value = getattr(self, f"_resolve_{kind}")(argument)
        if isinstance(value, Unresolved):
            return value
        ref = Ref(value)
        ref.reference = f"${{{body}}}"
        return ref

    def _resolve_env(self, name: str) -> str | Unresolved:
        if not _ENV_NAME.fullmatch(name):
            return Unresolved(f"${{env:{name}}}: {name!r} is not an environment variable name")
        value = self.env.get(name)
        if value is None:
            return Unresolved(f"${{env:{name}}}: environment variable {name} is not set")
        if not value:
            return Unresolved(f"${{env:{name}}}: environment variable {name} is empty")
        return value

    def _resolve_file(self, name: str) -> str | Unresolved:
        if not os.path.isabs(name):
            return Unresolved(f"${{file:{name}}}: the path must be absolute")
        return _read_secret_file(Path(name), f"${{file:{name}}}")

    def _resolve_credential(self, name: str) -> str | Unresolved:
        label = f"${{credential:{name}}}"
        if not name or "/" in name or name in (".", ".."):
            return Unresolved(f"{label}: {name!r} is not a credential name")
        if self.credentials_dir is None:
            return Unresolved(
                f"{label}: $CREDENTIALS_DIRECTORY is not set (systemd sets it for "
                "LoadCredential=/SetCredential=; outside systemd use ${env:…} or ${file:…})"
            )
        return _read_secret_file(self.credentials_dir / name, label, credential=True)


class FileTooLargeError(OSError):
    """A file is larger than the limit its reader accepts (nothing was parsed)."""


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The content of ``path``, refusing anything that could hang or explode a reader.

    The file is opened without blocking (a FIFO without a writer, a device) and must be
    a regular file of at most ``max_bytes`` bytes: checked on the open descriptor before
    anything is read, and again while reading (a file that grows). Raises
    :class:`FileTooLargeError`, ``OSError`` (``IsADirectoryError`` for a directory, an
    ``OSError`` naming the file type for anything else that is not a regular file).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise OSError(errno.EINVAL, f"not a regular file ({kind})", str(path))
        if info.st_size > max_bytes:
            raise FileTooLargeError(
                errno.EFBIG, f"the file has {info.st_size} bytes; at most {max_bytes} are read"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise FileTooLargeError(
                    errno.EFBIG, f"the file grew past {max_bytes} bytes while being read"
                )
        return b"".join(chunks)
    finally:
        os.close(fd)


_FILE_KINDS: Final = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _read_secret_file(path: Path, label: str, *, credential: bool = False) -> str | Unresolved:
    where = (
        f"credential {path.name!r} in $CREDENTIALS_DIRECTORY ({path.parent})"
        if credential
        else f"file {path}"
    )
    try:
        raw = read_regular_file(path, SECRET_FILE_MAX_BYTES)
    except FileNotFoundError:
        return Unresolved(f"{label}: {where} does not exist")
    except IsADirectoryError:
        return Unresolved(f"{label}: {where} is a directory")
    except PermissionError:
        return Unresolved(f"{label}: cannot read {where}: permission denied")
    except FileTooLargeError:
        return Unresolved(f"{label}: {where} is larger than {SECRET_FILE_MAX_BYTES} bytes")
    except (OSError, ValueError) as exc:
        return Unresolved(f"{label}: cannot read {where}: {getattr(exc, 'strerror', None) or exc}")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Unresolved(f"{label}: {where} is not UTF-8 text")
    # Files written with `echo` end in a newline that is not part of the secret.
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        return Unresolved(f"{label}: {where} is empty")
    return value

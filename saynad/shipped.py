"""Files that ship inside the saynad package (``saynad/data/``).

The embedded demo configuration and the other examples, the systemd unit and its
environment file, the Prometheus scrape and alert files, the Grafana dashboard and the
demo caller audio. ``saynad files`` lists and prints them; ``saynad config example``
prints the examples; a configuration names a shipped audio file as ``builtin:NAME``
(e.g. ``builtin:demo-caller.wav``), so an example copied anywhere still finds it.

They are found through :mod:`importlib.resources`, so they work from a wheel installed
in any virtual environment, not only from a checkout. In the repository each of them has
one copy where operators look for it (``config/``, ``systemd/``, ``deploy/``); the
entries of ``saynad/data/`` are links to those, which the wheel build turns into files.
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

__all__ = [
    "BUILTIN_PREFIX",
    "DEMO_CONFIG",
    "ShippedFileError",
    "example_file",
    "example_names",
    "example_summary",
    "read_shipped",
    "shipped_files",
    "shipped_path",
]

BUILTIN_PREFIX: Final = "builtin:"
"""A configuration path ``builtin:NAME`` is the shipped file ``NAME`` (audio sources)."""

DEMO_CONFIG: Final = "examples/demo.yaml"
"""The embedded default: the built-in emulator and a demo fleet."""

_EXAMPLES_DIR: Final = "examples"


class ShippedFileError(LookupError):
    """No shipped file has that name (the message lists where to look)."""


def _root() -> Traversable:
    return importlib.resources.files("saynad").joinpath("data")


def shipped_files() -> list[str]:
    """Every shipped file, as ``/``-separated names relative to the data directory."""
    names: list[str] = []
    stack: list[tuple[str, Traversable]] = [("", _root())]
    while stack:  # bounded: the package's own small directory tree
        prefix, node = stack.pop()
        for child in node.iterdir():
            name = f"{prefix}{child.name}"
            if child.is_dir():
                if child.name != "__pycache__":
                    stack.append((name + "/", child))
            else:
                names.append(name)
    return sorted(names)


def _lookup(name: str) -> Traversable:
    if name not in shipped_files():
        raise ShippedFileError(f"saynad ships no file named {name!r} (`saynad files` lists them)")
    node = _root()
    for part in name.split("/"):
        node = node.joinpath(part)
    return node


def read_shipped(name: str) -> bytes:
    """The content of the shipped file ``name``."""
    return _lookup(name).read_bytes()


def shipped_path(name: str) -> Path:
    """The shipped file ``name`` on disk (saynad is installed as plain files, not zipped)."""
    node = _lookup(name)
    if not isinstance(node, Path):
        raise ShippedFileError(f"{name!r} is inside an archive, not a file on disk")
    return node


def example_names() -> list[str]:
    """The shipped example configurations, by name (``demo`` is the embedded default)."""
    prefix = _EXAMPLES_DIR + "/"
    return [
        name.removeprefix(prefix).removesuffix(".yaml")
        for name in shipped_files()
        if name.startswith(prefix) and name.endswith(".yaml")
    ]


def example_file(name: str) -> str:
    """The shipped file name of example ``name`` (``demo`` → ``examples/demo.yaml``)."""
    if name not in example_names():
        raise ShippedFileError(
            f"no example named {name!r}; the examples are: {', '.join(example_names())}"
        )
    return f"{_EXAMPLES_DIR}/{name}.yaml"


def example_summary(name: str) -> str:
    """The first line of the example's opening comment: what it is for."""
    for line in read_shipped(example_file(name)).decode().splitlines():
        text = line.removeprefix("#").strip()
        if line.startswith("#") and text:
            return text
    return ""

"""Signal handlers for the time before the daemon listens, and what they recorded.

``saynad run`` takes a moment to start (imports, reading the configuration, the
embedded emulator) before its trio task listens for signals. Without handlers of its
own during that time, a ``SIGTERM`` or ``SIGHUP`` would kill it by the default action
(and ``SIGINT`` would print a traceback). So the very first thing the executable does
(:mod:`saynad._launch`), before importing the rest of saynad, is :func:`install` these:

- until the daemon takes over (:func:`defer`, called as it starts), ``SIGTERM`` and
  ``SIGINT`` end the process at once with status 0: nothing has started, there is
  nothing to drain; ``SIGHUP`` is ignored (the configuration is being read anyway);
- from then on each signal is recorded, and the daemon handles what was recorded
  (:func:`take`) as soon as its own signal receiver is open: a ``SIGTERM`` that arrived
  while it was starting drains it like any other.

Only ``saynad run`` installs them; other commands keep Python's defaults. In-process
users of :class:`saynad.app.Daemon` never call :func:`install`: :func:`take` then
returns nothing. A foundation below the daemon: it imports only the standard library,
so the executable can load it before anything else and the daemon can read it.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Final

__all__ = ["SIGNALS", "defer", "install", "take"]

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_deferred = False
_pending: list[int] = []


def _handle(signum: int, frame: FrameType | None) -> None:
    if _deferred:
        _pending.append(signum)
    elif signum != signal.SIGHUP:
        os.write(2, f"saynad: {signal.Signals(signum).name} before start; exiting\n".encode())
        raise SystemExit(0)


def install() -> None:
    """Install the early handlers (the main thread, before anything slow)."""
    for signum in SIGNALS:
        signal.signal(signum, _handle)


def defer() -> None:
    """The daemon is starting: record signals from now on instead of exiting."""
    global _deferred
    _deferred = True


def take() -> list[int]:
    """The signals recorded since :func:`defer` (each returned once)."""
    taken = list(_pending)
    del _pending[: len(taken)]
    return taken

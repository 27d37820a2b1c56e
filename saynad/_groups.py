"""Exception groups, unwrapped at one boundary per layer.

trio wraps every error that leaves a nursery in an :class:`ExceptionGroup`, so the same
fault would reach callers bare or wrapped depending on whether a nursery happened to be
in between (keepalive on or off, a behaviour's task or the session's own). saynad's
public boundaries — :func:`saynad.client.open_session`, the session actor
(:func:`saynad.actors.session.run_session`), the WebSocket connect and the HTTP server
start-up — raise the **cause** instead, through :func:`unwrapped`:

- the cause is the first exception in the group (depth first) that is not
  :class:`trio.Cancelled`: trio records a nursery's errors in the order they happened,
  and what fails after the first error is usually its consequence (the writer that
  finds the socket the reader saw break);
- the others, if any, are kept as notes on the cause (``also: …``), so nothing is lost;
- a group with nothing but ``Cancelled`` in it is left alone (trio's own business).

The cause is raised without a ``__context__`` pointing back at the group.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import NoReturn

import trio

__all__ = ["cause_of", "describe", "leaves", "raise_bare", "unwrapped"]

_MAX_NOTES = 5


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The non-group exceptions in ``exc``, depth first (``exc`` itself when not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def cause_of(exc: BaseException) -> BaseException:
    """The first non-``Cancelled`` leaf of ``exc``; ``exc`` when it has none or is bare."""
    for leaf in leaves(exc):
        if not isinstance(leaf, trio.Cancelled):
            return leaf
    return exc


def describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc``'s cause (the text logs, ``/sessions`` and metrics use)."""
    cause = cause_of(exc)
    return f"{type(cause).__name__}: {cause}"


def raise_bare(exc: BaseException) -> NoReturn:
    """Re-raise ``exc`` (taken out of a group) without chaining it to the group."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


class unwrapped:  # lower case: used like a function, ``with unwrapped():``
    """Raise the cause of an exception group leaving the block, never the group.

    A class rather than a ``@contextmanager`` generator: :func:`saynad.open_session`
    holds one for the whole life of every session, and a generator and its frame are
    two more objects for the garbage collector to walk.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        group: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not isinstance(group, BaseExceptionGroup):
            return
        cause = cause_of(group)
        if cause is group:
            return
        others = [e for e in leaves(group) if e is not cause and not isinstance(e, trio.Cancelled)]
        for other in others[:_MAX_NOTES]:
            cause.add_note(f"also: {type(other).__name__}: {other}")
        if len(others) > _MAX_NOTES:
            cause.add_note(f"also: {len(others) - _MAX_NOTES} more")
        del group, others
        raise_bare(cause)

"""Shards: one fleet spread over several ``saynad`` processes, by session name.

A fleet that outgrows one process (one core) runs as ``count`` shards of the same
configuration, each started with its own ``index`` (``saynad run --shard I/N``, the
``SAYNAD_SHARD`` environment variable, or ``sharding`` in the file). Each shard runs the
always-on sessions that rendezvous (highest-random-weight) hashing gives it::

    owner(name, N) = the j in 0..N-1 with the highest weight(name, j)
    weight(name, j) = the first 8 bytes of BLAKE2b(j ":" name), as an integer

Every shard computes the same table from the same names without talking to the others.
Changing N moves only the sessions that must move: going from N to N+1 shards, a
session moves exactly when the new shard outweighs its current owner (about 1/(N+1) of
them, all to the new shard); going down, only the sessions of the removed shard move.

Sessions started from outside (an inbound call) run on the shard that admitted them;
only the always-on sessions of the file are divided.

Where a process takes its place (:func:`shard_override`): ``--shard I/N`` on the
command line, else the ``SAYNAD_SHARD`` environment variable (``I/N``, or ``I`` with
the count from the file), else the file's ``sharding`` section.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_SHARDS",
    "SHARD_ENV",
    "Shard",
    "assign",
    "owner",
    "parse_shard",
    "shard_override",
    "weight",
]

MAX_SHARDS: Final = 1024
"""The largest shard count saynad accepts (each session weighs every shard once)."""

SHARD_ENV: Final = "SAYNAD_SHARD"
"""The environment variable that places a process in the fleet (``I/N`` or ``I``)."""


def weight(name: str, index: int) -> int:
    """The rendezvous weight of session ``name`` on shard ``index``."""
    digest = hashlib.blake2b(f"{index}:{name}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def owner(name: str, count: int) -> int:
    """The shard (0 … ``count`` - 1) that runs the always-on session ``name``."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"a shard count is 1 to {MAX_SHARDS}, got {count}")
    if count == 1:
        return 0
    # Ties (equal 64-bit weights) go to the lower index, the same on every shard.
    return max(range(count), key=lambda index: (weight(name, index), -index))


def assign(names: Iterable[str], count: int) -> dict[str, int]:
    """Every session name with the shard that runs it, in the given order."""
    return {name: owner(name, count) for name in names}


def parse_shard(text: str) -> tuple[int, int | None]:
    """``"I/N"`` → (I, N); ``"I"`` → (I, None): the count then comes from elsewhere.

    ValueError says what is wrong (an index must be below the count).
    """
    index_text, sep, count_text = text.strip().partition("/")
    example = "expected INDEX/COUNT (e.g. 0/3) or INDEX"
    if not index_text.isascii() or not index_text.isdigit():
        raise ValueError(f"{example}, got {text!r}")
    index = int(index_text)
    if not sep:
        if index >= MAX_SHARDS:
            raise ValueError(f"a shard index is below {MAX_SHARDS}, got {index}")
        return index, None
    if not count_text.isascii() or not count_text.isdigit():
        raise ValueError(f"{example}, got {text!r}")
    count = int(count_text)
    Shard(index, count)  # checks the pair
    return index, count


@dataclass(frozen=True)
class Shard:
    """This process's place in the fleet: shard ``index`` of ``count`` (0/1: the whole
    fleet, no sharding)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"a shard count is 1 to {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index {self.index} is not below the shard count {self.count} "
                f"(shards are numbered 0 to {self.count - 1})"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def sharded(self) -> bool:
        """True when the fleet has more than one shard."""
        return self.count > 1

    def owns(self, name: str) -> bool:
        """Whether this shard runs the always-on session ``name``."""
        return owner(name, self.count) == self.index


def shard_override(
    cli: str | None, env: Mapping[str, str]
) -> tuple[tuple[int, int | None], str] | None:
    """The ``(index, count)`` given outside the file and where it came from: ``--shard``
    (``cli``) first, else ``SAYNAD_SHARD`` in ``env``; None when neither is set (the
    file's ``sharding`` decides). ``count`` is None for a bare index.

    ValueError names the source and what is wrong.
    """
    for text, source in ((cli, "--shard"), (env.get(SHARD_ENV), SHARD_ENV)):
        if text is None or (source == SHARD_ENV and not text.strip()):
            continue
        try:
            return parse_shard(text), source
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    return None

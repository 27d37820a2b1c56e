"""Whether an awaited call took a schedule point (let other tasks run)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
import trio.testing

T = TypeVar("T")


async def without_schedule_point(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` and check it never let another task run (no schedule point:
    a task started just before cannot have run by the time it returns)."""
    ran: list[bool] = []

    async def other() -> None:
        ran.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        result = await call()
        assert not ran, "took a schedule point"
    return result


async def with_schedule_point(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` and check it took a schedule point."""
    with trio.testing.assert_checkpoints():
        return await call()

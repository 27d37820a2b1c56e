"""Timed sleeps that stay cheap when thousands of tasks pace real-time audio.

:func:`sleep_until` and :func:`sleep` have the contract of :func:`trio.sleep_until`
and :func:`trio.sleep` (a checkpoint, cancellable, trio's clock) at a fraction of the
CPU: one timer per trio run wakes every sleeper that is due. :func:`call_at` runs
a short synchronous callback at a deadline on the same timer.

::

    from saynad.client.pacing import sleep_until

    start = trio.current_time()
    for i, chunk in enumerate(chunks):
        await sleep_until(start + i * 0.020)
        await session.send_audio(chunk)

The implementation (and the costs it saves) is :mod:`saynad._io.pacing`, which the
emulator shares; this module is its public name.
"""

from __future__ import annotations

from saynad._io.pacing import *  # noqa: F403  (the whole public surface, and only it)
from saynad._io.pacing import __all__ as __all__

"""Restart pacing for supervised sessions: jittered backoff and restart intensity.

Both are pure: nothing here sleeps or reads a clock. The supervisor passes
``trio.current_time()`` in, so tests drive them under ``MockClock`` in virtual time.
"""

from __future__ import annotations

import math
import random
from collections import deque

__all__ = ["Backoff", "RestartIntensity"]


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


class Backoff:
    """Exponential backoff with full jitter.

    Attempt ``n`` (from 0) waits ``uniform(0, min(max_s, initial_s * multiplier**n))``.
    Full jitter (rather than a jittered fixed delay) spreads sessions that failed together
    (say, after a server restart) over the whole interval, so they do not reconnect in
    lockstep. Call :meth:`reset` once a restarted session has proved healthy.

    ``rng`` makes the sequence reproducible in tests; by default each instance has its
    own ``random.Random`` seeded from the OS.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        multiplier: float = 2.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        _check_positive("initial_s", initial_s)
        _check_positive("max_s", max_s)
        if max_s < initial_s:
            raise ValueError(f"max_s ({max_s!r}) must be >= initial_s ({initial_s!r})")
        if not math.isfinite(multiplier) or multiplier < 1:
            raise ValueError(f"multiplier must be a finite number >= 1, got {multiplier!r}")
        self._initial_s = initial_s
        self._max_s = max_s
        self._multiplier = multiplier
        self._rng = rng if rng is not None else random.Random()
        self._attempt = 0
        # The current upper bound, grown step by step and capped, so a long outage
        # never evaluates multiplier**n (which overflows a float after ~1000 attempts).
        self._ceiling_s = initial_s

    @property
    def attempt(self) -> int:
        """How many delays were handed out since construction or the last reset."""
        return self._attempt

    @property
    def ceiling_s(self) -> float:
        """Upper bound of the next delay: ``min(max_s, initial_s * multiplier**attempt)``."""
        return self._ceiling_s

    def next_delay(self) -> float:
        """Return the delay before the next attempt (in ``[0, ceiling_s]``) and advance."""
        delay = self._rng.uniform(0.0, self._ceiling_s)
        self._attempt += 1
        self._ceiling_s = min(self._max_s, self._ceiling_s * self._multiplier)
        return delay

    def reset(self) -> None:
        """Start again from ``initial_s``."""
        self._attempt = 0
        self._ceiling_s = self._initial_s


class RestartIntensity:
    """Sliding-window restart limit: at most ``max_restarts`` restarts within ``window_s``.

    :meth:`record` is called for each restart about to happen and returns ``False``
    when that restart would be one too many, so the session should be marked failed
    and left down (Erlang/OTP's ``intensity``/``period``). A restart ``window_s`` or
    more seconds old no longer counts. ``max_restarts=0`` forbids restarts entirely.
    At most ``max_restarts + 1`` timestamps are stored.
    """

    def __init__(self, max_restarts: int, window_s: float) -> None:
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            raise TypeError(f"max_restarts must be an int, got {max_restarts!r}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts!r}")
        _check_positive("window_s", window_s)
        self._max_restarts = max_restarts
        self._window_s = window_s
        # One more than allowed: enough to tell "at the limit" from "over it".
        self._times: deque[float] = deque(maxlen=max_restarts + 1)

    @property
    def max_restarts(self) -> int:
        """Restarts allowed within one window."""
        return self._max_restarts

    @property
    def window_s(self) -> float:
        """Length of the sliding window in seconds."""
        return self._window_s

    def restarts_in_window(self, now: float) -> int:
        """How many recorded restarts are less than ``window_s`` old at ``now``.

        Capped at ``max_restarts + 1``: beyond that only "over the limit" matters.
        """
        self._expire(now)
        return len(self._times)

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; return ``False`` if it exceeds the intensity.

        ``now`` must not go backwards (use one monotonic clock, e.g. trio's).
        """
        if self._times and now < self._times[-1]:
            raise ValueError(f"time went backwards: {now!r} < {self._times[-1]!r}")
        self._expire(now)
        self._times.append(now)
        return len(self._times) <= self._max_restarts

    def reset(self) -> None:
        """Forget every recorded restart."""
        self._times.clear()

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] >= self._window_s:
            self._times.popleft()

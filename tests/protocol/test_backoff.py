"""Jittered exponential backoff and sliding-window restart intensity."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saynad.protocol.backoff import Backoff, RestartIntensity


class _Fixed(random.Random):
    """``random()`` always returns the same value: delays become ``value * ceiling``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# --------------------------------------------------------------------------- Backoff


def test_ceiling_grows_geometrically_then_caps() -> None:
    backoff = Backoff(0.5, 10.0, 2.0, rng=_Fixed(1.0))
    delays = [backoff.next_delay() for _ in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.attempt == 8
    assert backoff.ceiling_s == 10.0


def test_delay_is_a_uniform_fraction_of_the_ceiling() -> None:
    backoff = Backoff(1.0, 100.0, 3.0, rng=_Fixed(0.25))
    assert [backoff.next_delay() for _ in range(4)] == [0.25, 0.75, 2.25, 6.75]
    zero = Backoff(1.0, 100.0, rng=_Fixed(0.0))
    assert [zero.next_delay() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_default_multiplier_is_two() -> None:
    backoff = Backoff(1.0, 1000.0, rng=_Fixed(1.0))
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]


def test_multiplier_one_is_a_constant_ceiling() -> None:
    backoff = Backoff(3.0, 3.0, 1.0, rng=_Fixed(1.0))
    assert [backoff.next_delay() for _ in range(3)] == [3.0, 3.0, 3.0]


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 60.0, rng=_Fixed(1.0))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.ceiling_s == 1.0
    assert backoff.next_delay() == 1.0


def test_seeded_rng_is_reproducible() -> None:
    first = Backoff(0.1, 30.0, rng=random.Random(42))
    second = Backoff(0.1, 30.0, rng=random.Random(42))
    assert [first.next_delay() for _ in range(20)] == [second.next_delay() for _ in range(20)]


def test_jitter_actually_spreads_the_delays() -> None:
    backoff = Backoff(10.0, 10.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(1000)]
    assert min(delays) < 1.0
    assert max(delays) > 9.0
    assert 4.0 < sum(delays) / len(delays) < 6.0


def test_a_long_outage_does_not_overflow() -> None:
    backoff = Backoff(1.0, 60.0, 10.0, rng=random.Random(1))
    for _ in range(5000):
        assert 0.0 <= backoff.next_delay() <= 60.0
    assert backoff.ceiling_s == 60.0


def test_default_rng_is_per_instance() -> None:
    backoff = Backoff(1.0, 2.0)
    assert 0.0 <= backoff.next_delay() <= 1.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 10, 2), "initial_s"),
        ((-1, 10, 2), "initial_s"),
        ((float("nan"), 10, 2), "initial_s"),
        ((1, 0, 2), "max_s"),
        ((1, float("inf"), 2), "max_s"),
        ((2, 1, 2), "max_s"),
        ((1, 10, 0.5), "multiplier"),
        ((1, 10, 0), "multiplier"),
        ((1, 10, float("inf")), "multiplier"),
    ],
)
def test_backoff_argument_validation(args: tuple[float, float, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(*args)


@settings(derandomize=True, max_examples=500)
@given(
    initial=st.floats(0.001, 100.0),
    extra=st.floats(0.0, 1000.0),
    multiplier=st.floats(1.0, 10.0),
    seed=st.integers(0, 2**32),
    steps=st.integers(1, 60),
)
def test_every_delay_is_within_zero_and_the_cap(
    initial: float, extra: float, multiplier: float, seed: int, steps: int
) -> None:
    cap = initial + extra
    backoff = Backoff(initial, cap, multiplier, rng=random.Random(seed))
    ceiling = initial
    for _ in range(steps):
        assert backoff.ceiling_s == pytest.approx(ceiling)
        delay = backoff.next_delay()
        assert 0.0 <= delay <= cap
        assert delay <= ceiling * (1 + 1e-9)
        ceiling = min(cap, ceiling * multiplier)


# --------------------------------------------------------------------------- RestartIntensity


def test_allows_max_restarts_within_the_window() -> None:
    intensity = RestartIntensity(3, 60.0)
    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert intensity.record(3.0) is False
    assert intensity.restarts_in_window(3.0) == 4


def test_restarts_age_out_of_the_window() -> None:
    intensity = RestartIntensity(2, 10.0)
    assert intensity.record(0.0)
    assert intensity.record(5.0)
    # At exactly window_s the first restart no longer counts.
    assert intensity.record(10.0)
    assert intensity.restarts_in_window(10.0) == 2
    # Just inside the window of the second one: three within 10 s.
    assert intensity.record(14.999) is False


def test_window_edge_just_before_expiry_still_counts() -> None:
    intensity = RestartIntensity(1, 10.0)
    assert intensity.record(0.0)
    assert intensity.record(9.999) is False
    intensity.reset()
    assert intensity.record(0.0)
    assert intensity.record(10.0)


def test_zero_restarts_allowed() -> None:
    intensity = RestartIntensity(0, 60.0)
    assert intensity.record(0.0) is False
    assert intensity.record(1000.0) is False


def test_storage_is_bounded() -> None:
    intensity = RestartIntensity(5, 1e9)
    for t in range(10_000):
        intensity.record(float(t))
    assert intensity.restarts_in_window(10_000.0) == 6
    assert len(intensity._times) == 6


def test_recovers_after_a_quiet_window() -> None:
    intensity = RestartIntensity(2, 30.0)
    assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, False]
    assert intensity.restarts_in_window(100.0) == 0
    assert intensity.record(100.0)


def test_time_must_not_go_backwards() -> None:
    intensity = RestartIntensity(3, 10.0)
    intensity.record(5.0)
    intensity.record(5.0)  # equal is fine
    with pytest.raises(ValueError, match="backwards"):
        intensity.record(4.0)


def test_reset_forgets() -> None:
    intensity = RestartIntensity(1, 60.0)
    intensity.record(0.0)
    intensity.reset()
    assert intensity.restarts_in_window(0.0) == 0
    assert intensity.record(1.0)
    assert (intensity.max_restarts, intensity.window_s) == (1, 60.0)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 10.0), ValueError),
        ((1, 0.0), ValueError),
        ((1, -5.0), ValueError),
        ((1, float("nan")), ValueError),
        ((1.5, 10.0), TypeError),
        ((True, 10.0), TypeError),
    ],
)
def test_intensity_argument_validation(args: tuple[Any, float], error: type[Exception]) -> None:
    with pytest.raises(error):
        RestartIntensity(*args)


@settings(derandomize=True, max_examples=500)
@given(
    max_restarts=st.integers(0, 8),
    window=st.floats(0.5, 100.0),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=40),
)
def test_matches_a_brute_force_count(max_restarts: int, window: float, gaps: list[float]) -> None:
    intensity = RestartIntensity(max_restarts, window)
    times: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
        in_window = [t for t in times if now - t < window]
        assert intensity.record(now) is (len(in_window) <= max_restarts)
        assert len(intensity._times) <= max_restarts + 1

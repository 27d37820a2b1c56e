"""The session benchmark's splits: speak → first audio between client and emulator, and
the collector's part of a client's CPU."""

from __future__ import annotations

import gc
import math

from tests.bench.common import CollectorTime
from tests.bench.sessions import speech_split


def test_each_part_is_measured_per_session_matched_by_stream_id() -> None:
    client = {"a": [9.0, 10.0, 10.050], "b": [19.5, 20.0, 20.200]}
    emulator = {"a": [10.010, 10.040], "b": [20.100, 20.150]}
    split = speech_split(client, emulator)
    assert split["first_audio_matched"] == 2
    # a: 10 + 30 + 10 ms; b: 100 + 50 + 50 ms (p50 of two values: their mean).
    assert math.isclose(split["first_audio_to_emulator_p50_s"], 0.055)
    assert math.isclose(split["first_audio_to_emulator_p99_s"], 0.100)
    assert math.isclose(split["first_audio_in_emulator_p50_s"], 0.040)
    assert math.isclose(split["first_audio_in_emulator_p99_s"], 0.050)
    assert math.isclose(split["first_audio_to_client_p50_s"], 0.030)
    assert math.isclose(split["first_audio_to_client_p99_s"], 0.050)
    assert math.isclose(split["speak_spread_s"], 10.0)  # speaks sent at 10 s and 20 s
    # Session start → first audio: 1.05 s and 0.7 s.
    assert math.isclose(split["first_audio_since_start_p50_s"], 0.875)
    assert math.isclose(split["first_audio_since_start_p99_s"], 1.05)


def test_sessions_missing_a_side_or_a_step_are_left_out() -> None:
    client = {"a": [0.5, 1.0, 1.5], "no-audio": [1.5, 2.0, math.nan], "unknown": [2.5, 3.0, 3.5]}
    emulator = {"a": [1.1, 1.2], "no-audio": [2.1, math.nan], "silent": [math.nan, math.nan]}
    split = speech_split(client, emulator)
    assert split["first_audio_matched"] == 1
    assert math.isclose(split["first_audio_to_client_p99_s"], 0.3)


def test_nothing_matched_gives_nan_not_an_error() -> None:
    split = speech_split({"a": [0.0, 1.0, 2.0]}, {})
    assert split["first_audio_matched"] == 0
    assert math.isnan(split["first_audio_in_emulator_p50_s"])
    assert math.isnan(split["first_audio_in_emulator_p99_s"])
    assert math.isnan(split["first_audio_early_p50_s"])
    assert math.isnan(split["first_audio_slowest_early_share"])


def _sessions(waits: list[float]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Session ``i`` speaks at ``i`` s and hears its first audio ``waits[i]`` s later
    (the emulator's stamps in between)."""
    client = {f"s{i}": [i - 0.5, float(i), i + wait] for i, wait in enumerate(waits)}
    emulator = {f"s{i}": [i + wait / 4, i + wait / 2] for i, wait in enumerate(waits)}
    return client, emulator


def test_the_first_tenth_of_the_speakers_is_set_apart_from_the_rest() -> None:
    # 20 sessions: the two that spoke first waited 0.5 s, the others 0.1 s and up.
    waits = [0.5, 0.5] + [0.1 + i / 1000 for i in range(2, 20)]
    split = speech_split(*_sessions(waits))
    assert math.isclose(split["first_audio_early_p50_s"], 0.5)
    assert math.isclose(split["first_audio_rest_p99_s"], 0.119)
    # The slowest hundredth is one session (at least one): one of the first two.
    assert split["first_audio_slowest_early_share"] == 1.0


def test_a_tail_made_by_late_speakers_is_told_apart() -> None:
    # 200 sessions, each waiting a little longer than the one that spoke before it: the
    # slowest hundredth (two) spoke last.
    waits = [0.1 + i / 10_000 for i in range(200)]
    split = speech_split(*_sessions(waits))
    assert math.isclose(split["first_audio_early_p50_s"], 0.10095)  # sessions 0–19
    assert math.isclose(split["first_audio_rest_p99_s"], 0.1197)  # 177th of 20–199
    assert split["first_audio_slowest_early_share"] == 0.0
    # Ranked by when the speak left, not by the order the sessions were recorded in.
    client, emulator = _sessions(waits)
    reordered = dict(reversed(list(client.items())))
    assert speech_split(reordered, emulator)["first_audio_slowest_early_share"] == 0.0


def test_one_session_is_its_own_first_tenth() -> None:
    split = speech_split(*_sessions([0.25]))
    assert math.isclose(split["first_audio_early_p50_s"], 0.25)
    assert math.isnan(split["first_audio_rest_p99_s"])
    assert split["first_audio_slowest_early_share"] == 1.0


def test_the_collectors_time_and_its_full_collections_are_counted() -> None:
    timer = CollectorTime()
    gc.callbacks.append(timer)
    try:
        gc.collect(0)
        assert timer.full == 0
        gc.collect()
    finally:
        gc.callbacks.remove(timer)
    assert timer.full == 1
    assert timer.cpu_s > 0

"""The soak's judge on synthetic data: the stampede rule (which windows count, where the
peak is reported) and the failed-sessions row."""

from __future__ import annotations

import pytest

from tests.soak.scenario import Run, criteria, stampede_peak

KILLS = [1000.0, 1030.0, 1060.0]
"""Three cycles of 30 s; the final accounting kill comes at 1090."""
FINAL = 1090.0


def steady(start: float, end: float, per_s: int) -> list[float]:
    """``per_s`` accepts in every second of ``[start, end)``, evenly spread."""
    return [start + i / per_s for i in range(int((end - start) * per_s))]


def burst(at: float, count: int, span_s: float) -> list[float]:
    return [at + span_s * i / count for i in range(count)]


def test_the_final_outage_is_an_outage_windows_end_before_it() -> None:
    """The soak's last kill brings ~3 attempts per session within 3 s: never judged."""
    accepts = steady(1000, 1090, 1) + burst(FINAL, 330, 3.0)
    peak = stampede_peak(accepts, KILLS, FINAL)
    assert peak.rate == pytest.approx(1.0)
    # Without the final kill as a bound, that outage lands in the last cycle's windows.
    unbounded = stampede_peak(accepts, KILLS, None)
    assert unbounded.rate > 25
    assert unbounded.cycle == 3


def test_the_first_ten_seconds_of_an_outage_are_not_judged() -> None:
    accepts = burst(1030.0, 300, 9.9) + burst(1060.5, 300, 9.0)
    assert stampede_peak(accepts, KILLS, FINAL).rate == 0.0


def test_a_stampede_after_ten_seconds_is_found_and_located() -> None:
    # Cycle 2 (kill at 1030): 250 attempts in [1045, 1050), inside the window from kill+10 s.
    accepts = steady(1000, 1090, 1) + burst(1045.0, 250, 5.0)
    peak = stampede_peak(accepts, KILLS, FINAL)
    assert peak.cycle == 2
    assert peak.offset_s == pytest.approx(10.0)  # the first window holding the whole burst
    assert peak.rate == pytest.approx(25.0 + 1.0)  # + the steady 1/s
    # Windows: per 30 s cycle, starts from kill+10 to kill+20 in 0.5 s steps.
    assert peak.windows == 3 * 21


def test_windows_stop_at_the_next_kill() -> None:
    # A burst just before the cycle-3 kill belongs to cycle 2's windows; one just after it
    # falls in cycle 3's first 10 s.
    assert stampede_peak(burst(1059.0, 200, 0.9), KILLS, FINAL).rate == pytest.approx(20.0)
    assert stampede_peak(burst(1060.0, 200, 0.9), KILLS, FINAL).rate == 0.0


def test_the_criterion_row_names_the_peak_cycle() -> None:
    run = Run(sessions=100, duration_s=90, cycle_s=30, ka_interval=15, ka_timeout=10)
    run.kills, run.final_kill = list(KILLS), FINAL
    run.accept_times = steady(1000, 1090, 1) + burst(1075.0, 310, 5.0) + burst(FINAL, 330, 3.0)
    (row,) = [r for r in criteria(run) if r.criterion.startswith("connect attempts")]
    assert not row.ok  # 31.5/s in the last cycle: a real stampede still fails
    assert row.measured.startswith("32.0/s (peak at kill+")
    assert "of the end cycle" in row.measured
    run.accept_times = steady(1000, 1090, 1) + burst(FINAL, 330, 3.0)
    (row,) = [r for r in criteria(run) if r.criterion.startswith("connect attempts")]
    assert row.ok
    assert row.measured.startswith("1.0/s (peak at kill+10.0 s of cycle 1;")


def test_the_failed_sessions_row_reads_gave_up_from_the_metrics() -> None:
    run = Run(sessions=2, duration_s=90, cycle_s=30, ka_interval=15, ka_timeout=10)
    run.metrics = {
        'saynad_session_failures_total{origin="config",reason="connect"}': 41.0,
        'saynad_session_failures_total{origin="config",reason="gave_up"}': 0.0,
        'saynad_session_failures_total{origin="inbound",reason="gave_up"}': 0.0,
    }
    (row,) = [r for r in criteria(run) if r.criterion.startswith("sessions left failed")]
    assert row.ok
    assert row.measured == "0 (41 connect attempts refused during outages)"
    run.metrics['saynad_session_failures_total{origin="config",reason="gave_up"}'] = 1.0
    (row,) = [r for r in criteria(run) if r.criterion.startswith("sessions left failed")]
    assert not row.ok
    run.metrics = {}  # never scraped: not a pass
    (row,) = [r for r in criteria(run) if r.criterion.startswith("sessions left failed")]
    assert not row.ok

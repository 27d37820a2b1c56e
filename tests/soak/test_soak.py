"""The soak scenario's CI variant: 50 sessions for 2 minutes (~2.5 min of wall time).

Marked ``soak``; it runs in ``make test`` (deselect with ``-m "not soak"`` when
iterating). ``make soak`` runs the full 10-minute, 100-session scenario. The keepalive is
shortened to 5 s + 5 s so a stall is judged within one 30 s cycle. It judges what holds
on any machine (no crash, no gap or loss, every stall dropped and replaced, every session
back after every outage, no leak of fds or tasks); the time and memory limits of the
table are printed and judged by ``make soak``.
"""

from __future__ import annotations

import sys

import pytest
import trio

from tests.soak.scenario import criteria, soak, table

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


async def test_soak_50_sessions_2_minutes() -> None:
    with trio.fail_after(400):
        run = await soak(50, 120, keepalive=(5.0, 5.0), seed=7)
    rows = criteria(run)
    print(table(run, rows))
    # Time and memory limits are printed, not judged here: a loaded 2-core machine is
    # slower (make soak, on a quiet machine, judges them). Every count must hold.
    failed = [f"{r.criterion}: {r.measured} (limit {r.limit})" for r in rows if not r.ok_untimed]
    assert not failed, "\n".join(failed)

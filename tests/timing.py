"""Hang guards for tests that wait on real sockets, processes, files and signals.

A guard only stops a test that would otherwise hang: it never measures speed (speed
targets live in the benchmarks, ``tests/bench``, ``make bench``). It is generous,
because a loaded 2-core machine can be many times slower than a quiet one; time logic
itself is tested on trio's autojump clock (``MockClock(autojump_threshold=0)``).
"""

from __future__ import annotations

from typing import Final

HANG_S: Final = 60.0
"""How long a wait on something real may take before the test is declared hung."""

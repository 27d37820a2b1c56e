"""Capacity per core (see :mod:`tests.bench.bench_scale`)."""

from __future__ import annotations

from typing import Any


def measure(reps: int) -> dict[str, Any]:
    raise NotImplementedError


def section(data: dict[str, Any] | None) -> list[str]:
    return ["## Capacity per core", "", "*Not measured yet.*", ""]

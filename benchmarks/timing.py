"""Timing shared by the benchmarks: variants' runs interleaved (A B C, C B A, ...) after a
warm-up, and the median, spread and rate of their seconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

Thunk = Callable[[], object]


def interleaved(
    variants: Mapping[str, Callable[[], Thunk]], *, warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds per timed run of each variant. ``variants[name]()`` prepares a run (untimed) and
    returns the thunk that is timed. Rounds alternate the order (A B C, C B A, ...)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(warmup + repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            thunk = variants[name]()
            start = time.perf_counter()
            thunk()
            seconds = time.perf_counter() - start
            if i >= warmup:
                times[name].append(seconds)
    return times


def summary(seconds: list[float], work: float) -> dict[str, Any]:
    """Median, spread and rate (``work`` units, e.g. samples, per median second)."""
    median = statistics.median(seconds)
    return {
        "median_s": median,
        "min_s": min(seconds),
        "max_s": max(seconds),
        "runs_s": seconds,
        "per_s": work / median,
    }

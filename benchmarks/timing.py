"""Timing helper shared by the benchmarks (run them as scripts: `python benchmarks/x.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def rate(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Median calls per second of ``fn`` over ``rounds`` rounds of ``calls`` calls (after one
    warm-up call)."""
    fn()
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)

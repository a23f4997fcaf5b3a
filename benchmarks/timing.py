"""Timing helpers shared by the benchmarks (run them as scripts: `python benchmarks/x.py`)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path


def machine() -> str:
    """CPU model, core count and flags that matter to torch (AVX-512 or AVX2 only)."""
    model, flags = platform.processor() or "?", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    simd = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "no avx2"
    return f"{model}, {os.cpu_count()} cores, {simd}"


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

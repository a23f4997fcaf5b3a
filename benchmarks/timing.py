"""Timing helpers shared by the benchmarks (run them as scripts: `python benchmarks/x.py`).

A figure measured on one machine says little on another: the same code ran 3-5x faster on one
2-core VM than on another (docs/networking.md). So every benchmark prints the CPU it ran on
(:func:`machine`: model, cores, AVX2 or AVX-512) and ceilings measured in the same run, and
gives its figures as a fraction of the ceiling that bounds them beside the absolute number:

- :func:`matmul_gflops`: float32 matrix products on one thread (what bounds a learner's
  update on the CPU);
- :func:`mem_bandwidth_gbs`: a large array copy (what bounds replay-memory sampling);
- :func:`zmq_ceiling`: raw ZeroMQ messages of a given size over TCP loopback, one hop, no
  protocol (what bounds any transport on this machine).

Only the standard library and numpy are imported at module level (``bench_transport.py``
runs parts of itself in tmrl's own environment); torch and pyzmq are imported when used.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Cpu:
    """What the machine's CPU is, from ``/proc/cpuinfo`` (``?`` and no flags elsewhere)."""

    model: str
    cores: int
    flags: frozenset[str]

    @property
    def simd(self) -> str:
        """``avx512`` (AVX-512 F), ``avx2``, or ``no avx2`` (unknown counts as none)."""
        if "avx512f" in self.flags:
            return "avx512"
        return "avx2" if "avx2" in self.flags else "no avx2"


def cpu() -> Cpu:
    """The CPU model, logical core count and feature flags."""
    model, flags = platform.processor() or "?", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1]
                break
    except OSError:
        pass
    return Cpu(model, os.cpu_count() or 1, frozenset(flags.split()))


def machine() -> str:
    """CPU model, core count and flags that matter to torch (AVX-512 or AVX2 only)."""
    info = cpu()
    return f"{info.model}, {info.cores} cores, {info.simd}"


def cpu_flags_line() -> str:
    """The vector extensions present, e.g. ``avx avx2 fma avx512f avx512bw (AVX-512: yes)``."""
    info = cpu()
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")
    present = " ".join(flag for flag in wanted if flag in info.flags) or "none known"
    return f"{present} (AVX-512: {'yes' if 'avx512f' in info.flags else 'no'})"


def _best_rate(work: Callable[[], None], units: float, seconds: float) -> float:
    """Highest ``units`` per second of ``work`` over repeats filling ``seconds`` (after one
    warm-up call): the best repeat is the least disturbed by other processes."""
    work()
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        work()
        took = time.perf_counter() - start
        best = max(best, units / took if took > 0 else 0.0)
        if time.perf_counter() >= deadline:
            return best


def matmul_gflops(size: int = 256, seconds: float = 0.2, threads: int = 1) -> float:
    """GFLOP/s of ``size`` x ``size`` float32 matrix products on ``threads`` torch threads
    (numpy's BLAS where torch is missing; it picks its own thread count)."""
    flop = 2.0 * size**3
    try:
        import torch
    except ImportError:
        a = np.random.default_rng(0).random((size, size), dtype=np.float32)
        out = np.empty_like(a)
        return _best_rate(lambda: np.matmul(a, a, out=out), flop, seconds) / 1e9
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.rand(size, size)
        y = torch.empty(size, size)
        return _best_rate(lambda: torch.mm(x, x, out=y), flop, seconds) / 1e9
    finally:
        torch.set_num_threads(before)


def mem_bandwidth_gbs(mib: int = 64, seconds: float = 0.2) -> float:
    """GB/s (10^9 bytes) moved by one thread copying a ``mib`` MiB array into another (bytes
    read plus bytes written), bigger than the caches."""
    src = np.ones(mib * 2**20, np.uint8)
    dst = np.empty_like(src)
    return _best_rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes, seconds) / 1e9


def zmq_ceiling(message_bytes: int, seconds: float = 0.3, hwm: int = 100) -> dict[str, float]:
    """Raw ZeroMQ over TCP loopback: a thread PUSHes one ``message_bytes`` frame as fast as
    it can, this thread PULLs and counts; no protocol, no copy (``msgs_per_s``,
    ``gbytes_per_s``, 0.0 when nothing arrived)."""
    import zmq

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, hwm)
    pull.setsockopt(zmq.LINGER, 0)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    payload = bytes(message_bytes)
    stop = threading.Event()

    def push() -> None:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        while not stop.is_set():
            try:
                sock.send(payload, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                sock.poll(20, zmq.POLLOUT)
        sock.close()

    sender = threading.Thread(target=push, daemon=True)
    sender.start()
    try:
        got, start = 0, None
        deadline = time.perf_counter() + seconds + 2.0  # + time to connect
        while time.perf_counter() < deadline:
            try:
                pull.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                pull.poll(50)
                continue
            if start is None:  # the clock starts at the first message: connection up
                start, deadline = time.perf_counter(), time.perf_counter() + seconds
            else:
                got += 1
        took = time.perf_counter() - start if start is not None else 0.0
    finally:
        stop.set()
        sender.join(timeout=2)
        pull.close()
        ctx.term()
    rate = got / took if took > 0 else 0.0
    return {"msgs_per_s": rate, "gbytes_per_s": rate * message_bytes / 1e9}


def ceilings(quick: bool = False) -> dict[str, float]:
    """The machine's matmul and memory ceilings, measured now (about 0.5 s; ``quick``: less)."""
    seconds = 0.05 if quick else 0.2
    return {
        "matmul_gflops": matmul_gflops(seconds=seconds),
        "mem_bandwidth_gbs": mem_bandwidth_gbs(seconds=seconds),
    }


def print_machine(quick: bool = False) -> dict[str, float]:
    """Print the machine (CPU model, cores, flags) and its ceilings measured now; return them."""
    measured = ceilings(quick)
    print(f"machine: {machine()}; flags: {cpu_flags_line()}", flush=True)
    print(
        f"ceilings now: matmul {measured['matmul_gflops']:.1f} GFLOP/s (float32, 1 thread), "
        f"memory copy {measured['mem_bandwidth_gbs']:.1f} GB/s (1 thread)",
        flush=True,
    )
    return measured


def valid(value: float | None) -> bool:
    """Whether a measured figure is a real one (a failed measurement is None, 0 or NaN)."""
    return value is not None and math.isfinite(value) and value > 0


def fraction(value: float | None, ceiling: float | None) -> str:
    """``value`` as a fraction of ``ceiling`` ("0.42 of ceiling"), or why there is none."""
    if not valid(value):
        return "failed"
    if not valid(ceiling):
        return "ceiling failed"
    assert value is not None and ceiling is not None
    return f"{value / ceiling:.2f} of ceiling"


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs`` as ``"3.4x"``, or ``"failed (...)"`` when either figure failed: a
    ratio against 0 is never printed."""
    if not valid(ours):
        return "failed (our figure is 0 or missing)"
    if not valid(theirs):
        return "failed (their figure is 0 or missing)"
    assert ours is not None and theirs is not None
    return f"{ours / theirs:.1f}x"


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


def sim_kernel_ceiling(rounds: int = 3) -> float:
    """The ceiling the sim's figures are a fraction of, measured now: car-steps/s of the
    compiled physics and LIDAR alone (``kernels.step_cars_scan_each``, 256 cars per call,
    random controls, one thread), with no Python, numpy or dispatch around them. It scales with
    the core's scalar speed as the figures do, so the fractions compare across machines."""
    from tmrl2.envs.sim import kernels
    from tmrl2.envs.sim.env import SimEnvConfig
    from tmrl2.envs.sim.vec import SimBatch

    n = 256
    batch = SimBatch(n, SimEnvConfig())
    batch.reset()
    rng = np.random.default_rng(0)
    controls = np.abs(rng.uniform(-1.0, 1.0, (n, 3)))
    controls[:, 2] -= 0.5
    kit, cfg = batch.kit(0), batch.config
    states = batch.states.copy()
    durations = np.full(n, cfg.time_step_ms / 1000.0)

    def call() -> None:
        kernels.step_cars_scan_each(
            states, controls, durations, batch.params, kit.table, batch.contact, batch.angles,
            batch._lookup, float(cfg.lidar_range_m), kit.ahead, kit.behind, kit.walls,
            batch._lidar,
        )  # fmt: skip

    return rate(call, 50, rounds) * n

"""Simulator figures: fast-mode throughput, reference lap times, the scripted driver's results.

0. The ceiling every throughput figure is also given as a fraction of, measured in the same
   run: car-steps/s of the compiled physics and LIDAR alone (no Python around them), and
   ``--batch`` sizes of :class:`SimBatch` (random actions; ``--batch-threads 1 2``: numba
   threads, ``worker.sim_threads``), issue 18's target: 200,000 car-steps/s for 64 cars.
1. Throughput on one core, default track, 50 ms steps: env steps per second with the LIDAR
   observation (uniform random actions, and the autopilot) and with the 64 x 64 grey image
   observation added (autopilot). Only ``env.step``/``env.reset`` are timed, not the driver;
   each figure is the median over rounds of ``--steps`` steps. Issue 3's targets: 20,000
   LIDAR steps/s and 3,000 image steps/s.
2. For each bundled track: length, the reference lap time (quasi-steady-state profile) and
   the autopilot's lap (no LIDAR) as a fraction of it (the target: at most 115 %).
3. ``--generated N`` procedurally generated tracks (seeds 0..N-1): how many the autopilot
   finishes within 115 % of their reference (the target: at least 95 %).
4. ``--realtime-s S`` (0: skip): the real-time env at 20 Hz for S seconds with the autopilot;
   the error of each step's period (time between two ``step`` returns) against 50 ms: median,
   p99 and worst (the target: p99 under 2 ms over 120 s).

Run: ``python benchmarks/bench_sim.py`` (about a minute on a 2-core machine), and
``python benchmarks/bench_sim.py --steps 0 --generated 0 --realtime-s 120``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from timing import print_machine, rate, sim_kernel_ceiling

from tmrl2.envs.sim.autopilot import Autopilot, drive_lap
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.generator import generate_track
from tmrl2.envs.sim.reference import reference_lap_time_s
from tmrl2.envs.sim.track import known_tracks, load_track

LIDAR_GOAL = 20_000.0
IMAGE_GOAL = 3_000.0
BATCH_GOAL = 200_000.0
"""Issue 18's target for a batch of 64 cars (car-steps/s, random actions)."""
MARGIN = 1.15


def steps_per_s(env: SimEnv, policy: Callable[[], np.ndarray], steps: int) -> float:
    """Env steps per second of time spent inside the env, over ``steps`` steps."""
    spent = 0.0
    start = time.perf_counter()
    env.reset(seed=0)
    spent += time.perf_counter() - start
    for _ in range(steps):
        action = policy()
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
        spent += time.perf_counter() - start
    return steps / spent


def throughput(steps: int, rounds: int, ceiling: float) -> None:
    for label, config, goal in (
        ("LIDAR", SimEnvConfig(), LIDAR_GOAL),
        ("LIDAR + image 64x64", SimEnvConfig(image=True), IMAGE_GOAL),
    ):
        env = SimEnv(config)
        env.action_space.seed(0)
        pilot = Autopilot(env.track)
        drivers: dict[str, Callable[[], np.ndarray]] = {
            "random actions": env.action_space.sample,
            "autopilot": lambda env=env, pilot=pilot: pilot.act(env.car.state),
        }
        for name, policy in drivers.items():
            rates = [steps_per_s(env, policy, steps) for _ in range(rounds)]
            median = statistics.median(rates)
            print(
                f"{label:>20}, {name:>14}: {median:7.0f} steps/s (median of {rounds} x {steps}),"
                f" {median / ceiling:.3f} of the kernel ceiling, {median / goal:.2f}x the"
                f" {goal:.0f} goal,"
                f" {median * config.time_step_ms / 1000:.0f}x real time"
            )


def bundled() -> None:
    print(f"\n{'track':>10} {'length':>8} {'reference':>10} {'autopilot':>10} {'ratio':>6}")
    for name in known_tracks():
        track = load_track(name)
        reference = reference_lap_time_s(track)
        lap = drive_lap(track)
        ratio = lap / reference if lap is not None else float("nan")
        print(
            f"{name:>10} {track.length_m:7.0f}m {reference:9.2f}s "
            f"{lap if lap is not None else float('nan'):9.2f}s {ratio:6.3f}"
        )


def generated(count: int) -> None:
    ratios, failed = [], []
    start = time.perf_counter()
    for seed in range(count):
        track = generate_track(seed)
        lap = drive_lap(track)
        ratio = lap / reference_lap_time_s(track) if lap is not None else float("inf")
        ratios.append(ratio)
        if ratio > MARGIN:
            failed.append(seed)
    ok = sum(r <= MARGIN for r in ratios)
    finite = [r for r in ratios if np.isfinite(r)]
    print(
        f"\ngenerated tracks: autopilot within {MARGIN:.0%} of the reference on {ok}/{count}"
        f" ({ok / count:.0%}); lap / reference median {statistics.median(finite):.3f},"
        f" max {max(finite):.3f}; failed seeds {failed}; {time.perf_counter() - start:.0f} s"
    )


def realtime(seconds: float) -> None:
    from tmrl2.envs.realtime import make_realtime_sim_env

    config = SimEnvConfig(realtime=True)
    env = make_realtime_sim_env(config)
    pilot = Autopilot(load_track(config.track))
    inner = env.unwrapped.interface.world.sim  # type: ignore[attr-defined]
    step_s = config.time_step_ms / 1000.0
    errors: list[float] = []
    try:
        env.reset(seed=0)
        last = time.perf_counter()
        end = last + seconds
        while last < end:
            _, _, terminated, truncated, _ = env.step(pilot.act(inner.car.state))
            now = time.perf_counter()
            if terminated or truncated:
                env.reset()
                now = time.perf_counter()
            else:
                errors.append(abs(now - last - step_s) * 1000.0)
            last = now
    finally:
        env.close()
    err = np.asarray(errors)
    print(
        f"\nreal time at {1 / step_s:.0f} Hz for {seconds:.0f} s: {len(err)} steps, period error"
        f" median {np.median(err):.3f} ms, p99 {np.percentile(err, 99):.3f} ms,"
        f" max {err.max():.3f} ms (target p99 < 2 ms)"
    )


def stepper(batch: Any, actions: np.ndarray) -> Callable[[], None]:
    """One batch step per call with the next of ``actions`` (cycled); ended cars are reset."""
    cycle = itertools.cycle(actions)

    def call() -> None:
        _, terminated, truncated, _ = batch.step(next(cycle))
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            batch.reset(ended)

    return call


def batch_throughput(sizes: list[int], threads: list[int], rounds: int, ceiling: float) -> None:
    """Car-steps/s of :class:`SimBatch` (LIDAR observations, uniform random actions, ended
    episodes reset as the vectorized worker resets them), for each size and thread count."""
    from tmrl2.envs.sim.vec import SimBatch

    for count in threads:
        for n in sizes:
            batch = SimBatch(n, SimEnvConfig(), threads=count)
            batch.reset()
            rng = np.random.default_rng(0)

            call = stepper(batch, rng.uniform(-1.0, 1.0, (64, n, 3)).astype(np.float32))
            per_s = rate(call, 50, rounds) * n
            target = f", {per_s / BATCH_GOAL:.2f}x the {BATCH_GOAL:,.0f} goal" if n == 64 else ""
            print(
                f"batch of {n:4d} cars, {count} thread(s): {per_s:9,.0f} car-steps/s, "
                f"{per_s / ceiling:.2f} of the kernel ceiling{target}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per driver (median)")
    parser.add_argument("--generated", type=int, default=100, help="generated tracks to drive")
    parser.add_argument("--realtime-s", type=float, default=0.0, help="real-time run (s)")
    parser.add_argument(
        "--batch",
        type=int,
        nargs="*",
        default=[1, 64, 256],
        help="cars per vectorized batch to time (none: skip)",
    )
    parser.add_argument(
        "--batch-threads",
        type=int,
        nargs="+",
        default=[1],
        help="worker.sim_threads values to time the batches with (e.g. 1 2)",
    )
    args = parser.parse_args()
    # the kernels are scalar numba loops: a 2x faster core is 2x faster here, whatever AVX
    print_machine()
    ceiling = sim_kernel_ceiling(args.rounds)
    print(
        f"kernel ceiling now: {ceiling:,.0f} car-steps/s (compiled physics + LIDAR alone, "
        "256 cars per call, 1 thread); figures below are also given as a fraction of it"
    )
    if args.batch:
        batch_throughput(args.batch, args.batch_threads, args.rounds, ceiling)
    if args.steps:
        throughput(args.steps, args.rounds, ceiling)
        bundled()
    if args.generated:
        generated(args.generated)
    if args.realtime_s:
        realtime(args.realtime_s)


if __name__ == "__main__":
    main()

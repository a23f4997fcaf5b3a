"""Simulator throughput in fast mode: env steps per second on one core.

Two drivers on the default config (default track, 50 ms steps, 19 LIDAR beams): uniform
random actions (slow, wall-scraping episodes) and the scripted autopilot (full-speed laps).
Only ``env.step`` and ``env.reset`` are timed, not the driver. Each figure is the median over
rounds of ``--steps`` steps; the goal is at least 2,000 steps/s.

Run: ``python benchmarks/bench_sim.py`` (about 15 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv

GOAL_STEPS_PER_S = 2000.0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per driver (median)")
    args = parser.parse_args()

    env = SimEnv()
    env.action_space.seed(0)
    pilot = Autopilot(env.track)
    drivers: dict[str, Callable[[], np.ndarray]] = {
        "random actions": env.action_space.sample,
        "autopilot": lambda: pilot.act(env.car.state),
    }
    for name, policy in drivers.items():
        rates = [steps_per_s(env, policy, args.steps) for _ in range(args.rounds)]
        median = statistics.median(rates)
        print(
            f"{name:>15}: {median:8.0f} steps/s (median of {args.rounds} x {args.steps} steps), "
            f"{median / GOAL_STEPS_PER_S:.1f}x the {GOAL_STEPS_PER_S:.0f} steps/s goal, "
            f"{median * env.config.time_step_ms / 1000:.0f}x real time"
        )

    env.reset(seed=0)
    terminated = truncated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(pilot.act(env.car.state))
    print(f"autopilot lap on {env.config.track!r}: {info.get('lap_time_s', float('nan')):.2f} s")


if __name__ == "__main__":
    main()

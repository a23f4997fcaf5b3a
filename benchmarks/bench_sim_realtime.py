"""Real-time mode: how regular the simulator's 20 Hz steps are through rtgym.

Steps ``SimEnv`` in real time (``env.realtime: true``, 50 ms) with a constant action for
``--seconds`` and records the wall-clock period between consecutive ``step()`` returns. The
error of a step is ``|period - 50 ms|``; printed: median, p99, max, and the share of steps
that rtgym reported as late (time-step timeouts). Issue 3 asks for p99 under 2 ms over
2 minutes (the default here).

Run: ``python benchmarks/bench_sim_realtime.py [--seconds 120]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from tmrl2.envs.realtime import make_realtime_sim_env
from tmrl2.envs.sim.env import SimEnvConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to run")
    parser.add_argument("--step-ms", type=int, default=50, help="time step")
    args = parser.parse_args()
    config = SimEnvConfig(
        realtime=True, time_step_ms=args.step_ms, max_episode_steps=10**9, stuck_steps=10**9
    )
    env = make_realtime_sim_env(config)
    env.reset(seed=0)
    action = np.array([0.5, 0.0, 0.0], np.float32)
    steps = int(args.seconds * 1000 / args.step_ms)
    stamps = np.empty(steps + 1)
    late = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stamps[0] = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(action)
            stamps[i + 1] = time.perf_counter()
            if terminated or truncated:
                env.reset()
        late = sum("timed out" in str(w.message).lower() for w in caught)
    env.close()
    periods_ms = np.diff(stamps)[1:] * 1000.0  # the first period includes rtgym's start
    error = np.abs(periods_ms - args.step_ms)
    print(
        f"real-time mode, {args.step_ms} ms steps, {len(periods_ms)} steps "
        f"({args.seconds:g} s): period median {np.median(periods_ms):.3f} ms"
    )
    print(
        f"step-period error: median {np.median(error):.3f} ms, p99 "
        f"{np.percentile(error, 99):.3f} ms, max {error.max():.3f} ms "
        f"(goal: p99 < 2 ms); late steps reported by rtgym: {late}"
    )
    drift = (stamps[-1] - stamps[1]) * 1000.0 - (len(periods_ms)) * args.step_ms
    print(f"clock drift over the run: {drift:+.1f} ms")


if __name__ == "__main__":
    main()

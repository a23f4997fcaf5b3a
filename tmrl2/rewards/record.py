"""Record a reference line: drive a lap and save the positions as an N x 3 ``.npy`` array.

In the simulator the scripted driver drives; the game bridge will add recording a human lap.
The file is what ``reward.terms.progress.reference`` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.rewards.reference import ReferenceLine


def record_sim_reference(out: Path, track: str = "default", max_steps: int = 20_000) -> int:
    """Drive ``track`` with the autopilot and save the positions; returns the point count."""
    env = SimEnv(SimEnvConfig(track=track, max_episode_steps=max_steps, stuck_steps=max_steps))
    _, info = env.reset(seed=0)
    pilot = Autopilot(env.track)
    points = [info["position"]]
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(pilot.act(env.car.state))
        points.append(info["position"])
        done = terminated or truncated
    if not info["finished"]:
        raise RuntimeError(f"the scripted driver did not finish track {track!r}")
    array = np.asarray(points, dtype=np.float32)
    ReferenceLine(array)  # refuses a line too short to be a lap
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, array, allow_pickle=False)
    return len(array)

"""Record a reference line in the simulator: the autopilot drives a lap, its positions are
saved as an N x 3 ``.npy`` array (what ``reward.terms.progress.reference`` and the game env's
``env.reference`` read).

It lives with the simulator, not with the rewards: rewards read telemetry and never import an
env. Recording a lap in the game is :mod:`tmrl2.envs.trackmania.record`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.track import check_track_name
from tmrl2.rewards.reference import ReferenceLine


def record_sim_reference(out: Path, track: str = "default", max_steps: int = 20_000) -> int:
    """Drive ``track`` with the autopilot and save the positions; returns the point count.

    Raises a one-line :class:`ValueError` naming the known tracks for an unknown ``track``,
    and :class:`RuntimeError` when the autopilot does not finish the lap.
    """
    check_track_name(track)
    env = SimEnv(SimEnvConfig(track=track, max_episode_steps=max_steps))
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

"""Record a reference line in the simulator: the autopilot drives a lap, its positions are
saved as an N x 3 ``.npy`` array (what ``reward.terms.progress.reference`` and the game env's
``env.reference`` read).

It lives with the simulator, not with the rewards: rewards read telemetry and never import an
env. Recording a lap in the game is :mod:`tmrl2.envs.trackmania.record`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.reference import reference_lap_time_s
from tmrl2.envs.sim.tracklist import check_track_spec
from tmrl2.rewards.reference import ReferenceLine


@dataclass(frozen=True)
class RecordedLap:
    """What :func:`record_sim_reference` saved."""

    path: Path
    """The ``.npy`` file written."""
    points: int
    """Positions saved (one per env step, the start included)."""
    lap_time_s: float
    """The autopilot's lap time (the finish interpolated inside its step, as the game)."""
    reference_lap_s: float
    """The track's reference lap time for the same car
    (:func:`~tmrl2.envs.sim.reference.reference_lap_time_s`)."""

    def describe(self) -> str:
        """One line for the command line."""
        return (
            f"saved {self.points} points to {self.path} (autopilot lap {self.lap_time_s:.2f} s, "
            f"reference lap {self.reference_lap_s:.2f} s)"
        )


def record_sim_reference(out: Path, track: str = "default", max_steps: int = 20_000) -> RecordedLap:
    """Drive ``track`` with the autopilot and save the positions to ``out``.

    ``track`` is any track spec (a bundled name, ``gen:<seed>``, a track file, a ``.npy``
    line). Returns the point count, the lap time and the track's reference lap for the env's
    default car. Raises a one-line :class:`ValueError` naming the known tracks for an unknown
    ``track``, and
    :class:`RuntimeError` when the autopilot does not finish the lap.
    """
    check_track_spec(track)  # before building the env: one line, no pydantic wrapping
    env = SimEnv(SimEnvConfig(track=track, max_episode_steps=max_steps))
    _, info = env.reset(seed=0)
    pilot = Autopilot(env.track, env.car.params)  # plan for the car it drives
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
    out = Path(out)
    if out.suffix != ".npy":  # np.save adds it; report the file it writes
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, array, allow_pickle=False)
    reference = reference_lap_time_s(env.track, env.car.params)
    return RecordedLap(out, len(array), float(info["lap_time_s"]), reference)

"""The simulator's speed work (issue 18) changes no number: short seeded trajectories, recorded
with the code before that work into ``tests/data/sim_golden.npz``, are reproduced bit for bit.

Four drives of 300 steps (450 for the autopilot's lap): the single car (:class:`SimEnv`) with
seeded uniform random actions (a short episode cap, so several resets), with random actions
and every randomization knob on, and with the autopilot (a whole lap: the finish and its lap
time); and a batch of 4 cars (:class:`SimBatch`) with random actions (steering mostly right,
so that the cars scrape the walls), resetting the cars whose episode ended. Each step keeps
the newest LIDAR scan, the speed observation, the reward, the episode ends, the position and
velocity, and the telemetry a reward reads; the batch keeps the preview and every car's whole
state row (in the digests only). 100 image steps keep a checksum of each image.

The file holds each value as float32 (small, and a readable diff when something moves) and,
per step, a 64-bit digest of the full-precision values. The comparison is exact: the digests
must be equal (the kernels are compiled without ``fastmath``, so no sum is reassociated and
the numbers are the same bit for bit); the float32 values are compared first so that a
failure says which quantity moved, at which step, by how much.

Regenerate (only when the dynamics change on purpose):
``python tests/unit/test_sim_speed_regression.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tmrl2.envs.sim import kernels
from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.randomize import DomainRandomization
from tmrl2.envs.sim.track import SURFACES
from tmrl2.envs.sim.vec import SimBatch

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "sim_golden.npz"
STEPS = 300
INFO_KEYS = (
    "progress_m", "speed_ms", "checkpoint", "wall_contact", "race_time_ms", "gear", "rpm",
    "airborne", "air_time_s",
)  # fmt: skip
RANDOMIZED = DomainRandomization(
    grip_frac=0.1,
    mass_frac=0.1,
    engine_frac=0.1,
    steer_gain_frac=0.1,
    steer_lag_s=0.1,
    action_latency_steps=1,
    lidar_noise_std=0.01,
    speed_noise_std=0.01,
    time_step_jitter_frac=0.1,
    start_anywhere_frac=0.5,
)


def _pack(rows: dict[str, list[Any]], hidden: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Float32 copies of the per-step values (but the ``hidden`` ones), and ``digest``: one
    uint64 per step over the bytes of every value at full precision."""
    arrays = {k: np.asarray(v) for k, v in sorted(rows.items())}
    steps = len(next(iter(arrays.values())))
    digest = np.zeros(steps, np.uint64)
    for t in range(steps):
        h = hashlib.blake2b(digest_size=8)
        for a in arrays.values():
            h.update(np.ascontiguousarray(a[t]).tobytes())
        digest[t] = int.from_bytes(h.digest(), "little")
    small = {
        k: a.astype(np.float32) if a.dtype == np.float64 else a
        for k, a in arrays.items()
        if k not in hidden
    }
    return {**small, "digest": digest}


def _single(config: SimEnvConfig, driver: str, steps: int = STEPS) -> dict[str, np.ndarray]:
    env = SimEnv(config)
    rng = np.random.default_rng(7)
    pilot = Autopilot(env.track, env.car.params)
    obs, info = env.reset(seed=3)
    rows: dict[str, list[Any]] = {
        k: [] for k in ("lidar", "speed", "reward", "ends", "pose", "motion")
    }
    rows.update({k: [] for k in INFO_KEYS})
    rows["lap"] = []
    for _ in range(steps):
        if driver == "autopilot":
            action = pilot.act(env.car.state)
        else:
            action = rng.uniform(-1.0, 1.0, 3).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        rows["lidar"].append(obs["lidar"][-1])
        rows["speed"].append(obs["speed"][0])
        rows["reward"].append(reward)
        rows["ends"].append((terminated, truncated))
        rows["pose"].append(info["position"] + info["yaw_pitch_roll"][:1])
        rows["motion"].append(info["velocity"] + info["yaw_pitch_roll"][1:2])
        rows["lap"].append(info.get("lap_time_s", np.nan))
        surfaces = [SURFACES.index(info["surface"])]
        surfaces += [SURFACES.index(w) for w in info["wheel_surfaces"]]
        rows.setdefault("surfaces", []).append(surfaces)
        for key in INFO_KEYS:
            rows[key].append(info[key])
        if terminated or truncated:
            env.reset()
    return _pack(rows, hidden=("rpm", "speed_ms", "motion"))


def _batch() -> dict[str, np.ndarray]:
    batch = SimBatch(4, SimEnvConfig(max_episode_steps=120, preview_points=3), seeds=11)
    rng = np.random.default_rng(5)
    batch.reset()
    rows: dict[str, list[Any]] = {k: [] for k in ("lidar", "speed", "preview", "ends", "lap")}
    rows["states"], rows["pose"], rows["wall"] = [], [], []
    for _ in range(STEPS):
        # gas, steering mostly right: the cars meet the walls
        action = rng.uniform((0.0, -1.0, -0.2), (1.0, 0.3, 0.6), (4, 3))
        obs, terminated, truncated, lap = batch.step(action)
        rows["lidar"].append(obs["lidar"][:, -1])
        rows["speed"].append(obs["speed"][:, 0])
        rows["preview"].append(obs["preview"])
        rows["ends"].append(np.stack([terminated, truncated], axis=1))
        rows["lap"].append(lap)
        rows["states"].append(batch.states.copy())
        rows["pose"].append(batch.states[:, [kernels.X, kernels.Z, kernels.HEADING, kernels.S]])
        rows["wall"].append(batch.contact.copy())
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            batch.reset(ended)
    return _pack(rows, hidden=("states", "preview"))


def _images() -> dict[str, np.ndarray]:
    env = SimEnv(SimEnvConfig(image=True))
    env.reset(seed=1)
    pilot = Autopilot(env.track)
    weights = np.arange(1, 64 * 64 + 1, dtype=np.int64).reshape(64, 64)
    sums = []
    for _ in range(100):
        obs, *_ = env.step(pilot.act(env.car.state))
        image = obs["image"][-1].astype(np.int64)
        sums.append((image.sum(), (image * weights).sum()))
    return _pack({"checksums": sums})


def trajectories() -> dict[str, np.ndarray]:
    """Every recorded array, by ``<drive>/<name>``."""
    drives = {
        "random": _single(SimEnvConfig(max_episode_steps=120), "random"),
        "randomized": _single(SimEnvConfig(randomization=RANDOMIZED), "random"),
        "autopilot": _single(SimEnvConfig(), "autopilot", steps=450),
        "batch": _batch(),
        "image": _images(),
    }
    return {f"{d}/{k}": v for d, arrays in drives.items() for k, v in arrays.items()}


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as golden:
        return {k: golden[k] for k in golden.files}


@pytest.fixture(scope="module")
def replayed() -> dict[str, np.ndarray]:
    return trajectories()


def test_golden_covers_resets_and_a_finish(recorded: dict[str, np.ndarray]) -> None:
    assert recorded["random/ends"][:, 1].sum() >= 2  # truncated at the cap, then reset
    assert recorded["autopilot/ends"][:, 0].any()  # the lap is finished...
    assert np.isfinite(recorded["autopilot/lap"]).any()  # ...and timed
    assert recorded["batch/ends"].any()
    assert recorded["batch/wall"].any()  # LIDAR and physics against a wall


@pytest.mark.parametrize("drive", ["random", "randomized", "autopilot", "batch", "image"])
def test_trajectory_is_reproduced_exactly(
    drive: str, recorded: dict[str, np.ndarray], replayed: dict[str, np.ndarray]
) -> None:
    keys = sorted(k for k in recorded if k.startswith(drive + "/"))
    assert f"{drive}/digest" in keys
    assert keys == sorted(k for k in replayed if k.startswith(drive + "/"))
    for key in keys:  # the digest last: the values say what moved first
        if not key.endswith("/digest"):
            np.testing.assert_array_equal(replayed[key], recorded[key], err_msg=key)
    np.testing.assert_array_equal(replayed[f"{drive}/digest"], recorded[f"{drive}/digest"])


if __name__ == "__main__":
    np.savez_compressed(GOLDEN, **trajectories())
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB)")

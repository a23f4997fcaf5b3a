"""The sparse-reward task (configs/sim_sparse.yaml, docs/exploration.md) on both of its
tracks: the claims its documentation makes about why plain SAC should not solve it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tmrl2.config.load import load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "sim_sparse.yaml"
TRACKS = ["sparse", "sparse_sweep"]


def episode(env: Any, policy: Any, limit: int = 3000) -> tuple[float, dict[str, Any], bool]:
    """(return, last info, terminated) of one episode driven by ``policy(sim)``."""
    sim = env.unwrapped
    assert isinstance(sim, SimEnv)
    total, info, terminated = 0.0, {}, False
    for _ in range(limit):
        _, reward, terminated, truncated, info = env.step(policy(sim))
        total += float(reward)
        if terminated or truncated:
            break
    return total, info, terminated


@pytest.fixture(params=TRACKS)
def env(request: pytest.FixtureRequest) -> Any:
    return build_env(load_config(CONFIG, [f"env.track={request.param}"]))


def test_full_gas_straight_ahead_crashes_before_the_first_checkpoint(env: Any) -> None:
    env.reset(seed=0)
    total, info, terminated = episode(env, lambda sim: np.array([1.0, 0.0, 0.0], np.float32))
    first = env.unwrapped.track.checkpoints_m[0]
    assert terminated and info["wall_contact"]  # a crash ends the episode as terminal
    assert 100.0 < info["progress_m"] < first and total == 0.0


def test_random_actions_earn_nothing(env: Any) -> None:
    rng = np.random.default_rng(0)
    for seed in range(5):
        env.reset(seed=seed)
        total, info, _ = episode(env, lambda sim: rng.uniform(-1, 1, 3).astype(np.float32))
        assert total == 0.0 and info["progress_m"] < 100.0


def test_a_driver_collects_every_checkpoint_and_the_finish(env: Any) -> None:
    env.reset(seed=0)
    sim = env.unwrapped
    pilot = Autopilot(sim.track)
    total, info, _ = episode(env, lambda s: pilot.act(s.car.state))
    checkpoints = len(sim.track.checkpoints_m)
    assert info["finished"]
    assert total == pytest.approx(checkpoints * 1.0 + 5.0)  # 1 per checkpoint, 5 at the finish

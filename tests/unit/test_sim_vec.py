"""The vectorized batch of cars: the single car's physics and LIDAR, N at a time."""

from __future__ import annotations

import numpy as np
import pytest

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.vec import SimBatch


@pytest.mark.parametrize("track", ["default", "alpine"])
def test_each_car_follows_the_single_car_model(track: str) -> None:
    """Same controls, same trajectories and LIDAR (to rounding), over 300 steps (15 s)."""
    cfg = SimEnvConfig(track=track, max_episode_steps=10**6, stuck_steps=10**6)
    envs = [SimEnv(cfg) for _ in range(3)]
    batch = SimBatch(3, cfg)
    batch.reset()
    for i, env in enumerate(envs):
        env.reset(seed=i)
        batch.set_car(i, env.car.state)
    pilot = Autopilot(envs[0].track)
    rng = np.random.default_rng(0)
    worst_pos = worst_lidar = 0.0
    for _ in range(300):
        # the autopilot's controls plus noise per car: walls stay untouched (a car exactly on
        # a wall can round to either side, and the two models then part ways)
        actions = np.stack([pilot.act(env.car.state) for env in envs])
        actions[:, 2] += rng.normal(0.0, 0.05, 3)
        obs, reward, terminated, truncated, _ = batch.step(actions)
        assert not (terminated.any() or truncated.any())
        for i, env in enumerate(envs):
            single, *_ = env.step(actions[i])
            st = env.car.state
            worst_pos = max(
                worst_pos,
                abs(st.x - batch.state["x"][i]),
                abs(st.z - batch.state["z"][i]),
                abs(st.y - batch.state["y"][i]),
            )
            assert batch.state["gear"][i] == st.gear
            worst_lidar = max(worst_lidar, float(np.abs(single["lidar"] - obs["lidar"][i]).max()))
    assert worst_pos < 1e-6 and worst_lidar < 1e-4
    assert batch.progress.min() > 300.0  # the cars really drove


def test_shapes_rewards_and_auto_reset() -> None:
    cfg = SimEnvConfig(max_episode_steps=20)
    batch = SimBatch(5, cfg, seed=1)
    obs = batch.reset()
    assert obs["lidar"].shape == (5, 1, 19) and obs["speed"].shape == (5, 1)
    assert obs["prev_actions"].shape == (5, 2, 3)
    full_gas = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), (5, 1))
    total = np.zeros(5)
    for t in range(20):
        obs, reward, terminated, truncated, info = batch.step(full_gas)
        total += reward
        if t < 19:
            assert not truncated.any()
    assert truncated.all() and not terminated.any()
    assert info["final_obs_lidar"].shape == (5, 1, 19)
    assert (total > 0.5).all()  # 0.1 per metre: about 7 m in the first second
    assert (batch.steps == 0).all() and (batch.progress == 0).all()  # reset on their own
    assert (obs["prev_actions"] == 0).all()
    with pytest.raises(ValueError, match="at least one car"):
        SimBatch(0)

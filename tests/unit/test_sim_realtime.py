"""Real-time simulator through rtgym: wall-clock pacing and the fast mode's contract."""

from __future__ import annotations

import time

import numpy as np

from tmrl2.config.load import load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.realtime import make_realtime_sim_env
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig


def test_real_time_steps_follow_the_wall_clock_with_the_fast_contract() -> None:
    overrides = ["env.realtime=true", "env.lidar_history=2", "env.action_history=3"]
    config = load_config(None, overrides).env
    assert isinstance(config, SimEnvConfig)
    env = build_env(load_config(None, overrides))  # with the reward wrapper
    fast = SimEnv(config)
    try:
        assert env.observation_space == fast.observation_space
        assert env.action_space == fast.action_space
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert set(info) == set(fast.reset(seed=0)[1])
        assert not obs["prev_actions"].any()
        start = time.perf_counter()
        for k in range(20):
            action = np.array([1.0, 0.0, 0.05 * k], np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
        elapsed = time.perf_counter() - start
        assert 0.8 < elapsed < 2.0  # 20 steps of 50 ms
        assert env.observation_space.contains(obs)
        np.testing.assert_allclose(obs["prev_actions"][-1], action)  # newest last
        assert set(info) - {"action", "reward_terms"} == set(fast.step(action)[4])
        assert not terminated and not truncated and float(reward) > 0.0
        assert info["race_time_ms"] == 20 * 50
    finally:
        env.close()


def test_simulator_truncation_reaches_the_real_time_env() -> None:
    env = make_realtime_sim_env(SimEnvConfig(realtime=True, time_step_ms=20, max_episode_steps=5))
    try:
        env.reset(seed=0)
        brake = np.array([0.0, 1.0, 0.0], np.float32)
        ends = [env.step(brake)[2:4] for _ in range(5)]
        assert ends == [(False, False)] * 4 + [(False, True)]
        obs, info = env.reset(seed=1)  # the next episode starts cleanly
        assert info["race_time_ms"] == 0 and env.observation_space.contains(obs)
    finally:
        env.close()


def test_real_time_env_carries_the_optional_image_and_preview() -> None:
    config = SimEnvConfig(
        realtime=True, time_step_ms=20, image=True, image_history=2, preview_points=3
    )
    env = make_realtime_sim_env(config)
    try:
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert set(obs) == {"lidar", "speed", "prev_actions", "image", "preview"}
        obs = env.step(np.array([1.0, 0.0, 0.0], np.float32))[0]
        assert env.observation_space.contains(obs) and obs["image"].shape == (2, 64, 64)
    finally:
        env.close()

"""Build the environment and its reward from a config (the one place envs are wired)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from tmrl2.config import registry
from tmrl2.config.schema import Config
from tmrl2.rewards.base import Reward


def build_reward(config: Config) -> Reward:
    """The reward component the config names."""
    reward_cls = registry.resolve("reward", config.reward.kind)
    reward: Reward = reward_cls(config.reward)
    return reward


def build_env(config: Config) -> gym.Env[Any, Any]:
    """A Gymnasium env for the config: fast or real-time, with the configured reward.

    The built-in simulator runs in real time through rtgym when ``env.realtime`` is true;
    other envs are constructed as ``EnvClass(env_config, reward=reward)``.
    """
    env_cls = registry.resolve("env", config.env.kind)
    reward = build_reward(config)
    if getattr(config.env, "realtime", False):
        from tmrl2.envs.sim.env import SimEnv

        if env_cls is SimEnv:
            from tmrl2.envs.realtime import make_realtime_sim_env

            return make_realtime_sim_env(config.env, reward)  # type: ignore[arg-type]
    env: gym.Env[Any, Any] = env_cls(config.env, reward=reward)
    return env

"""Build the environment and its reward from a config (the one place envs are wired)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from tmrl2.config import registry
from tmrl2.config.schema import Config
from tmrl2.envs.wrappers import NoProgressTruncation, RewardWrapper
from tmrl2.rewards.base import Reward
from tmrl2.rewards.manager import NullReward


def build_reward(config: Config) -> Reward:
    """The reward component the config names."""
    reward_cls = registry.resolve("reward", config.reward.kind)
    reward: Reward = reward_cls(config.reward)
    return reward


def build_env(config: Config) -> gym.Env[Any, Any]:
    """A Gymnasium env for the config: fast or real-time, with the configured reward.

    The built-in simulator (fast, or real time through rtgym when ``env.realtime``) reports
    telemetry, and its reward is computed from that telemetry by :class:`RewardWrapper`;
    other envs are constructed as ``EnvClass(env_config, reward=reward)``.
    """
    from tmrl2.envs.sim.env import SimEnv

    env_cls = registry.resolve("env", config.env.kind)
    reward = build_reward(config)
    if env_cls is not SimEnv:
        custom: gym.Env[Any, Any] = env_cls(config.env, reward=reward)
        return custom
    env: gym.Env[Any, Any]
    if getattr(config.env, "realtime", False):
        from tmrl2.envs.realtime import make_realtime_sim_env

        env = make_realtime_sim_env(config.env, NullReward())  # type: ignore[arg-type]
    else:
        env = SimEnv(config.env, reward=NullReward())  # type: ignore[arg-type]
    env = RewardWrapper(env, reward)
    stall = getattr(config.reward, "no_progress", None)
    if stall is not None:
        env = NoProgressTruncation(
            env, stall.grace_steps, stall.patience_steps, stall.min_progress_m
        )
    return env

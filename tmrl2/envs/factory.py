"""Build the environment and its reward from a config (the one place envs are wired).

The rule: an env class that declares ``reports_telemetry = True`` (the simulator, fast or
real time, and the game) is built as ``EnvClass.from_config(env_config)`` (or
``EnvClass(env_config)`` without that classmethod) and always wrapped by
:class:`~tmrl2.envs.wrappers.RewardWrapper` (the configured reward, computed from its
telemetry and the action) and :class:`~tmrl2.envs.wrappers.NoProgressTruncation` (the one
stall detector). Other envs keep the ``EnvClass(env_config, reward=reward)`` contract.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from tmrl2.config import registry
from tmrl2.config.schema import Config
from tmrl2.envs.observation import TelemetryEnvConfig
from tmrl2.envs.wrappers import NoProgressTruncation, RewardWrapper
from tmrl2.rewards.base import Reward


def build_reward(config: Config) -> Reward:
    """The reward component the config names."""
    reward_cls = registry.resolve("reward", config.reward.kind)
    reward: Reward = reward_cls(config.reward)
    return reward


def reports_telemetry(env_cls: Any) -> bool:
    """Whether ``env_cls`` promises the telemetry contract of :mod:`tmrl2.envs.observation`."""
    return bool(getattr(env_cls, "reports_telemetry", False))


def build_env(config: Config) -> gym.Env[Any, Any]:
    """A Gymnasium env for the config, with the configured reward and episode ends."""
    env_cls = registry.resolve("env", config.env.kind)
    reward = build_reward(config)
    if not reports_telemetry(env_cls):
        custom: gym.Env[Any, Any] = env_cls(config.env, reward=reward)
        return custom
    env_config = config.env
    if not isinstance(env_config, TelemetryEnvConfig):
        raise TypeError(
            f"{env_cls.__name__} reports telemetry, so its Config must subclass "
            "tmrl2.envs.observation.TelemetryEnvConfig"
        )
    make = getattr(env_cls, "from_config", env_cls)  # e.g. the simulator in real time
    env: gym.Env[Any, Any] = make(env_config)
    return wrap_telemetry_env(env, env_config, reward, getattr(config.reward, "no_progress", None))


def wrap_telemetry_env(
    env: gym.Env[Any, Any], env_config: TelemetryEnvConfig, reward: Reward, no_progress: Any = None
) -> gym.Env[Any, Any]:
    """``env`` with its reward and stall detection: ``env.stuck_steps`` /
    ``env.stuck_progress_m`` (no grace period), or ``reward.no_progress`` when it is set
    (``grace_steps``, ``patience_steps``, ``min_progress_m``); ``env.on_stuck`` says whether
    a stall truncates the episode or respawns the car."""
    wrapped: gym.Env[Any, Any] = RewardWrapper(env, reward)
    if no_progress is not None:
        grace, patience = no_progress.grace_steps, no_progress.patience_steps
        min_progress = no_progress.min_progress_m
    else:
        grace, patience = 0, env_config.stuck_steps
        min_progress = env_config.stuck_progress_m
    return NoProgressTruncation(wrapped, grace, patience, min_progress, env_config.on_stuck)

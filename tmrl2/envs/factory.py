"""Build the environment and its reward from a config (the one place envs are wired).

The rule: an env class that declares ``reports_telemetry = True`` (the simulator, fast or
real time, and the game) is built as ``EnvClass.from_config(env_config)`` (or
``EnvClass(env_config)`` without that classmethod) and always wrapped by
:class:`~tmrl2.envs.wrappers.RewardWrapper` (the configured reward, computed from its
telemetry and the action) and :class:`~tmrl2.envs.wrappers.NoProgressTruncation` (the one
stall detector). An env that declares ``provides_reward = True`` (``env.kind: gym``) brings
its own reward: it is built as ``EnvClass.from_config(env_config)`` (or
``EnvClass(env_config)``) and no reward is built. Other envs keep the
``EnvClass(env_config, reward=reward)`` contract. :func:`constructor_problem` checks these
calls against the class's signature when the config loads, without building anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from tmrl2.config import registry
from tmrl2.config.schema import Config
from tmrl2.envs.observation import TelemetryEnvConfig
from tmrl2.envs.wrappers import NoProgressTruncation, RewardWrapper
from tmrl2.rewards.base import Reward


def build_reward(config: Config) -> Reward:
    """The reward component the config names."""
    if config.reward is None:
        raise ValueError(f"env.kind {config.env.kind} brings its own reward: none to build")
    reward_cls = registry.resolve("reward", config.reward.kind)
    reward: Reward = reward_cls(config.reward)
    return reward


def reports_telemetry(env_cls: Any) -> bool:
    """Whether ``env_cls`` promises the telemetry contract of :mod:`tmrl2.envs.observation`."""
    return bool(getattr(env_cls, "reports_telemetry", False))


def provides_reward(env_cls: Any) -> bool:
    """Whether ``env_cls`` brings its own reward (no ``reward`` section is built for it)."""
    return bool(getattr(env_cls, "provides_reward", False))


def _maker(env_cls: Any) -> Callable[..., Any]:
    """What builds a telemetry env or one with its own reward from its config alone."""
    return getattr(env_cls, "from_config", env_cls)  # type: ignore[no-any-return]


def build_env(config: Config) -> gym.Env[Any, Any]:
    """A Gymnasium env for the config, with the configured reward and episode ends."""
    env_cls = registry.resolve("env", config.env.kind)
    if provides_reward(env_cls):
        own: gym.Env[Any, Any] = _maker(env_cls)(config.env)
        return own
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
    env: gym.Env[Any, Any] = _maker(env_cls)(env_config)  # e.g. the simulator in real time
    return wrap_telemetry_env(env, env_config, reward, getattr(config.reward, "no_progress", None))


def constructor_problem(env_cls: Any, kind: str) -> str | None:
    """Why :func:`build_env` cannot call ``env_cls`` (the env ``kind`` names) as it will, from
    its signature alone (nothing is built); None when it can, or the signature is unknown."""
    if reports_telemetry(env_cls) and provides_reward(env_cls):
        return (
            f"env.kind: {kind} sets both reports_telemetry and provides_reward: a telemetry env "
            "is rewarded by the reward section, an env with its own reward has none; keep one"
        )
    name = getattr(env_cls, "__name__", kind)
    own = reports_telemetry(env_cls) or provides_reward(env_cls)
    target = _maker(env_cls) if own else env_cls
    kwargs = {} if own else {"reward": None}
    try:
        inspect.signature(target).bind(None, **kwargs)
        return None
    except TypeError:
        pass
    except ValueError:  # no signature to read (a builtin): nothing to check
        return None
    takes = _shown_signature(env_cls, target)
    what = "constructor"
    if target is not env_cls:
        what, call = "from_config", f"{name}.from_config(env_config)"
        fix = "define from_config(cls, config)"
    elif own:
        call, fix = f"{name}(env_config)", "define __init__(self, config)"
    else:
        call = f"{name}(env_config, reward=reward)"
        fix = (
            "define __init__(self, config, reward) (or set provides_reward = True and take "
            "(self, config))"
        )
    return (
        f"env.kind: {kind} cannot be built: its {what} takes {takes} but EVO RL calls {call}: {fix}"
    )


def _shown_signature(env_cls: Any, target: Any) -> str:
    """The parameters as its author wrote them, annotations left out: ``(self, ...)`` for a
    class."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return "(?)"
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    shown = str(sig.replace(parameters=bare, return_annotation=inspect.Signature.empty))
    if target is env_cls and isinstance(env_cls, type):
        return "(self)" if shown == "()" else f"(self, {shown[1:]}"
    return shown


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

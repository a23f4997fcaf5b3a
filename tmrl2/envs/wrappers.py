"""The wrappers every telemetry env goes through: its reward and its episode ends.

:class:`RewardWrapper` computes the reward from the step's ``info`` (plus the action, as
``info["action"]``) so that one reward definition serves the simulator and the game alike, and
reports the weighted terms in ``info["reward_terms"]``. :class:`NoProgressTruncation` is the
one stall detector: it ends (or respawns) an episode whose progress stalls, after an optional
grace period. :func:`tmrl2.envs.factory.build_env` applies both to every env that declares
``reports_telemetry`` (see :mod:`tmrl2.envs.observation`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, SupportsFloat

import gymnasium as gym

from tmrl2.rewards.base import Reward


class RewardWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """Replace the env's reward by ``reward(info)``."""

    def __init__(self, env: gym.Env[Any, Any], reward: Reward) -> None:
        super().__init__(env)
        self.reward_fn = reward

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.reward_fn.reset(info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(action)
        info["action"] = action
        reward = self.reward_fn(info)
        terms = getattr(self.reward_fn, "last_terms", None)
        if terms is not None:
            info["reward_terms"] = terms
        return obs, reward, terminated, truncated, info


class NoProgressTruncation(gym.Wrapper[Any, Any, Any, Any]):
    """Stall detection: when ``progress_m`` has not grown by ``min_progress_m`` for
    ``patience_steps`` steps (never within the first ``grace_steps`` of an episode), truncate
    the episode (``info["stalled"]``), or with ``on_stall="respawn"`` ask the env to respawn
    the car at its last checkpoint (``request_respawn()``, applied at the next step) and go on.

    An episode whose ``info`` says ``track_length_m == 0`` has no line to measure progress
    along (a game map without a reference): it is never stalled.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        grace_steps: int,
        patience_steps: int,
        min_progress_m: float,
        on_stall: Literal["restart", "respawn"] = "restart",
    ) -> None:
        super().__init__(env)
        self.grace_steps = grace_steps
        self.patience_steps = patience_steps
        self.min_progress_m = min_progress_m
        self.on_stall = on_stall
        self._respawn: Callable[[], None] | None = None
        if on_stall == "respawn":
            try:
                self._respawn = env.get_wrapper_attr("request_respawn")
            except AttributeError:
                raise ValueError(
                    f"env.on_stuck 'respawn' needs an env that can respawn the car; "
                    f"{type(env.unwrapped).__name__} cannot: use 'restart'"
                ) from None
        self._steps = self._since = 0
        self._anchor_m = 0.0
        self._measured = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._steps = self._since = 0
        self._anchor_m = float(info["progress_m"])
        self._measured = float(info.get("track_length_m", 1.0)) > 0.0
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        progress = float(info["progress_m"])
        if progress >= self._anchor_m + self.min_progress_m:
            self._anchor_m, self._since = progress, self._steps
        stalled = self._steps - max(self._since, self.grace_steps) >= self.patience_steps
        if stalled and self._measured and not (terminated or truncated):
            info["stalled"] = True
            if self._respawn is not None:
                self._respawn()
                self._anchor_m, self._since = progress, self._steps
            else:
                truncated = True
        return obs, reward, terminated, truncated, info

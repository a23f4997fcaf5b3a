"""Wrappers that turn an env's telemetry into rewards and episode ends.

:class:`RewardWrapper` computes the reward from the step's ``info`` (plus the action, as
``info["action"]``) so that one reward definition serves the simulator and the game alike, and
reports the weighted terms in ``info["reward_terms"]``. :class:`NoProgressTruncation` ends an
episode that stalls after a grace period.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

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
    """Truncate when ``progress_m`` has not grown by ``min_progress_m`` for ``patience_steps``
    steps, never within the first ``grace_steps`` of an episode."""

    def __init__(
        self, env: gym.Env[Any, Any], grace_steps: int, patience_steps: int, min_progress_m: float
    ) -> None:
        super().__init__(env)
        self.grace_steps = grace_steps
        self.patience_steps = patience_steps
        self.min_progress_m = min_progress_m
        self._steps = self._since = 0
        self._anchor_m = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._steps = self._since = 0
        self._anchor_m = float(info["progress_m"])
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        progress = float(info["progress_m"])
        if progress >= self._anchor_m + self.min_progress_m:
            self._anchor_m, self._since = progress, self._steps
        stalled = self._steps - max(self._since, self.grace_steps) >= self.patience_steps
        if stalled and not terminated:
            info["stalled"] = True
            truncated = True
        return obs, reward, terminated, truncated, info

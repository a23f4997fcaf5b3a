"""Progress reward: metres gained along the track's centerline, scaled.

Like tmrl's default reward, it pays for covering distance quickly: driving faster earns the
same total in fewer steps, so the discounted return rewards speed. A constant per-step
``time_penalty`` and a ``wall_penalty`` on wall contact are optional shaping terms.
"""

from __future__ import annotations

from typing import Any

from tmrl2.config.base import ComponentConfig


class ProgressRewardConfig(ComponentConfig):
    kind: str = "progress"
    scale: float = 0.1
    """Reward per metre of progress along the centerline."""
    time_penalty: float = 0.0
    """Subtracted every step (encourages finishing sooner)."""
    wall_penalty: float = 0.0
    """Subtracted on every step with wall contact."""
    finish_bonus: float = 0.0
    """Added once when the car crosses the finish line."""


class ProgressReward:
    """Scaled progress along the centerline since the previous step."""

    Config = ProgressRewardConfig

    def __init__(self, config: ProgressRewardConfig | None = None) -> None:
        self.config = config or ProgressRewardConfig()
        self._last_progress_m = 0.0

    def reset(self, info: dict[str, Any]) -> None:
        self._last_progress_m = float(info["progress_m"])

    def __call__(self, info: dict[str, Any]) -> float:
        progress_m = float(info["progress_m"])
        reward = (progress_m - self._last_progress_m) * self.config.scale
        self._last_progress_m = progress_m
        reward -= self.config.time_penalty
        if info.get("wall_contact"):
            reward -= self.config.wall_penalty
        if info.get("finished"):
            reward += self.config.finish_bonus
        return reward

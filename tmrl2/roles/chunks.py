"""Experience chunks: the worker's fixed-size batches of transitions, in wire naming.

A chunk is a mapping of equal-length arrays: ``obs/<key>`` and ``next_obs/<key>`` per part of a
Dict observation (``obs``/``next_obs`` for a Box), ``action``, ``reward``, ``terminated`` and
``truncated``. The same names are used on the wire and by the replay memory.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def obs_parts(space: gym.Space[Any]) -> dict[str, gym.spaces.Box]:
    """The Box parts of an observation space by wire suffix ('' for a plain Box)."""
    if isinstance(space, gym.spaces.Dict):
        parts = {}
        for key, sub in space.spaces.items():
            if not isinstance(sub, gym.spaces.Box):
                raise TypeError(f"observation part {key!r} must be a Box, got {sub}")
            parts[key] = sub
        return parts
    if isinstance(space, gym.spaces.Box):
        return {"": space}
    raise TypeError(f"observation space must be a Box or a Dict of Boxes, got {space}")


def _name(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if key else prefix


class ChunkBuilder:
    """Preallocated arrays for ``size`` transitions; ``take`` hands a filled chunk over."""

    def __init__(self, obs_space: gym.Space[Any], action_space: gym.Space[Any], size: int) -> None:
        self.size = size
        self._parts = obs_parts(obs_space)
        assert action_space.shape is not None
        self._arrays: dict[str, np.ndarray] = {
            "action": np.zeros((size, *action_space.shape), np.float32),
            "reward": np.zeros(size, np.float32),
            "terminated": np.zeros(size, bool),
            "truncated": np.zeros(size, bool),
        }
        for key, box in self._parts.items():
            for prefix in ("obs", "next_obs"):
                self._arrays[_name(prefix, key)] = np.zeros((size, *box.shape), box.dtype)
        self.count = 0

    def add(
        self,
        obs: Any,
        action: np.ndarray,
        reward: float,
        terminated: bool,
        truncated: bool,
        next_obs: Any,
    ) -> None:
        i = self.count
        for key in self._parts:
            self._arrays[_name("obs", key)][i] = obs[key] if key else obs
            self._arrays[_name("next_obs", key)][i] = next_obs[key] if key else next_obs
        self._arrays["action"][i] = action
        self._arrays["reward"][i] = reward
        self._arrays["terminated"][i] = terminated
        self._arrays["truncated"][i] = truncated
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def take(self) -> dict[str, np.ndarray]:
        """Copies of the filled rows; the builder starts empty again."""
        chunk = {name: array[: self.count].copy() for name, array in self._arrays.items()}
        self.count = 0
        return chunk

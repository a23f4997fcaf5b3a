"""The worker's chunk builder: fixed-size batches of transitions in wire naming.

The naming (``obs/<key>``, ``next_obs/<key>``, ``action``...) is defined once, in
:mod:`tmrl2.memory.batch` (:func:`chunk_spec`); the same names are used on the wire and by the
replay memory.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from tmrl2.memory.batch import chunk_key, chunk_spec, obs_parts


class ChunkBuilder:
    """Preallocated arrays for ``size`` transitions; ``take`` hands a filled chunk over."""

    def __init__(self, obs_space: gym.Space[Any], action_space: gym.spaces.Box, size: int) -> None:
        self.size = size
        self._is_box = isinstance(obs_space, gym.spaces.Box)
        self._obs_keys = {
            part: (chunk_key("obs", part, obs_space), chunk_key("next_obs", part, obs_space))
            for part in obs_parts(obs_space)
        }
        self._arrays = {
            name: np.zeros((size, *shape), dtype)
            for name, (shape, dtype) in chunk_spec(obs_space, action_space).items()
        }
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
        for part, (obs_name, next_name) in self._obs_keys.items():
            self._arrays[obs_name][i] = obs if self._is_box else obs[part]
            self._arrays[next_name][i] = next_obs if self._is_box else next_obs[part]
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

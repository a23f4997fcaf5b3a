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
from tmrl2.memory.compact import FRAMES, NEXT_INDEX, OBS_INDEX, FrameTable
from tmrl2.roles.chunk_checks import Spec, spec_meta

__all__ = ["ChunkBuilder", "Spec", "image_keys", "spec_meta", "wire_spec"]


def image_keys(obs_space: gym.Space[Any]) -> list[str]:
    """Parts of a ``Dict`` space that are uint8 histories of frames (``(history, H, W[, C])``):
    the ones worth sending once per frame."""
    if not isinstance(obs_space, gym.spaces.Dict):
        return []
    return [
        key
        for key, box in obs_parts(obs_space).items()
        if box.dtype == np.uint8 and len(box.shape) >= 3
    ]


class ChunkBuilder:
    """Preallocated arrays for ``size`` transitions; ``take`` hands a filled chunk over.

    With ``compact``, image histories go out once per frame (:mod:`tmrl2.memory.compact`):
    about 8x fewer bytes for a 4-frame history.
    """

    def __init__(
        self,
        obs_space: gym.Space[Any],
        action_space: gym.spaces.Box,
        size: int,
        compact: bool = False,
    ) -> None:
        self.size = size
        self._is_box = isinstance(obs_space, gym.spaces.Box)
        compacted = image_keys(obs_space) if compact else []
        parts = obs_parts(obs_space)
        self._tables = {
            key: FrameTable(parts[key].shape[0], tuple(parts[key].shape[1:]), parts[key].dtype)
            for key in compacted
        }
        self._obs_keys = {
            part: (chunk_key("obs", part, obs_space), chunk_key("next_obs", part, obs_space))
            for part in parts
            if part not in self._tables
        }
        self._arrays = {
            name: np.zeros((size, *shape), dtype)
            for name, (shape, dtype) in chunk_spec(obs_space, action_space).items()
            if name.split("/", 1)[-1] not in self._tables or "/" not in name
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
        for part, table in self._tables.items():
            table.add(obs[part], next_obs[part])
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
        for part, table in self._tables.items():
            chunk.update(table.take(part))
        self.count = 0
        return chunk


def wire_spec(obs_space: gym.Space[Any], action_space: gym.spaces.Box, compact: bool) -> Spec:
    """What a chunk of this run carries on the wire: :func:`chunk_spec`, with each image
    history in the compact layout (when ``compact``) as ``frames/<key>`` (per-frame shape; its
    first dimension is the frame count, free) and ``obs_index/<key>``/``next_index/<key>``
    (``(history,)`` int32 per row). The trainer sends it in its ``hello`` (the server checks
    chunks against it) and checks every chunk against it again at ingestion."""
    spec = chunk_spec(obs_space, action_space)
    parts = obs_parts(obs_space)
    for key in image_keys(obs_space) if compact else []:
        box = parts[key]
        del spec[chunk_key("obs", key, obs_space)], spec[chunk_key("next_obs", key, obs_space)]
        spec[FRAMES + key] = (tuple(box.shape[1:]), np.dtype(box.dtype))
        spec[OBS_INDEX + key] = ((int(box.shape[0]),), np.dtype(np.int32))
        spec[NEXT_INDEX + key] = ((int(box.shape[0]),), np.dtype(np.int32))
    return spec

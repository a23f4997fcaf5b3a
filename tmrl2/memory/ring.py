"""Preallocated ring storage of transitions: the default replay memory (``kind: ring``).

One numpy array per field of the chunk contract (:mod:`tmrl2.memory.batch`), each with
``capacity`` rows, written in place at a write pointer that wraps around; the oldest
transitions are overwritten first. Appending a chunk is one vectorized copy per field (two
when it wraps), sampling is one fancy-indexed gather and one ``torch.from_numpy`` per field.
Which rows are sampled is the business of a separate :class:`~tmrl2.memory.sampler.Sampler`.

Not thread-safe: call :meth:`RingMemory.append` and :meth:`RingMemory.sample` from one thread
(or under one lock).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field

from tmrl2.config.base import ComponentConfig
from tmrl2.memory.batch import Batch, chunk_key, chunk_spec, obs_parts, validate_chunk
from tmrl2.memory.sampler import Sampler, build_sampler

_NOT_STORED = ("truncated",)
"""Chunk keys that are validated but not stored: one-step targets only need ``terminated``."""


class RingMemoryConfig(ComponentConfig):
    """Config of the ring replay memory."""

    kind: str = "ring"
    """Registry name of this memory."""
    capacity: int = Field(default=1_000_000, gt=0)
    """Transitions kept; once full, each new transition overwrites the oldest one."""
    sampler: Literal["uniform"] = "uniform"
    """How batches are drawn: ``uniform`` (with replacement, among the filled rows)."""


class RingMemory:
    """Fixed-capacity replay memory of transitions stored in preallocated numpy arrays."""

    Config = RingMemoryConfig

    def __init__(
        self,
        config: RingMemoryConfig,
        obs_space: spaces.Space,
        action_space: spaces.Box,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        """Args:
        config: the ``memory`` section of the run config.
        obs_space: observation space of the env (a ``Box`` or a ``Dict`` of ``Box``).
        action_space: action space of the env (a ``Box``).
        device: torch device that sampled batches are moved to.
        seed: seed of the sampler.
        """
        if not isinstance(action_space, spaces.Box):
            raise TypeError(f"action space must be a gymnasium Box, got {action_space}")
        self.config = config
        self.obs_space = obs_space
        self.action_space = action_space
        self.device = torch.device(device)
        self.capacity = config.capacity
        self.sampler: Sampler = build_sampler(config.sampler, config.capacity, seed)
        self._spec = chunk_spec(obs_space, action_space)
        self._parts = list(obs_parts(obs_space))
        # np.zeros maps untouched pages lazily: a large capacity costs memory as it fills.
        self._arrays: dict[str, np.ndarray] = {
            key: np.zeros((self.capacity, *shape), dtype=dtype)
            for key, (shape, dtype) in self._spec.items()
            if key not in _NOT_STORED
        }
        self._ptr = 0
        self._size = 0
        self.total_appended = 0
        """Transitions appended since creation (or restored from a checkpoint)."""

    def __len__(self) -> int:
        """Number of filled rows (at most ``capacity``)."""
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes reserved by the storage arrays."""
        return sum(arr.nbytes for arr in self._arrays.values())

    @property
    def bytes_per_transition(self) -> int:
        """Bytes one stored transition takes."""
        return sum(arr[0].nbytes for arr in self._arrays.values())

    def append(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Copy a chunk of transitions into the ring (arrays may be read-only).

        A chunk longer than ``capacity`` keeps its last ``capacity`` rows, at the same places
        as if the rows had been appended one by one.

        Raises:
            ValueError: when a key is missing or unexpected, or a shape or dtype is wrong; the
                message names the key and what was expected. Nothing is written then.
        """
        n = validate_chunk(chunk, self._spec)
        self._write(chunk, n)
        self.total_appended += n

    def _write(self, chunk: Mapping[str, np.ndarray], n: int) -> None:
        if n == 0:
            return
        cap = self.capacity
        skip = max(0, n - cap)  # rows that would be overwritten within this very chunk
        rows = n - skip
        start = (self._ptr + skip) % cap
        first = min(rows, cap - start)
        for key, dst in self._arrays.items():
            src = chunk[key]
            dst[start : start + first] = src[skip : skip + first]
            if rows > first:
                dst[: rows - first] = src[skip + first : n]
        self._ptr = (start + rows) % cap
        self._size = min(cap, self._size + n)
        self.sampler.on_write((start + np.arange(rows, dtype=np.int64)) % cap)

    def sample(self, batch_size: int) -> Batch:
        """Draw a batch of ``batch_size`` transitions with the sampler, on ``device``.

        Raises:
            ValueError: when the memory is empty.
        """
        return self.gather(self.sampler.sample(self._size, batch_size))

    def gather(self, indices: np.ndarray) -> Batch:
        """The transitions at storage rows ``indices`` (each in ``[0, len(self))``)."""
        arrays = self._arrays
        weights = self.sampler.weights(indices)
        if weights is None:
            weight_tensor = torch.ones(len(indices), dtype=torch.float32, device=self.device)
        else:
            weight_tensor = self._to_device(weights.astype(np.float32, copy=False))
        return Batch(
            obs=self._gather_obs("obs", indices),
            action=self._to_device(arrays["action"].take(indices, axis=0)),
            reward=self._to_device(arrays["reward"].take(indices)),
            next_obs=self._gather_obs("next_obs", indices),
            terminated=self._to_device(arrays["terminated"].take(indices).astype(np.float32)),
            weights=weight_tensor,
            indices=indices,
        )

    def _gather_obs(self, prefix: str, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return {
            part: self._to_device(
                self._arrays[chunk_key(prefix, part, self.obs_space)].take(indices, axis=0)
            )
            for part in self._parts
        }

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(arr)
        if self.device.type == "cpu":  # .to() is a no-op here, but costs ~5 us per call
            return tensor
        return tensor.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        """Stored transitions oldest first (raw numpy arrays) and counters; no pickle needed
        for the data itself. The capacity may differ when it is loaded back."""
        if self._size < self.capacity:
            arrays = {key: arr[: self._size].copy() for key, arr in self._arrays.items()}
        else:
            p = self._ptr
            arrays = {key: np.concatenate([arr[p:], arr[:p]]) for key, arr in self._arrays.items()}
        return {
            "arrays": arrays,
            "total_appended": self.total_appended,
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with a :meth:`state_dict` (the newest rows if it is larger).

        Raises:
            ValueError: when the arrays do not match this memory's fields.
        """
        arrays: Mapping[str, np.ndarray] = state["arrays"]
        spec = {key: value for key, value in self._spec.items() if key not in _NOT_STORED}
        n = validate_chunk(arrays, spec)
        total = int(state["total_appended"])
        if total < n:
            raise ValueError(f"total_appended ({total}) is less than the stored rows ({n})")
        # Transition number i goes back to row i % capacity, where appending had put it.
        self._ptr = (total - n) % self.capacity
        self._size = 0
        self._write(arrays, n)
        self.total_appended = total
        self.sampler.load_state_dict(state["sampler"])

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

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field

from tmrl2.config.base import ComponentConfig
from tmrl2.memory import persist
from tmrl2.memory.accounting import check_fits, format_bytes
from tmrl2.memory.batch import Batch, chunk_key, chunk_spec, obs_parts, validate_chunk
from tmrl2.memory.frames import FrameStore
from tmrl2.memory.nstep import nstep_returns
from tmrl2.memory.prioritized import PrioritizedConfig, PrioritizedSampler
from tmrl2.memory.sampler import Sampler, build_sampler

_NOT_STORED = ("truncated",)
"""Chunk keys that are validated but not stored: one-step targets only need ``terminated``."""

FRAME_KEYS = ("obs_frame", "next_frame")
"""Stored columns of a memory with ``history_keys``: ``seq`` of the newest frame of the
observation's and the next observation's histories in the :class:`FrameStore`."""

log = logging.getLogger(__name__)

DISCOUNT = "discount"
"""Stored column of ``gamma ** k`` when ``n_step > 1``."""

MAX_REDRAWS = 16
"""Rounds of redrawing rows whose frames were overwritten before sampling gives up."""


class RingMemoryConfig(ComponentConfig):
    """Config of the ring replay memory."""

    kind: str = "ring"
    """Registry name of this memory."""
    capacity: int = Field(default=1_000_000, gt=0)
    """Transitions kept; once full, each new transition overwrites the oldest one."""
    sampler: Literal["uniform", "prioritized"] = "uniform"
    """How batches are drawn: ``uniform`` (with replacement, among the filled rows) or
    ``prioritized`` (proportional to |TD error|^alpha, see ``prioritized``)."""
    prioritized: PrioritizedConfig = PrioritizedConfig()
    """Options of the prioritized sampler (ignored by ``uniform``)."""
    history_keys: tuple[str, ...] = ()
    """Observation parts of shape ``(H, *frame)`` (image or LIDAR histories) stored once per
    frame and rebuilt at sampling time (``obs`` for a ``Box`` space); empty: store as is."""
    frame_slack: float = Field(default=0.05, ge=0.0, le=10.0)
    """Extra frame slots over ``capacity`` for episode starts (each stores ``H`` frames)."""
    frame_capacity: int | None = Field(default=None, gt=0)
    """Frame slots of the frame ring; ``None``: ``capacity * (1 + frame_slack) + 1024``."""
    n_step: int = Field(default=1, ge=1, le=100)
    """Horizon of the stored returns: 1 stores one-step transitions; ``n > 1`` stores n-step
    returns and ``Batch.discount`` (the learner must bootstrap with it)."""
    gamma: float = Field(default=0.99, ge=0.0, le=1.0)
    """Discount of the n-step returns (set it to the algorithm's ``gamma``); unused when
    ``n_step`` is 1."""
    check_ram: bool = True
    """Fail at start-up when ``capacity`` transitions cannot fit in the available RAM."""


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
        self._spec = chunk_spec(obs_space, action_space)
        self._parts = list(obs_parts(obs_space))
        self.frames = self._build_frames(config, obs_space)
        framed = set(self.frames.keys.values()) if self.frames else set()
        stored = {
            key: value
            for key, value in self._spec.items()
            if key not in _NOT_STORED and not any(key in pair for pair in framed)
        }
        if self.frames is not None:
            stored.update({key: ((), np.dtype(np.int64)) for key in FRAME_KEYS})
        if config.n_step > 1:
            stored[DISCOUNT] = ((), np.dtype(np.float32))
        if config.check_ram:
            row_bytes = sum(
                int(np.prod(shape)) * dtype.itemsize for shape, dtype in stored.values()
            )
            frame_bytes = self.frames.nbytes if self.frames else 0
            prioritized = config.sampler == "prioritized"
            sampler_bytes = PrioritizedSampler.bytes_for(self.capacity) if prioritized else 0
            check_fits(row_bytes, self.capacity, frame_bytes + sampler_bytes)
        self.sampler: Sampler = build_sampler(
            config.sampler, config.capacity, seed, config.prioritized
        )
        if self.frames is not None:
            self.frames.allocate()
        # np.zeros maps untouched pages lazily: a large capacity costs memory as it fills.
        self._arrays: dict[str, np.ndarray] = {
            key: np.zeros((self.capacity, *shape), dtype=dtype)
            for key, (shape, dtype) in stored.items()
        }
        self._ptr = 0
        self._size = 0
        self._rng = np.random.default_rng(seed)  # redraws of stale rows only
        self.total_appended = 0
        """Transitions appended since creation (or restored from a checkpoint)."""
        log.info(
            "replay memory: %d transitions x %d bytes = %s (%s sampling%s)",
            self.capacity,
            self.bytes_per_transition,
            format_bytes(self.total_nbytes),
            config.sampler,
            f", frames stored once for {list(config.history_keys)}" if self.frames else "",
        )

    @staticmethod
    def _build_frames(config: RingMemoryConfig, obs_space: spaces.Space) -> FrameStore | None:
        if not config.history_keys:
            return None
        parts = obs_parts(obs_space)
        unknown = [key for key in config.history_keys if key not in parts]
        if unknown:
            raise ValueError(
                f"memory.history_keys {unknown} are not observation parts; known: {list(parts)}"
            )
        boxes = {key: parts[key] for key in config.history_keys}
        flat = [key for key, box in boxes.items() if len(box.shape) < 2]
        if flat:
            raise ValueError(
                f"memory.history_keys {flat} need a shape (history, *frame) of 2 dimensions or more"
            )
        keys = {
            key: (chunk_key("obs", key, obs_space), chunk_key("next_obs", key, obs_space))
            for key in boxes
        }
        frame_capacity = config.frame_capacity or (
            int(config.capacity * (1.0 + config.frame_slack)) + 1024
        )
        return FrameStore(boxes, keys, frame_capacity)

    def __len__(self) -> int:
        """Number of filled rows (at most ``capacity``)."""
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes reserved by the storage arrays."""
        return sum(arr.nbytes for arr in self._arrays.values())

    @property
    def bytes_per_transition(self) -> int:
        """Bytes one stored transition takes (its share of the frame ring included)."""
        row = sum(arr[0].nbytes for arr in self._arrays.values())
        if self.frames is None:
            return row
        return row + -(-self.frames.nbytes // self.capacity)

    @property
    def total_nbytes(self) -> int:
        """Bytes reserved by every array: rows, frame ring, sampler trees."""
        frames = self.frames.nbytes if self.frames is not None else 0
        return self.nbytes + frames + getattr(self.sampler, "nbytes", 0)

    @property
    def wants_priorities(self) -> bool:
        """Whether :meth:`update_priorities` matters (a prioritized sampler)."""
        return self.sampler.wants_priorities

    def update_priorities(self, indices: np.ndarray, td_errors: Any) -> None:
        """Feed the learner's per-sample |TD errors| (array or tensor) for rows ``indices``
        of the last batch back to the sampler (a no-op for uniform sampling)."""
        if self.sampler.wants_priorities:
            self.sampler.update_priorities(indices, td_errors)

    def append(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Copy a chunk of transitions into the ring (arrays may be read-only).

        A chunk longer than ``capacity`` keeps its last ``capacity`` rows, at the same places
        as if the rows had been appended one by one.

        Raises:
            ValueError: when a key is missing or unexpected, or a shape or dtype is wrong; the
                message names the key and what was expected. Nothing is written then.
        """
        n = validate_chunk(chunk, self._spec)
        if self.frames is not None and n:
            obs_seq, next_seq = self.frames.write(chunk, n)
            chunk = {**chunk, FRAME_KEYS[0]: obs_seq, FRAME_KEYS[1]: next_seq}
        if self.config.n_step > 1 and n:
            chunk = self._nstep(chunk)
        self._write(chunk, n)
        self.total_appended += n

    def _nstep(self, chunk: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The chunk with n-step returns: next observations, terminations and discounts of
        each row's horizon (see :mod:`tmrl2.memory.nstep`)."""
        done = np.asarray(chunk["terminated"]) | np.asarray(chunk["truncated"])
        cfg = self.config
        last, returns, discount = nstep_returns(chunk["reward"], done, cfg.n_step, cfg.gamma)
        out = dict(chunk)
        for key in (*self._arrays, "truncated"):
            if key.startswith("next_obs") or key in ("terminated", "truncated", FRAME_KEYS[1]):
                out[key] = np.asarray(chunk[key])[last]
        out["reward"], out[DISCOUNT] = returns, discount
        return out

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
        indices = self.sampler.sample(self._size, batch_size)
        if self.frames is None:
            return self._batch(indices, {}, {})
        valid, obs, next_obs = self._histories(indices)  # one pass: validity and frames
        if not valid.all():
            indices = self._redraw_stale(indices, ~valid)
            _, obs, next_obs = self._histories(indices)
        return self._batch(indices, obs, next_obs)

    def _histories(
        self, indices: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        assert self.frames is not None
        obs_seq, next_seq = (self._arrays[key].take(indices) for key in FRAME_KEYS)
        return self.frames.histories(obs_seq, next_seq)

    def _stale(self, indices: np.ndarray) -> np.ndarray:
        assert self.frames is not None
        arrays = self._arrays
        obs_seq, next_seq = (arrays[key].take(indices) for key in FRAME_KEYS)
        return ~self.frames.valid_pairs(obs_seq, next_seq)

    def _redraw_stale(self, indices: np.ndarray, stale: np.ndarray) -> np.ndarray:
        """Replace rows whose oldest frames were overwritten, and exclude them from sampling
        (a prioritized sampler zeroes their priority; others are redrawn among valid rows)."""
        for _ in range(MAX_REDRAWS):
            if not stale.any():
                return indices
            self.sampler.disable(indices[stale])
            indices = indices.copy()
            indices[stale] = self.sampler.sample(self._size, int(stale.sum()))
            stale = self._stale(indices)
        if not stale.any():
            return indices
        valid = np.flatnonzero(~self._stale(np.arange(self._size)))
        if not len(valid):
            raise RuntimeError(
                "every stored row refers to overwritten frames: episodes are too short for the "
                "frame ring; raise memory.frame_slack or memory.frame_capacity"
            )
        indices[stale] = valid[self._rng.integers(0, len(valid), int(stale.sum()))]
        return indices

    def gather(self, indices: np.ndarray) -> Batch:
        """The transitions at storage rows ``indices`` (each in ``[0, len(self))``)."""
        if self.frames is None:
            return self._batch(indices, {}, {})
        _, obs, next_obs = self._histories(indices)
        return self._batch(indices, obs, next_obs)

    def _batch(
        self, indices: np.ndarray, obs: dict[str, np.ndarray], next_obs: dict[str, np.ndarray]
    ) -> Batch:
        """The batch of rows ``indices``, given the parts of their histories already rebuilt."""
        arrays = self._arrays
        weights = self.sampler.weights(indices)
        if weights is None:
            weight_tensor = torch.ones(len(indices), dtype=torch.float32, device=self.device)
        else:
            weight_tensor = self._to_device(weights.astype(np.float32, copy=False))
        obs_t, next_t = self._gather_obs(indices, obs, next_obs)
        return Batch(
            obs=obs_t,
            action=self._to_device(arrays["action"].take(indices, axis=0)),
            reward=self._to_device(arrays["reward"].take(indices)),
            next_obs=next_t,
            terminated=self._to_device(arrays["terminated"].take(indices).astype(np.float32)),
            weights=weight_tensor,
            indices=indices,
            discount=self._to_device(arrays[DISCOUNT].take(indices))
            if DISCOUNT in arrays
            else None,
        )

    def _gather_obs(
        self, indices: np.ndarray, obs: dict[str, np.ndarray], nxt: dict[str, np.ndarray]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        for part in self._parts:
            if part not in obs:
                obs[part] = self._arrays[chunk_key("obs", part, self.obs_space)].take(indices, 0)
                nxt[part] = self._arrays[chunk_key("next_obs", part, self.obs_space)].take(
                    indices, 0
                )
        return (
            {part: self._to_device(obs[part]) for part in self._parts},
            {part: self._to_device(nxt[part]) for part in self._parts},
        )

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(arr)
        if self.device.type == "cpu":  # .to() is a no-op here, but costs ~5 us per call
            return tensor
        if self.device.type == "cuda":  # a pinned source lets the copy overlap compute
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        """Stored transitions oldest first (raw numpy arrays) and counters; no pickle needed
        for the data itself. The capacity may differ when it is loaded back.

        With ``history_keys`` the rows refer to a frame ring: use :meth:`snapshot` instead.
        """
        if self.frames is not None:
            raise ValueError(
                "a memory with history_keys is saved with snapshot()/save(), not state_dict()"
            )
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
        spec = {key: (arr.shape[1:], arr.dtype) for key, arr in self._arrays.items()}
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

    # ------------------------------------------------------------------ raw snapshots
    def snapshot(self) -> dict[str, Any]:
        """The storage as it lies in RAM: filled rows unrotated, frame ring, sampler state and
        counters (views, not copies: write them out before the next append)."""
        arrays: dict[str, Any] = {f"rows/{k}": v[: self._size] for k, v in self._arrays.items()}
        if self.frames is not None:
            arrays.update({f"frames/{k}": v for k, v in self.frames.state_dict().items()})
        return {
            "arrays": arrays,
            "counters": {
                "ptr": self._ptr,
                "size": self._size,
                "total_appended": self.total_appended,
                "capacity": self.capacity,
            },
            "sampler": self.sampler.state_dict(),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` of a memory with the same fields and capacity.

        Raises:
            ValueError: naming the field or counter that does not match.
        """
        counters = snap["counters"]
        if int(counters["capacity"]) != self.capacity:
            raise ValueError(
                f"saved memory has capacity {counters['capacity']}, this one {self.capacity}; "
                "set memory.capacity to the saved one"
            )
        arrays: Mapping[str, np.ndarray] = snap["arrays"]
        size = int(counters["size"])
        rows = {k.removeprefix("rows/"): v for k, v in arrays.items() if k.startswith("rows/")}
        spec = {key: (arr.shape[1:], arr.dtype) for key, arr in self._arrays.items()}
        if size and validate_chunk(rows, spec) != size:
            raise ValueError(f"saved rows do not match the saved size {size}")
        if self.frames is not None:
            prefix = "frames/"
            self.frames.load_state_dict(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
        for key, dst in self._arrays.items():
            if size == self.capacity:  # a full memory: keep the mapped file (see persist)
                self._arrays[key] = persist.adopt(dst, rows[key])
            elif size:
                persist.copy_into(dst[:size], rows[key])
        self._ptr, self._size = int(counters["ptr"]), size
        self.total_appended = int(counters["total_appended"])
        self.sampler.load_state_dict(snap["sampler"])

    def save(self, path: str | Path) -> Path:
        """Write the whole memory to ``path`` (``.npz``, no pickle, atomically); return it."""
        return persist.save_snapshot(self.snapshot(), path)

    def load(self, path: str | Path) -> None:
        """Replace the contents with a file written by :meth:`save`."""
        self.restore(persist.load_snapshot(path))

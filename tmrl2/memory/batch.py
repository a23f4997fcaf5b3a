"""The data contract between workers, the replay memory and the learner.

A *chunk* of experience is a ``Mapping[str, np.ndarray]`` whose arrays share their first
dimension ``n``:

- for a gymnasium ``Dict`` observation space: ``obs/<key>`` and ``next_obs/<key>`` for each
  sub-space key; for a ``Box`` observation space: ``obs`` and ``next_obs``;
- ``action`` ``(n, *action_shape)`` float32, ``reward`` ``(n,)`` float32,
  ``terminated`` ``(n,)`` bool, ``truncated`` ``(n,)`` bool.

On the learner side observations are **always dicts** of tensors, keyed by the sub-space keys
of a ``Dict`` space, or by the single key :data:`BOX_KEY` (``"obs"``) for a ``Box`` space. The
helpers here (:func:`obs_parts`, :func:`chunk_key`, :func:`chunk_spec`) are the one place that
convention is written down; storage, networks and workers all use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces

BOX_KEY = "obs"
"""Key of the single observation part of a ``Box`` observation space."""


class Batch(NamedTuple):
    """A batch of transitions sampled from a replay memory, as tensors on one device.

    Observation tensors keep the dtype of their space (e.g. ``uint8`` images); the networks
    convert them to float. Every other tensor is float32 with first dimension ``B``.
    """

    obs: dict[str, torch.Tensor]
    """Observation parts, ``(B, *part_shape)``; see the module docstring for the keys."""
    action: torch.Tensor
    """Actions taken, ``(B, *action_shape)``."""
    reward: torch.Tensor
    """Rewards received, ``(B,)``."""
    next_obs: dict[str, torch.Tensor]
    """Observations after the action, same keys and shapes as ``obs``."""
    terminated: torch.Tensor
    """1.0 where ``next_obs`` is terminal (no bootstrapping), else 0.0, ``(B,)``."""
    weights: torch.Tensor
    """Importance-sampling weights, ``(B,)``; all ones for uniform sampling."""
    indices: np.ndarray
    """Storage rows the transitions came from (int64), for priority updates."""
    discount: torch.Tensor | None = None
    """``(B,)`` discount of the bootstrap term, ``gamma ** k`` for k-step returns
    (``memory.n_step > 1``); ``None``: one-step transitions, use the learner's ``gamma``."""


def obs_parts(obs_space: spaces.Space) -> dict[str, spaces.Box]:
    """The ``Box`` parts of an observation space, keyed as in :class:`Batch` (sorted keys).

    Raises:
        TypeError: when the space is neither a ``Box`` nor a ``Dict`` of ``Box`` spaces.
    """
    if isinstance(obs_space, spaces.Box):
        return {BOX_KEY: obs_space}
    if isinstance(obs_space, spaces.Dict):
        parts: dict[str, spaces.Box] = {}
        for key in sorted(obs_space.spaces):
            sub = obs_space.spaces[key]
            if not isinstance(sub, spaces.Box):
                raise TypeError(
                    f"observation space key {key!r} is a {type(sub).__name__}; "
                    "only Dict-of-Box and Box observation spaces are supported"
                )
            parts[key] = sub
        return parts
    raise TypeError(
        f"observation space {type(obs_space).__name__} is not supported; "
        "use a gymnasium Box or a Dict of Box spaces"
    )


def chunk_key(prefix: str, part: str, obs_space: spaces.Space) -> str:
    """Chunk key of observation ``part`` under ``prefix`` (``"obs"`` or ``"next_obs"``)."""
    return prefix if isinstance(obs_space, spaces.Box) else f"{prefix}/{part}"


def chunk_spec(
    obs_space: spaces.Space, action_space: spaces.Box
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Expected per-row shape and dtype of every key of a chunk, in a stable order."""
    parts = obs_parts(obs_space)
    spec: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for prefix in ("obs", "next_obs"):
        for part, box in parts.items():
            spec[chunk_key(prefix, part, obs_space)] = (tuple(box.shape), np.dtype(box.dtype))
    spec["action"] = (tuple(action_space.shape), np.dtype(np.float32))
    spec["reward"] = ((), np.dtype(np.float32))
    spec["terminated"] = ((), np.dtype(np.bool_))
    spec["truncated"] = ((), np.dtype(np.bool_))
    return spec


def validate_chunk(
    chunk: Mapping[str, np.ndarray], spec: Mapping[str, tuple[tuple[int, ...], np.dtype]]
) -> int:
    """Check a chunk against :func:`chunk_spec` and return its number of rows.

    Dtypes must cast to the expected one within the same kind (``float64`` obs into a
    ``float32`` space is accepted, a float into ``bool`` is not).

    Raises:
        ValueError: naming the first offending key and what was expected.
    """
    missing = [key for key in spec if key not in chunk]
    if missing:
        raise ValueError(f"chunk is missing key(s) {missing}; expected keys {list(spec)}")
    extra = [key for key in chunk if key not in spec]
    if extra:
        raise ValueError(f"chunk has unexpected key(s) {extra}; expected keys {list(spec)}")
    n = -1
    for key, (shape, dtype) in spec.items():
        arr = chunk[key]
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"chunk[{key!r}] is a {type(arr).__name__}, expected a numpy array")
        if arr.ndim == 0 or tuple(arr.shape[1:]) != shape:
            expected = "(n," + "".join(f" {dim}," for dim in shape).rstrip(",") + ")"
            raise ValueError(f"chunk[{key!r}] has shape {arr.shape}, expected {expected}")
        if n < 0:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise ValueError(f"chunk[{key!r}] has {arr.shape[0]} rows, other keys have {n}")
        if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
            raise ValueError(f"chunk[{key!r}] has dtype {arr.dtype}, expected {dtype}")
    return n

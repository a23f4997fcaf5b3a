"""The model's state vector and the next observation dict built from a predicted step.

The model sees the whole observation, flattened exactly as the MLP agent flattens it
(:class:`~tmrl2.algos.networks.ObsFlattener`: sorted keys, each part flattened), plus the
action. It predicts only what is new after the step:

- a *history* part (``world_model.history_keys``, shape ``(H, *frame)``, newest frame last,
  e.g. ``lidar`` and ``prev_actions``) gains one frame and drops its oldest: the model
  predicts the change of the newest frame (``next[-1] - obs[-1]``) and the stack shifts
  (``next[:-1] = obs[1:]``), which is exact for the older frames. With ``lidar_history: 1``
  the "stack" is the one scan;
- an *action* part (``world_model.action_keys``, e.g. ``prev_actions``) gets the action just
  taken as its newest frame, copied (clipped to the part's bounds), never predicted;
- any other part (``speed``, ``preview``, a ``Box`` space's ``obs``) is predicted whole, as a
  change.

Predicted values are clipped to the observation space's bounds. Integer (image) parts are
refused: the model runs over the vector parts only (docs/world_model.md says why).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from tmrl2.memory.batch import obs_parts


class StateCodec:
    """Flat states <-> observation dicts, prediction targets and the shift of the stacks."""

    def __init__(
        self,
        obs_space: spaces.Space[Any],
        action_space: spaces.Box,
        history_keys: Iterable[str] = (),
        action_keys: Iterable[str] = (),
    ) -> None:
        """Args:
        obs_space: a ``Box`` or a ``Dict`` of float ``Box`` parts.
        action_space: 1-D ``Box``.
        history_keys: parts stacked over time, newest frame last (missing ones are ignored).
        action_keys: history parts whose newest frame is the action.

        Raises:
            ValueError: naming ``world_model`` and the part, for an image (integer) part or an
                action part whose frame is not an action.
        """
        parts = obs_parts(obs_space)
        self.act_dim = int(np.prod(action_space.shape))
        history, copied = set(history_keys), set(action_keys)
        self.keys = tuple(parts)
        self.shapes = {key: tuple(box.shape) for key, box in parts.items()}
        low: list[np.ndarray] = []
        high: list[np.ndarray] = []
        next_index: list[np.ndarray] = []  # next state = extended[:, next_index]
        pred_index: list[np.ndarray] = []  # predicted newest frames = obs + delta at these
        new_frames: list[tuple[str, int, int]] = []  # (source, start, size) per part
        offset = 0
        new_offset = 0
        for key, box in parts.items():
            if not np.issubdtype(box.dtype, np.floating):
                raise ValueError(
                    f"world_model: observation part {key!r} is {box.dtype} (an image?); the "
                    "world model runs over vector parts only (docs/world_model.md)"
                )
            size = math.prod(box.shape)
            stacked = key in history and len(box.shape) >= 2
            frames = box.shape[0] if stacked else 1
            frame = size // frames
            if key in copied and frame != self.act_dim:
                raise ValueError(
                    f"world_model.action_keys: part {key!r} has frames of {frame} values, "
                    f"the action has {self.act_dim}"
                )
            low.append(np.broadcast_to(box.low, box.shape).reshape(-1).astype(np.float32))
            high.append(np.broadcast_to(box.high, box.shape).reshape(-1).astype(np.float32))
            newest = offset + (frames - 1) * frame
            shifted = np.arange(offset + frame, offset + size)  # frames 1..H-1 move down
            # negative entries name new frames (mapped after the loop, once obs_dim is known)
            next_index.append(np.concatenate([shifted, -(new_offset + np.arange(frame)) - 1]))
            if key in copied:
                new_frames.append(("action", 0, frame))
            else:
                new_frames.append(("delta", newest, frame))
                pred_index.append(np.arange(newest, newest + frame))
            offset += size
            new_offset += frame
        self.obs_dim = offset
        self.pred_dim = int(sum(len(p) for p in pred_index))
        """Values the model predicts besides the reward: the predicted parts' newest frames."""
        self._low = torch.as_tensor(np.concatenate(low))
        self._high = torch.as_tensor(np.concatenate(high))
        self._pred_index = torch.as_tensor(
            np.concatenate(pred_index) if pred_index else np.zeros(0, np.int64), dtype=torch.long
        )
        self._new_frames = new_frames
        index = np.concatenate(next_index)
        self._next_index = torch.as_tensor(
            np.where(index < 0, offset + (-index - 1), index), dtype=torch.long
        )
        self._new_pos = torch.nonzero(self._next_index >= offset).squeeze(-1)
        """Where the new frames sit in a next state (parts in order)."""

    def flatten(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, obs_dim)`` float32 from an observation dict (the agent's order)."""
        flat = [obs[key].reshape(obs[key].shape[0], -1) for key in self.keys]
        return torch.cat(flat, dim=-1).to(torch.float32)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The observation dict of ``(B, obs_dim)`` states."""
        out: dict[str, torch.Tensor] = {}
        offset = 0
        for key in self.keys:
            shape = self.shapes[key]
            size = math.prod(shape)
            out[key] = flat[:, offset : offset + size].reshape(-1, *shape)
            offset += size
        return out

    def target(self, obs_flat: torch.Tensor, next_flat: torch.Tensor) -> torch.Tensor:
        """``(B, pred_dim)`` change of the predicted values over one real step."""
        index = self._pred_index.to(obs_flat.device)
        new_values = next_flat[:, self._new_pos.to(obs_flat.device)]  # every part's new frame
        return self._predicted_part(new_values) - obs_flat[:, index]

    def _predicted_part(self, new_values: torch.Tensor) -> torch.Tensor:
        """The predicted (non-action) frames out of all new frames, in order."""
        cols: list[torch.Tensor] = []
        start = 0
        for source, _, frame in self._new_frames:
            if source == "delta":
                cols.append(new_values[:, start : start + frame])
            start += frame
        if not cols:
            return new_values[:, :0]
        return torch.cat(cols, dim=-1)

    def next_state(
        self, obs_flat: torch.Tensor, action: torch.Tensor, delta: torch.Tensor
    ) -> torch.Tensor:
        """``(B, obs_dim)`` next state: the stacks shifted, the predicted frames
        (``obs + delta``) and the copied actions appended, clipped to the space's bounds."""
        cols: list[torch.Tensor] = []
        used = 0
        action = action.reshape(action.shape[0], -1).to(obs_flat.dtype)
        for source, start, frame in self._new_frames:
            if source == "action":
                cols.append(action[:, :frame])
            else:
                cols.append(obs_flat[:, start : start + frame] + delta[:, used : used + frame])
                used += frame
        extended = torch.cat([obs_flat, *cols], dim=-1)
        nxt = extended[:, self._next_index.to(obs_flat.device)]
        low, high = self._low.to(nxt.device), self._high.to(nxt.device)
        return torch.maximum(torch.minimum(nxt, high), low)

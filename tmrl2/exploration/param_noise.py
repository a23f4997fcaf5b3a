"""Parameter-space noise (``exploration.kind: param_noise``): Plappert et al. 2018, "Parameter
Space Noise for Exploration".

A worker acts with a copy of the policy whose weights are perturbed by Gaussian noise of
scale ``sigma``: the same perturbation for a whole episode (or ``every_steps`` steps), so the
exploration is consistent over time where SAC's action noise is independent at every step.
The scale adapts (the paper's section 3): every ``adapt_every_steps`` steps the worker
measures the distance between the perturbed and the clean policy's actions (their modes, in
action units rescaled to [-1, 1], root mean square) on its most recent observations, and
divides ``sigma`` by ``adapt_factor`` when that distance exceeds ``target_distance``,
multiplies it otherwise. So ``sigma`` means the same thing in every layer size and phase of
training.

The clean actor is the one the worker loads the trainer's weights into; it is never touched.
The perturbed copy is rebuilt from it whenever new weights arrive, with the same noise
direction. The actor's feature extractor (its ``flatten`` submodule: the CNN's image encoder,
shared with the critic) is not perturbed; every other parameter is (the mean and log-std head
included). The trainer's actor is never perturbed: this module lives in the workers only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field
from torch import nn

from tmrl2.config.base import ComponentConfig
from tmrl2.exploration.base import Side

STD_LIMITS = (1e-5, 10.0)
"""``sigma`` is kept within these bounds whatever the adaptation says."""


class ParamNoiseConfig(ComponentConfig):
    """Config of parameter-space noise (the workers' side)."""

    kind: str = "param_noise"
    """Registry name."""
    initial_std: float = Field(default=0.05, gt=0.0)
    """``sigma`` of the first perturbation: the standard deviation of the Gaussian noise added
    to each weight (then adapted)."""
    target_distance: float = Field(default=0.2, gt=0.0)
    """delta: the root-mean-square distance between the perturbed and the clean policy's
    actions (rescaled to [-1, 1]) that the adaptation holds ``sigma`` near."""
    adapt_factor: float = Field(default=1.01, gt=1.0)
    """alpha: ``sigma`` is divided or multiplied by this at each adaptation."""
    adapt_every_steps: int = Field(default=50, gt=0)
    """Steps between two adaptations of ``sigma`` (the paper's baselines: 50)."""
    adapt_states: int = Field(default=128, gt=0)
    """Most recent observations the distance is measured on."""
    every_steps: int = Field(default=0, ge=0)
    """Draw a new perturbation every this many steps; 0: at the end of each episode (of the
    first car, with ``worker.envs > 1``: the cars share one perturbation)."""
    deterministic: bool = False
    """Act with the perturbed policy's mode (the paper's setting for DDPG) instead of sampling
    it, which keeps SAC's action noise on top of the parameter noise."""


class ObsRing:
    """The last ``capacity`` observations (dicts of rows), for the distance measurement."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._arrays: dict[str, np.ndarray] = {}
        self._next = 0
        self.size = 0

    def add(self, rows: Mapping[str, np.ndarray]) -> None:
        """Store a batch of observation rows (first dimension: rows)."""
        n = next(iter(rows.values())).shape[0]
        if not self._arrays:
            self._arrays = {
                k: np.zeros((self.capacity, *v.shape[1:]), v.dtype) for k, v in rows.items()
            }
        for i in range(max(0, n - self.capacity), n):
            for key, array in self._arrays.items():
                array[self._next] = rows[key][i]
            self._next = (self._next + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def batch(self) -> dict[str, torch.Tensor]:
        """The stored observations as CPU tensors."""
        return {k: torch.from_numpy(a[: self.size]) for k, a in self._arrays.items()}


class ParamNoise:
    """A perturbed copy of a worker's actor with an adaptive scale (module docstring)."""

    Config = ParamNoiseConfig
    runs_in: ClassVar[Side | None] = "worker"

    def __init__(
        self, config: ParamNoiseConfig, actor: nn.Module, action_space: spaces.Box, seed: int
    ) -> None:
        """Args:
        config: the ``exploration`` section.
        actor: the worker's (clean) actor; read, never written.
        action_space: a bounded ``Box``: the distance is measured in units of its half-range.
        seed: seeds the noise (each worker its own).
        """
        self.config = config
        self.actor = actor
        self.perturbed = copy.deepcopy(actor).eval().requires_grad_(False)
        self.std = config.initial_std
        self.distance: float | None = None
        """The last distance measured (None before the first adaptation)."""
        self._scale = torch.as_tensor((action_space.high - action_space.low) / 2.0)
        self._names = [n for n, _ in actor.named_parameters() if not n.startswith("flatten.")]
        self._generator = torch.Generator().manual_seed(seed)
        self._noise: dict[str, torch.Tensor] = {}
        self._recent = ObsRing(config.adapt_states)
        self._steps = 0
        self.redraw()

    @property
    def acting_actor(self) -> nn.Module:
        return self.perturbed

    @property
    def deterministic(self) -> bool:
        return self.config.deterministic

    def redraw(self) -> None:
        """A new noise direction, applied at the current scale."""
        self._noise = {
            name: torch.randn(p.shape, generator=self._generator, dtype=p.dtype)
            for name, p in self.actor.named_parameters()
            if name in self._names
        }
        self.weights_changed()

    @torch.no_grad()
    def weights_changed(self) -> None:
        """Perturbed = clean + ``sigma`` x noise, from the clean actor's current weights."""
        clean = dict(self.actor.named_parameters())
        for name, param in self.perturbed.named_parameters():
            param.copy_(clean[name])
            if name in self._noise:
                param.add_(self._noise[name], alpha=self.std)

    def after_step(self, obs: Mapping[str, np.ndarray], episode_end: bool) -> None:
        """Remember the observations; adapt and redraw when due (see the config's keys)."""
        self._recent.add(obs)
        self._steps += 1
        if self._steps % self.config.adapt_every_steps == 0:
            self.adapt()
        every = self.config.every_steps
        if (every and self._steps % every == 0) or (not every and episode_end):
            self.redraw()

    @torch.no_grad()
    def measure(self) -> float:
        """Root-mean-square distance between the perturbed and the clean policy's modes on
        the recent observations, in action units rescaled to [-1, 1]."""
        states = self._recent.batch()
        clean, _ = self.actor(states, deterministic=True, with_logprob=False)
        moved, _ = self.perturbed(states, deterministic=True, with_logprob=False)
        return float(((moved - clean) / self._scale).square().mean().sqrt())

    def adapt(self) -> None:
        """Move ``sigma`` one factor toward the target distance and re-apply it."""
        if self._recent.size == 0:
            return
        self.distance = self.measure()
        factor = self.config.adapt_factor
        std = (
            self.std / factor if self.distance > self.config.target_distance else self.std * factor
        )
        self.std = min(max(std, STD_LIMITS[0]), STD_LIMITS[1])
        self.weights_changed()

    def restore(self, values: Mapping[str, float]) -> bool:
        """Start from the scale the run had reached (``values``: the ``noise_std`` the
        trainer last saw, kept in its checkpoint and sent in its state), so that a worker
        started by a resumed run, or restarted, does not adapt again from ``initial_std``. Only
        before this worker's first adaptation (later its own measure knows better); whether it
        was applied."""
        std = values.get("noise_std")
        if self.distance is not None or not isinstance(std, float) or not math.isfinite(std):
            return False
        self.std = min(max(std, STD_LIMITS[0]), STD_LIMITS[1])
        self.weights_changed()
        return True

    def stats(self) -> dict[str, float]:
        """``noise_std`` (sigma) and, once measured, ``noise_distance``."""
        out = {"noise_std": float(self.std)}
        if self.distance is not None and math.isfinite(self.distance):
            out["noise_distance"] = float(self.distance)
        return out


def obs_rows(obs: Any, key: str) -> dict[str, np.ndarray]:
    """One unbatched observation (a dict of parts, or an array for a ``Box`` space stored
    under ``key``) as a dict of one-row arrays."""
    parts = {key: obs} if isinstance(obs, np.ndarray) else obs
    return {k: np.asarray(v)[None] for k, v in parts.items()}

"""Random Network Distillation (``exploration.kind: rnd``): Burda et al. 2018, "Exploration by
Random Network Distillation".

A fixed, randomly initialized *target* network embeds each observation; a *predictor* is
trained to reproduce that embedding. The predictor's squared error is small on observations
like those it trained on and large on new ones: that error on a transition's ``next_obs`` is
the intrinsic reward. Observations are whitened by running statistics and clipped before
both networks (the paper's section 2.4), images and vector parts alike
(:class:`~tmrl2.exploration.features.ObsWhitener`).

Off-policy differences from the paper: the module trains on the learner's replay batches, not
on fresh rollouts, and the reward is normalized by the running standard deviation of the
per-sample intrinsic rewards (there is no trajectory order in a replay batch to discount an
intrinsic return over); :class:`~tmrl2.exploration.learner.ExploringLearner` does that.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from gymnasium import spaces
from pydantic import Field
from torch import nn

from tmrl2.algos.optim import fast_adam
from tmrl2.exploration.base import IntrinsicConfig, Side
from tmrl2.exploration.features import ObsEncoder, ObsWhitener, head
from tmrl2.memory.batch import Batch


class RNDConfig(IntrinsicConfig):
    """Config of RND (every key of :class:`~tmrl2.exploration.base.IntrinsicConfig` too)."""

    kind: str = "rnd"
    """Registry name."""
    update_proportion: float = Field(default=1.0, gt=0.0, le=1.0)
    """Fraction of each batch the predictor trains on (the paper uses 0.25 with 32+ parallel
    envs, so that the predictor does not learn faster than the policy explores)."""


class RND:
    """Target, predictor, whitening statistics and the predictor's optimizer."""

    Config = RNDConfig
    runs_in: ClassVar[Side | None] = "trainer"

    def __init__(
        self,
        config: RNDConfig,
        obs_space: spaces.Space,
        action_space: spaces.Box,
        device: str | torch.device = "cpu",
    ) -> None:
        """Args:
        config: the ``exploration`` section.
        obs_space: observation space (``Box`` or ``Dict`` of ``Box``: LIDAR, images...).
        action_space: unused (RND looks at states only); the common constructor.
        device: where the networks live (the learner's device).
        """
        self.config = config
        dim, hidden = config.feature_dim, config.hidden_sizes
        self.whitener = ObsWhitener(obs_space, config.normalize_obs, config.obs_clip)
        self.target = ObsEncoder(self.whitener, dim, hidden).requires_grad_(False)
        # deeper than the target, as in the paper: the fit must be learnable, not trivial
        self.predictor = nn.Sequential(
            ObsEncoder(self.whitener, dim, hidden), nn.LeakyReLU(), head([dim, dim, dim])
        )
        self.nets = nn.ModuleDict(
            {"whitener": self.whitener, "target": self.target, "predictor": self.predictor}
        ).to(device)
        self.optimizer = fast_adam(self.predictor.parameters(), config.lr)
        self._generator: torch.Generator | None = None

    def error(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B,)`` mean squared prediction error per observation (the raw novelty)."""
        x = self.whitener(obs)
        with torch.no_grad():
            target = self.target(x)
        return (self.predictor(x) - target).square().mean(dim=-1)

    @torch.no_grad()
    def reward(self, batch: Batch) -> torch.Tensor:
        """The prediction errors on ``next_obs``, without training (``train_every``)."""
        return self.error(batch.next_obs)

    def update(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Whitening statistics, one predictor step on ``next_obs``; the errors before the
        step are the intrinsic rewards."""
        self.whitener.update(batch.next_obs)
        error = self.error(batch.next_obs)
        loss = error.mean() if self.config.update_proportion >= 1.0 else self._masked(error)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return error.detach(), {"predictor_loss": float(loss.detach())}

    def _masked(self, error: torch.Tensor) -> torch.Tensor:
        if self._generator is None or self._generator.device != error.device:
            self._generator = torch.Generator(device=error.device)
            self._generator.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        keep = (
            torch.rand(error.shape, generator=self._generator, device=error.device)
            < self.config.update_proportion
        ).to(error.dtype)
        return (error * keep).sum() / keep.sum().clamp_min(1.0)

    def state_dict(self) -> dict[str, Any]:
        """Networks (the fixed target included), whitening statistics and the optimizer."""
        return {"nets": self.nets.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.nets.load_state_dict(state["nets"])
        self.optimizer.load_state_dict(state["optimizer"])

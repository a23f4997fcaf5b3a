"""Intrinsic Curiosity Module (``exploration.kind: icm``): Pathak et al. 2017, "Curiosity-driven
Exploration by Self-supervised Prediction".

An encoder ``phi`` embeds observations; an *inverse* model predicts the action from
``(phi(s), phi(s'))``, which shapes ``phi`` to keep what the agent controls and drop what it
does not; a *forward* model predicts ``phi(s')`` from ``(phi(s), a)``. The forward model's
error is the intrinsic reward: large where the agent cannot yet predict the consequences of
its actions. The loss is ``(1 - beta) L_inverse + beta L_forward`` (``forward_weight`` is
beta); the forward loss does not train the encoder (the paper's choice: otherwise the
encoder collapses to make prediction trivial).

Actions are continuous here (the paper's were discrete): the inverse model outputs a
``tanh``-squashed action in the action space's bounds, trained by mean squared error on
actions rescaled to [-1, 1]. Observations are whitened as for RND (``normalize_obs``). With
``memory.n_step > 1`` a batch's ``next_obs`` lies k steps ahead, so the models learn the
k-step consequences of the first action: still a novelty signal, no longer the paper's.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
from gymnasium import spaces
from pydantic import Field
from torch import nn

from tmrl2.algos.optim import fast_adam
from tmrl2.exploration.base import IntrinsicConfig, Side
from tmrl2.exploration.features import ObsEncoder, ObsWhitener, head
from tmrl2.memory.batch import Batch


class ICMConfig(IntrinsicConfig):
    """Config of ICM (every key of :class:`~tmrl2.exploration.base.IntrinsicConfig` too)."""

    kind: str = "icm"
    """Registry name."""
    lr: float = Field(default=1e-3, gt=0.0)
    """Learning rate of the encoder, inverse and forward models (Adam; the paper's)."""
    forward_weight: float = Field(default=0.2, ge=0.0, le=1.0)
    """beta: the forward loss's share of the module's loss (the inverse loss has 1 - beta)."""
    feature_dim: int = Field(default=32, gt=0)
    """Width of the state features ``phi`` (half RND's: three networks train on them)."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (64, 64)
    """Hidden layers of the encoder's MLP and of the inverse and forward models."""


class ICM:
    """Encoder, inverse and forward models, whitening statistics and one optimizer."""

    Config = ICMConfig
    runs_in: ClassVar[Side | None] = "trainer"

    def __init__(
        self,
        config: ICMConfig,
        obs_space: spaces.Space,
        action_space: spaces.Box,
        device: str | torch.device = "cpu",
    ) -> None:
        """Args:
        config: the ``exploration`` section.
        obs_space: observation space (``Box`` or ``Dict`` of ``Box``: LIDAR, images...).
        action_space: a 1-D bounded ``Box`` (the inverse model's output).
        device: where the networks live (the learner's device).
        """
        if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(
                f"exploration.kind icm needs a 1-D Box action space, got {action_space}"
            )
        self.config = config
        dim, hidden = config.feature_dim, config.hidden_sizes
        act_dim = int(action_space.shape[0])
        self.whitener = ObsWhitener(obs_space, config.normalize_obs, config.obs_clip)
        self.encoder = ObsEncoder(self.whitener, dim, hidden)
        self.inverse = head([2 * dim, *hidden, act_dim])
        self.forward_model = head([dim + act_dim, *hidden, dim])
        self.nets = nn.ModuleDict(
            {
                "whitener": self.whitener,
                "encoder": self.encoder,
                "inverse": self.inverse,
                "forward_model": self.forward_model,
            }
        ).to(device)
        low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device)
        high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
        self.action_scale, self.action_bias = (high - low) / 2.0, (high + low) / 2.0
        self.optimizer = fast_adam(self.nets.parameters(), config.lr)

    def unit_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actions rescaled from the action space's bounds to [-1, 1]."""
        return (action.to(torch.float32) - self.action_bias) / self.action_scale

    def predict_action(
        self, obs: dict[str, torch.Tensor], next_obs: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The inverse model's action for ``obs -> next_obs``, in the action space's units."""
        with torch.no_grad():
            phi, phi_next = self.embed(obs, next_obs)
            unit = torch.tanh(self.inverse(torch.cat([phi, phi_next], dim=-1)))
        return unit * self.action_scale + self.action_bias

    def embed(
        self, obs: dict[str, torch.Tensor], next_obs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi(obs), phi(next_obs)`` from one pass of the whitener and the encoder over both
        (half the torch operations of two passes: a CPU update is bound by their number)."""
        both = {key: torch.cat([obs[key], next_obs[key]]) for key in obs}
        phi = self.encoder(self.whitener(both))
        return phi[: phi.shape[0] // 2], phi[phi.shape[0] // 2 :]

    def forward_error(
        self, phi: torch.Tensor, action: torch.Tensor, phi_next: torch.Tensor
    ) -> torch.Tensor:
        """``(B,)`` half squared error of the forward model's ``phi(s')`` (the raw reward);
        ``action`` in [-1, 1]."""
        guess = self.forward_model(torch.cat([phi, action], dim=-1))
        return 0.5 * (guess - phi_next).square().mean(dim=-1)

    @torch.no_grad()
    def reward(self, batch: Batch) -> torch.Tensor:
        """The forward model's errors, without training (``train_every``)."""
        phi, phi_next = self.embed(batch.obs, batch.next_obs)
        return self.forward_error(phi, self.unit_action(batch.action), phi_next)

    def update(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Whitening statistics, one step of the three models; the forward errors before the
        step are the intrinsic rewards."""
        self.whitener.update(batch.obs)
        phi, phi_next = self.embed(batch.obs, batch.next_obs)
        action = self.unit_action(batch.action)
        predicted = torch.tanh(self.inverse(torch.cat([phi, phi_next], dim=-1)))
        inverse_loss = (predicted - action).square().mean()
        # the forward loss trains the forward model only (module docstring)
        error = self.forward_error(phi.detach(), action, phi_next.detach())
        forward_loss = error.mean()
        beta = self.config.forward_weight
        loss = (1.0 - beta) * inverse_loss + beta * forward_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats = torch.stack([loss, inverse_loss, forward_loss]).detach().tolist()
        names = ("predictor_loss", "inverse_loss", "forward_loss")
        return error.detach(), dict(zip(names, stats, strict=True))

    def state_dict(self) -> dict[str, Any]:
        """The encoder, both models, whitening statistics and the optimizer."""
        return {"nets": self.nets.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.nets.load_state_dict(state["nets"])
        self.optimizer.load_state_dict(state["optimizer"])

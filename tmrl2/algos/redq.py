"""REDQ (``algorithm.kind: redq``): Chen et al. 2021, "Randomized Ensembled Double Q-Learning".

An ensemble of N critics (one batched forward pass over stacked weights: :class:`QEnsemble`),
a TD target from the minimum over a random subset of M target critics (only those M are
evaluated), a high update-to-data ratio G with one policy step per G critic steps
(``policy_delay = G``; ``trainer.updates_per_step: G`` sets G updates per env step), and
a policy that follows the mean of all N critics. Everything else is :class:`SAC`.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from tmrl2.algos.cnn import CNNActorCritic
from tmrl2.algos.networks import MLPActorCritic
from tmrl2.algos.sac import SAC, SACConfig


class REDQConfig(SACConfig):
    """Config of the REDQ learner."""

    kind: str = "redq"
    """Registry name of this algorithm."""
    n_critics: int = Field(default=10, ge=2)
    """Critics in the ensemble (N)."""
    m_target: int = Field(default=2, ge=1)
    """Target critics drawn at random for each TD target (M)."""
    policy_delay: int = Field(default=20, ge=1)
    """Critic steps per actor step: REDQ's G (with ``trainer.updates_per_step: G``)."""

    @model_validator(mode="after")
    def _subset_fits(self) -> REDQConfig:
        if self.m_target > self.n_critics:
            raise ValueError(
                f"m_target ({self.m_target}) must not exceed n_critics ({self.n_critics})"
            )
        return self


class REDQ(SAC):
    """SAC with an N-critic ensemble, a random M-subset target and a mean-critic policy."""

    Config = REDQConfig
    policy_reduce = "mean"

    def __init__(
        self,
        config: REDQConfig,
        model: MLPActorCritic | CNNActorCritic,
        device: str | torch.device = "cpu",
        critic_device: str | torch.device | None = None,
    ):
        if getattr(model.critic, "n_critics", None) != config.n_critics:
            set_critics = getattr(model, "set_critics", None)
            if set_critics is None:
                raise ValueError(
                    f"REDQ needs a model with {config.n_critics} critics: "
                    f"{type(model).__name__} has no set_critics(n)"
                )
            set_critics(config.n_critics)
        super().__init__(config, model, device, critic_device)
        self._n, self._m = config.n_critics, config.m_target

    def _target_q(
        self, next_obs: dict[str, torch.Tensor], next_action: torch.Tensor
    ) -> torch.Tensor:
        members = torch.randperm(self._n)[: self._m].to(self.critic_device)
        return self.target_critic(next_obs, next_action, members)

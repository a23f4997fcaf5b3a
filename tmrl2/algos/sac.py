"""Soft Actor-Critic (``algorithm.kind: sac``): Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications" (twin Q with clipped double-Q targets, learned temperature).

The losses are pure functions of tensors (:func:`td_target`, :func:`critic_loss`,
:func:`actor_loss`, :func:`alpha_loss`); :class:`SAC` owns the optimizers, the target critic
and the update order: critic step, actor step (critic frozen), temperature step, Polyak
averaging of the target. It does no I/O: the trainer feeds it batches and checkpoints its
:meth:`SAC.state_dict`.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tmrl2.algos.networks import MLPActorCritic
from tmrl2.algos.policy import actor_weights
from tmrl2.config.base import ComponentConfig
from tmrl2.memory.batch import Batch

STAT_NAMES: tuple[str, ...] = (
    "loss_critic",
    "loss_actor",
    "loss_alpha",
    "alpha",
    "q_mean",
    "entropy",
)
"""Keys of the dict :meth:`SAC.update` returns."""

_Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class SACConfig(ComponentConfig):
    """Config of the SAC learner."""

    kind: str = "sac"
    """Registry name of this algorithm."""
    gamma: float = Field(default=0.99, ge=0.0, le=1.0)
    """Discount factor of future rewards."""
    polyak: float = Field(default=0.995, ge=0.0, le=1.0)
    """Target averaging: ``target <- polyak * target + (1 - polyak) * critic`` after each
    update (``polyak = 1 - tau``)."""
    lr_actor: float = Field(default=3e-4, gt=0.0)
    """Learning rate of the policy."""
    lr_critic: float = Field(default=3e-4, gt=0.0)
    """Learning rate of the twin Q functions."""
    lr_alpha: float = Field(default=3e-4, gt=0.0)
    """Learning rate of the log temperature (when ``learn_alpha``)."""
    alpha_init: float = Field(default=0.2, gt=0.0)
    """Initial entropy temperature (the fixed one when ``learn_alpha`` is false)."""
    learn_alpha: bool = True
    """Tune the temperature so that the policy's entropy tracks ``target_entropy``."""
    target_entropy: float | None = None
    """Entropy target of the temperature tuning; ``None`` uses ``-action_dim``."""
    batch_size: int = Field(default=128, gt=0)
    """Transitions per update (the trainer samples batches of this size; tmrl uses 256)."""
    grad_clip_norm: float | None = Field(default=None, gt=0.0)
    """Clip the global gradient norm of the actor and of the critic to this; ``None``: off."""
    optimizer: Literal["adam", "adamw"] = "adam"
    """Optimizer of the actor and critic (the temperature always uses Adam)."""
    betas: tuple[_Beta, _Beta] = (0.9, 0.999)
    """Adam's moment decay rates ``(beta1, beta2)``, used by all three optimizers."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    """Weight decay of the actor and critic: L2 with ``adam``, decoupled with ``adamw``."""


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_logp: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: torch.Tensor | float,
) -> torch.Tensor:
    """Soft Bellman target ``r + gamma (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s'))``.

    Args:
        reward: ``(B,)``.
        terminated: ``(B,)`` 1.0 where ``s'`` is terminal.
        next_q: ``(2, B)`` target-critic values at ``(s', a')``, ``a' ~ pi(s')``.
        next_logp: ``(B,)`` log-likelihood of ``a'``.
        alpha: entropy temperature.
        gamma: discount factor, or ``(B,)`` per-sample discounts (``gamma^k`` of n-step rows).
    """
    soft_value = next_q.min(dim=0).values - alpha * next_logp
    return reward + gamma * (1.0 - terminated) * soft_value


def critic_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over critics of the importance-weighted mean squared TD error.

    Args:
        q: ``(2, B)`` critic values at the batch's ``(s, a)``.
        target: ``(B,)`` :func:`td_target` (no gradient).
        weights: ``(B,)`` importance-sampling weights (ones for uniform sampling).
    """
    return (weights * (q - target).square()).mean(dim=-1).sum()


def actor_loss(logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """``mean(alpha log pi(a|s) - min_i Q_i(s, a))`` with ``a ~ pi(s)`` reparameterized.

    Args:
        logp: ``(B,)`` log-likelihood of the sampled actions.
        q_pi: ``(2, B)`` critic values at the sampled actions.
        alpha: entropy temperature (no gradient).
    """
    return (alpha * logp - q_pi.min(dim=0).values).mean()


def alpha_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Temperature loss ``-mean(log_alpha (log pi + target_entropy))``: its gradient lowers
    alpha while the policy's entropy ``-log pi`` exceeds the target, and raises it otherwise."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()


_FUSED_DEVICES = ("cpu", "cuda")
"""Devices where torch's fused Adam kernels exist: about 2x faster than the multi-tensor
(``foreach``) path on CPU (0.41 vs 0.87 ms per step of the default twin critic)."""


class SAC:
    """One-step SAC learner over an actor-critic model with ``.actor`` and ``.critic``."""

    Config = SACConfig

    def __init__(
        self, config: SACConfig, model: MLPActorCritic, device: str | torch.device = "cpu"
    ) -> None:
        """Args:
        config: the ``algorithm`` section.
        model: the actor-critic to train; it is moved to ``device``.
        device: torch device of the updates (batches must be on it).
        """
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.target_critic = copy.deepcopy(model.critic).requires_grad_(False)
        act_dim = int(model.actor.action_scale.numel())
        self.target_entropy = (
            -float(act_dim) if config.target_entropy is None else config.target_entropy
        )
        self.log_alpha = torch.tensor(
            math.log(config.alpha_init), device=self.device, requires_grad=config.learn_alpha
        )
        self._actor_params: list[torch.Tensor] = list(model.actor.parameters())
        self._critic_params: list[torch.Tensor] = list(model.critic.parameters())
        self._target_params: list[torch.Tensor] = list(self.target_critic.parameters())
        opt, decay = config.optimizer, config.weight_decay
        self.actor_optimizer = self._optimizer(opt, self._actor_params, config.lr_actor, decay)
        self.critic_optimizer = self._optimizer(opt, self._critic_params, config.lr_critic, decay)
        self.alpha_optimizer = (
            self._optimizer("adam", [self.log_alpha], config.lr_alpha, 0.0)
            if config.learn_alpha
            else None
        )
        self.updates = 0
        """Updates done since creation (or restored from a checkpoint)."""
        self.last_td_error: torch.Tensor | None = None
        """``(B,)`` |TD error| of the last update's batch (mean over the twin critics),
        detached, on the learner's device: the priorities of a prioritized replay sampler."""

    @property
    def alpha(self) -> float:
        """Current entropy temperature."""
        return float(self.log_alpha.detach().exp())

    def _optimizer(
        self, name: str, params: list[torch.Tensor], lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        fast = {"fused": True} if self.device.type in _FUSED_DEVICES else {"foreach": True}
        betas = self.config.betas
        return cls(params, lr=lr, betas=betas, weight_decay=weight_decay, **fast)

    def update(self, batch: Batch) -> dict[str, float]:
        """One SAC step on ``batch``; returns the named terms of :data:`STAT_NAMES`.

        The returned ``alpha`` is the temperature after this step; the losses used the one
        before it. Everything stays on the device until one transfer at the end.
        """
        cfg = self.config
        actor, critic = self.model.actor, self.model.critic
        alpha = self.log_alpha.detach().exp()

        with torch.no_grad():
            next_action, next_logp = actor(batch.next_obs)
            next_q = self.target_critic(batch.next_obs, next_action)
            # n-step rows bootstrap k steps ahead: their discount is gamma^k (Batch.discount)
            gamma = batch.discount if batch.discount is not None else cfg.gamma
            target = td_target(batch.reward, batch.terminated, next_q, next_logp, alpha, gamma)
        q = critic(batch.obs, batch.action)
        self.last_td_error = (q.detach() - target).abs().mean(dim=0)
        loss_critic = critic_loss(q, target, batch.weights)
        self._step(self.critic_optimizer, loss_critic, self._critic_params)

        critic.requires_grad_(False)  # the actor's loss must not fill the critic's gradients
        try:
            action, logp = actor(batch.obs)
            assert logp is not None
            loss_actor = actor_loss(logp, critic(batch.obs, action), alpha)
            self._step(self.actor_optimizer, loss_actor, self._actor_params)
        finally:
            critic.requires_grad_(True)

        if self.alpha_optimizer is not None:
            loss_alpha = alpha_loss(self.log_alpha, logp, self.target_entropy)
            self._step(self.alpha_optimizer, loss_alpha, [self.log_alpha])
        else:
            loss_alpha = torch.zeros((), device=self.device)

        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, 1.0 - cfg.polyak)
        self.updates += 1

        stats = torch.stack(
            [
                loss_critic.detach(),
                loss_actor.detach(),
                loss_alpha.detach(),
                self.log_alpha.detach().exp(),
                q.detach().mean(),
                -logp.detach().mean(),
            ]
        )
        return dict(zip(STAT_NAMES, stats.tolist(), strict=True))

    def _step(
        self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.Tensor]
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm, foreach=True)
        optimizer.step()

    def actor_weights(self) -> dict[str, np.ndarray]:
        """The actor's weights as CPU numpy arrays, the format sent to the workers."""
        return actor_weights(self.model.actor)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, target, optimizers, temperature, counter.

        The tensors alias the live ones (as ``nn.Module.state_dict`` does): save them before
        the next :meth:`update`, or copy them first to save from another thread.
        """
        return {
            "model": self.model.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": (
                None if self.alpha_optimizer is None else self.alpha_optimizer.state_dict()
            ),
            "log_alpha": self.log_alpha.detach().clone(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (tensors are moved to this learner's device)."""
        self.model.load_state_dict(state["model"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.alpha_optimizer is not None and state["alpha_optimizer"] is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.updates = int(state["updates"])

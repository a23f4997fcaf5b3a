"""Soft Actor-Critic (``algorithm.kind: sac``): Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications" (twin Q with clipped double-Q targets, learned temperature).

The losses are pure functions of tensors (:func:`td_target`, :func:`critic_loss`,
:func:`actor_loss`, :func:`alpha_loss`); :class:`SAC` owns the optimizers, the target critic
and the update order: critic step, actor step (critic frozen), temperature step, Polyak
averaging of the target. It does no I/O: the trainer feeds it batches and checkpoints its
:meth:`SAC.state_dict`.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tmrl2.algos.cnn import CNNActorCritic
from tmrl2.algos.networks import MLPActorCritic
from tmrl2.algos.optim import fast_adam
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

AmpMode = Literal["off", "bf16", "fp16"]
"""Mixed precision of a learner: off, bf16 autocast, or fp16 autocast with a gradient scaler."""


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
    policy_delay: int = Field(default=1, ge=1)
    """The actor and the temperature step once every this many critic steps (TD3-style
    delay; REDQ's update-to-data ratio G with one policy step per environment step)."""
    amp: AmpMode = "off"
    """Mixed precision on CUDA: ``bf16`` autocast, or ``fp16`` autocast with a gradient
    scaler. On the CPU the learner stays in fp32 whatever this says."""


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


def actor_loss(
    logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor | float, reduce: str = "min"
) -> torch.Tensor:
    """``mean(alpha log pi(a|s) - Q(s, a))`` with ``a ~ pi(s)`` reparameterized, where ``Q``
    is the min over the critics (SAC) or their mean (``reduce="mean"``, REDQ).

    Args:
        logp: ``(B,)`` log-likelihood of the sampled actions.
        q_pi: ``(n, B)`` critic values at the sampled actions.
        alpha: entropy temperature (no gradient).
        reduce: ``min`` or ``mean`` over the critics.
    """
    value = q_pi.min(dim=0).values if reduce == "min" else q_pi.mean(dim=0)
    return (alpha * logp - value).mean()


def alpha_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Temperature loss ``-mean(log_alpha (log pi + target_entropy))``: its gradient lowers
    alpha while the policy's entropy ``-log pi`` exceeds the target, and raises it otherwise."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()


AMP_DEVICE_TYPES: tuple[str, ...] = ("cuda",)
"""Device types where ``amp`` takes effect. The CPU learner stays in float32: bf16 autocast
measured only 6-8 % faster on two threads here (the casts eat the faster matmuls). Tests
add ``"cpu"`` to run the mixed-precision code paths without a GPU."""


class SAC:
    """One-step SAC learner over an actor-critic model with ``.actor`` and ``.critic``."""

    Config = SACConfig

    def __init__(
        self,
        config: SACConfig,
        model: MLPActorCritic | CNNActorCritic,
        device: str | torch.device = "cpu",
        critic_device: str | torch.device | None = None,
    ) -> None:
        """Args:
        config: the ``algorithm`` section.
        model: the actor-critic to train; it is moved to ``device``.
        device: torch device of the actor, the temperature and the batches.
        critic_device: torch device of the critics and their target when it differs from
            ``device`` (e.g. the actor on ``cuda:0``, a REDQ ensemble on ``cuda:1``); the
            batch and the actions cross once per use. Models whose actor and critic share
            parts (the CNN's encoder) cannot be split.

        Raises:
            ValueError: a split placement of a model with shared parts.
        """
        self.config = config
        self.device = torch.device(device)
        self.critic_device = torch.device(critic_device or device)
        self.split = self.critic_device != self.device
        if self.split and hasattr(model, "encoder"):
            raise ValueError(
                f"trainer.critic_device={self.critic_device} needs a model whose actor and "
                f"critic share nothing; {type(model).__name__}'s image encoder is shared: "
                "leave trainer.critic_device unset (one device for the whole model)"
            )
        self.model = model.to(self.device)
        self.model.critic.to(self.critic_device)
        self.target_critic = copy.deepcopy(model.critic).requires_grad_(False)
        act_dim = int(model.actor.action_scale.numel())
        self.target_entropy = (
            -float(act_dim) if config.target_entropy is None else config.target_entropy
        )
        self.log_alpha = torch.tensor(
            math.log(config.alpha_init), device=self.device, requires_grad=config.learn_alpha
        )
        # a model may keep shared parts (an image encoder) out of the actor's optimizer
        self._actor_params: list[torch.Tensor] = list(
            getattr(model, "actor_parameters", model.actor.parameters)()
        )
        self._critic_params: list[torch.Tensor] = list(
            getattr(model, "critic_parameters", model.critic.parameters)()
        )
        self._online_params: list[torch.Tensor] = list(model.critic.parameters())
        self._target_params: list[torch.Tensor] = list(self.target_critic.parameters())
        amp_here = (
            self.device.type in AMP_DEVICE_TYPES and self.critic_device.type == self.device.type
        )
        self.amp_dtype: torch.dtype | None = (
            {"bf16": torch.bfloat16, "fp16": torch.float16}[config.amp]
            if amp_here and config.amp != "off"
            else None
        )
        self._scalers: dict[int, torch.amp.GradScaler] = {}
        self._policy_stats = torch.zeros(3, device=self.device)  # actor, alpha losses, entropy
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
        """``(B,)`` |TD error| of the last update's batch (mean over the critics), detached,
        on the learner's device: the priorities of a prioritized replay sampler."""
        self.actor_guide: Callable[[Batch], torch.Tensor | None] | None = None
        """An extra term of the actor's loss, called with the batch at each actor step (None,
        or a hook returning None: no term); ``world_model.mpc.mode: guide`` sets it."""
        if self.amp_dtype is torch.float16:
            for optimizer in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
                if optimizer is not None:
                    self._scalers[id(optimizer)] = torch.amp.GradScaler(self.device.type)

    @property
    def alpha(self) -> float:
        """Current entropy temperature."""
        return float(self.log_alpha.detach().exp())

    def _optimizer(
        self, name: str, params: list[torch.Tensor], lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        betas = self.config.betas
        decoupled = name == "adamw"
        return fast_adam(params, lr, betas=betas, weight_decay=weight_decay, decoupled=decoupled)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _target_q(
        self, next_obs: dict[str, torch.Tensor], next_action: torch.Tensor
    ) -> torch.Tensor:
        """Target-critic values whose minimum bootstraps the TD target: both (SAC)."""
        return self.target_critic(next_obs, next_action)

    policy_reduce = "min"
    """How the actor's loss combines the critics: ``min`` (SAC) or ``mean`` (REDQ)."""

    def update(self, batch: Batch) -> dict[str, float]:
        """One SAC step on ``batch``; returns the named terms of :data:`STAT_NAMES`.

        The critic steps every call; the actor and the temperature every ``policy_delay``
        calls (their terms repeat the last values in between). The returned ``alpha`` is the
        temperature after this step; the losses used the one before it. Everything stays on
        the device until one transfer at the end.
        """
        cfg = self.config
        actor, critic = self.model.actor, self.model.critic
        alpha = self.log_alpha.detach().exp()
        augment = getattr(self.model, "augment", None)
        if augment is not None:
            batch = augment(batch)  # DrQ: image augmentation on the learner's device

        cb = self._on_critic(batch) if self.split else batch  # the batch where the critic is
        with torch.no_grad(), self._autocast():
            next_action, next_logp = actor(batch.next_obs)
            next_q = self._target_q(cb.next_obs, self._to_critic(next_action)).float()
            # n-step rows bootstrap k steps ahead: their discount is gamma^k (Batch.discount)
            gamma = cb.discount if cb.discount is not None else cfg.gamma
            target = td_target(
                cb.reward,
                cb.terminated,
                next_q,
                self._to_critic(next_logp.float()),
                self._to_critic(alpha),
                gamma,
            )
        with self._autocast():
            q = critic(cb.obs, cb.action).float()
        self.last_td_error = (q.detach() - target).abs().mean(dim=0)
        loss_critic = critic_loss(q, target, cb.weights)
        self._step(self.critic_optimizer, loss_critic, self._critic_params)

        if (self.updates + 1) % cfg.policy_delay == 0:
            self._policy_step(batch, alpha, cb)
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._online_params, 1.0 - cfg.polyak)
        self.updates += 1

        critic_stats = torch.stack([loss_critic.detach(), q.detach().mean()]).to(self.device)
        stats = torch.cat(
            [
                critic_stats[:1],
                self._policy_stats[:2],
                self.log_alpha.detach().exp().reshape(1),
                critic_stats[1:],
                self._policy_stats[2:],
            ]
        )
        return dict(zip(STAT_NAMES, stats.tolist(), strict=True))

    def _to_critic(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.critic_device, non_blocking=True) if self.split else x

    def _on_critic(self, batch: Batch) -> Batch:
        """The batch's tensors copied to the critic's device (split placement)."""
        dev = self.critic_device

        def move(obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(dev, non_blocking=True) for k, v in obs.items()}

        return batch._replace(
            obs=move(batch.obs),
            next_obs=move(batch.next_obs),
            action=self._to_critic(batch.action),
            reward=self._to_critic(batch.reward),
            terminated=self._to_critic(batch.terminated),
            weights=self._to_critic(batch.weights),
            discount=None if batch.discount is None else self._to_critic(batch.discount),
        )

    def _policy_step(self, batch: Batch, alpha: torch.Tensor, cb: Batch | None = None) -> None:
        """Actor step with the critic frozen, then the temperature step (``cb``: the batch on
        the critic's device, when that is another one)."""
        cb = batch if cb is None else cb
        critic = self.model.critic
        critic.requires_grad_(False)  # the actor's loss must not fill the critic's gradients
        try:
            with self._autocast():
                action, logp = self.model.actor(batch.obs)
                assert logp is not None
                # the gradient flows back across devices through the action
                q_pi = critic(cb.obs, self._to_critic(action)).float().to(self.device)
            loss_actor = actor_loss(logp.float(), q_pi, alpha, self.policy_reduce)
            extra = self.actor_guide(batch) if self.actor_guide is not None else None
            if extra is not None:  # world_model.mpc.mode guide: toward the planner's actions
                loss_actor = loss_actor + extra
            self._step(self.actor_optimizer, loss_actor, self._actor_params)
        finally:
            critic.requires_grad_(True)
        if self.alpha_optimizer is not None:
            loss_alpha = alpha_loss(self.log_alpha, logp.float(), self.target_entropy)
            self._step(self.alpha_optimizer, loss_alpha, [self.log_alpha])
        else:
            loss_alpha = torch.zeros((), device=self.device)
        self._policy_stats = torch.stack(
            [loss_actor.detach(), loss_alpha.detach(), -logp.detach().float().mean()]
        )

    def _step(
        self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.Tensor]
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        scaler = self._scalers.get(id(optimizer))
        if scaler is None:
            loss.backward()
            if self.config.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm, foreach=True)
            optimizer.step()
            return
        scaler.scale(loss).backward()  # fp16: scale the loss so that small gradients survive
        if self.config.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm, foreach=True)
        scaler.step(optimizer)
        scaler.update()

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
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "scalers": {k: sc.state_dict() for k, sc in self._scaler_names().items()},
        }

    def _scaler_names(self) -> dict[str, torch.amp.GradScaler]:
        named = {"actor": self.actor_optimizer, "critic": self.critic_optimizer}
        if self.alpha_optimizer is not None:
            named["alpha"] = self.alpha_optimizer
        return {k: self._scalers[id(o)] for k, o in named.items() if id(o) in self._scalers}

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
        if state.get("torch_rng") is not None:  # checkpoints before RNG states had none
            torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        for name, scaler in self._scaler_names().items():
            if name in state.get("scalers", {}):
                scaler.load_state_dict(state["scalers"][name])

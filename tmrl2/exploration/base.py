"""The exploration seam: the ``exploration:`` section's configs, contracts and builders.

An exploration component runs on one side of the system, never both:

- in the **trainer** (:class:`IntrinsicReward`: RND, ICM): it trains its own networks on the
  batches the learner samples and returns a per-sample intrinsic reward, which
  :class:`~tmrl2.exploration.learner.ExploringLearner` normalizes, weights and adds to the
  extrinsic reward of the batch the learner's critic target sees. The worker's hot loop never
  runs it, and the replay memory, the episode returns and evaluation never see it;
- in the **workers** (:class:`ActorNoise`: parameter-space noise): it acts with a perturbed
  copy of the actor the trainer published; the trainer's actor is never perturbed.

A component names its side with the class attribute ``runs_in`` (``"trainer"``,
``"worker"`` or ``None`` for :class:`NoExploration`), and is picked by ``exploration.kind``
through the registry like every other component: ``none`` (default), ``rnd``, ``icm``,
``param_noise``, or an import path ``package.module:Name`` for your own.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from tmrl2.config.base import ComponentConfig
from tmrl2.memory.batch import Batch

Side = Literal["trainer", "worker"]
"""Where an exploration component runs."""


def component_side(component: Any, config: ComponentConfig) -> Side | None:
    """Where ``component`` runs (its ``runs_in``); ``ValueError`` naming ``exploration.kind``
    for a component that says nothing valid, or a trainer-side one whose config does not
    carry the intrinsic reward's weight (:class:`IntrinsicConfig`). The config's loader calls
    it (``Config``'s validator), so a plug-in that does not fit fails before any role starts."""
    side = getattr(component, "runs_in", "missing")
    if side not in ("trainer", "worker", None):
        raise ValueError(
            f"exploration.kind {config.kind!r}: the component must declare runs_in = "
            f"'trainer' (an IntrinsicReward) or 'worker' (an ActorNoise), got {side!r}"
        )
    if side == "trainer" and not isinstance(config, IntrinsicConfig):
        raise ValueError(
            f"exploration.kind {config.kind!r}: a trainer-side component's Config must "
            "subclass tmrl2.exploration.base.IntrinsicConfig (weight, schedule, normalization)"
        )
    every = config.train_every if isinstance(config, IntrinsicConfig) else 1
    if side == "trainer" and every > 1 and not _has_reward(component):
        raise ValueError(
            f"exploration.train_every is {every} but exploration.kind "
            f"{config.kind!r} has no reward(batch) method (the no-grad bonus of the batches "
            "it does not train on): set exploration.train_every: 1, or give it that method"
        )
    return typing.cast(Side | None, side)


def _has_reward(component: Any) -> bool:
    return callable(getattr(component, "reward", None))


class NoExplorationConfig(ComponentConfig):
    """``exploration.kind: none``: SAC's own entropy-driven exploration only."""

    kind: str = "none"
    """Registry name (``none``, ``rnd``, ``icm``, ``param_noise``) or an import path."""


class NoExploration:
    """Nothing beyond the learner's own exploration (the default)."""

    Config = NoExplorationConfig
    runs_in: ClassVar[Side | None] = None


class IntrinsicConfig(ComponentConfig):
    """What every trainer-side intrinsic reward shares: its weight and normalization."""

    weight: float = Field(default=0.1, ge=0.0)
    """Weight of the normalized intrinsic reward added to the extrinsic reward in the critic's
    target: ``r + weight * r_int / mean(r_int)`` (``normalize_reward: mean``)."""
    normalize_reward: Literal["mean", "std"] = "mean"
    """Divide the raw intrinsic reward by its running ``mean`` (the bonus then averages 1:
    ``weight`` is the average bonus per step, directly comparable to the extrinsic reward)
    or by its running ``std`` (RND's convention; with one critic and episode ends, a bonus
    of mean/std per step can dwarf a sparse reward when the errors vary little)."""
    weight_final: float | None = Field(default=None, ge=0.0)
    """Weight reached at the end of a linear decay over ``decay_updates`` learner updates,
    then kept (None: ``weight`` throughout)."""
    decay_updates: int = Field(default=0, ge=0)
    """Updates over which the weight moves linearly from ``weight`` to ``weight_final``."""
    normalize_obs: bool = True
    """Whiten each observation element with running mean and std, then clip to
    ``+-obs_clip`` (Burda et al. 2018, section 2.4): without it a fixed random target sees
    near-constant inputs and its features barely vary."""
    obs_clip: float = Field(default=5.0, gt=0.0)
    """Clip of the whitened observations."""
    feature_dim: int = Field(default=64, gt=0)
    """Width of the embedding (RND's target output, ICM's state features)."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (128, 128)
    """Hidden layers of the MLPs over the vector parts and of the prediction heads."""
    lr: float = Field(default=1e-4, gt=0.0)
    """Learning rate of the module's optimizer (Adam)."""
    train_every: int = Field(default=4, ge=1)
    """Train the module on every k-th learner batch; the batches in between get their bonus
    from a no-grad forward (the module's ``reward``), a third of a training step's cost. 4 is
    close in spirit to RND's ``update_proportion`` of 0.25 (the predictor must not learn faster
    than the policy explores) at a fraction of the cost (docs/exploration.md, Cost)."""

    @model_validator(mode="after")
    def _schedule_complete(self) -> IntrinsicConfig:
        if self.weight_final is not None and self.decay_updates == 0:
            raise ValueError(
                "exploration.decay_updates must be > 0 when exploration.weight_final is set "
                "(the updates over which the weight decays)"
            )
        return self

    def weight_at(self, updates: int) -> float:
        """The weight after ``updates`` learner updates (the linear decay, then constant)."""
        if self.weight_final is None or updates >= self.decay_updates:
            return self.weight if self.weight_final is None else self.weight_final
        frac = updates / self.decay_updates
        return self.weight + frac * (self.weight_final - self.weight)


@runtime_checkable
class IntrinsicReward(Protocol):
    """A trainer-side novelty signal (RND, ICM), built as ``Cls(config, obs_space,
    action_space, device)``."""

    def update(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Train on ``batch`` (one optimizer step) and return its raw intrinsic reward
        ``(B,)`` (detached, >= 0, on the batch's device) and named terms to log."""
        ...

    # Optional: ``reward(batch) -> torch.Tensor``, the raw intrinsic reward ``(B,)`` without
    # training (no grad). ``exploration.train_every > 1`` needs it (:func:`component_side` checks).

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizer and running statistics (tensors and plain data only)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ActorNoise(Protocol):
    """A worker-side perturbation of the policy, built as ``Cls(config, actor, action_space,
    seed)``; it
    never changes ``actor`` itself, which keeps the trainer's published weights."""

    @property
    def acting_actor(self) -> nn.Module:
        """The module to act with (the perturbed copy)."""
        ...

    @property
    def deterministic(self) -> bool:
        """Act with the perturbed policy's mode instead of a sample."""
        ...

    def weights_changed(self) -> None:
        """New weights were loaded into the actor: rebuild the perturbed copy from them."""
        ...

    def after_step(self, obs: Mapping[str, np.ndarray], episode_end: bool) -> None:
        """The observations acted on in this step (one row per car) and whether the (first
        car's) episode ended: adapt and redraw when due."""
        ...

    def stats(self) -> dict[str, float]:
        """Values to log (they travel in the episode records, key ``exploration``). The
        trainer keeps the latest in its checkpoint and sends them back in its ``state``: an
        optional ``restore(values) -> bool`` method receives them once, at the worker's start
        (how :class:`~tmrl2.exploration.param_noise.ParamNoise` keeps its adapted scale)."""
        ...


def build_actor_noise(
    config: ComponentConfig, actor: nn.Module, action_space: gym.Space[Any], seed: int
) -> ActorNoise | None:
    """The worker-side exploration named by ``exploration.kind`` around ``actor``, or None
    when that component runs elsewhere (``none``, ``rnd``, ``icm``)."""
    from tmrl2.config.registry import resolve
    from tmrl2.contracts import check_component

    component = resolve("exploration", config.kind)
    if component_side(component, config) != "worker":
        return None
    noise = component(config, actor, action_space, seed)
    check_component(noise, ActorNoise, "exploration.kind")
    return noise  # type: ignore[no-any-return]

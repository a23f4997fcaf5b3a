"""The trainer side of exploration: a learner whose critic target sees an intrinsic bonus.

:class:`ExploringLearner` wraps any :class:`~tmrl2.contracts.Learner` (SAC, REDQ, a plug-in)
that reads the batch's ``reward`` in its critic target only, which is what SAC and REDQ do
(:func:`tmrl2.algos.sac.td_target`). Each update it

1. trains the intrinsic module (:class:`~tmrl2.exploration.base.IntrinsicReward`) on the
   sampled batch and takes its raw per-sample reward (on every ``train_every``-th batch; the
   others take the module's no-grad ``reward``),
2. normalizes it by the running mean (or standard deviation) of the raw rewards,
3. weights it (``exploration.weight``, optionally decayed) and hands the learner a copy of the
   batch whose reward is ``extrinsic + weight * normalized``.

The replay memory's rewards, the workers' episode returns (the logged extrinsic return) and
evaluation never see the bonus: it exists only inside that copy. The module's state and the
statistics go into the learner's ``state_dict`` under ``exploration``, so a resumed run goes
on with the same RND target and predictor (a fresh random target would make every state new
again).
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tmrl2.config import registry
from tmrl2.config.base import ComponentConfig
from tmrl2.contracts import Learner, check_component
from tmrl2.exploration.base import IntrinsicConfig, IntrinsicReward, component_side
from tmrl2.exploration.features import RunningMeanStd
from tmrl2.memory.batch import Batch

log = logging.getLogger(__name__)

STATE_KEY = "exploration"
"""Key of the exploration state inside the learner's ``state_dict``."""


class ExploringLearner:
    """A :class:`~tmrl2.contracts.Learner` adding a weighted intrinsic reward to the critic's
    target (module docstring); everything else is the wrapped learner's."""

    def __init__(self, learner: Learner, intrinsic: IntrinsicReward, config: IntrinsicConfig):
        """Args:
        learner: the learner named by ``algorithm.kind``.
        intrinsic: the module named by ``exploration.kind``, on the learner's device.
        config: the ``exploration`` section (weight and its schedule).
        """
        component_side(type(intrinsic), config)  # train_every > 1 needs its reward()
        self.learner, self.intrinsic, self.config = learner, intrinsic, config
        self.reward_stats = RunningMeanStd()
        self._module_stats: dict[str, float] = {}
        self.updates = 0
        """Updates made with exploration (the weight's schedule runs on it)."""

    @property
    def last_td_error(self) -> torch.Tensor | None:
        return self.learner.last_td_error

    @property
    def weight(self) -> float:
        """The intrinsic reward's weight at this update."""
        return self.config.weight_at(self.updates)

    def update(self, batch: Batch) -> dict[str, float]:
        """One step of the intrinsic module (every ``train_every``-th batch; its no-grad
        reward otherwise), then one of the learner on the bonus batch; the learner's terms
        plus ``intrinsic_mean``/``intrinsic_max`` (normalized, before the weight),
        ``intrinsic_weight`` and the module's terms (``predictor_loss``...: those of its latest
        training step)."""
        train = self.updates % self.config.train_every == 0
        if train:
            raw, self._module_stats = self.intrinsic.update(batch)
        else:
            raw = self.intrinsic.reward(batch)  # type: ignore[attr-defined]
        raw = raw.detach().to(batch.reward.device, torch.float32)
        if self.reward_stats.var.device != raw.device:
            self.reward_stats.to(raw.device)
        if train:  # the scale moves when the module does
            self.reward_stats.update(raw)
        running = self.reward_stats
        scale = running.mean if self.config.normalize_reward == "mean" else running.var.sqrt()
        bonus = raw / (scale + 1e-8)
        weight = self.weight
        stats = self.learner.update(batch._replace(reward=batch.reward + weight * bonus))
        self.updates += 1
        mean, top = torch.stack([bonus.mean(), bonus.max()]).tolist()
        return {
            **stats,
            "intrinsic_mean": mean,
            "intrinsic_max": top,
            "intrinsic_weight": weight,
            **self._module_stats,
        }

    def actor_weights(self) -> dict[str, np.ndarray]:
        return self.learner.actor_weights()

    def state_dict(self) -> dict[str, Any]:
        """The learner's state with the exploration state under :data:`STATE_KEY`."""
        return {
            **self.learner.state_dict(),
            STATE_KEY: {
                "kind": self.config.kind,
                "module": self.intrinsic.state_dict(),
                "reward_stats": self.reward_stats.state_dict(),
                "updates": self.updates,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the learner, and the exploration state when the checkpoint has one of the
        same kind (else the module starts fresh, with a warning). ``ValueError`` naming the
        keys when the saved module's sizes are not this config's."""
        self.learner.load_state_dict({k: v for k, v in state.items() if k != STATE_KEY})
        saved = state.get(STATE_KEY)
        if not isinstance(saved, dict) or saved.get("kind") != self.config.kind:
            was = saved.get("kind") if isinstance(saved, dict) else "none"
            log.warning(
                "the checkpoint holds no %s exploration state (it was trained with "
                "exploration.kind %s): the module starts fresh",
                self.config.kind,
                was,
            )
            return
        try:
            self.intrinsic.load_state_dict(saved["module"])
        except RuntimeError as exc:  # torch's "size mismatch for encoder.mlp.0.weight..."
            raise ValueError(
                f"the checkpoint's {self.config.kind} module does not fit this config's "
                "(exploration.feature_dim, exploration.hidden_sizes, or the observations "
                "differ): resume with the run folder's config.yaml, or set those keys to the "
                f"checkpoint's values. torch said: {str(exc).strip()[:400]}"
            ) from exc
        self.reward_stats.load_state_dict(saved["reward_stats"])
        self.updates = int(saved["updates"])


def wrap_learner(
    config: ComponentConfig,
    learner: Learner,
    obs_space: gym.Space[Any],
    action_space: gym.Space[Any],
    device: torch.device,
) -> Learner:
    """``learner`` with the trainer-side exploration named by ``exploration.kind``, or
    ``learner`` itself when that component runs elsewhere (``none``, ``param_noise``)."""
    component = registry.resolve("exploration", config.kind)
    if component_side(component, config) != "trainer":
        return learner
    assert isinstance(config, IntrinsicConfig)  # component_side checked it
    intrinsic = component(config, obs_space, action_space, device)
    check_component(intrinsic, IntrinsicReward, "exploration.kind")
    return ExploringLearner(learner, intrinsic, config)

"""The trainer side of the world model: a learner that trains it, rolls it out, mixes in.

:class:`WorldModelLearner` wraps the learner of ``algorithm.kind`` (SAC, REDQ; with an
``exploration`` component, the :class:`~tmrl2.exploration.learner.ExploringLearner`). At each
update, on the real batch the trainer sampled from the replay memory, it

1. trains the ensemble (``steps_per_update`` steps) on the batch's rows outside the held-out
   split, and measures its validation errors on the held-out rows (``holdout_frac`` of the
   storage rows, by a fixed hash of the row: never trained on, whatever batch they come in);
2. adds the batch's states to the pool of rollout starts;
3. from ``world_model.start_updates`` on: every ``rollout.every_updates`` updates, rolls the
   current policy out in the model from ``rollout.starts`` pooled states into the model buffer
   (:func:`~tmrl2.worldmodel.rollouts.rollout`);
4. hands the learner a batch whose first ``real_ratio`` share are the real rows and the rest
   model transitions (importance weight 1, one-step discount); the learner's TD errors of the
   real rows go back to a prioritized sampler (:attr:`last_td_error` covers them only);
5. with ``mpc.mode: guide``: the learner's actor step adds ``w * |pi_mode(s) - a_plan(s)|^2``
   on the batch's first ``guide_states`` real states, where ``a_plan`` is the CEM planner's
   action over the ensemble (particles spread over the members:
   :meth:`~tmrl2.worldmodel.rollouts.ModelStep.particles`) with the critic's value at the
   horizon (the learner's
   ``actor_guide`` hook; ``w`` decays linearly).

Logged (``loss/wm_*``): the model's train and validation errors, the rollouts' lengths and
stops, the model buffer's size and the share of model rows, the guide term and its weight, the
planner's time. Everything (ensemble, optimizer, model buffer, start pool, counters, RNG) goes
into the learner's ``state_dict`` under ``world_model``. With ``mpc.mode: explore``
:meth:`actor_weights` adds the ensemble's weights, prefixed ``wm/``, to the actor's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tmrl2.algos.optim import fast_adam
from tmrl2.algos.policy import actor_weights
from tmrl2.config import registry
from tmrl2.config.base import ComponentConfig
from tmrl2.contracts import ActorCritic, Learner
from tmrl2.memory.batch import Batch
from tmrl2.worldmodel.config import WorldModelConfig
from tmrl2.worldmodel.ensemble import GaussianEnsemble
from tmrl2.worldmodel.planner import CEMPlanner
from tmrl2.worldmodel.rollouts import ModelStep, TensorRing, rollout, transition_fields
from tmrl2.worldmodel.state import StateCodec

log = logging.getLogger(__name__)

STATE_KEY = "world_model"
"""Key of the world model's state inside the learner's ``state_dict``."""
WEIGHTS_PREFIX = "wm/"
"""Prefix of the ensemble's arrays in a ``weights`` message (``mpc.mode: explore``)."""
VAL_EMA = 0.98
"""Smoothing of the validation errors (a few held-out rows come with each batch)."""


def build_ensemble(
    config: WorldModelConfig, obs_space: gym.Space[Any], action_space: gym.spaces.Box
) -> tuple[StateCodec, GaussianEnsemble]:
    """The state codec and an untrained ensemble for these spaces (trainer and workers build
    the same, so the weights fit)."""
    codec = StateCodec(obs_space, action_space, config.history_keys, config.action_keys)
    ensemble = GaussianEnsemble(
        config.ensemble_size,
        codec.obs_dim + codec.act_dim,
        codec.pred_dim + 1,
        config.hidden_sizes,
        config.activation,
        (config.logvar_min, config.logvar_max),
    )
    return codec, ensemble


def holdout_mask(indices: np.ndarray, frac: float) -> np.ndarray:
    """Whether each storage row is held out: a fixed hash of the row number (Knuth's
    multiplicative hash), so a row is held out or not whatever batch it comes in."""
    if frac <= 0.0:
        return np.zeros(len(indices), dtype=bool)
    hashed = (indices.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(2**32)
    return hashed < np.uint64(int(frac * 2**32))


def innermost(learner: Any) -> Any:
    """The learner at the bottom of a chain of wrappers (each holds the next as ``learner``)."""
    while hasattr(learner, "learner"):
        learner = learner.learner
    return learner


class WorldModelLearner:
    """A :class:`~tmrl2.contracts.Learner` with a world model (module docstring)."""

    def __init__(
        self,
        learner: Learner,
        model: ActorCritic,
        config: WorldModelConfig,
        obs_space: gym.Space[Any],
        action_space: gym.spaces.Box,
        device: torch.device,
        *,
        gamma: float = 0.99,
        seed: int = 0,
    ) -> None:
        """Args:
        learner: the learner of ``algorithm.kind`` (possibly wrapped).
        model: its actor-critic (the policy of the rollouts, the critic's terminal value).
        config: the ``world_model`` section.
        obs_space, action_space: the env's spaces.
        device: the learner's device.
        gamma: the learner's discount (the bootstrap discount of model rows).
        seed: seeds the bootstraps, rollouts and the planner.

        Raises:
            ValueError: naming the key, for image observations or a ``guide`` mode whose
                learner has no ``actor_guide`` hook.
        """
        self.learner, self.model, self.config = learner, model, config
        self.device = device
        self.codec, ensemble = build_ensemble(config, obs_space, action_space)
        self.ensemble = ensemble.to(device)
        self.optimizer = fast_adam(
            self.ensemble.parameters(), config.lr, weight_decay=config.weight_decay
        )
        self.step_fn = ModelStep(self.ensemble, self.codec)
        fields = transition_fields(self.codec.obs_dim, self.codec.act_dim)
        self.buffer = TensorRing(fields, config.rollout.buffer_capacity, device)
        self.starts = TensorRing({"obs": (self.codec.obs_dim,)}, config.rollout.start_pool, device)
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.planner = CEMPlanner(config.mpc, low, high)
        self.gamma = gamma
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0
        """Updates made with the world model (its schedules run on it)."""
        self.val: dict[str, float] = {}
        self._stats: dict[str, float] = {}
        self._n_real = 0
        self._guide_calls = 0
        self._guide_on = False
        if config.mpc.mode == "guide":
            inner = innermost(learner)
            if not hasattr(inner, "actor_guide"):
                raise ValueError(
                    f"world_model.mpc.mode guide: the learner {type(inner).__name__} has no "
                    "actor_guide hook (SAC and REDQ have one); use mode explore or none"
                )
            inner.actor_guide = self._guide_loss

    # ------------------------------------------------------------------ contract
    @property
    def last_td_error(self) -> torch.Tensor | None:
        """The TD errors of the last batch's real rows (the model rows have no storage row)."""
        td = self.learner.last_td_error
        return None if td is None else td[: self._n_real]

    def update(self, batch: Batch) -> dict[str, float]:
        """Model step(s), rollouts, then the learner on the mixed batch; the learner's terms
        plus the ``wm_*`` terms (module docstring)."""
        cfg = self.config
        obs_flat = self.codec.flatten(batch.obs)
        stats = self._train_model(batch, obs_flat)
        self.starts.add({"obs": obs_flat})
        active = self.updates >= cfg.start_updates
        rcfg = cfg.rollout
        if active and rcfg.real_ratio < 1.0 and self.updates % rcfg.every_updates == 0:
            self._rollout()
        mixed = self._mix(batch) if active else batch
        self._n_real = len(mixed.indices)
        self._guide_on = active and cfg.mpc.mode == "guide"
        learner_stats = self.learner.update(mixed)
        self.updates += 1
        return {
            **learner_stats,
            **stats,
            **{f"wm_val_{k}": v for k, v in self.val.items()},
            **self._stats,
            "wm_buffer": float(len(self.buffer)),
            "wm_model_share": 1.0 - self._n_real / max(len(batch.indices), 1),
        }

    def actor_weights(self) -> dict[str, np.ndarray]:
        """The actor's weights; with ``mpc.mode: explore``, the ensemble's too (``wm/``)."""
        weights = self.learner.actor_weights()
        if self.config.mpc.mode == "explore":
            for name, array in actor_weights(self.ensemble).items():
                weights[WEIGHTS_PREFIX + name] = array
        return weights

    def state_dict(self) -> dict[str, Any]:
        """The learner's state with the world model's under :data:`STATE_KEY`."""
        return {
            **self.learner.state_dict(),
            STATE_KEY: {
                "kind": self.config.kind,
                "ensemble": self.ensemble.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "buffer": self.buffer.state_dict(),
                "starts": self.starts.state_dict(),
                "updates": self.updates,
                "guide_calls": self._guide_calls,
                "val": dict(self.val),
                "generator": self.generator.get_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the learner, and the world model when the checkpoint has one (else it
        starts fresh, with a warning)."""
        self.learner.load_state_dict({k: v for k, v in state.items() if k != STATE_KEY})
        saved = state.get(STATE_KEY)
        if not isinstance(saved, dict):
            log.warning("the checkpoint holds no world model: it starts fresh")
            return
        self.ensemble.load_state_dict(saved["ensemble"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.buffer.load_state_dict(saved["buffer"])
        self.starts.load_state_dict(saved["starts"])
        self.updates = int(saved["updates"])
        self._guide_calls = int(saved.get("guide_calls", 0))
        self.val = {k: float(v) for k, v in saved.get("val", {}).items()}
        self.generator.set_state(saved["generator"])

    # ------------------------------------------------------------------ model training
    def _data(
        self, batch: Batch, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs, targets (state changes, reward) and terminations of a real batch
        (``obs``: its flat states)."""
        nxt = self.codec.flatten(batch.next_obs)
        inputs = torch.cat([obs, batch.action.reshape(len(obs), -1).float()], dim=-1)
        targets = torch.cat([self.codec.target(obs, nxt), batch.reward.reshape(-1, 1)], dim=-1)
        return inputs, targets, batch.terminated.float()

    def _train_model(self, batch: Batch, obs_flat: torch.Tensor) -> dict[str, float]:
        cfg = self.config
        inputs, targets, done = self._data(batch, obs_flat)
        held = torch.as_tensor(holdout_mask(batch.indices, cfg.holdout_frac), device=inputs.device)
        if held.any():
            errors = self.ensemble.errors(inputs[held], targets[held], done[held])
            for key, value in errors.items():
                old = self.val.get(key)
                self.val[key] = value if old is None else VAL_EMA * old + (1 - VAL_EMA) * value
        train = ~held
        n = int(train.sum())
        if n < 2 or cfg.steps_per_update == 0:
            return {}
        x, y, d = inputs[train], targets[train], done[train]
        self.ensemble.observe(x, y)
        parts: dict[str, torch.Tensor] = {}
        k = self.ensemble.members
        for _ in range(cfg.steps_per_update):
            boot = torch.randint(n, (k, n), generator=self.generator).to(x.device)
            loss, parts = self.ensemble.loss(x[boot], y[boot], d[boot])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        values = torch.stack(list(parts.values())).tolist()
        return {f"wm_train_{name}": v for name, v in zip(parts, values, strict=True)}

    # ------------------------------------------------------------------ rollouts and mixing
    def _policy(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        action, _ = self.model.actor(obs, deterministic=False, with_logprob=False)
        return action.float()

    def _rollout(self) -> None:
        rcfg = self.config.rollout
        if not len(self.starts):
            return
        horizon = rcfg.horizon_at(self.updates - self.config.start_updates)
        starts = self.starts.sample(rcfg.starts, self.generator)["obs"]
        rows, stats = rollout(
            self.step_fn, self._policy, starts, horizon, rcfg.max_disagreement, self.generator
        )
        self.buffer.add(rows)
        self._stats.update({f"wm_{k}": v for k, v in stats.items()})
        self._stats["wm_rollout_horizon"] = float(horizon)

    def _mix(self, batch: Batch) -> Batch:
        """The batch with its last ``1 - real_ratio`` share replaced by model rows."""
        rcfg = self.config.rollout
        size = len(batch.indices)
        n_model = round(size * (1.0 - rcfg.real_ratio))
        if n_model == 0 or len(self.buffer) < max(rcfg.min_buffer, 1):
            return batch
        n_real = size - n_model
        rows = self.buffer.sample(n_model, self.generator)
        obs, nxt = self.codec.unflatten(rows["obs"]), self.codec.unflatten(rows["next_obs"])

        def cat(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
            return torch.cat([real[:n_real], fake.to(real.device, real.dtype)])

        ones = torch.ones(n_model, device=batch.weights.device)
        discount = None
        if batch.discount is not None:  # n-step real rows; model rows are one step
            discount = cat(batch.discount, ones * self.gamma)
        return Batch(
            obs={key: cat(value, obs[key]) for key, value in batch.obs.items()},
            action=cat(batch.action, rows["action"]),
            reward=cat(batch.reward, rows["reward"]),
            next_obs={key: cat(value, nxt[key]) for key, value in batch.next_obs.items()},
            terminated=cat(batch.terminated, rows["terminated"]),
            weights=cat(batch.weights, ones),
            indices=batch.indices[:n_real],
            discount=discount,
        )

    # ------------------------------------------------------------------ MPC guide
    def _value(self, state: torch.Tensor) -> torch.Tensor:
        """``min_i Q_i(s, pi_mode(s))`` of the learner's critic."""
        obs = self.codec.unflatten(state)
        action, _ = self.model.actor(obs, deterministic=True, with_logprob=False)
        critic: nn.Module = self.model.critic
        where = next(critic.parameters()).device
        q = critic({k: v.to(where) for k, v in obs.items()}, action.to(where))
        return q.float().min(dim=0).values.to(state.device)

    def _guide_loss(self, batch: Batch) -> torch.Tensor | None:
        """The guide term for the learner's actor step (its ``actor_guide`` hook)."""
        mpc = self.config.mpc
        if not self._guide_on:
            return None
        self._guide_calls += 1
        if (self._guide_calls - 1) % mpc.guide_every:
            return None
        g = min(mpc.guide_states, self._n_real)
        obs = {key: value[:g] for key, value in batch.obs.items()}
        actor = self.model.actor
        t0 = time.perf_counter()
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            state = self.codec.flatten(obs)
            init, _ = actor(obs, deterministic=True, with_logprob=False)
            value = self._value if mpc.terminal_value else None
            target, _ = self.planner.plan(
                self.step_fn.particles, state, init.float(), value, self.generator
            )
        mode, _ = actor(obs, deterministic=True, with_logprob=False)
        term = (mode.float() - target).square().sum(dim=-1).mean()
        weight = mpc.guide_weight_at(self.updates - self.config.start_updates)
        self._stats.update(
            {
                "wm_guide_loss": float(term.detach()),
                "wm_guide_weight": weight,
                "wm_plan_ms": 1000.0 * (time.perf_counter() - t0),
                "wm_plans": float((self._guide_calls - 1) // mpc.guide_every + 1),
            }
        )
        return weight * term


def wrap_world_model(
    config: ComponentConfig,
    learner: Learner,
    model: ActorCritic,
    obs_space: gym.Space[Any],
    action_space: gym.Space[Any],
    device: torch.device,
    *,
    gamma: float = 0.99,
    seed: int = 0,
) -> Learner:
    """``learner`` with the world model named by ``world_model.kind``, or ``learner`` itself
    for ``none``."""
    component = registry.resolve("world_model", config.kind)
    if not getattr(component, "enabled", False):
        return learner
    if not isinstance(config, WorldModelConfig):
        raise ValueError(
            f"world_model.kind {config.kind!r}: its Config must be "
            "tmrl2.worldmodel.config.WorldModelConfig"
        )
    assert isinstance(action_space, gym.spaces.Box)
    return WorldModelLearner(
        learner, model, config, obs_space, action_space, device, gamma=gamma, seed=seed
    )

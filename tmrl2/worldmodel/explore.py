"""The workers' side of ``world_model.mpc.mode: explore``: act with the planner sometimes.

The trainer adds the ensemble's weights to each ``weights`` message (arrays prefixed
:data:`~tmrl2.worldmodel.learner.WEIGHTS_PREFIX`, raw numpy like the actor's: no pickle);
:func:`split_weights` separates them, and :class:`MPCExplorer` loads them into the worker's
own copy of the ensemble. From then on, each step acts with the CEM planner's action with
probability ``explore_prob`` (its sampling mean starts at the policy's mode; the plan sums
the model's rewards over the horizon: the workers have no critic). Until the first model
weights arrive, and on every other step, the worker acts with its policy as usual. The share
of planned steps of each episode reaches the trainer's metrics as ``explore/mpc_frac``
(the episode record's ``exploration`` map).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tmrl2.algos.policy import as_tensor, load_actor_weights
from tmrl2.config.base import ComponentConfig
from tmrl2.memory.batch import BOX_KEY
from tmrl2.worldmodel.config import WorldModelConfig
from tmrl2.worldmodel.learner import WEIGHTS_PREFIX, build_ensemble
from tmrl2.worldmodel.planner import CEMPlanner
from tmrl2.worldmodel.rollouts import ModelStep


def split_weights(
    arrays: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The actor's arrays and the world model's (prefix removed) of a ``weights`` message."""
    actor: dict[str, np.ndarray] = {}
    model: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name.startswith(WEIGHTS_PREFIX):
            model[name[len(WEIGHTS_PREFIX) :]] = array
        else:
            actor[name] = array
    return actor, model


class MPCExplorer:
    """A worker's planner over its copy of the trainer's ensemble."""

    def __init__(
        self,
        config: WorldModelConfig,
        obs_space: gym.Space[Any],
        action_space: gym.spaces.Box,
        seed: int,
    ) -> None:
        """Args:
        config: the ``world_model`` section (``mpc.mode: explore``).
        obs_space, action_space: the worker's env spaces.
        seed: seeds the coin flips and the planner's samples.
        """
        self.config = config
        self.codec, self.ensemble = build_ensemble(config, obs_space, action_space)
        self.ensemble.eval()
        self.step_fn = ModelStep(self.ensemble, self.codec)
        low = torch.as_tensor(action_space.low, dtype=torch.float32)
        high = torch.as_tensor(action_space.high, dtype=torch.float32)
        self.planner = CEMPlanner(config.mpc, low, high)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.ready = False
        """Whether model weights arrived (the planner acts only then)."""
        self.steps = 0
        self.planned = 0

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Load the ensemble's weights of a ``weights`` message (prefix removed)."""
        if arrays:
            load_actor_weights(self.ensemble, arrays)
            self.ready = True

    def maybe_act(self, obs: Any, actor: nn.Module) -> np.ndarray | None:
        """The planner's action for this step, or None (act with the policy)."""
        self.steps += 1
        if not self.ready or self.rng.random() >= self.config.mpc.explore_prob:
            return None
        parts = {BOX_KEY: obs} if isinstance(obs, np.ndarray) else obs
        with torch.inference_mode():
            batch = {k: as_tensor(np.asarray(v)).unsqueeze(0) for k, v in parts.items()}
            init, _ = actor(batch, deterministic=True, with_logprob=False)
            state = self.codec.flatten(batch)
            action, _ = self.planner.plan(
                self.step_fn.particles, state, init.float(), None, self.generator
            )
        self.planned += 1
        return np.asarray(action[0].numpy(), np.float32)

    def stats(self) -> dict[str, float]:
        """The episode's share of planned steps (then the count starts over)."""
        frac = self.planned / self.steps if self.steps else 0.0
        self.steps = self.planned = 0
        return {"mpc_frac": frac}


def build_mpc_explorer(
    config: ComponentConfig, obs_space: gym.Space[Any], action_space: gym.Space[Any], seed: int
) -> MPCExplorer | None:
    """The worker's planner when ``world_model.mpc.mode`` is ``explore``, else None."""
    mpc = getattr(config, "mpc", None)
    if not isinstance(config, WorldModelConfig) or getattr(mpc, "mode", None) != "explore":
        return None
    assert isinstance(action_space, gym.spaces.Box)
    return MPCExplorer(config, obs_space, action_space, seed)

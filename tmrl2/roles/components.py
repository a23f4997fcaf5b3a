"""Build learning components from their config sections through the registries.

Each builder returns its component typed by its contract (:mod:`tmrl2.contracts`) and checks
the contract at once, so a plug-in named by an import path that lacks a member fails here,
naming the member, rather than in the middle of a run.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from tmrl2.config import registry
from tmrl2.config.schema import Config
from tmrl2.contracts import ActorCritic, Learner, ReplayMemory, check_component


def build_model(
    config: Config, obs_space: gym.Space[Any], action_space: gym.Space[Any]
) -> ActorCritic:
    """The actor-critic module named by ``model.kind`` (on CPU)."""
    model_cls = registry.resolve("model", config.model.kind)
    model = model_cls(config.model, obs_space, action_space)
    check_component(model, ActorCritic, "model.kind")
    return model  # type: ignore[no-any-return]


def build_algorithm(config: Config, model: ActorCritic, device: torch.device) -> Learner:
    """The learner named by ``algorithm.kind``, owning ``model`` on ``device``."""
    algo_cls = registry.resolve("algorithm", config.algorithm.kind)
    critic_device = config.trainer.critic_device
    if critic_device is None or torch.device(critic_device) == device:
        learner = algo_cls(config.algorithm, model, device)
    else:
        learner = algo_cls(config.algorithm, model, device, critic_device=critic_device)
    check_component(learner, Learner, "algorithm.kind")
    return learner  # type: ignore[no-any-return]


def build_memory(
    config: Config, obs_space: gym.Space[Any], action_space: gym.Space[Any], device: torch.device
) -> ReplayMemory:
    """The replay memory named by ``memory.kind``."""
    memory_cls = registry.resolve("memory", config.memory.kind)
    memory = memory_cls(config.memory, obs_space, action_space, device=device, seed=config.run.seed)
    check_component(memory, ReplayMemory, "memory.kind")
    return memory  # type: ignore[no-any-return]

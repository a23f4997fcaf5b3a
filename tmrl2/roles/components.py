"""Build learning components from their config sections through the registries."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch

from tmrl2.config import registry
from tmrl2.config.schema import Config


def build_model(config: Config, obs_space: gym.Space[Any], action_space: gym.Space[Any]) -> Any:
    """The actor-critic module named by ``model.kind`` (on CPU)."""
    model_cls = registry.resolve("model", config.model.kind)
    return model_cls(config.model, obs_space, action_space)


def build_algorithm(config: Config, model: Any, device: torch.device) -> Any:
    """The learner named by ``algorithm.kind``, owning ``model`` on ``device``."""
    algo_cls = registry.resolve("algorithm", config.algorithm.kind)
    critic_device = config.trainer.critic_device
    if critic_device is None or torch.device(critic_device) == device:
        return algo_cls(config.algorithm, model, device)
    return algo_cls(config.algorithm, model, device, critic_device=critic_device)


def build_memory(
    config: Config, obs_space: gym.Space[Any], action_space: gym.Space[Any], device: torch.device
) -> Any:
    """The replay memory named by ``memory.kind``."""
    memory_cls = registry.resolve("memory", config.memory.kind)
    return memory_cls(config.memory, obs_space, action_space, device=device, seed=config.run.seed)

"""Single-process training: one env, one memory, one learner, in one loop.

For quick experiments and learning tests on any Gymnasium env (``Pendulum-v1``...), without the
server, the processes and the network of ``tmrl2 train``: act, append the transition, update
``updates_per_step`` times. The same memory and learner classes as the distributed trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tmrl2.algos.policy import actor_act


@dataclass
class InlineResult:
    """Returns of the training episodes and the learner's last terms."""

    episode_returns: list[tuple[int, float]] = field(default_factory=list)
    """``(env step at the episode's end, return)``."""
    updates: int = 0
    last_terms: dict[str, float] = field(default_factory=dict)


def _row(space: spaces.Space[Any], prefix: str, obs: Any) -> dict[str, np.ndarray]:
    if isinstance(space, spaces.Dict):
        return {f"{prefix}/{key}": np.asarray(value)[None] for key, value in obs.items()}
    return {prefix: np.asarray(obs)[None]}


def train_inline(
    env: gym.Env[Any, Any],
    algo: Any,
    memory: Any,
    steps: int,
    *,
    batch_size: int = 256,
    start_steps: int = 1000,
    updates_per_step: int = 1,
    seed: int = 0,
) -> InlineResult:
    """Train ``algo`` on ``env`` for ``steps`` environment steps.

    Args:
        env: a Gymnasium env with a ``Box`` action space.
        algo: a learner (:class:`~tmrl2.algos.sac.SAC`, :class:`~tmrl2.algos.redq.REDQ`).
        memory: a replay memory (:class:`~tmrl2.memory.ring.RingMemory`) on the learner's device.
        steps: environment steps.
        batch_size: transitions per update.
        start_steps: uniform random actions first (exploration), no updates.
        updates_per_step: learner updates per environment step after ``start_steps``.
        seed: seeds the env and its action space.
    """
    result = InlineResult()
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    for t in range(steps):
        action = env.action_space.sample() if t < start_steps else actor_act(algo.model.actor, obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        memory.append(
            {
                **_row(env.observation_space, "obs", obs),
                **_row(env.observation_space, "next_obs", next_obs),
                "action": np.asarray(action, np.float32)[None],
                "reward": np.array([reward], np.float32),
                "terminated": np.array([terminated]),
                "truncated": np.array([truncated]),
            }
        )
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            result.episode_returns.append((t + 1, episode_return))
            obs, _ = env.reset()
            episode_return = 0.0
        if t >= start_steps:
            for _ in range(updates_per_step):
                batch = memory.sample(batch_size)
                result.last_terms = algo.update(batch)
                if getattr(memory, "wants_priorities", False):
                    memory.update_priorities(batch.indices, algo.last_td_error)
                result.updates += 1
    return result


def evaluate_inline(
    env: gym.Env[Any, Any], actor: Any, episodes: int = 5, seed: int = 10_000
) -> float:
    """Mean return of ``episodes`` deterministic episodes."""
    total = 0.0
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(
                actor_act(actor, obs, deterministic=True)
            )
            total += float(reward)
            done = terminated or truncated
    return total / episodes

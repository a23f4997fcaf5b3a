"""A one-step learning task shared by the learner tests: one-step episodes with reward
``-(a - 0.8 o)^2``, so the best action is ``0.8 o`` and a deterministic policy's distance to it
says whether a learner learned."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from torch import nn

from tmrl2.algos.policy import actor_act
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

OBS_SPACE = spaces.Box(-1, 1, (1,))
ACTION_SPACE = spaces.Box(-1, 1, (1,))


def target_reaching_memory(rows: int = 5000) -> RingMemory:
    """``rows`` random transitions of the task (seeded)."""
    memory = RingMemory(RingMemoryConfig(capacity=rows), OBS_SPACE, ACTION_SPACE, seed=0)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (rows, 1)).astype(np.float32)
    action = rng.uniform(-1, 1, (rows, 1)).astype(np.float32)
    memory.append(
        {
            "obs": obs,
            "next_obs": obs,
            "action": action,
            "reward": -((action[:, 0] - 0.8 * obs[:, 0]) ** 2),
            "terminated": np.ones(rows, bool),
            "truncated": np.zeros(rows, bool),
        }
    )
    return memory


def worst_action_error(actor: nn.Module) -> float:
    """Largest distance of the deterministic action from ``0.8 o`` at three probes."""
    probes = np.array([-0.75, 0.0, 0.75], np.float32)
    actions = [actor_act(actor, np.array([p]), deterministic=True)[0] for p in probes]
    return float(np.abs(np.array(actions) - 0.8 * probes).max())

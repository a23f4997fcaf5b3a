"""n-step returns: hand-checked horizons, and memories that store them (with and without
de-duplicated frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tmrl2.memory.nstep import nstep_returns
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1e9, (2, 3), np.float32), speed=spaces.Box(0, 1e9, (1,), np.float32)
)
ACTION_SPACE = spaces.Box(-1, 1, (1,))


def test_returns_by_hand() -> None:
    reward = np.array([1, 2, 3, 4, 5], np.float32)
    done = np.array([False, False, True, False, False])
    last, returns, discount = nstep_returns(reward, done, n=3, gamma=0.5)
    np.testing.assert_array_equal(last, [2, 2, 2, 4, 4])  # never past an episode or chunk end
    np.testing.assert_allclose(returns, [1 + 1 + 0.75, 2 + 1.5, 3, 4 + 2.5, 5])
    np.testing.assert_allclose(discount, [0.125, 0.25, 0.5, 0.25, 0.5])
    last, returns, discount = nstep_returns(reward, done, n=1, gamma=0.5)
    np.testing.assert_array_equal(last, np.arange(5))
    np.testing.assert_allclose(returns, reward)


def chunk(first: int, n: int, terminated_at_end: bool) -> dict[str, np.ndarray]:
    frames = first + np.arange(n + 1, dtype=np.float32)
    hist = np.stack([frames[np.maximum([t - 1, t], 0)] for t in range(n + 1)])
    lidar = np.repeat(hist[:, :, None], 3, axis=2)
    end = np.arange(n) == n - 1
    return {
        "obs/lidar": lidar[:-1],
        "next_obs/lidar": lidar[1:],
        "obs/speed": frames[:-1, None],
        "next_obs/speed": frames[1:, None],
        "action": frames[:-1, None] / 1e4,
        "reward": np.ones(n, np.float32),
        "terminated": end & terminated_at_end,
        "truncated": end & (not terminated_at_end),
    }


@pytest.mark.parametrize("history_keys", [(), ("lidar",)])
def test_memory_stores_n_step_transitions(history_keys: tuple[str, ...]) -> None:
    config = RingMemoryConfig(capacity=64, n_step=3, gamma=0.9, history_keys=history_keys)
    memory = RingMemory(config, SPACE, ACTION_SPACE)
    memory.append(chunk(0, 5, terminated_at_end=True))
    memory.append(chunk(100, 4, terminated_at_end=False))
    batch = memory.gather(np.arange(9))
    assert batch.discount is not None
    k = np.array([3, 3, 3, 2, 1, 3, 3, 2, 1])
    torch.testing.assert_close(batch.discount, torch.tensor(0.9**k, dtype=torch.float32))
    torch.testing.assert_close(batch.reward, torch.tensor((1 - 0.9**k) / 0.1, dtype=torch.float32))
    start = batch.obs["speed"][:, 0]
    torch.testing.assert_close(batch.next_obs["speed"][:, 0], start + torch.tensor(k).float())
    # the horizon's next observation keeps its whole history
    torch.testing.assert_close(batch.next_obs["lidar"][:, 1, 0], start + torch.tensor(k).float())
    torch.testing.assert_close(
        batch.next_obs["lidar"][:, 0, 0], start + torch.tensor(k).float() - 1
    )
    torch.testing.assert_close(batch.terminated, torch.tensor([0, 0, 1, 1, 1, 0, 0, 0, 0.0]))


def test_one_step_memory_has_no_discount() -> None:
    memory = RingMemory(RingMemoryConfig(capacity=8), SPACE, ACTION_SPACE)
    memory.append(chunk(0, 3, terminated_at_end=True))
    assert memory.sample(4).discount is None


def test_a_chunk_without_an_episode_end_runs_to_its_last_row() -> None:
    last, returns, discount = nstep_returns(np.ones(5, np.float32), np.zeros(5, bool), 3, 0.5)
    np.testing.assert_array_equal(last, [2, 3, 4, 4, 4])
    np.testing.assert_allclose(returns, [1.75, 1.75, 1.75, 1.5, 1.0])
    np.testing.assert_allclose(discount, [0.125, 0.125, 0.125, 0.25, 0.5])

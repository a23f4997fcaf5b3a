"""Sum tree and prioritized sampler: search, frequencies, weights, schedules, TD feedback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pydantic import ValidationError

from tmrl2.algos.networks import MLPActorCritic, MLPConfig
from tmrl2.algos.sac import SAC, SACConfig
from tmrl2.memory.prioritized import PrioritizedConfig, PrioritizedSampler
from tmrl2.memory.ring import RingMemory, RingMemoryConfig
from tmrl2.memory.sampler import build_sampler
from tmrl2.memory.sumtree import FANOUT, MinTree, SumTree

torch.set_num_threads(1)


def chi2(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("size", [1, 2, 5, 16, 17, 300, 5000])
def test_sum_tree_find_matches_a_linear_scan(size: int) -> None:
    rng = np.random.default_rng(size)
    tree = SumTree(size)
    weights = rng.uniform(0, 3, size) * (rng.random(size) > 0.3)
    weights[-1] = max(weights[-1], 0.5)
    tree.update(np.arange(size), weights)
    assert tree.root == pytest.approx(weights.sum())
    prefix = rng.uniform(0, weights.sum(), 500)
    expected = np.searchsorted(np.cumsum(weights), prefix, side="right")
    np.testing.assert_array_equal(tree.find(prefix), expected)
    assert (weights[tree.find(prefix)] > 0).all()
    # past the total: the last non-empty leaf, never an empty one
    assert tree.find(np.array([weights.sum() * 2]))[0] == np.flatnonzero(weights)[-1]


def test_tree_updates_with_duplicates_and_rebuild() -> None:
    tree, low = SumTree(6), MinTree(6)
    tree.update(np.array([1, 1, 4]), np.array([5.0, 2.0, 3.0]))  # the last write wins
    low.update(np.array([1, 1, 4]), np.array([5.0, 2.0, 3.0]))
    assert tree.root == 5.0 and low.root == 2.0
    np.testing.assert_array_equal(tree[np.array([1, 4])], [2.0, 3.0])
    tree.set_all(np.arange(6.0))
    assert tree.root == 15.0 and tree.find(np.array([0.5, 14.9]))[1] == 5
    assert low.nbytes == 8 * (FANOUT + 1)
    with pytest.raises(ValueError, match="at least one leaf"):
        SumTree(0)


def test_sampling_frequencies_match_priorities() -> None:
    sampler = PrioritizedSampler(16, PrioritizedConfig(alpha=1.0, eps=1e-6), seed=0)
    sampler.on_write(np.arange(10))
    priorities = np.arange(1.0, 11.0)
    sampler.update_priorities(np.arange(10), priorities)
    draws = np.concatenate([sampler.sample(10, 256) for _ in range(200)])
    assert draws.max() < 10  # never an unwritten row
    counts = np.bincount(draws, minlength=10)
    probs = priorities / priorities.sum()
    np.testing.assert_allclose(sampler.probabilities(np.arange(10)), probs, rtol=1e-5)
    assert chi2(counts, probs) < 33.7, counts  # 9 degrees of freedom: P(chi2 > 33.7) < 1e-4


def test_alpha_flattens_priorities_and_its_schedule_rebuilds_the_tree() -> None:
    config = PrioritizedConfig(alpha=1.0, alpha_final=0.0, anneal_draws=10, eps=1e-6)
    sampler = PrioritizedSampler(4, config, seed=1)
    sampler.on_write(np.arange(4))
    sampler.update_priorities(np.arange(4), np.array([1.0, 1.0, 1.0, 97.0]))
    first = np.bincount(sampler.sample(4, 1000), minlength=4)
    assert first[3] > 900
    for _ in range(10):
        sampler.sample(4, 8)
    assert sampler.alpha == 0.0
    later = np.bincount(np.concatenate([sampler.sample(4, 1000) for _ in range(4)]), minlength=4)
    assert chi2(later, np.full(4, 0.25)) < 21.1, later  # uniform: P(chi2 > 21.1) < 1e-4


def test_importance_weights_and_beta_schedule() -> None:
    config = PrioritizedConfig(alpha=0.5, beta=0.4, beta_final=1.0, anneal_draws=4, eps=1e-9)
    sampler = PrioritizedSampler(8, config, seed=0)
    sampler.on_write(np.arange(4))
    sampler.update_priorities(np.arange(4), np.array([1.0, 4.0, 16.0, 0.25]))
    # P_i proportional to sqrt(p): 1, 2, 4, 0.5; w_i = (P_i / P_min)^-beta
    expected = (np.array([1.0, 2.0, 4.0, 0.5]) / 0.5) ** -0.4
    np.testing.assert_allclose(sampler.weights(np.arange(4)), expected, rtol=1e-5)
    assert sampler.weights(np.array([3]))[0] == pytest.approx(1.0)
    betas = []
    for _ in range(6):
        betas.append(sampler.beta)
        sampler.sample(4, 2)
    np.testing.assert_allclose(betas, [0.4, 0.55, 0.7, 0.85, 1.0, 1.0])


def test_new_rows_get_the_largest_priority_and_bad_updates_are_refused() -> None:
    sampler = PrioritizedSampler(8, PrioritizedConfig(alpha=1.0, eps=0.0001, max_priority=50.0))
    sampler.on_write(np.arange(3))
    sampler.update_priorities(np.arange(3), torch.tensor([0.5, 7.0, 1e6]))  # a tensor is fine
    assert sampler.max_raw == 50.0  # clipped
    sampler.on_write(np.array([5]))
    expected = 50.0 / (0.5001 + 7.0001 + 100)
    assert sampler.probabilities(np.array([5]))[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="finite"):
        sampler.update_priorities(np.arange(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="2 indices but 3"):
        sampler.update_priorities(np.arange(2), np.ones(3))
    sampler.disable(np.array([0, 1, 2, 5]))
    with pytest.raises(ValueError, match="zero"):
        sampler.sample(8, 4)


def test_state_round_trip_continues_the_same_draws() -> None:
    config = PrioritizedConfig(alpha_final=0.2, anneal_draws=50)
    first = build_sampler("prioritized", 32, seed=3, options=config)
    first.on_write(np.arange(20))
    first.update_priorities(np.arange(20), np.linspace(0, 2, 20))
    first.sample(20, 16)
    state = first.state_dict()
    second = build_sampler("prioritized", 32, seed=99, options=config)
    second.load_state_dict(state)
    np.testing.assert_array_equal(first.sample(20, 64), second.sample(20, 64))
    np.testing.assert_allclose(first.weights(np.arange(20)), second.weights(np.arange(20)))


def test_memory_with_prioritized_sampler_feeds_sac_td_errors_back() -> None:
    torch.manual_seed(0)
    obs_space, action_space = spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,))
    config = RingMemoryConfig(capacity=64, sampler="prioritized", prioritized={"alpha": 1.0})
    memory = RingMemory(config, obs_space, action_space, seed=0)
    assert memory.wants_priorities
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    reward = np.zeros(64, np.float32)
    reward[:4] = 100.0  # four surprising transitions
    memory.append(
        {
            "obs": obs,
            "next_obs": obs,
            "action": rng.uniform(-1, 1, (64, 1)).astype(np.float32),
            "reward": reward,
            "terminated": np.ones(64, bool),
            "truncated": np.zeros(64, bool),
        }
    )
    sac = SAC(SACConfig(), MLPActorCritic(MLPConfig(hidden_sizes=(8, 8)), obs_space, action_space))
    for _ in range(3):
        batch = memory.sample(64)
        sac.update(batch)
        assert sac.last_td_error is not None and sac.last_td_error.shape == (64,)
        memory.update_priorities(batch.indices, sac.last_td_error)
    batch = memory.sample(256)
    assert (batch.indices < 4).mean() > 0.9  # the large TD errors dominate the draws
    assert batch.weights.min() < 0.5 and batch.weights.max() <= 1.0


def test_config_of_the_sampler() -> None:
    assert RingMemoryConfig(sampler="prioritized").prioritized.alpha == 0.6
    with pytest.raises(ValidationError):
        RingMemoryConfig(prioritized={"alpha": 1.5})
    with pytest.raises(ValidationError):
        RingMemoryConfig(prioritized={"alfa": 0.5})
    uniform = RingMemory(
        RingMemoryConfig(capacity=4), spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (1,))
    )
    assert not uniform.wants_priorities
    uniform.update_priorities(np.arange(2), np.ones(2))  # a no-op

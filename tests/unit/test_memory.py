"""Ring replay memory and samplers: wrap-around, validation, consistency of sampled rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pydantic import ValidationError

from tmrl2.memory.batch import BOX_KEY, Batch
from tmrl2.memory.ring import RingMemory, RingMemoryConfig
from tmrl2.memory.sampler import UniformSampler, build_sampler

torch.set_num_threads(1)

OBS_SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1, (1, 19)),
    speed=spaces.Box(0, np.inf, (1,)),
    prev_actions=spaces.Box(-1, 1, (2, 3)),
)
ACTION_SPACE = spaces.Box(-1, 1, (3,))


def make_chunk(
    ids: np.ndarray, obs_space: spaces.Space = OBS_SPACE, act_dim: int = 3
) -> dict[str, np.ndarray]:
    """A chunk whose every field encodes the transition's id: obs = id, next_obs = id + 0.5,
    action = id, reward = id, terminated = id % 3 == 0."""
    n = len(ids)
    values = ids.astype(np.float32)
    chunk: dict[str, np.ndarray] = {}
    boxes = (
        {"": obs_space}
        if isinstance(obs_space, spaces.Box)
        else cast(spaces.Dict, obs_space).spaces
    )
    for part, box in boxes.items():
        suffix = f"/{part}" if part else ""
        part_shape = tuple(box.shape or ())
        column = values.reshape(-1, *[1] * len(part_shape))
        chunk[f"obs{suffix}"] = np.broadcast_to(column, (n, *part_shape))
        chunk[f"next_obs{suffix}"] = chunk[f"obs{suffix}"] + np.float32(0.5)
    chunk["action"] = np.repeat(values[:, None], act_dim, axis=1)
    chunk["reward"] = values.copy()
    chunk["terminated"] = ids % 3 == 0
    chunk["truncated"] = np.zeros(n, dtype=bool)
    return chunk


def make_memory(capacity: int, obs_space: spaces.Space = OBS_SPACE, seed: int = 0) -> RingMemory:
    return RingMemory(RingMemoryConfig(capacity=capacity), obs_space, ACTION_SPACE, seed=seed)


def stored_rewards(memory: RingMemory) -> np.ndarray:
    """Stored rewards (= ids), oldest first."""
    return memory.state_dict()["arrays"]["reward"]


def test_append_past_capacity_keeps_last_rows_in_order() -> None:
    memory = make_memory(10)
    for start in range(0, 16, 4):
        memory.append(make_chunk(np.arange(start, start + 4)))
    assert len(memory) == 10
    assert memory.total_appended == 16
    np.testing.assert_array_equal(stored_rewards(memory), np.arange(6, 16))
    # Transition i lives at row i % capacity, like a ring written one row at a time.
    rows = memory.gather(np.arange(10))
    np.testing.assert_array_equal(rows.reward.numpy() % 10, np.arange(10))


def test_chunk_larger_than_capacity_matches_row_by_row_appends() -> None:
    big, one_by_one = make_memory(10), make_memory(10)
    big.append(make_chunk(np.arange(3)))
    big.append(make_chunk(np.arange(3, 28)))
    for i in range(28):
        one_by_one.append(make_chunk(np.array([i])))
    np.testing.assert_array_equal(stored_rewards(big), np.arange(18, 28))
    assert big.total_appended == 28 and len(big) == 10
    every_row = np.arange(10)
    for field in ("reward", "action", "terminated"):
        expected = getattr(one_by_one.gather(every_row), field)
        torch.testing.assert_close(getattr(big.gather(every_row), field), expected)


def test_empty_chunk_is_a_no_op() -> None:
    memory = make_memory(5)
    memory.append(make_chunk(np.arange(0)))
    assert len(memory) == 0 and memory.total_appended == 0


def test_samples_only_filled_rows() -> None:
    memory = make_memory(100)
    memory.append(make_chunk(np.arange(7)))
    batch = memory.sample(2000)
    assert batch.indices.max() < 7
    assert set(batch.reward.tolist()) == set(range(7))


def test_sampled_fields_belong_to_the_same_transition() -> None:
    memory = make_memory(50)
    for start in range(0, 130, 13):  # wraps twice, with chunks that straddle the end
        memory.append(make_chunk(np.arange(start, start + 13)))
    batch = memory.sample(512)
    ids = batch.reward
    assert ids.min() >= 130 - 50
    for key, obs in batch.obs.items():
        expected = ids.reshape(-1, *[1] * (obs.dim() - 1)).expand_as(obs)
        torch.testing.assert_close(obs, expected, msg=key)
        torch.testing.assert_close(batch.next_obs[key], expected + 0.5, msg=key)
    torch.testing.assert_close(batch.action, ids[:, None].expand(-1, 3))
    torch.testing.assert_close(batch.terminated, (ids.long() % 3 == 0).float())


def test_batch_types_and_device() -> None:
    memory = make_memory(20)
    memory.append(make_chunk(np.arange(20)))
    batch = memory.sample(8)
    assert isinstance(batch, Batch)
    assert set(batch.obs) == {"lidar", "speed", "prev_actions"}
    assert batch.obs["lidar"].shape == (8, 1, 19)
    assert batch.action.shape == (8, 3) and batch.reward.shape == (8,)
    for tensor in (batch.action, batch.reward, batch.terminated, batch.weights):
        assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    torch.testing.assert_close(batch.weights, torch.ones(8))
    assert batch.indices.dtype == np.int64


def test_box_observation_space_uses_the_obs_key() -> None:
    box = spaces.Box(-1, 1, (4,))
    memory = make_memory(8, obs_space=box)
    memory.append(make_chunk(np.arange(5), obs_space=box))
    batch = memory.sample(16)
    assert list(batch.obs) == [BOX_KEY]
    torch.testing.assert_close(batch.next_obs[BOX_KEY][:, 0], batch.reward + 0.5)


def test_read_only_chunks_are_accepted() -> None:
    chunk = make_chunk(np.arange(6))
    frozen = {
        key: np.frombuffer(arr.tobytes(), arr.dtype).reshape(arr.shape)
        for key, arr in chunk.items()
    }
    assert not frozen["reward"].flags.writeable
    memory = make_memory(4)
    memory.append(frozen)
    np.testing.assert_array_equal(stored_rewards(memory), np.arange(2, 6))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("obs/speed"), "obs/speed"),
        (lambda c: c.update(extra=np.zeros(4)), "extra"),
        (
            lambda c: c.update({"obs/lidar": np.zeros((4, 19), np.float32)}),
            r"obs/lidar.*\(n, 1, 19\)",
        ),
        (lambda c: c.update(reward=np.zeros((4, 1), np.float32)), r"reward.*\(n,\)"),
        (lambda c: c.update(terminated=np.zeros(4, np.float32)), "terminated.*bool"),
        (lambda c: c.update(action=np.zeros((3, 3), np.float32)), "action.*3 rows"),
        (lambda c: c.update(truncated=[False] * 4), "truncated.*numpy"),
    ],
)
def test_invalid_chunks_name_the_key_and_write_nothing(
    edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    memory = make_memory(10)
    chunk = make_chunk(np.arange(4))
    edit(chunk)
    with pytest.raises(ValueError, match=message):
        memory.append(chunk)
    assert len(memory) == 0 and memory.total_appended == 0


def test_float64_observations_are_cast() -> None:
    memory = make_memory(10)
    chunk = make_chunk(np.arange(4))
    chunk["obs/speed"] = chunk["obs/speed"].astype(np.float64)
    memory.append(chunk)
    assert memory.sample(4).obs["speed"].dtype == torch.float32


def test_sampling_an_empty_memory_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        make_memory(10).sample(4)


def test_sizes_in_bytes() -> None:
    memory = make_memory(1000)
    # obs and next_obs: (19 + 1 + 6) float32 each; action 3 float32; reward float32; bool.
    assert memory.bytes_per_transition == 2 * 26 * 4 + 3 * 4 + 4 + 1
    assert memory.nbytes == 1000 * memory.bytes_per_transition


def test_state_dict_round_trip_and_smaller_capacity() -> None:
    memory = make_memory(10, seed=3)
    memory.append(make_chunk(np.arange(23)))
    state = memory.state_dict()
    restored = make_memory(10, seed=99)
    restored.load_state_dict(state)
    assert restored.total_appended == 23 and len(restored) == 10
    np.testing.assert_array_equal(stored_rewards(restored), np.arange(13, 23))
    torch.testing.assert_close(restored.sample(32).reward, memory.sample(32).reward)
    smaller = make_memory(4)
    smaller.load_state_dict(state)
    np.testing.assert_array_equal(stored_rewards(smaller), np.arange(19, 23))


def test_config_validation() -> None:
    assert RingMemoryConfig().capacity == 1_000_000
    with pytest.raises(ValidationError):
        RingMemoryConfig(capacity=0)
    with pytest.raises(ValidationError):
        RingMemoryConfig(sampler="fifo")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RingMemoryConfig(capcity=10)  # type: ignore[call-arg]


def test_uniform_sampler_is_roughly_uniform() -> None:
    sampler = UniformSampler(seed=0)
    draws = np.concatenate([sampler.sample(20, 1000) for _ in range(100)])
    assert draws.min() == 0 and draws.max() == 19
    counts = np.bincount(draws, minlength=20)
    expected = len(draws) / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 50.0, counts  # 19 degrees of freedom: P(chi2 > 50) < 1e-4
    assert sampler.weights(draws) is None


def test_uniform_sampler_seed_and_state() -> None:
    first, second = UniformSampler(seed=7), UniformSampler(seed=7)
    np.testing.assert_array_equal(first.sample(100, 10), second.sample(100, 10))
    state = first.state_dict()
    ahead = first.sample(100, 10)
    second.load_state_dict(state)
    np.testing.assert_array_equal(second.sample(100, 10), ahead)
    assert not np.array_equal(UniformSampler(seed=8).sample(10**6, 10), ahead)


def test_sampler_edges() -> None:
    sampler = build_sampler("uniform", capacity=10, seed=0)
    np.testing.assert_array_equal(sampler.sample(1, 5), np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="batch_size"):
        sampler.sample(10, 0)
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("nope", capacity=10)
    sampler.update_priorities(np.arange(3), np.ones(3))  # a no-op for uniform sampling

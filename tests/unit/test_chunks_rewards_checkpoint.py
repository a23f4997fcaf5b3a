"""Chunk building, the progress reward, checkpoints and the progress line."""

from __future__ import annotations

import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from tmrl2.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tmrl2.rewards.progress import ProgressReward, ProgressRewardConfig
from tmrl2.roles.chunks import ChunkBuilder
from tmrl2.telemetry.progress import ProgressReporter, RateMeter, format_line

OBS = gym.spaces.Dict(
    {"lidar": gym.spaces.Box(0, 1, (1, 4), np.float32), "speed": gym.spaces.Box(0, 2, (1,))}
)
ACT = gym.spaces.Box(-1, 1, (3,), np.float32)


def _obs(v: float) -> dict[str, np.ndarray]:
    return {"lidar": np.full((1, 4), v, np.float32), "speed": np.array([v], np.float32)}


def test_chunk_builder_keeps_transitions_together() -> None:
    builder = ChunkBuilder(OBS, ACT, size=3)
    for i in range(3):
        builder.add(_obs(i), np.full(3, i, np.float32), float(i), i == 2, False, _obs(i + 1))
    assert builder.full
    chunk = builder.take()
    assert set(chunk) == {
        "obs/lidar",
        "obs/speed",
        "next_obs/lidar",
        "next_obs/speed",
        "action",
        "reward",
        "terminated",
        "truncated",
    }
    np.testing.assert_array_equal(chunk["obs/speed"][:, 0], [0, 1, 2])
    np.testing.assert_array_equal(chunk["next_obs/lidar"][:, 0, 0], [1, 2, 3])
    np.testing.assert_array_equal(chunk["terminated"], [False, False, True])
    assert builder.count == 0 and not builder.full


def test_partial_chunk_and_box_space() -> None:
    builder = ChunkBuilder(gym.spaces.Box(-1, 1, (2,)), ACT, size=10)
    builder.add(np.ones(2), np.zeros(3), 1.0, False, True, np.zeros(2))
    chunk = builder.take()
    assert chunk["obs"].shape == (1, 2) and chunk["truncated"].tolist() == [True]


def test_progress_reward_pays_metres_and_penalties() -> None:
    reward = ProgressReward(
        ProgressRewardConfig(scale=0.5, time_penalty=0.1, wall_penalty=1.0, finish_bonus=10.0)
    )
    reward.reset({"progress_m": 100.0})
    assert reward({"progress_m": 104.0}) == pytest.approx(2.0 - 0.1)
    assert reward({"progress_m": 104.0, "wall_contact": True}) == pytest.approx(-1.1)
    assert reward({"progress_m": 102.0}) == pytest.approx(-1.0 - 0.1)  # going backwards costs
    assert reward({"progress_m": 106.0, "finished": True}) == pytest.approx(2.0 - 0.1 + 10.0)


def test_checkpoint_is_atomic_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"actor": {"w": torch.ones(2)}, "counters": {"updates": 3}})
    save_checkpoint(path, {"actor": {"w": torch.zeros(2)}, "counters": {"updates": 4}})
    assert not list(path.parent.glob("*.tmp"))
    payload = load_checkpoint(path.parent)
    assert payload["counters"]["updates"] == 4 and payload["actor"]["w"].sum() == 0
    torch.save({"schema": 99}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="schema 99"):
        load_checkpoint(tmp_path / "old.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_rate_meter_and_progress_line(tmp_path: Path) -> None:
    meter = RateMeter(window_s=10)
    meter.rate(0, now=0.0)
    assert meter.rate(500, now=2.0) == pytest.approx(250.0)
    metrics = {
        "samples": 1000,
        "samples_per_s": 250.0,
        "updates": 800,
        "updates_per_s": 200.0,
        "last_return": 12.5,
        "last_progress": 0.5,
        "best_lap_s": 41.25,
        "elapsed_s": 3,
    }
    line = format_line(metrics)
    assert "1,000" in line and "250 steps/s" in line and "41.25 s" in line and "50%" in line
    stream = io.StringIO()
    reporter = ProgressReporter(tmp_path / "m.jsonl", stream=stream)
    reporter.report(metrics)
    reporter.close()
    assert "steps/s" in stream.getvalue()
    assert '"samples": 1000' in (tmp_path / "m.jsonl").read_text()

"""The trainer records every transition to HDF5 and a later run preloads the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tmrl2.config.load import load_config
from tmrl2.memory.recorder import read_chunks
from tmrl2.roles.launcher import launch_all
from tmrl2.roles.trainer import TRAJECTORIES_NAME, build_trainer

pytestmark = pytest.mark.e2e
SMALL = [
    "run.eval_episodes=0",
    "trainer.start_samples=300",
    "worker.random_steps=300",
    "memory.capacity=10000",
    "algorithm.batch_size=32",
    "model.hidden_sizes=[32, 32]",
]


def test_recorded_run_is_complete_and_preloads(tmp_path: Path) -> None:
    config = load_config(
        None, [*SMALL, "run.steps=1200", "run.minutes=2", "trainer.record_trajectories=true"]
    )
    run = launch_all(config, tmp_path / "run")
    run.wait()
    assert all(code == 0 for code in run.exit_codes().values()), run.exit_codes()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    path = tmp_path / "run" / TRAJECTORIES_NAME
    chunks = list(read_chunks(path))
    rows = sum(len(c["reward"]) for c in chunks)
    assert rows == summary["samples"] >= 1200  # a clean stop loses nothing
    ends = sum(int((c["terminated"] | c["truncated"]).sum()) for c in chunks)
    assert ends >= summary["episodes"]
    again = load_config(None, [*SMALL, f"trainer.preload=[{path}]"])
    trainer = build_trainer(again, "tcp://127.0.0.1:1", live=False)  # no connection made here
    assert len(trainer.memory) == rows

"""End to end: `tmrl2 train` on three tracks reports per-track rows; `tmrl2 eval --tracks`
prints the table and exits 0 only when every track was finished."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]
TRACKS = ["default", "ring", "gen:3"]
SMALL = [
    "env.tracks=[default,ring,gen:3]",
    "env.eval_tracks=[gen:7]",
    "env.max_episode_steps=60",  # short episodes: many of them on every track
    "run.steps=3000",
    "run.minutes=1.5",
    "run.eval_episodes=1",
    "trainer.start_samples=500",
    "worker.random_steps=500",
    "trainer.publish_every_updates=50",
    "memory.capacity=20000",
    "algorithm.batch_size=64",
    "model.hidden_sizes=[32, 32]",
]


def _tmrl2(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tmrl2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=ROOT)


def test_three_tracks_give_per_track_rows_and_a_track_table(tmp_path: Path) -> None:
    sets = [a for s in [*SMALL, f"run.dir={tmp_path}"] for a in ("--set", s)]
    run_dir = tmp_path / "run"
    done = _tmrl2("train", *sets, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["tracks"]) == set(TRACKS), summary["tracks"]
    for row in summary["tracks"].values():
        assert row["episodes"] >= 1 and row["reference_lap_s"] > 0
    assert sum(row["episodes"] for row in summary["tracks"].values()) == summary["episodes"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(set(r.get("tracks", {})) == set(TRACKS) for r in rows)
    # the final evaluation drove every training track and the held-out one
    assert "training:" in done.stdout and "finished 0/4" in done.stdout

    table = _tmrl2("eval", str(run_dir), "--tracks", "default", "generated:3-4")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["track", "finished"]
    assert [line.split()[0] for line in lines[1:4]] == ["default", "gen:3", "gen:4"]
    assert lines[-1].startswith("finished 0/3")  # 60-step episodes cannot finish
    assert table.returncode == 3
    bad = _tmrl2("eval", str(run_dir), "--tracks", "nowhere")
    assert bad.returncode == 2 and "unknown track 'nowhere'" in bad.stderr


def test_a_vectorized_worker_feeds_the_trainer_per_track_rows(tmp_path: Path) -> None:
    sets = [
        a
        for s in [*SMALL, "worker.envs=8", "env.eval_tracks=[]", f"run.dir={tmp_path}"]
        for a in ("--set", s)
    ]
    run_dir = tmp_path / "run"
    done = _tmrl2("train", *sets, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["samples"] >= 3000 and summary["samples_lost"] == 0
    assert set(summary["tracks"]) == set(TRACKS), summary["tracks"]
    assert sum(row["episodes"] for row in summary["tracks"].values()) == summary["episodes"]

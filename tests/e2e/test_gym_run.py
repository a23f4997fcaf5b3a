"""End to end on a Gymnasium task (issue 16): `tmrl2 train` on Pendulum-v1 through
`env.kind: gym` holds the update ratio it is given, records every episode in metrics.jsonl,
and `tmrl2 eval` prints the mean return and exits 0 (no lap to finish); SAC learns it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / "configs" / "gym_pendulum.yaml")
SMALL = [
    "trainer.start_samples=300",
    "worker.random_steps=300",
    "worker.chunk_steps=50",
    "trainer.publish_every_updates=50",
    "algorithm.batch_size=32",
    "model.hidden_sizes=[32, 32]",
    "run.minutes=2.5",  # a safety net: the run stops at run.steps long before
]


def _tmrl2(*args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tmrl2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _train(run_dir: Path, *sets: str) -> dict[str, object]:
    args = [a for s in [*SMALL, *sets] for a in ("--set", s)]
    done = _tmrl2("train", "--config", CONFIG, *args, "--run-dir", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "progress" not in done.stderr and "best lap" not in done.stdout
    summary: dict[str, object] = json.loads((run_dir / "summary.json").read_text())
    return summary


@pytest.mark.parametrize("ratio", [0.5, 1.0, 4.0])
def test_the_update_ratio_holds_in_a_real_run(tmp_path: Path, ratio: float) -> None:
    steps = 4300 if ratio > 1 else 6300
    summary = _train(
        tmp_path / "run",
        f"trainer.updates_per_step={ratio}",
        f"run.steps={steps}",
        "run.eval_episodes=0",
    )
    measured = summary["updates_per_step"]
    assert isinstance(measured, float) and measured == pytest.approx(ratio, rel=0.10)
    # every episode (200 steps each) is in metrics.jsonl, none dropped between log ticks
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    recorded = sum(json.loads(row)["episodes_window"] for row in rows)
    assert recorded == summary["episodes"] >= steps // 200 - 1


def test_sac_learns_pendulum_and_eval_reports_the_mean_return(tmp_path: Path) -> None:
    """A random policy scores about -1200 per episode; 6000 steps of SAC at one update
    per step swing the pendulum up (about -150 to -400)."""
    run_dir = tmp_path / "run"
    summary = _train(
        run_dir,
        "run.steps=6000",
        "run.eval_episodes=3",
        "model.hidden_sizes=[64, 64]",
        "algorithm.batch_size=64",
        "trainer.updates_per_step=1",
    )
    assert summary["eval_summary"]["return_mean"] > -700  # type: ignore[index]
    done = _tmrl2("eval", str(run_dir), "--episodes", "3", "--json", str(tmp_path / "e.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1].startswith("mean return ")
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["summary"]["episodes"] == 3 and saved["summary"]["return_mean"] > -700
    assert (run_dir / "evals.jsonl").is_file()

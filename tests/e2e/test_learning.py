"""Learning, end to end: SAC with LIDAR learns to finish the default track.

The default job (distributed roles on this machine, 128 x 128 networks) with a budget of
45,000 environment steps: measured here, the first finish comes at about 21,000 steps and the
policy laps in about 31.5 s by 40,000 (about a minute on the 2-core machine with the compiled
simulator). A random policy covers 10-30 % of the track and never finishes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tmrl2.config.load import load_config
from tmrl2.roles.launcher import run_local_training

pytestmark = pytest.mark.e2e


def test_sac_with_lidar_finishes_the_default_track(tmp_path: Path) -> None:
    config = load_config(None, ["run.steps=45000", "run.minutes=8", f"run.dir={tmp_path}"])
    summary = run_local_training(config, tmp_path / "run")
    assert all(code == 0 for code in summary["exit_codes"].values())
    (result,) = summary["eval_results"]
    assert result["finished"], summary["eval"]  # the evaluation run (deterministic policy)
    assert summary["finishes"] >= 1 and summary["best_lap_s"] < 40.0

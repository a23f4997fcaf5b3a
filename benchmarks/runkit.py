"""What the learning benchmarks share: one ``tmrl2 train`` run into a folder, and its reports.

``bench_exploration.py`` and ``bench_world_model.py`` train with the real CLI (all roles on
this machine), one run per folder, and read the run's ``metrics.jsonl`` back; a folder that
already holds a finished run (its ``summary.json``) can be read back instead of run again
(``--reuse``), so that a cut-short benchmark resumes where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICK_SETS = ["trainer.start_samples=500", "worker.random_steps=500", "run.log_every_s=0.5"]
"""A smoke run's settings: updates start early so that every code path runs."""
COMMON_SETS = ["run.eval_episodes=0", "run.eval_every_min=0", "server.port=0"]
"""Every benchmark run: no evaluation runs beside training, any free port."""


def train(config: Path, sets: list[str], run_dir: Path, bound: list[str], reuse: bool) -> int:
    """One ``tmrl2 train --config config <bound> --run-dir run_dir --set ...`` (``bound``:
    ``--steps N`` or ``--minutes M``), run from the repository root; its exit code (its
    stderr's tail is printed when it fails). With ``reuse``, a folder that already holds a
    finished run is read back, not run again (exit code 0)."""
    if reuse and (run_dir / "summary.json").is_file():
        print(f"reusing {run_dir}", flush=True)
        return 0
    cmd = [sys.executable, "-m", "tmrl2", "train", "--config", str(config)]
    cmd += [*bound, "--run-dir", str(run_dir)]
    for item in [*COMMON_SETS, *sets]:
        cmd += ["--set", item]
    print("$", " ".join(cmd[2:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return done.returncode


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's reports (``metrics.jsonl``), oldest first; none when it has no file."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

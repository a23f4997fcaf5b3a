"""End to end (issue 17): a short real ``tmrl2 train`` with evaluation during training.

The evaluator runs in its own process beside the trainer, which keeps updating while an
evaluation is in progress (the overhead in updates/s is measured by
benchmarks/bench_eval_overhead.py); the run ends with ``eval.jsonl`` rows, ``best.pt``, at most
K history checkpoints, TensorBoard ``eval/`` scalars and the evaluations in ``summary.json``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tmrl2.checkpoint import load_checkpoint
from tmrl2.config.load import load_config
from tmrl2.roles.launcher import run_local_training

pytestmark = pytest.mark.e2e
KEEP = 2
SMALL = [
    "env.tracks=[default, ring]",
    "env.eval_tracks=[gen:7]",
    "env.max_episode_steps=150",
    "env.stuck_steps=150",  # whole 150-step episodes: an evaluation drives 450 steps, short
    "run.steps=200000",  # the test stops the run once two evaluations ran during it (the
    "run.minutes=2",  # evaluator runs at nice 19: on a busy machine it may start late)
    "run.log_every_s=0.1",
    "run.eval_episodes=1",
    "run.eval_during_episodes=1",  # as the final evaluation: its episodes are reused
    "run.eval_every_updates=200",
    "run.eval_every_min=0",
    f"run.keep_checkpoints={KEEP}",
    "trainer.checkpoint_every_s=2",
    "trainer.start_samples=500",
    "worker.random_steps=500",
    "trainer.publish_every_updates=50",
    "memory.capacity=20000",
    "algorithm.batch_size=64",
    "model.hidden_sizes=[32, 32]",
]
RUN_LIMIT_S = 150.0


def _updates(metrics: Path) -> int | None:
    """The trainer's update count in the last complete row of ``metrics.jsonl``."""
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["updates"])
        except (ValueError, KeyError):
            continue
    return None


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _during_enough(run_dir: Path) -> bool:
    """Two evaluations ran during training, and the trainer is past 5000 samples."""
    try:
        rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    except (OSError, ValueError):  # not written yet, or a line being written
        return False
    during = [r for r in rows if r.get("started_at") is not None]
    return len(during) >= 2 and _samples(run_dir / "metrics.jsonl") >= 5000


def _samples(metrics: Path) -> int:
    try:
        lines = metrics.read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["samples"])
        except (ValueError, KeyError):
            continue
    return 0


def test_the_evaluator_runs_beside_the_trainer_and_keeps_the_best(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = load_config(None, [*SMALL, f"run.dir={tmp_path}"])
    box: dict[str, Any] = {}

    def bound(run: Any) -> None:
        box["run"] = run

    thread = threading.Thread(
        target=lambda: box.update(summary=run_local_training(config, run_dir, on_bound=bound)),
        daemon=True,
    )
    start = time.monotonic()
    thread.start()
    seen: list[tuple[float, int]] = []  # (wall time, trainer updates) while the run goes on
    pids: dict[str, set[int | None]] = {}
    while thread.is_alive() and time.monotonic() - start < RUN_LIMIT_S:
        for child in mp.active_children():
            pids.setdefault(child.name, set()).add(child.pid)
        updates = _updates(run_dir / "metrics.jsonl")
        if updates is not None:
            seen.append((time.time(), updates))
        if "run" in box and not box["run"].stop_event.is_set() and _during_enough(run_dir):
            box["run"].stop_event.set()  # as a steps budget would end it, however busy
        thread.join(0.05)
    thread.join(RUN_LIMIT_S - (time.monotonic() - start))
    assert not thread.is_alive(), "the run did not end in time"
    summary = box["summary"]
    took = time.monotonic() - start

    # its own process, beside the trainer, ended cleanly with the run
    assert pids.get("tmrl2-evaluator") and pids.get("tmrl2-trainer")
    assert not pids["tmrl2-evaluator"] & pids["tmrl2-trainer"]
    assert all(code == 0 for code in summary["exit_codes"].values()), summary["exit_codes"]
    assert "evaluator" not in summary["exit_codes"] and summary["evaluator_exit_code"] == 0

    rows = _rows(run_dir / "eval.jsonl")
    during = [r for r in rows if r["started_at"] is not None]
    assert during, rows
    assert rows[-1]["updates"] == summary["updates"]  # the final checkpoint too
    assert [r["updates"] for r in rows] == sorted({r["updates"] for r in rows})
    assert all(b["updates"] - a["updates"] >= 200 for a, b in pairwise(during))
    assert all(set(r["tracks"]) == {"default", "ring", "gen:7"} for r in rows)
    assert all(r["episodes"] == 3 for r in rows)

    # training never paused: the trainer's updates grew while an evaluation was driven
    def grew(row: dict[str, Any]) -> bool:
        t0, t1 = row["started_at"], row["started_at"] + row["eval_s"]
        inside = [u for t, u in seen if t0 <= t <= t1]
        return len(inside) >= 2 and inside[-1] > inside[0]

    assert any(grew(row) for row in during), (during, seen)

    # the best policy, beside the latest checkpoint; K history checkpoints
    best = json.loads((run_dir / "eval_best.json").read_text())
    assert best in [{**r, "checkpoint": "best.pt"} for r in rows if r["best"]]
    assert load_checkpoint(run_dir / "best.pt")["counters"]["updates"] == best["updates"]
    history = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert 1 <= len(history) <= KEEP and all(n.startswith("ckpt-") for n in history), history
    assert (run_dir / "checkpoint.pt").is_file()
    assert list((run_dir / "tb" / "eval").glob("events.out.tfevents.*"))

    # summary.json on disk holds the evaluations
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert len(on_disk["eval_results"]) == 3 and on_disk["eval_summary"]["episodes"] == 3
    assert on_disk["eval_best"] == best == summary["eval_best"]
    assert on_disk["samples"] >= 5000
    first = min(t for t, _ in seen) - (time.time() - took)
    print(f"run {took:.0f} s (first metrics at {first:.0f} s)")
    for r in rows:
        print({k: r[k] for k in ("samples", "updates", "started_at", "eval_s", "best")})

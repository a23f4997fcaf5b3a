"""What evaluation during training costs the trainer: the default job with and without it.

Runs ``tmrl2 train`` (the README's default job: the simulator, LIDAR, SAC, one worker, the same
seed) for ``--minutes`` per round, once with evaluation during training
(``run.eval_every_min``/``run.eval_every_updates`` as given here: more often than the default
10 minutes, so that a short round holds several evaluations) and once without (both 0), in
alternating order (this kind of VM drifts by up to 25 % within minutes; see
benchmarks/bench_default_job.py). Reports per round the trainer's updates/s and env steps/s
of both, the evaluations made and their time, and the median of the per-round ratios (with /
without). The target of issue 17: updates/s at most 5 % lower with evaluation on.

The final evaluation is off on both sides (``run.eval_episodes=0``): only what happens during
training is compared. Checkpoints come every ``--checkpoint-every-s`` on both sides (the
evaluator sees checkpoints only).

Run::

    .venv/bin/python benchmarks/bench_eval_overhead.py --rounds 3 --minutes 10
    .venv/bin/python benchmarks/bench_eval_overhead.py --rounds 1 --minutes 1 \\
        --eval-every-min 0.25 --checkpoint-every-s 10          # smoke test, about 3 minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from timing import print_machine  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
TARGET = 0.95
"""Updates/s with evaluation on, as a fraction of without: the issue's bound."""


def run_round(
    minutes: float, workdir: Path, evaluate: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """One ``tmrl2 train`` of ``minutes``; its rates and, with ``evaluate``, its evaluations."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    sets = [
        "run.eval_episodes=0",
        f"run.seed={args.seed}",
        f"trainer.checkpoint_every_s={args.checkpoint_every_s}",
        f"run.eval_every_min={args.eval_every_min if evaluate else 0}",
        f"run.eval_every_updates={args.eval_every_updates if evaluate else 0}",
        f"run.eval_during_episodes={args.episodes}",
        *args.set,
    ]
    cmd = [sys.executable, "-m", "tmrl2", "train", "--minutes", str(minutes)]
    cmd += ["--run-dir", str(run_dir), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
    summary_path = run_dir / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        raise RuntimeError(f"tmrl2 train failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(summary_path.read_text())
    elapsed = float(summary["elapsed_s"])
    rows = []
    eval_path = run_dir / "eval.jsonl"
    if eval_path.is_file():
        rows = [json.loads(line) for line in eval_path.read_text().splitlines() if line.strip()]
    return {
        "updates_per_s": summary["updates"] / elapsed,
        "samples_per_s": summary["samples"] / elapsed,
        "elapsed_s": elapsed,
        "evaluations": len(rows),
        "eval_s": sum(float(r.get("eval_s") or 0.0) for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0, help="per run")
    parser.add_argument("--eval-every-min", type=float, default=1.0)
    parser.add_argument("--eval-every-updates", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=1, help="run.eval_during_episodes")
    parser.add_argument("--checkpoint-every-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", action="append", default=[], help="another override for both sides"
    )
    args = parser.parse_args(argv)
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    print(
        f"{args.rounds} rounds of {args.minutes:g} min per side; evaluation every "
        f"{args.eval_every_min:g} min / {args.eval_every_updates} updates (0: off), "
        f"{args.episodes} episode(s) per track; checkpoints every {args.checkpoint_every_s:g} s"
    )
    header = (
        f"{'round':>5} {'side':<8} {'updates/s':>10} {'steps/s':>9} {'evals':>6} "
        f"{'eval s':>7} {'elapsed s':>10}"
    )
    print(header)
    print("-" * len(header))
    ratios: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = [("eval", True), ("no eval", False)]
            if i % 2:
                order.reverse()  # neither side always gets the warmer machine
            got = {}
            for name, evaluate in order:
                r = got[name] = run_round(args.minutes, Path(tmp), evaluate, args)
                print(
                    f"{i:>5} {name:<8} {r['updates_per_s']:10.1f} {r['samples_per_s']:9.1f} "
                    f"{r['evaluations']:6d} {r['eval_s']:7.1f} {r['elapsed_s']:10.1f}",
                    flush=True,
                )
            on, off = got["eval"], got["no eval"]
            ratios.append(
                (
                    on["updates_per_s"] / off["updates_per_s"],
                    on["samples_per_s"] / off["samples_per_s"],
                )
            )
    upd = statistics.median(r[0] for r in ratios)
    steps = statistics.median(r[1] for r in ratios)
    verdict = "within" if upd >= TARGET else "OUTSIDE"
    print(
        f"median ratio with / without evaluation: updates/s {upd:.3f}, steps/s {steps:.3f} "
        f"({verdict} the {1 - TARGET:.0%} bound on updates/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

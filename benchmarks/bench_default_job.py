"""The default job's throughput, this tree against another checkout or setting, in paired rounds.

Runs ``tmrl2 train`` (the README's default job: the simulator, LIDAR, SAC, one worker) for
``--seconds`` per round, alternating between this tree and ``--base`` (another checkout of the
repository, e.g. ``git worktree add /tmp/base <commit>``; this tree when not given), each with
its own config overrides (``--set-this``, ``--set-base``), and reports env steps/s and
updates/s per round and the median of the per-round ratios. Rounds alternate because this
kind of VM drifts by up to 25 % within minutes (see docs/learners.md): a ratio of two runs made
one after the other would measure the drift.

Both trees run with the same interpreter and installed dependencies; ``PYTHONPATH`` selects
which ``tmrl2`` package the roles import (spawned children inherit it).

Run: ``python benchmarks/bench_default_job.py --base /tmp/base --rounds 3 --seconds 90``.
The logging overhead of issue 17 (all sinks against metrics.jsonl alone, no evaluation during
training on either side)::

    python benchmarks/bench_default_job.py --rounds 4 --seconds 120 \
        --set-both run.eval_every_min=0 \
        --set-this logging.wandb.mode=offline --set-base logging.tensorboard=false
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from timing import print_machine  # noqa: E402

HERE = Path(__file__).resolve().parents[1]


def run_round(tree: Path, seconds: float, workdir: Path, overrides: list[str]) -> dict[str, Any]:
    """One ``tmrl2 train`` of ``seconds`` with the package of ``tree`` and the config
    ``overrides``; its summary figures."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [
        sys.executable,
        "-c",
        "import sys; from tmrl2.cli import main; sys.exit(main(sys.argv[1:]))",
        "train",
        "--minutes",
        str(seconds / 60),
        "--run-dir",
        str(run_dir),
        "--set",
        "run.eval_episodes=0",
        "--set",
        "server.port=0",
    ]
    for item in overrides:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise RuntimeError(f"{tree}: no summary (exit {proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(summary_path.read_text())
    elapsed = float(summary["elapsed_s"])
    return {
        "steps_per_s": summary["samples"] / elapsed,
        "updates_per_s": summary["updates"] / elapsed,
        "elapsed_s": elapsed,
        "finishes": summary.get("finishes"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=HERE, help="other checkout (default: this)")
    parser.add_argument("--set-this", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set-base", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--set-both", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args(argv)
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    print(f"this: {HERE} {args.set_both + args.set_this}")
    print(f"base: {args.base} {args.set_both + args.set_base}", flush=True)
    if not (args.base / "tmrl2" / "__init__.py").is_file():
        print(f"--base {args.base}: no tmrl2 package there", file=sys.stderr)
        return 2
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            # alternate which side goes first, so that neither always gets the warmer machine
            order = [
                ("this", HERE, args.set_both + args.set_this),
                ("base", args.base, args.set_both + args.set_base),
            ]
            if i % 2:
                order.reverse()
            got = {
                name: run_round(tree, args.seconds, Path(tmp), sets) for name, tree, sets in order
            }
            rows.append((got["this"], got["base"]))
            print(
                f"round {i}: this {got['this']['steps_per_s']:.0f} steps/s "
                f"{got['this']['updates_per_s']:.0f} updates/s | base "
                f"{got['base']['steps_per_s']:.0f} steps/s "
                f"{got['base']['updates_per_s']:.0f} updates/s",
                flush=True,
            )
    for key in ("steps_per_s", "updates_per_s"):
        ratios = [this[key] / base[key] for this, base in rows if base[key] > 0]
        this_med = statistics.median(r[0][key] for r in rows)
        base_med = statistics.median(r[1][key] for r in rows)
        ratio = f"{statistics.median(ratios):.3f}" if ratios else "failed (base made none)"
        print(f"{key}: this {this_med:.1f}, base {base_med:.1f}, paired ratio {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

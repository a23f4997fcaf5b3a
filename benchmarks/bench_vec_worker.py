"""Vectorized workers: samples/s reaching the trainer from ONE worker process with N cars.

The whole pipeline as a user runs it: ``tmrl2 train`` (launcher, server, trainer and one
worker process, each its own ``spawn`` process on 127.0.0.1; ZeroMQ, chunk checks, the
trainer's ingestion into its replay memory), the default LIDAR job, with ``worker.envs`` N =
1, 16, 64 (``--cars``). Pacing is off (``worker.pace=false``) and the trainer
consumes without updating (``trainer.start_samples`` above anything reached: it ingests every
chunk, checks it and appends it per car, and never samples a batch), so the figure is what the
data path delivers, not what a learner would ask for. The policy acts from the first step
(``worker.random_steps=0``): one batched forward of the untrained actor per step.

Figure per run: samples/s reaching the trainer between its first ``metrics.jsonl`` line
:data:`WARMUP_S` after the first sample and its last one (whole chunks of N x 100 samples
arrive, so short periods would quantize the rate); per N the median of ``--rounds`` runs (the
order of the N values alternates between rounds: this kind of VM drifts by minutes, see
docs/learners.md).
On a 2-core machine the worker, the server and the trainer share the cores (and other jobs
share them too): figures are floors; compare the ratio. tmrl 0.7.1's whole pipeline delivers
413-429 samples/s with one fast worker on this machine kind (issue 15).

Run: ``python benchmarks/bench_vec_worker.py`` (about 5 minutes; ``--quick``: one short round).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from timing import print_machine, sim_kernel_ceiling  # noqa: E402

HERE = Path(__file__).resolve().parents[1]
WARMUP_S = 4.0
"""Periods starting earlier than this after the first sample are not counted."""
SETTINGS = [
    "run.eval_episodes=0",
    "run.log_every_s=0.5",
    "run.stall_timeout_s=0",
    "server.port=0",
    "worker.pace=false",
    "worker.random_steps=0",
    "trainer.start_samples=1000000000",
    "trainer.checkpoint_every_s=100000",
    "memory.capacity=300000",
]


def run_once(cars: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """One ``tmrl2 train`` of ``seconds`` with ``worker.envs=cars``; its samples/s figures."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    cmd = [
        sys.executable,
        "-c",
        "import sys; from tmrl2.cli import main; sys.exit(main(sys.argv[1:]))",
        "train",
        "--minutes",
        f"{seconds / 60:.4f}",
        "--run-dir",
        str(run_dir),
    ]
    for item in [*SETTINGS, f"worker.envs={cars}"]:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    metrics = sorted(run_dir.rglob("metrics.jsonl"))
    if not metrics:
        raise RuntimeError(f"N={cars}: no metrics (exit {proc.returncode}): {proc.stderr[-2000:]}")
    points = [
        (float(row["elapsed_s"]), int(row["samples"]))
        for row in map(json.loads, metrics[0].read_text().splitlines())
        if "samples" in row and "elapsed_s" in row
    ]
    start = next((t for t, samples in points if samples > 0), None)
    if start is None:
        raise RuntimeError(f"N={cars}: no sample reached the trainer: {proc.stderr[-2000:]}")
    window = [(t, s) for t, s in points if t >= start + WARMUP_S]
    if len(window) < 2 or window[-1][0] <= window[0][0]:
        raise RuntimeError(f"N={cars}: run too short for a measurement after the warm-up")
    (t0, s0), (t1, s1) = window[0], window[-1]
    return {"samples_per_s": (s1 - s0) / (t1 - t0), "window_s": t1 - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cars", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="per run, warm-up included")
    parser.add_argument("--quick", action="store_true", help="one round of 12 s runs")
    args = parser.parse_args(argv)
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    ceiling = sim_kernel_ceiling()
    print(f"sim kernel ceiling now: {ceiling:,.0f} car-steps/s (physics + LIDAR alone, 1 thread)")
    if args.quick:
        args.rounds, args.seconds = 1, 12.0
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}", flush=True)
    got: dict[int, list[float]] = {n: [] for n in args.cars}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(args.cars) if r % 2 == 0 else list(reversed(args.cars))
            for cars in order:
                began = time.monotonic()
                figure = run_once(cars, args.seconds, Path(tmp))
                got[cars].append(figure["samples_per_s"])
                print(
                    f"round {r} N={cars}: {figure['samples_per_s']:.0f} samples/s "
                    f"(over {figure['window_s']:.1f} s, run {time.monotonic() - began:.0f} s)",
                    flush=True,
                )
    medians = {n: statistics.median(v) for n, v in got.items()}
    print("\nsamples/s reaching the trainer, one worker process (median of rounds):")
    for n, value in medians.items():
        print(
            f"  N={n:>3}: {value:8.0f} ({value / ceiling:.3f} of the sim kernel ceiling)   "
            f"rounds: {', '.join(f'{v:.0f}' for v in got[n])}"
        )
    low, high = min(medians), max(medians)
    if medians[low] > 0:
        print(f"ratio N={high} / N={low}: {medians[high] / medians[low]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

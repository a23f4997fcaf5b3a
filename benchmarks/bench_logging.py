"""Logging overhead benchmark: what the metrics sinks cost per trainer report (issue 17).

The trainer reports once per ``run.log_every_s`` (1 s by default) and does nothing else
meanwhile, so the cost of one report divided by that period bounds the throughput the sinks
take from training. This times ``--reports`` writes of a realistic metrics dict (a racing
run on two tracks with SAC's losses, three reward terms and the window's returns; the
counters move at each report) through:

- ``jsonl``: :class:`~tmrl2.telemetry.sinks.JsonlSink` alone (what the trainer wrote before);
- ``jsonl+tb``: plus :class:`~tmrl2.telemetry.sinks.TensorBoardSink`;
- ``jsonl+tb+wandb``: plus :class:`~tmrl2.telemetry.sinks.WandbSink` in offline mode (where
  ``wandb`` is installed; no network: the run is written to a temporary folder).

Figures are medians over ``--rounds`` rounds: wall microseconds per report (the trainer's
thread is blocked that long), CPU microseconds per report of this process (every thread:
TensorBoard's writer thread included) and of its child processes (W&B's ``wandb-core``,
Linux only), and the fraction of a log period that costs. Start-up (building the sinks) and
close are printed apart: they happen once per run. Run::

    .venv/bin/python benchmarks/bench_logging.py             # about 10 s
    .venv/bin/python benchmarks/bench_logging.py --reports 200 --rounds 2   # smoke test
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timing import print_machine  # noqa: E402

from tmrl2.telemetry.sinks import JsonlSink, Sink, TensorBoardSink, close_all, write_all

LOG_EVERY_S = 1.0
"""The default ``run.log_every_s``: one report per second."""


def metrics_row(i: int) -> dict[str, Any]:
    """Report ``i`` of a racing run on two tracks (the keys the trainer writes)."""
    samples = 2000 + 400 * i
    return {
        "samples": samples,
        "updates": samples // 2,
        "chunks": samples // 100,
        "episodes": i // 3,
        "finishes": i // 9,
        "weights_version": i // 2 + 1,
        "worker_policy_version": i // 2,
        "rejected_chunks": 0,
        "rejected_episodes": 0,
        "samples_lost": i % 7,
        "elapsed_s": round(float(i), 2),
        "samples_per_s": 400.0 + (i % 13),
        "updates_per_s": 200.0 + (i % 11),
        "updates_per_step": 0.5,
        "updates_per_step_set": 0.5,
        "last_return": 10.0 + i % 17,
        "return_recent_mean": 9.5,
        "last_progress": 0.42,
        "best_lap_s": 31.25,
        "memory_size": min(samples, 1_000_000),
        "loss/loss_critic": 0.5 / (1 + i),
        "loss/loss_actor": -3.0 - i * 1e-3,
        "loss/loss_alpha": 0.01,
        "loss/alpha": 0.2 * 0.999**i,
        "loss/q_mean": 3.0 + i * 1e-3,
        "loss/entropy": -2.0,
        "reward/progress": 0.8,
        "reward/speed": 0.1,
        "reward/wall": -0.05,
        "tracks": {
            name: {
                "episodes": i // 6,
                "finishes": i // 18,
                "finish_rate": 0.3,
                "recent_finish_rate": 0.4,
                "best_lap_s": lap,
                "reference_lap_s": lap * 0.9,
                "lap_ratio": 1.0 / 0.9,
                "mean_progress": 0.6,
            }
            for name, lap in (("default", 31.25), ("alpine", 44.5))
        },
        "episodes_window": 1,
        "returns": [10.0 + i % 17],
        "return_mean": 10.0 + i % 17,
        "return_min": 10.0 + i % 17,
        "return_max": 10.0 + i % 17,
    }


def children_cpu_s() -> float:
    """CPU seconds of this process's live child processes (``wandb-core``); 0 off Linux."""
    me, total = str(os.getpid()), 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me:  # ppid; then utime, stime at fields 11, 12
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def wandb_sink(run_dir: Path) -> Sink:
    from tmrl2.config.schema import WandbConfig
    from tmrl2.telemetry.sinks import WandbSink

    return WandbSink(WandbConfig(mode="offline", project="bench"), run_dir, {"bench": True})


def measure(build: Callable[[Path], list[Sink]], reports: int, rounds: int) -> dict[str, float]:
    """Per-report medians (microseconds) and one-off costs (milliseconds) of one setup."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "bench-run"
        run_dir.mkdir()
        start = time.perf_counter()
        sinks = build(run_dir)
        startup_ms = (time.perf_counter() - start) * 1e3
        failed: set[int] = set()
        for i in range(20):  # warm-up
            write_all(sinks, metrics_row(i), failed)
        rows = [metrics_row(i) for i in range(20, 20 + reports)]
        wall, cpu, child = [], [], []
        for _ in range(rounds):
            c0, k0, t0 = time.process_time(), children_cpu_s(), time.perf_counter()
            for row in rows:
                write_all(sinks, row, failed)
            wall.append((time.perf_counter() - t0) / reports)
            cpu.append((time.process_time() - c0) / reports)
            child.append((children_cpu_s() - k0) / reports)
        start = time.perf_counter()
        close_all(sinks)
        close_ms = (time.perf_counter() - start) * 1e3
        assert not failed, "a sink failed during the benchmark"
    return {
        "wall_us": statistics.median(wall) * 1e6,
        "cpu_us": statistics.median(cpu) * 1e6,
        "child_us": statistics.median(child) * 1e6,
        "startup_ms": startup_ms,
        "close_ms": close_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000, help="reports per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians)")
    args = parser.parse_args()
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    # W&B stays offline, quiet and in the temporary folders whatever the environment says
    os.environ.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_ERROR_REPORTING="false",
        WANDB_X_DISABLE_STATS="true",
    )
    os.environ.pop("WANDB_API_KEY", None)
    setups: dict[str, Callable[[Path], list[Sink]]] = {
        "jsonl": lambda d: [JsonlSink(d / "metrics.jsonl")],
        "jsonl+tb": lambda d: [JsonlSink(d / "metrics.jsonl"), TensorBoardSink(d / "tb")],
    }
    try:
        import wandb  # noqa: F401
    except ImportError:
        print("wandb is not installed: its row is skipped (pip install 'tmrl2[wandb]')")
    else:
        setups["jsonl+tb+wandb"] = lambda d: [
            JsonlSink(d / "metrics.jsonl"),
            TensorBoardSink(d / "tb"),
            wandb_sink(d),
        ]
    print(
        f"{args.reports} reports x {args.rounds} rounds; {len(metrics_row(0))} keys per report; "
        f"a log period of {LOG_EVERY_S:g} s"
    )
    header = (
        f"{'sinks':<16} {'wall us':>9} {'cpu us':>9} {'child us':>9} "
        f"{'of 1 s':>8} {'startup ms':>11} {'close ms':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, build in setups.items():
        r = measure(build, args.reports, args.rounds)
        worst = max(r["wall_us"], r["cpu_us"] + r["child_us"]) / 1e6 / LOG_EVERY_S
        print(
            f"{name:<16} {r['wall_us']:9.1f} {r['cpu_us']:9.1f} {r['child_us']:9.1f} "
            f"{worst:8.4%} {r['startup_ms']:11.0f} {r['close_ms']:9.0f}"
        )
    print(
        "'of 1 s': the larger of wall and CPU (this process + children) per report, as a "
        "fraction of the log period: the bound on the throughput the sinks cost"
    )


if __name__ == "__main__":
    main()

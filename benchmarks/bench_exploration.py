"""Exploration benchmark: each ``exploration.kind`` on the sparse-reward task, and its cost.

For each kind (``none``, ``rnd``, ``icm``, ``param_noise``) and seed, trains with the real CLI
(``tmrl2 train``, all roles on this machine) on ``--config`` (default
``configs/sim_sparse.yaml``: reward only at checkpoints 300 m apart and at the finish) for the
same budget of ``--steps`` env steps, reads the run's ``metrics.jsonl`` back and prints

- env steps to the first checkpoint: the ``samples`` of the first report whose window holds an
  episode with a positive return (on the sparse task only checkpoints and the finish pay, so a
  positive return means one was reached; None: never);
- env steps to the first finish (the first report with ``finishes > 0``);
- the finish rate at the end (the track's last 20 episodes).

Then, on the dense default job (``configs/sim_lidar.yaml``), one run of ``--dense-seconds`` per
kind and ``--dense-seeds`` seed (seed-major, so that a drift of the machine's load meets every
kind): env steps/s, updates/s and env steps to the first finish, their medians over the seeds
and the ratios of the medians to ``none``'s (what RND and ICM cost the trainer, what parameter
noise costs the workers). First of all, the learner alone
(``--learner-rounds``, 0 skips it): the dense job's learner with each trainer-side kind at
``train_every`` 1 and at its default, updating on one random batch, interleaved rounds in this
process on one thread; the median of the per-round ratios of updates/s to ``none``'s (the
workers' share of the CPU does not enter it). ``--quick`` is a smoke run (one seed, a few
thousand steps, a few seconds per dense run): it checks that everything runs, it measures
nothing. Results also go to ``--json``. Examples::

    python benchmarks/bench_exploration.py --steps 300000 --json /tmp/explore.json
    python benchmarks/bench_exploration.py --kinds none rnd --set exploration.weight=0.05
    python benchmarks/bench_exploration.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runkit import QUICK_SETS, read_metrics, train  # noqa: E402
from timing import machine, print_machine  # noqa: E402

KINDS = ("none", "rnd", "icm", "param_noise")
QUICK = {"steps": 1500, "dense_seconds": 6.0, "seeds": [0]}


def sparse_result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """First checkpoint, first finish and the final finish rate from a run's reports."""
    first_cp = next((r["samples"] for r in rows if any(x > 0 for x in r.get("returns", []))), None)
    first_finish = next((r["samples"] for r in rows if r.get("finishes", 0) > 0), None)
    tracks = next((r["tracks"] for r in reversed(rows) if r.get("tracks")), {})
    rates = [row.get("recent_finish_rate", 0.0) for row in tracks.values()]
    last = rows[-1] if rows else {}
    return {
        "steps_to_first_checkpoint": first_cp,
        "steps_to_first_finish": first_finish,
        "finish_rate_end": sum(rates) / len(rates) if rates else 0.0,
        "samples": last.get("samples"),
        "updates": last.get("updates"),
        "episodes": last.get("episodes"),
        "intrinsic_mean": last.get("loss/intrinsic_mean"),
        "predictor_loss": last.get("loss/predictor_loss"),
        "noise_std": last.get("explore/noise_std"),
    }


def dense_result(run_dir: Path) -> dict[str, Any]:
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return {"steps_per_s": None, "updates_per_s": None}
    summary = json.loads(summary_path.read_text())
    elapsed = max(float(summary["elapsed_s"]), 1e-9)
    rows = read_metrics(run_dir)
    first = next((r for r in rows if r.get("finishes", 0) > 0), None)
    return {
        "steps_per_s": summary["samples"] / elapsed,
        "updates_per_s": summary["updates"] / elapsed,
        "steps_to_first_finish": None if first is None else first.get("samples"),
    }


def dense_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a kind's dense runs (of the runs that have the figure; None: none has)."""

    def median(key: str) -> float | None:
        values = [run[key] for run in runs if run.get(key) is not None]
        return float(statistics.median(values)) if values else None

    return {key: median(key) for key in ("steps_per_s", "updates_per_s", "steps_to_first_finish")}


def fmt(value: Any) -> str:
    if value is None:
        return "never"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/sim_sparse.yaml")
    parser.add_argument("--dense-config", type=Path, default=ROOT / "configs/sim_lidar.yaml")
    parser.add_argument(
        "--steps", type=int, default=300_000, help="env steps per sparse run (0: none)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--dense-seconds", type=float, default=180.0)
    parser.add_argument("--dense-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--learner-rounds", type=int, default=15, help="0: skip")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--dense-set",
        dest="dense_overrides",
        action="append",
        default=[],
        help="a config override for the dense job's runs (--set applies to the sparse runs)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (measures nothing)")
    parser.add_argument("--out", type=Path, help="run folders (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--reuse", action="store_true", help="read back runs already finished under --out"
    )
    args = parser.parse_args()
    steps, seeds, dense_s = args.steps, args.seeds, args.dense_seconds
    extra = list(args.overrides)
    if args.quick:
        steps, dense_s, seeds = QUICK["steps"], QUICK["dense_seconds"], QUICK["seeds"]
        extra = QUICK_SETS + extra
    ceilings = print_machine()  # CPU model and flags, ceilings measured now
    out = args.out or Path(tempfile.mkdtemp(prefix="tmrl2_bench_exploration_"))
    results: dict[str, Any] = {
        "machine": machine(),
        "ceilings": ceilings,
        "steps": steps,
        "sparse": {},
        "dense": {},
    }
    start = time.monotonic()
    if args.learner_rounds > 0:
        results["learner"] = learner_cost(args.dense_config, args.kinds, args.learner_rounds)
        save(args.json, results)
    for seed in seeds if steps > 0 else []:  # seed-major: a cut-short run has every kind
        for kind in args.kinds:
            run_dir = out / f"sparse-{kind}-{seed}"
            sets = [f"exploration.kind={kind}", f"run.seed={seed}", *extra]
            code = train(args.config, sets, run_dir, ["--steps", str(steps)], args.reuse)
            run = {"seed": seed, "exit": code, **sparse_result(read_metrics(run_dir))}
            results["sparse"].setdefault(kind, []).append(run)
            save(args.json, results)
    dense_seeds = seeds[:1] if args.quick else args.dense_seeds
    for seed in dense_seeds if dense_s > 0 else []:
        for kind in args.kinds:
            run_dir = out / f"dense-{kind}-{seed}"
            sets = [f"exploration.kind={kind}", f"run.seed={seed}", *args.dense_overrides]
            sets += QUICK_SETS if args.quick else []
            train(args.dense_config, sets, run_dir, ["--minutes", str(dense_s / 60)], args.reuse)
            runs = results["dense"].setdefault(kind, {"runs": []})["runs"]
            runs.append({"seed": seed, **dense_result(run_dir)})
            results["dense"][kind] |= dense_medians(runs)
            save(args.json, results)
    print_tables(results, steps)
    print(f"\n{time.monotonic() - start:.0f} s; run folders under {out}")
    save(args.json, results)
    return 0


def learner_cost(config_path: Path, kinds: list[str], rounds: int) -> dict[str, Any]:
    """Updates/s of the dense job's learner per trainer-side variant, and the median of the
    per-round ratios to ``none``'s (module docstring); printed as it goes."""
    import numpy as np
    import torch

    from tmrl2.config.load import load_config
    from tmrl2.envs.factory import build_env
    from tmrl2.memory.batch import Batch
    from tmrl2.roles.components import build_model
    from tmrl2.roles.trainer import build_learner

    torch.set_num_threads(1)
    variants = {"none": ["exploration.kind=none"]}
    for kind in (k for k in kinds if k in ("rnd", "icm")):
        variants[f"{kind} train_every 1"] = [
            f"exploration.kind={kind}",
            "exploration.train_every=1",
        ]
        variants[f"{kind} (defaults)"] = [f"exploration.kind={kind}"]
    learners = {}
    for name, sets in variants.items():
        config = load_config(config_path, sets)
        env = build_env(config)
        obs_space, action_space = env.observation_space, env.action_space
        env.close()
        model = build_model(config, obs_space, action_space)
        device = torch.device("cpu")
        learners[name] = build_learner(config, model, obs_space, action_space, device)
    size = int(getattr(config.algorithm, "batch_size", 256))
    rng = np.random.default_rng(0)

    def draw() -> dict[str, torch.Tensor]:
        return {
            k: torch.as_tensor(rng.uniform(0, 1, (size, *s.shape)).astype(s.dtype))
            for k, s in obs_space.spaces.items()
        }

    action = rng.uniform(-1, 1, (size, *action_space.shape)).astype(np.float32)
    batch = Batch(
        draw(),
        torch.as_tensor(action),
        torch.zeros(size),
        draw(),
        torch.zeros(size),
        torch.ones(size),
        np.arange(size),
    )
    per_round: dict[str, list[float]] = {name: [] for name in learners}
    for _ in range(rounds):
        for name, learner in learners.items():
            for _ in range(8):  # a whole train_every cycle before the timed updates
                learner.update(batch)
            t0 = time.perf_counter()
            for _ in range(40):
                learner.update(batch)
            per_round[name].append(40 / (time.perf_counter() - t0))
    base = per_round["none"]
    out: dict[str, Any] = {}
    print(f"\n== the dense job's learner alone, {rounds} interleaved rounds, 1 thread ==")
    for name, rates in per_round.items():
        ratio = statistics.median(r / b for r, b in zip(rates, base, strict=True))
        out[name] = {"updates_per_s": statistics.median(rates), "vs_none": ratio}
        print(f"{name:<22} {statistics.median(rates):7.1f} updates/s  {ratio:.3f}x none's")
    return out


def save(path: Path | None, results: dict[str, Any]) -> None:
    """Results so far to ``--json`` (after every run: a cut-short benchmark keeps them)."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2))


def print_tables(results: dict[str, Any], steps: int) -> None:
    print(f"\n== sparse task, {steps} env steps per run ==")
    print(f"{'kind':<12} {'seed':>4} {'1st checkpoint':>15} {'1st finish':>11} {'finish rate':>12}")
    for kind, runs in results["sparse"].items():
        for run in runs:
            print(
                f"{kind:<12} {run['seed']:>4} {fmt(run['steps_to_first_checkpoint']):>15} "
                f"{fmt(run['steps_to_first_finish']):>11} {run['finish_rate_end']:>12.0%}"
            )
        reached = [r["steps_to_first_checkpoint"] for r in runs]
        hits = [x for x in reached if x is not None]
        median = f"median {statistics.median(hits):.0f}" if hits else "none reached"
        print(f"{kind:<12} {'all':>4} {len(hits)}/{len(runs)} seeds reached a checkpoint, {median}")
    print("\n== dense default job: cost (medians over the seeds) ==")
    base = results["dense"].get("none", {})
    for kind, row in results["dense"].items():
        for run in row["runs"]:
            print(
                f"{kind:<12} seed {run['seed']}: {fmt(run['steps_per_s'])} steps/s, "
                f"{fmt(run['updates_per_s'])} updates/s, first finish at step "
                f"{fmt(run.get('steps_to_first_finish'))}"
            )
        ratio = ""
        if base.get("updates_per_s") and row.get("updates_per_s"):
            ratio = f" ({row['updates_per_s'] / base['updates_per_s']:.2f}x none's updates/s)"
        delay = ""
        if base.get("steps_to_first_finish") and row.get("steps_to_first_finish"):
            delay = f" ({row['steps_to_first_finish'] / base['steps_to_first_finish']:.2f}x none's)"
        print(
            f"{kind:<12} median: {fmt(row['steps_per_s'])} steps/s, {fmt(row['updates_per_s'])} "
            f"updates/s{ratio}; first finish at step {fmt(row.get('steps_to_first_finish'))}"
            f"{delay}"
        )


if __name__ == "__main__":
    raise SystemExit(main())

"""Generalization benchmark: train on a few tracks, drive tracks never trained on.

Trains with the real CLI (``tmrl2 train``, all roles on this machine) for ``--minutes`` on the
training tracks of ``--config`` (default: ``configs/sim_generalist.yaml``, five generated
tracks), then evaluates the final policy deterministically, without randomization, on

- the *unseen* generated tracks ``--unseen`` (default ``generated:100-119``), and
- the bundled tracks (``default``, ``alpine``, ``rally``, ``ring``, ``stadium``),

and prints a table per set plus one summary line: finish rate and median lap / reference
ratio. Targets (issue 15): unseen finish rate >= 80 %, median lap <= 1.10x the reference.

``--eval-only RUN_DIR`` evaluates an existing run (e.g. the single-track default job, to show
what multi-track training buys) on the same tracks; ``--set`` passes overrides to the training
(``--set env.randomization.grip_frac=0`` ... or ``--no-randomization``). Results also go to
``--json``. Examples::

    python benchmarks/bench_generalization.py --minutes 30 --json /tmp/gen5.json
    python benchmarks/bench_generalization.py --minutes 30 --no-randomization
    python benchmarks/bench_generalization.py --minutes 60 --set env.tracks=[generated:0-19]
    python benchmarks/bench_generalization.py --minutes 30 --config configs/sim_lidar.yaml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import machine, print_machine  # noqa: E402

from tmrl2.envs.sim.track import known_tracks  # noqa: E402
from tmrl2.envs.sim.tracklist import expand_tracks  # noqa: E402
from tmrl2.roles.evaluate import (  # noqa: E402
    EpisodeResult,
    evaluate,
    load_policy,
    summarize,
    summary_line,
    track_table,
)

NO_RANDOMIZATION = [
    f"env.randomization.{knob}=0"
    for knob in (
        "grip_frac",
        "mass_frac",
        "engine_frac",
        "steer_gain_frac",
        "steer_lag_s",
        "action_latency_steps",
        "lidar_noise_std",
        "speed_noise_std",
        "time_step_jitter_frac",
        "start_anywhere_frac",
    )
]


def train(config: Path, minutes: float, overrides: list[str], out: Path) -> Path:
    """Run ``tmrl2 train`` and return its run folder."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "tmrl2",
        "train",
        "--config",
        str(config),
        "--set",
        f"run.minutes={minutes}",
        "--set",
        f"run.dir={out}",
        "--set",
        "run.eval_episodes=0",
    ]
    for item in overrides:
        cmd += ["--set", item]
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, check=False)
    print(f"training took {time.monotonic() - start:.0f} s, exit code {done.returncode}")
    runs = sorted(p for p in out.iterdir() if (p / "checkpoint.pt").is_file())
    if not runs:
        raise SystemExit(f"no checkpoint under {out}: the training failed")
    return runs[-1]


def report(title: str, results: list[EpisodeResult]) -> dict[str, Any]:
    print(f"\n== {title} ==")
    print("\n".join(track_table(results)))
    print(summary_line(results))
    return summarize(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs/sim_generalist.yaml")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--unseen", nargs="+", default=["generated:100-119"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--no-randomization", action="store_true")
    parser.add_argument("--eval-only", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tmrl2_bench_generalization"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    ceilings = print_machine()  # CPU model and flags, ceilings measured now
    overrides = list(args.overrides) + (NO_RANDOMIZATION if args.no_randomization else [])
    run_dir = args.eval_only or train(args.config, args.minutes, overrides, args.out)
    config, actor = load_policy(run_dir, trust_config=True)
    trained = config.env.track_names()  # type: ignore[attr-defined]
    unseen = [t for t in expand_tracks(args.unseen) if t not in trained]
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"run {run_dir}: {summary.get('samples')} samples, {summary.get('updates')} updates "
        f"in {summary.get('elapsed_s')} s; trained on {len(trained)} track(s)"
    )
    sets = {
        "training tracks": trained,
        "unseen generated tracks": unseen,
        "bundled": known_tracks(),
    }
    results: dict[str, Any] = {
        "run_dir": str(run_dir),
        "machine": machine(),
        "ceilings": ceilings,
        "sets": {},
    }
    for title, tracks in sets.items():
        episodes = evaluate(config, actor, 1, tracks=tracks)
        results["sets"][title] = {
            "summary": report(title, episodes),
            "episodes": [
                {"track": r.track, "finished": r.finished, "ratio": r.lap_ratio} for r in episodes
            ],
        }
    s = results["sets"]["unseen generated tracks"]["summary"]
    median = s["median_ratio"]
    ok_finish, ok_ratio = s["finish_rate"] >= 0.8, median is not None and median <= 1.10
    print(
        f"\ntargets on unseen tracks: finish rate {s['finish_rate']:.0%} (>= 80 %: "
        f"{'met' if ok_finish else 'NOT met'}), median lap "
        f"{'-' if median is None else f'{median:.3f}x'} (<= 1.10x: "
        f"{'met' if ok_ratio else 'NOT met'})"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

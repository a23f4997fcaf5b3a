"""EVO RL against Stable-Baselines3 on Gymnasium tasks (SAC, REDQ; CarRacing from pixels).

SAC side by side, same env-step budget, same hyper-parameters; REDQ's sample efficiency against
SAC; CarRacing's pixel throughput.

``--task pendulum`` (Pendulum-v1, 20k env steps) and ``--task hopper`` (Hopper-v5, 300k env
steps; ``--steps`` lowers it, and the output says so) train, for each of ``--seeds`` seeds:

- EVO RL: ``python -m tmrl2 train --config configs/gym_<task>.yaml`` as a subprocess (server,
  trainer and worker processes), then ``python -m tmrl2 eval <run> --episodes 10 --json F``;
- SB3: ``benchmarks/sb3_side.py`` in ``.venv-sb3`` (``bash scripts/install_sb3_baseline.sh``;
  skipped, saying so, when absent), SAC with every setting taken from the same resolved EVO
  RL config (network, batch, learning rate, gamma, tau, learning starts / random warm-up,
  temperature start and entropy target, buffer size, updates per env step).

Each run reports its final deterministic evaluation return (``--eval-episodes`` episodes, each
in a fresh env reset with seed 12345 + i, on both sides), its training wall clock and its env
steps per second; the task ends with a table, the medians over the seeds, the EVO/SB3 time
ratio, the return difference, and notes on which side each choice favours. ``--algo sac redq``
adds EVO RL's REDQ (``--redq-ratio`` updates per env step, 20 by default) at the same env
steps: its sample efficiency against SAC. Sides alternate their order from seed to seed (the
machine's speed drifts). Results also go to ``--json``.

``--task carracing`` trains EVO RL's CNN agent from pixels (``configs/gym_carracing.yaml``) for
a short budget and reports env steps/s, updates/s and a few points of the return curve from
``metrics.jsonl`` (no SB3 side).

Examples (each process uses one torch thread; prefix ``nice -n 19`` on a shared machine)::

    python benchmarks/bench_gym.py --task pendulum --json /tmp/gym_pendulum.json
    python benchmarks/bench_gym.py --task pendulum --algo sac redq
    python benchmarks/bench_gym.py --task hopper --steps 100000 --seeds 3
    python benchmarks/bench_gym.py --task carracing --steps 10000
    python benchmarks/bench_gym.py --task pendulum --steps 1500 --seeds 1   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import machine, print_machine  # noqa: E402

from tmrl2.config.load import load_config  # noqa: E402
from tmrl2.config.schema import Config  # noqa: E402

SB3_PYTHON = ROOT / ".venv-sb3/bin/python"
SB3_SCRIPT = ROOT / "benchmarks/sb3_side.py"
EVAL_SEED = 12345
"""``tmrl2 eval``'s first reset seed (episode i: EVAL_SEED + i); the SB3 side uses the same."""
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""One torch (and BLAS) thread in every process of both sides, ``tmrl2 eval`` included."""
STOP_GRACE_S = 60.0
"""After ``--timeout-s``, how long ``tmrl2 train`` gets to stop on SIGINT before SIGKILL."""


@dataclass(frozen=True)
class Task:
    """One benchmark task: its EVO RL preset and budgets."""

    config: Path
    steps: int
    """The issue's env-step budget per run."""
    seeds: int
    eval_episodes: int
    sb3: bool
    """Whether SB3 runs beside (an MLP task)."""
    budget: str = "the issue's"
    """Where ``steps`` comes from (printed when ``--steps`` is lower)."""


TASKS = {
    "pendulum": Task(ROOT / "configs/gym_pendulum.yaml", 20_000, 3, 10, True),
    "hopper": Task(ROOT / "configs/gym_hopper.yaml", 300_000, 3, 10, True),
    "carracing": Task(ROOT / "configs/gym_carracing.yaml", 10_000, 1, 0, False, "the default"),
}


def child_env() -> dict[str, str]:
    return {**os.environ, **THREADS_ENV}


def run_logged(cmd: list[str], log: Path, timeout_s: float | None) -> tuple[int, float, bool]:
    """Run ``cmd`` with its output in ``log``: (exit code, wall seconds, timed out). On time
    out it gets SIGINT (``tmrl2 train`` then stops its roles and checkpoints), then SIGKILL."""
    start = time.monotonic()
    with log.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=out, stderr=out)
        try:
            code = proc.wait(timeout=timeout_s)
            return code, time.monotonic() - start, False
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return proc.returncode, time.monotonic() - start, True


def tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# ---------------------------------------------------------------- EVO RL side
def evo_overrides(algo: str, redq_ratio: float) -> list[str]:
    """``--set`` items that turn the preset's SAC into ``algo``."""
    if algo == "sac":
        return []
    delay = max(1, round(redq_ratio))
    return [
        "algorithm.kind=redq",
        f"trainer.updates_per_step={redq_ratio:g}",
        f"algorithm.policy_delay={delay}",  # one actor step per env step (REDQ's G)
    ]


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return rows


def return_curve(rows: list[dict[str, Any]], points: int) -> list[dict[str, Any]]:
    """Training episodes' returns from ``metrics.jsonl`` rows, averaged over ``points`` equal
    spans of env steps: ``[{steps, episodes, return_mean}]`` (spans without an episode left
    out)."""
    episodes: list[tuple[int, float]] = []
    for row in rows:
        returns = row.get("returns")
        if returns is None and row.get("return_mean") is not None:
            returns = [row["return_mean"]]
        episodes += [(int(row.get("samples", 0)), float(r)) for r in returns or []]
    if not episodes:
        return []
    last = max(steps for steps, _ in episodes) or 1
    curve = []
    for i in range(points):
        lo, hi = last * i / points, last * (i + 1) / points
        span = [r for steps, r in episodes if lo < steps <= hi or (i == 0 and steps == 0)]
        if span:
            curve.append(
                {"steps": round(hi), "episodes": len(span), "return_mean": statistics.fmean(span)}
            )
    return curve


def update_phase(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Env steps/s and updates/s from the first report with an update to the last one (the
    trainer's own clock), that is, while it trains rather than while it fills its memory."""
    started = [r for r in rows if r.get("updates")]
    if len(started) < 2:
        return {"steps_per_s_updating": None, "updates_per_s": None}
    first, last = started[0], started[-1]
    seconds = float(last["elapsed_s"]) - float(first["elapsed_s"])
    if seconds <= 0:
        return {"steps_per_s_updating": None, "updates_per_s": None}
    return {
        "steps_per_s_updating": (last["samples"] - first["samples"]) / seconds,
        "updates_per_s": (last["updates"] - first["updates"]) / seconds,
    }


def evo_eval(run_dir: Path, episodes: int, out: Path, timeout_s: float | None) -> dict[str, Any]:
    """``tmrl2 eval`` of the run's checkpoint: return mean and spread, or an error."""
    report = out / f"{run_dir.name}-eval.json"
    cmd = [sys.executable, "-m", "tmrl2", "eval", str(run_dir), "--episodes", str(episodes)]
    cmd += ["--json", str(report)]
    log = out / f"{run_dir.name}-eval.log"
    code, seconds, timed_out = run_logged(cmd, log, timeout_s)
    if timed_out or not report.is_file():
        why = "timed out" if timed_out else f"exit {code}"
        return {"error": f"tmrl2 eval {why}; see {log}:\n{tail(log)}"}
    summary = json.loads(report.read_text())["summary"]
    return {
        "return_mean": summary["return_mean"],
        "return_std": summary["return_std"],
        "returns": [e["episode_return"] for e in json.loads(report.read_text())["episodes"]],
        "eval_s": seconds,
    }


def run_evo(
    task: Task,
    name: str,
    overrides: list[str],
    steps: int,
    seed: int,
    eval_episodes: int,
    out: Path,
    timeout_s: float | None,
) -> dict[str, Any]:
    """One ``tmrl2 train`` run (no evaluation inside: its wall clock is training only), then
    ``tmrl2 eval``. Times: the trainer's ``elapsed_s`` (connect to last update) and the
    command's wall clock (process start-up and shutdown included)."""
    run_dir = out / f"{name}-s{seed}"
    cmd = [sys.executable, "-m", "tmrl2", "train", "--config", str(task.config)]
    cmd += ["--run-dir", str(run_dir)]
    for item in [
        f"run.steps={steps}",
        f"run.seed={seed}",
        "run.eval_episodes=0",
        *overrides,
    ]:
        cmd += ["--set", item]
    log = out / f"{name}-s{seed}.log"
    code, wall, timed_out = run_logged(cmd, log, timeout_s)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file() or (code != 0 and not timed_out):
        return {"error": f"tmrl2 train exit {code}; see {log}:\n{tail(log)}"}
    summary = json.loads(summary_path.read_text())
    rows = read_rows(run_dir / "metrics.jsonl")
    elapsed = float(summary["elapsed_s"])
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "train_s": elapsed,
        "wall_s": wall,
        "process_s": wall,
        "timed_out": timed_out,
        "steps": summary["samples"],
        "steps_per_s": summary["samples"] / elapsed if elapsed > 0 else None,
        "updates": summary["updates"],
        "updates_per_step": summary.get("updates_per_step"),
        "return_recent_mean": summary.get("return_recent_mean"),
        **update_phase(rows),
        "curve": return_curve(rows, 5),
    }
    if eval_episodes > 0:
        result.update(evo_eval(run_dir, eval_episodes, out, timeout_s))
    return result


# ---------------------------------------------------------------- SB3 side
def sb3_payload(config: Config) -> tuple[dict[str, Any], list[str]]:
    """SB3 SAC settings equal to ``config``'s, and what they cannot mirror (notes)."""
    env, algo, model = config.env, config.algorithm, config.model
    memory, trainer = config.memory, config.trainer
    notes: list[str] = []
    ratio = trainer.updates_per_step
    train_freq, gradient_steps = (1, round(ratio)) if ratio >= 1 else (round(1 / ratio), 1)
    if abs(gradient_steps / train_freq - ratio) > 1e-9:
        notes.append(f"SB3 runs {gradient_steps}/{train_freq} updates per step, EVO {ratio:g}")
    lrs = {algo.lr_actor, algo.lr_critic, algo.lr_alpha}  # type: ignore[attr-defined]
    if len(lrs) > 1:
        notes.append(f"SB3 has one learning rate: lr_critic for all three (EVO: {sorted(lrs)})")
    checks = {
        "algorithm.grad_clip_norm": (getattr(algo, "grad_clip_norm", None), None),
        "algorithm.optimizer": (getattr(algo, "optimizer", "adam"), "adam"),
        "algorithm.weight_decay": (getattr(algo, "weight_decay", 0.0), 0.0),
        "algorithm.betas": (tuple(getattr(algo, "betas", (0.9, 0.999))), (0.9, 0.999)),
        "algorithm.policy_delay": (getattr(algo, "policy_delay", 1), 1),
        "memory.n_step": (getattr(memory, "n_step", 1), 1),
        "memory.sampler": (getattr(memory, "sampler", "uniform"), "uniform"),
        "env.frame_stack": (getattr(env, "frame_stack", 1), 1),
        "env.realtime": (getattr(env, "realtime", False), False),
    }
    for key, (value, sb3) in checks.items():
        if value != sb3:
            notes.append(f"{key}: {value} in EVO RL, not mirrored in SB3 ({sb3})")
    if config.worker.random_steps != trainer.start_samples:
        notes.append(
            f"worker.random_steps ({config.worker.random_steps}) != trainer.start_samples "
            f"({trainer.start_samples}): SB3 acts at random until learning_starts"
        )
    payload = {
        "env_id": env.id,  # type: ignore[attr-defined]
        "env_kwargs": dict(env.kwargs),  # type: ignore[attr-defined]
        "max_episode_steps": env.max_episode_steps,  # type: ignore[attr-defined]
        "hidden_sizes": list(model.hidden_sizes),  # type: ignore[attr-defined]
        "activation": model.activation,  # type: ignore[attr-defined]
        "lr": algo.lr_critic,  # type: ignore[attr-defined]
        "buffer_size": memory.capacity,  # type: ignore[attr-defined]
        "learning_starts": trainer.start_samples,
        "batch_size": algo.batch_size,  # type: ignore[attr-defined]
        "tau": round(1.0 - algo.polyak, 12),  # type: ignore[attr-defined]
        "gamma": algo.gamma,  # type: ignore[attr-defined]
        "train_freq": train_freq,
        "gradient_steps": gradient_steps,
        "alpha_init": algo.alpha_init,  # type: ignore[attr-defined]
        "learn_alpha": algo.learn_alpha,  # type: ignore[attr-defined]
        "target_entropy": algo.target_entropy,  # type: ignore[attr-defined]
    }
    return payload, notes


def run_sb3(
    python: Path, payload: dict[str, Any], name: str, out: Path, timeout_s: float | None
) -> dict[str, Any]:
    """One ``sb3_side.py`` run; its ``RESULT`` plus the process's wall clock."""
    log = out / f"{name}-s{payload['seed']}.log"
    cmd = [str(python), str(SB3_SCRIPT), json.dumps(payload)]
    code, wall, timed_out = run_logged(cmd, log, timeout_s)
    for line in tail(log, 100_000).splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            # the process's training share: start-up, imports and learn(), not the evaluation
            return {**result, "wall_s": wall, "process_s": wall - float(result["eval_s"])}
    why = "timed out" if timed_out else f"exit {code}"
    return {"error": f"sb3_side.py {why}; see {log}:\n{tail(log)}"}


# ---------------------------------------------------------------- report
def fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def run_line(side: str, seed: int, r: dict[str, Any]) -> str:
    if "train_s" not in r:
        return f"  {side} seed {seed}: FAILED: {r['error']}"
    extra = f", upd/step {fmt(r.get('updates_per_step'), '.3f')}" if "run_dir" in r else ""
    return (
        f"  {side} seed {seed}: return {fmt(r.get('return_mean'))} +- "
        f"{fmt(r.get('return_std'))}, {r['steps']} steps, {r['updates']} updates in "
        f"{r['train_s']:.1f} s ({fmt(r.get('steps_per_s'), '.0f')} steps/s{extra}; process "
        f"{r['wall_s']:.0f} s)" + (f"; evaluation FAILED: {r['error']}" if "error" in r else "")
    )


SHORT = {"SB3 SAC": "SB3", "EVO SAC": "EVO", "EVO REDQ": "REDQ"}
"""Column names of the table."""


def table(sides: list[str], runs: dict[str, dict[int, dict[str, Any]]], seeds: list[int]) -> None:
    """Seed rows; return, time, steps/s and process columns of every side; the medians."""
    metrics = [("ret", "return_mean", ".1f"), ("s", "train_s", ".1f")]
    metrics += [("st/s", "steps_per_s", ".0f"), ("proc s", "process_s", ".0f")]
    columns = [(f"{SHORT[s]} {m}", s, key, spec) for m, key, spec in metrics for s in sides]
    width = max(9, *(len(c[0]) for c in columns))
    print(
        ", ".join(
            f"{SHORT[s]}: {'EVO RL' if s.startswith('EVO') else 'Stable-Baselines3'} {s.split()[1]}"
            for s in sides
        )
        + "; ret: deterministic evaluation return (mean over the episodes); s: training "
        "seconds; st/s: env steps per training second; proc s: the training process's wall "
        "clock"
    )
    print("seed  " + "  ".join(f"{c[0]:>{width}}" for c in columns))
    for seed in seeds:
        cells = [fmt(runs[side][seed].get(key), spec) for _, side, key, spec in columns]
        print(f"{seed:<4}  " + "  ".join(f"{c:>{width}}" for c in cells))
    meds = [
        fmt(median([runs[side][s].get(key) for s in seeds]), spec) for _, side, key, spec in columns
    ]
    print("med.  " + "  ".join(f"{c:>{width}}" for c in meds))


def compare(
    side: str, ref: str, runs: dict[str, dict[int, dict[str, Any]]], seeds: list[int]
) -> dict[str, Any]:
    """Per-seed time ratios and return differences of ``side`` against ``ref``, and medians."""
    ratios, process, diffs = [], [], []
    for s in seeds:
        a, b = runs[side][s], runs[ref][s]
        if a.get("train_s") and b.get("train_s"):
            ratios.append(a["train_s"] / b["train_s"])
        if a.get("process_s") and b.get("process_s"):
            process.append(a["process_s"] / b["process_s"])
        if a.get("return_mean") is not None and b.get("return_mean") is not None:
            diffs.append(a["return_mean"] - b["return_mean"])
    times = [median([runs[name][s].get("train_s") for s in seeds]) for name in (side, ref)]
    result: dict[str, Any] = {
        "side": side,
        "against": ref,
        "time_ratio_median": median(ratios),
        "time_ratio_of_medians": times[0] / times[1] if times[0] and times[1] else None,
        "process_ratio_median": median(process),
        "return_difference_median": median(diffs),
        "return_medians": [
            median([runs[name][s].get("return_mean") for s in seeds]) for name in (side, ref)
        ],
    }
    print(
        f"{side} vs {ref}: time {side}/{ref} {fmt(result['time_ratio_median'], '.2f')}x "
        f"(median of per-seed ratios; of the medians {fmt(result['time_ratio_of_medians'], '.2f')}"
        f"x; processes {fmt(result['process_ratio_median'], '.2f')}x), return {side} - {ref} "
        f"{fmt(result['return_difference_median'], '+.1f')} (median "
        f"of per-seed differences; medians {fmt(result['return_medians'][0])} vs "
        f"{fmt(result['return_medians'][1])})"
    )
    return result


def fairness_notes(config: Config, sides: list[str], redq_ratio: float) -> list[str]:
    """Which side each choice of the comparison favours, for the printed notes and the JSON."""
    w, t = config.worker, config.trainer
    notes = [
        "same settings: every SB3 setting comes from the resolved EVO RL config (network, "
        "batch, learning rate, gamma, tau, learning starts and random warm-up, temperature "
        "start, entropy target, buffer, updates per env step); same evaluation: deterministic "
        f"actions, a fresh env reset with seed {EVAL_SEED} + i per episode, on both sides",
        "favours EVO RL (wall clock): its worker and trainer are two processes on two cores, "
        "env steps and policy inference overlap with the updates; SB3 is one process with one "
        "torch thread that steps the env and updates in turn. Both: 1 torch thread per process",
        "favours SB3 (returns): SB3 updates synchronously in its env loop and always acts with "
        f"the latest weights; EVO RL's worker acts with weights published every "
        f"{t.publish_every_updates} updates, sends chunks of {w.chunk_steps} steps, and its "
        f"update ratio ({t.updates_per_step:g}) is held by pacing, which lets the worker run up "
        f"to {2 * w.chunk_steps} steps ahead (and further while the trainer starts), so its "
        "data runs a little ahead of its policy. Update counts are equal: a run of N steps "
        "makes updates_per_step x (N - start_samples) updates on both sides (EVO RL's trainer "
        "makes the updates still owed at the budget before it stops; see each run's updates)",
        "time: EVO RL's 'time s' is the trainer's elapsed_s, from its connection to its end, "
        "SB3's is model.learn() alone. The worker starts with the trainer and may step up to "
        f"server.worker_credit ({config.server.worker_credit}) chunks of uniform random actions "
        "before the trainer's clock starts (favours EVO RL by that warm-up's time); EVO RL "
        "moves every chunk and weight through ZeroMQ and a third, server process (favours "
        "SB3). 'proc s' is each side's whole training process: interpreter start-up, imports "
        "(EVO RL: three spawned processes) and shutdown, evaluation excluded (favours SB3 on "
        "short budgets)",
        "neutral: same env (gymnasium.make with the same id, kwargs and episode limit), same "
        "network (MLP with the same widths and activation for the actor and both critics), "
        "same step budget (EVO RL counts steps in chunks: up to one chunk more)",
    ]
    if any(s.endswith("REDQ") for s in sides):
        notes.append(
            f"REDQ: {redq_ratio:g} updates per env step, 10 critics, 2 drawn per target "
            "(REDQ's N, M, G): the same env steps as SAC, far more updates and wall clock; "
            "compare its return, not its time"
        )
    return notes


# ---------------------------------------------------------------- tasks
def sides_of(algos: list[str], with_sb3: bool) -> list[str]:
    return (["SB3 SAC"] if with_sb3 else []) + [f"EVO {a.upper()}" for a in algos]


def sb3_python(explicit: Path | None, skip: bool) -> Path | None:
    """The SB3 interpreter, or None with the reason printed."""
    if skip:
        print("SB3 side: skipped (--no-sb3)")
        return None
    python = explicit or SB3_PYTHON
    if not python.is_file():
        print(
            f"SB3 side: Stable-Baselines3 not found ({python}): skipping its figures; "
            "install it with: bash scripts/install_sb3_baseline.sh"
        )
        return None
    return python


def run_comparison(args: argparse.Namespace, task: Task, steps: int) -> dict[str, Any]:
    seeds = [args.seed0 + i for i in range(args.seeds or task.seeds)]
    episodes = task.eval_episodes if args.eval_episodes is None else args.eval_episodes
    base = load_config(task.config, [*args.overrides, f"run.steps={steps}"])
    payload, sb3_notes = sb3_payload(base)
    python = sb3_python(args.sb3_python, args.no_sb3)
    sides = sides_of(args.algo, python is not None)
    notes = fairness_notes(base, sides, args.redq_ratio) + sb3_notes
    runs: dict[str, dict[int, dict[str, Any]]] = {side: {} for side in sides}
    print(
        f"sides: {', '.join(sides)}; seeds {seeds}; {episodes} evaluation episodes; logs in "
        f"{args.out}"
    )
    print(f"SB3 settings (from the EVO RL config): {json.dumps(payload)}")
    for i, seed in enumerate(seeds):
        order = sides[i % len(sides) :] + sides[: i % len(sides)]  # alternate who goes first
        for side in order:
            if side == "SB3 SAC":
                assert python is not None
                full = {**payload, "steps": steps, "seed": seed, "eval_episodes": episodes}
                full["eval_seed"] = EVAL_SEED
                result = run_sb3(python, full, "sb3-sac", args.out, args.timeout_s)
            else:
                algo = side.split()[1].lower()
                extra = [*args.overrides, *evo_overrides(algo, args.redq_ratio)]
                result = run_evo(
                    task, f"evo-{algo}", extra, steps, seed, episodes, args.out, args.timeout_s
                )
            runs[side][seed] = result
            print(run_line(side, seed, result), flush=True)
    print()
    table(sides, runs, seeds)
    comparisons = []
    ref = "SB3 SAC" if "SB3 SAC" in sides else "EVO SAC" if "EVO SAC" in sides else None
    for side in sides:
        if ref is not None and side != ref:
            comparisons.append(compare(side, ref, runs, seeds))
    print("\nnotes:")
    for note in notes:
        print(f"- {note}")
    return {
        "seeds": seeds,
        "eval_episodes": episodes,
        "sides": sides,
        "sb3_settings": payload,
        "runs": {side: {str(s): r for s, r in by_seed.items()} for side, by_seed in runs.items()},
        "medians": {
            side: {
                key: median([runs[side][s].get(key) for s in seeds])
                for key in ("return_mean", "train_s", "steps_per_s", "process_s", "updates")
            }
            for side in sides
        },
        "comparisons": comparisons,
        "notes": notes,
    }


def run_pixels(args: argparse.Namespace, task: Task, steps: int) -> dict[str, Any]:
    """CarRacing: EVO RL's CNN agent alone; throughput and the return curve."""
    seeds = [args.seed0 + i for i in range(args.seeds or task.seeds)]
    episodes = task.eval_episodes if args.eval_episodes is None else args.eval_episodes
    runs = {}
    for seed in seeds:
        r = run_evo(
            task, "evo-cnn", list(args.overrides), steps, seed, episodes, args.out, args.timeout_s
        )
        runs[str(seed)] = r
        if "error" in r and "train_s" not in r:
            print(f"  seed {seed}: FAILED: {r['error']}")
            continue
        print(
            f"  seed {seed}: {r['steps']} steps, {r['updates']} updates in {r['train_s']:.1f} s:"
            f" {fmt(r['steps_per_s'], '.1f')} env steps/s over the run, "
            f"{fmt(r['steps_per_s_updating'], '.1f')} env steps/s and "
            f"{fmt(r['updates_per_s'], '.1f')} updates/s while updating (upd/step "
            f"{fmt(r.get('updates_per_step'), '.3f')}); process {r['wall_s']:.0f} s"
        )
        if "return_mean" in r:
            print(f"    evaluation: {fmt(r['return_mean'])} +- {fmt(r['return_std'])}")
        print("    training return curve (mean of the episodes ending in each span):")
        for p in r["curve"]:
            print(
                f"      up to {p['steps']:>7} steps: {p['return_mean']:8.1f} "
                f"({p['episodes']} episode(s))"
            )
        if not r["curve"]:
            print("      no episode finished")
    return {"seeds": seeds, "eval_episodes": episodes, "runs": runs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--steps", type=int, help="env steps per run (default: the task's)")
    parser.add_argument("--seeds", type=int, help="runs per side (default 3; carracing 1)")
    parser.add_argument("--seed0", type=int, default=0, help="first seed")
    parser.add_argument(
        "--algo",
        nargs="+",
        choices=["sac", "redq"],
        default=["sac"],
        help="EVO RL learner(s): sac, redq or both",
    )
    parser.add_argument(
        "--redq-ratio", type=float, default=20.0, help="REDQ's updates per env step (G)"
    )
    parser.add_argument(
        "--eval-episodes", type=int, help="final deterministic episodes (default 10; carracing 0)"
    )
    parser.add_argument("--no-sb3", action="store_true", help="EVO RL side only")
    parser.add_argument("--sb3-python", type=Path, help=f"default {SB3_PYTHON}")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="EVO RL config override (SB3 follows the resolved config)",
    )
    parser.add_argument("--timeout-s", type=float, help="per training process (default none)")
    parser.add_argument("--out", type=Path, help="run folders and logs (default: a new /tmp one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task = TASKS[args.task]
    steps = args.steps or task.steps
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out = args.out or Path(tempfile.mkdtemp(prefix=f"tmrl2_bench_gym_{args.task}_{stamp}_"))
    args.out.mkdir(parents=True, exist_ok=True)
    ceilings = print_machine()  # CPU model and flags, ceilings measured now
    print(f"task: {args.task} ({task.config.relative_to(ROOT)}), {steps} env steps per run")
    if steps < task.steps:
        print(
            f"NOTE: {steps} env steps per run, FEWER than {task.budget} {task.steps} for "
            f"{args.task}: these returns are not the benchmark's figures"
        )
    result: dict[str, Any] = {
        "machine": machine(),
        "ceilings": ceilings,
        "task": args.task,
        "config": str(task.config.relative_to(ROOT)),
        "steps": steps,
        "default_steps": task.steps,
        "overrides": args.overrides,
    }
    if task.sb3:
        result.update(run_comparison(args, task, steps))
    else:
        if args.algo != ["sac"]:
            print("--algo: carracing runs its preset's learner only; ignored")
        result.update(run_pixels(args, task, steps))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

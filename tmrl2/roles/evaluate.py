"""Deterministic evaluation: drive a policy for whole episodes and report laps or returns.

Any env: every episode's return and length; :func:`summarize` gives the mean, spread, min and
max of the returns. A racing env (one that reports telemetry: ``info`` has ``progress_frac``)
adds laps and progress.

On the simulator an evaluation visits a list of tracks (``tracks``: any track specs, e.g. the
training tracks, held-out ``env.eval_tracks``, ``generated:100-119``), each for ``episodes``
episodes, and :func:`track_table` / :func:`summary_line` report per track (finished, lap time,
reference lap, ratio, progress) and overall (finish rate, median lap/reference ratio). Domain
randomization is off unless ``randomize``: an evaluation measures the driver, not the dice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tmrl2.algos.policy import actor_act
from tmrl2.checkpoint import CheckpointError, load_checkpoint
from tmrl2.config import registry
from tmrl2.config.load import load_config
from tmrl2.config.schema import Config
from tmrl2.envs.factory import build_env
from tmrl2.roles.common import set_torch_threads
from tmrl2.roles.components import build_model


@dataclass(frozen=True)
class EpisodeResult:
    """What one evaluation episode achieved."""

    finished: bool
    lap_time_s: float | None
    progress_frac: float
    episode_return: float
    steps: int
    track: str | None = None
    reference_lap_s: float | None = None
    racing: bool = True
    """The env reports laps and progress (telemetry); False: a return is all there is."""

    @property
    def lap_ratio(self) -> float | None:
        """Lap time / reference lap (finished episodes on a track with a reference)."""
        if not self.finished or self.lap_time_s is None or not self.reference_lap_s:
            return None
        return self.lap_time_s / self.reference_lap_s

    def describe(self) -> str:
        if not self.racing:
            return f"return {self.episode_return:.1f} ({self.steps} steps)"
        where = f"{self.track}: " if self.track else ""
        if self.finished and self.lap_time_s is not None:
            ratio = self.lap_ratio
            vs = f", {ratio:.2f}x the reference" if ratio is not None else ""
            return f"{where}finished in {self.lap_time_s:.2f} s ({self.steps} steps{vs})"
        return (
            f"{where}did not finish: reached {self.progress_frac:.0%} of the track "
            f"({self.steps} steps)"
        )


def without_randomization(config: Config) -> Config:
    """``config`` with the env's domain randomization off (envs without any: unchanged)."""
    if not hasattr(config.env, "randomization"):
        return config
    from tmrl2.envs.sim.randomize import DomainRandomization

    env = config.env.model_copy(update={"randomization": DomainRandomization()})
    return config.model_copy(update={"env": env})


def default_tracks(config: Config) -> list[str] | None:
    """What an evaluation drives by default: the training tracks and ``env.eval_tracks``
    when the env has several or held-out ones (None: the env's own choice)."""
    names = getattr(config.env, "eval_track_names", None)
    if names is None:
        return None
    tracks: list[str] = names()
    return tracks if len(tracks) > 1 else None


def evaluate(
    config: Config,
    actor: torch.nn.Module,
    episodes: int,
    seed: int = 12345,
    tracks: Sequence[str] | None = None,
    randomize: bool = False,
    stop: Callable[[], bool] | None = None,
) -> list[EpisodeResult]:
    """Drive ``actor`` deterministically for ``episodes`` episodes (on each of ``tracks``,
    simulator only), with the env's domain randomization off unless ``randomize``. Torch
    uses ``worker.torch_threads`` (a small policy on many threads is 40x slower here).
    ``stop``: looked at every step; when it says so, the episodes finished so far are returned."""
    set_torch_threads(config.worker.torch_threads)
    env = build_env(config if randomize else without_randomization(config))
    plan: list[dict[str, Any] | None] = (
        [None] * episodes
        if tracks is None
        else [{"track": name} for name in tracks for _ in range(episodes)]
    )
    results: list[EpisodeResult] = []
    try:
        for i, options in enumerate(plan):
            if options is None:
                obs, info = env.reset(seed=seed + i)
            else:
                obs, info = env.reset(seed=seed + i, options=options)
            total, steps, done = 0.0, 0, False
            while not done:
                if stop is not None and stop():  # the episode in progress is dropped
                    return results
                obs, reward, terminated, truncated, info = env.step(
                    actor_act(actor, obs, deterministic=True)
                )
                total += float(reward)
                steps += 1
                done = terminated or truncated
            results.append(_result(info, total, steps))
    finally:
        env.close()
    return results


def _result(info: dict[str, Any], total: float, steps: int) -> EpisodeResult:
    lap = info.get("lap_time_s")
    return EpisodeResult(
        finished=bool(info.get("finished", False)),
        lap_time_s=float(lap) if lap is not None else None,
        progress_frac=float(info.get("progress_frac", 0.0)),
        episode_return=total,
        steps=steps,
        track=info.get("track"),
        reference_lap_s=info.get("reference_lap_s"),
        racing="progress_frac" in info,
    )


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


def track_table(results: Sequence[EpisodeResult]) -> list[str]:
    """One line per episode: track, finished, lap time, reference, ratio, progress."""
    width = max([5, *(len(r.track or "-") for r in results)])
    lines = [f"{'track':<{width}}  finished  {'lap':>9}  {'reference':>9}  {'ratio':>6}  progress"]
    for r in results:
        lines.append(
            f"{(r.track or '-'):<{width}}  {'yes' if r.finished else 'no':>8}  "
            f"{_fmt(r.lap_time_s, ' s'):>9}  {_fmt(r.reference_lap_s, ' s'):>9}  "
            f"{_fmt(r.lap_ratio):>6}  {r.progress_frac:>8.0%}"
        )
    return lines


def summarize(results: Sequence[EpisodeResult]) -> dict[str, Any]:
    """Returns (mean, standard deviation, min, max) for any env; finish rate, median
    lap/reference ratio of the finished laps and mean progress for a racing one."""
    ratios = [r.lap_ratio for r in results if r.lap_ratio is not None]
    returns = [r.episode_return for r in results]
    return {
        "episodes": len(results),
        "racing": any(r.racing for r in results),
        "return_mean": statistics.fmean(returns) if returns else None,
        "return_std": statistics.pstdev(returns) if returns else None,
        "return_min": min(returns) if returns else None,
        "return_max": max(returns) if returns else None,
        "finished": sum(r.finished for r in results),
        "finish_rate": sum(r.finished for r in results) / len(results) if results else 0.0,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "worst_ratio": max(ratios) if ratios else None,
        "mean_progress": statistics.fmean(r.progress_frac for r in results) if results else 0.0,
    }


def summary_line(results: Sequence[EpisodeResult]) -> str:
    """One line: the mean return (and spread); for a racing env the finish rate and median
    lap/reference ratio over ``results`` first."""
    s = summarize(results)
    if not results:
        return "no evaluation episode"
    returns = (
        f"mean return {s['return_mean']:.1f} +- {s['return_std']:.1f} over {s['episodes']} "
        f"episodes (min {s['return_min']:.1f}, max {s['return_max']:.1f})"
    )
    if not s["racing"]:
        return returns
    median = s["median_ratio"]
    ratio = "-" if median is None or not math.isfinite(median) else f"{median:.3f}x"
    return (
        f"finished {s['finished']}/{s['episodes']} ({s['finish_rate']:.0%}), median lap "
        f"{ratio} the reference, mean progress {s['mean_progress']:.0%}; {returns}"
    )


def passed(results: Sequence[EpisodeResult]) -> bool:
    """What ``tmrl2 eval``'s exit code 0 means: every episode ran to its end with a finite
    return, and on a racing env every one finished its lap."""
    if not results or not all(math.isfinite(r.episode_return) for r in results):
        return False
    return all(r.finished for r in results if r.racing)


def save_results(path: Path, results: Sequence[EpisodeResult], append: bool = False) -> None:
    """Every episode and the summary as JSON: one line appended to ``path`` (``append``, a
    run folder's ``evals.jsonl``), or the file written whole."""
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "summary": summarize(results),
        "episodes": [{**dataclasses.asdict(r), "lap_ratio": r.lap_ratio} for r in results],
    }
    if append:
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    else:
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")


def load_policy(
    checkpoint: Path, overrides: list[str] | None = None, trust_config: bool = False
) -> tuple[Config, torch.nn.Module]:
    """The config and the actor saved in a checkpoint (file or run folder).

    A checkpoint may come from someone else: its weights are plain tensors, but its config may
    name components by import path, and importing a module runs its code. Unless
    ``trust_config``, such a config is refused (:class:`ConfigError` naming the key and the
    path) before anything is imported; built-in and registered components always load.
    """
    payload = load_checkpoint(checkpoint)
    saved = payload.get("config")
    if not isinstance(saved, Mapping) or not isinstance(payload.get("actor"), Mapping):
        raise CheckpointError(f"{checkpoint}: the checkpoint holds no config or no actor weights")
    with registry.trusted_imports(trust_config):
        config = load_config(data=saved, overrides=overrides or [], trust_imports=trust_config)
        env = build_env(config)
        try:
            model = build_model(config, env.observation_space, env.action_space)
        finally:
            env.close()
    try:
        model.actor.load_state_dict(payload["actor"])
    except RuntimeError as exc:  # shapes that do not fit: one line, not torch's list
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{checkpoint}: the actor weights do not fit ({reason})") from None
    model.actor.eval()
    return config, model.actor

"""One deterministic lap of a run's policy on the simulator, with its trajectory.

:func:`drive_lap` is :func:`tmrl2.roles.evaluate.evaluate`'s loop for one episode (same seed,
domain randomization off, deterministic actions) that also records, at the start and after
every step, the car's position (``x, y, z``, Y up), speed and heading; ``on_step`` sees the
simulator after each of them (what ``tmrl2 watch`` films). The env runs in fast mode even
for a run trained in real time: a lap is a lap, the clock is the simulator's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmrl2.config.load import ConfigError

if TYPE_CHECKING:
    import torch

    from tmrl2.config.schema import Config

SIM_KINDS = ("sim", "tmrl2.envs.sim.env:SimEnv")
"""``env.kind`` values of the built-in simulator."""
EVAL_SEED = 12345
"""The seed of ``tmrl2 eval``'s first episode: the lap here is the one it drives."""


@dataclass(frozen=True)
class Lap:
    """What one lap recorded (one entry per step, the start included)."""

    track: str
    positions: np.ndarray
    """``(N, 3)`` positions ``x, y, z`` (Y up)."""
    speeds_ms: np.ndarray
    """``(N,)`` speeds (m/s)."""
    headings: np.ndarray
    """``(N,)`` headings (rad; along ``(cos, sin)`` in ``(x, z)``)."""
    finished: bool
    lap_time_s: float | None
    progress_frac: float
    reference_lap_s: float | None
    time_step_s: float
    cut_short: bool = False
    """Stopped by ``max_steps`` before the episode ended."""

    @property
    def steps(self) -> int:
        return len(self.positions) - 1

    def describe(self) -> str:
        """One line: lap time (and ratio to the reference) or how far it got."""
        if self.finished and self.lap_time_s is not None:
            ratio = (
                f", {self.lap_time_s / self.reference_lap_s:.2f}x the reference"
                if self.reference_lap_s
                else ""
            )
            return f"{self.track}: finished in {self.lap_time_s:.2f} s{ratio}"
        how = "stopped (--max-steps)" if self.cut_short else "did not finish"
        return (
            f"{self.track}: {how}, reached {self.progress_frac:.0%} of the track in "
            f"{self.steps} steps"
        )


def checkpoint_env_kind(run: Path) -> str:
    """The ``env.kind`` a run's checkpoint was trained on (read without building anything)."""
    from tmrl2.checkpoint import load_checkpoint

    env = (load_checkpoint(run).get("config") or {}).get("env") or {}
    return str(env.get("kind", "sim")) if isinstance(env, dict) else "sim"


def require_sim(run: Path, command: str) -> None:
    """A one-line :class:`ConfigError` (exit code 2) unless the run drove the simulator."""
    kind = checkpoint_env_kind(run)
    if kind not in SIM_KINDS:
        raise ConfigError(
            f"{command} {run}: this run's env.kind is {kind!r}; a lap can only be driven on the "
            "built-in simulator (env.kind: sim)"
        )


def load_sim_policy(
    run: Path, trust_config: bool = False, command: str = "watch"
) -> tuple[Config, torch.nn.Module]:
    """The config (fast mode, no randomization) and actor of a simulator run's checkpoint."""
    from tmrl2.roles.evaluate import load_policy, without_randomization

    require_sim(run, command)
    config, actor = load_policy(run, trust_config=trust_config)
    env = config.env.model_copy(update={"realtime": False})
    return without_randomization(config.model_copy(update={"env": env})), actor


def first_track(config: Config) -> str:
    """The run's first training track (``env.tracks[0]``, or ``env.track``)."""
    names: list[str] = getattr(config.env, "track_names")()  # noqa: B009 (a SimEnvConfig)
    return names[0]


def drive_lap(
    config: Config,
    actor: torch.nn.Module,
    track: str | None = None,
    max_steps: int | None = None,
    on_step: Callable[[Any, dict[str, Any]], None] | None = None,
) -> Lap:
    """Drive ``actor`` deterministically for one episode on ``track`` (default: the run's
    first) and record the trajectory. ``max_steps`` stops earlier than the env's cap;
    ``on_step(sim_env, info)`` runs after the reset and after every step."""
    from tmrl2.algos.policy import actor_act
    from tmrl2.envs.factory import build_env
    from tmrl2.envs.sim.env import SimEnv
    from tmrl2.envs.sim.tracklist import expand_tracks
    from tmrl2.roles.common import set_torch_threads

    name = track or first_track(config)
    try:
        expand_tracks([name])
    except ValueError as exc:
        raise ConfigError(f"--track {name!r}: {' '.join(str(exc).split())}") from None
    set_torch_threads(config.worker.torch_threads)
    env = build_env(config)
    sim = env.unwrapped
    if not isinstance(sim, SimEnv):
        env.close()
        raise ConfigError(f"env.kind {config.env.kind!r} is not the built-in simulator")
    positions, speeds, headings = [], [], []

    def record(info: dict[str, Any]) -> None:
        positions.append(info["position"])
        speeds.append(float(info["speed_ms"]))
        headings.append(float(sim.car.state.heading))
        if on_step is not None:
            on_step(sim, info)

    done = False
    try:
        obs, info = env.reset(seed=EVAL_SEED, options={"track": name})
        record(info)
        steps = 0
        while not done and (max_steps is None or steps < max_steps):
            action = actor_act(actor, obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            record(info)
            done = terminated or truncated
    finally:
        env.close()
    lap = info.get("lap_time_s")
    return Lap(
        track=name,
        positions=np.asarray(positions, np.float64).reshape(-1, 3),
        speeds_ms=np.asarray(speeds, np.float64),
        headings=np.asarray(headings, np.float64),
        finished=bool(info.get("finished", False)),
        lap_time_s=float(lap) if lap is not None else None,
        progress_frac=float(info.get("progress_frac", 0.0)),
        reference_lap_s=info.get("reference_lap_s"),
        time_step_s=getattr(config.env, "time_step_ms", 50) / 1000.0,
        cut_short=not done,
    )

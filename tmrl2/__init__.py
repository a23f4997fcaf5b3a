"""EVO RL (import name ``tmrl2``): real-time distributed reinforcement learning.

Public API (imported lazily, so ``import tmrl2`` stays light and reads no config)::

    config = tmrl2.load_config("configs/sim_lidar.yaml", ["run.steps=20000"])
    env = tmrl2.get_environment(config)          # a Gymnasium env
    summary = tmrl2.run_local_training(config)   # server + trainer + worker, blocking
    run = tmrl2.launch_all(config); run.wait()   # the same, non-blocking handle
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import gymnasium as gym

    from tmrl2.config.schema import Config
    from tmrl2.roles.launcher import LocalRun

__all__ = ["__version__", "get_environment", "launch_all", "load_config", "run_local_training"]


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Load and validate a YAML config (``None``: the built-in default job)."""
    from tmrl2.config.load import load_config as _load

    return _load(path, overrides)


def get_environment(config: Config | None = None) -> gym.Env[Any, Any]:
    """The Gymnasium environment a config describes (default: the simulator, fast mode)."""
    from tmrl2.envs.factory import build_env

    return build_env(config if config is not None else load_config())


def launch_all(config: Config, run_dir: Path | None = None, resume: bool = False) -> LocalRun:
    """Start server, trainer and workers as processes on this machine."""
    from tmrl2.roles.launcher import launch_all as _launch

    return _launch(config, run_dir, resume)


def run_local_training(
    config: Config, run_dir: Path | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train locally until ``run.steps``/``run.minutes``, evaluate, return the summary."""
    from tmrl2.roles.launcher import run_local_training as _run

    return _run(config, run_dir, resume)

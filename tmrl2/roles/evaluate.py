"""Deterministic evaluation: drive a policy for whole episodes and report laps or progress."""

from __future__ import annotations

from collections.abc import Mapping
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
from tmrl2.roles.components import build_model


@dataclass(frozen=True)
class EpisodeResult:
    """What one evaluation episode achieved."""

    finished: bool
    lap_time_s: float | None
    progress_frac: float
    episode_return: float
    steps: int

    def describe(self) -> str:
        if self.finished and self.lap_time_s is not None:
            return f"finished in {self.lap_time_s:.2f} s ({self.steps} steps)"
        return f"did not finish: reached {self.progress_frac:.0%} of the track ({self.steps} steps)"


def evaluate(
    config: Config, actor: torch.nn.Module, episodes: int, seed: int = 12345
) -> list[EpisodeResult]:
    """Drive ``actor`` deterministically for ``episodes`` episodes."""
    env = build_env(config)
    results = []
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            total, steps, done = 0.0, 0, False
            while not done:
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
    )


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

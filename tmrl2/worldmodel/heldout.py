"""The world model's prediction error on held-out real transitions, one step and k steps.

Held-out here means transitions the model never trained on: fresh episodes driven by the
run's policy in a new env (another seed), after training (:func:`collect_episodes`). The
k-step error rolls the model out open loop from every state of an episode, with the real
actions, for k steps (the members' average mean each step:
:meth:`~tmrl2.worldmodel.rollouts.ModelStep.expected`), and compares the predicted state with
the real one k steps later (:func:`open_loop_errors`). ``benchmarks/bench_world_model.py``
reports it for k = 1 and 10, next to the error of predicting "no change" (the state k steps
earlier), so that a number has a scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tmrl2.checkpoint import load_checkpoint
from tmrl2.config.schema import Config
from tmrl2.envs.factory import build_env
from tmrl2.memory.batch import BOX_KEY
from tmrl2.worldmodel.config import WorldModelConfig
from tmrl2.worldmodel.ensemble import GaussianEnsemble
from tmrl2.worldmodel.learner import STATE_KEY, build_ensemble
from tmrl2.worldmodel.rollouts import ModelStep
from tmrl2.worldmodel.state import StateCodec


class Episode(NamedTuple):
    """One real episode as flat model states."""

    states: torch.Tensor
    """``(T + 1, obs_dim)``: every observation, the last one after the last action."""
    actions: torch.Tensor
    """``(T, act_dim)``."""
    rewards: torch.Tensor
    """``(T,)``."""


def open_loop_errors(
    step: ModelStep, episodes: Sequence[Episode], horizons: Iterable[int] = (1, 10)
) -> dict[str, float]:
    """Per horizon k: ``rmse_<k>`` (root mean square error of the predicted state k steps
    ahead, over every state value), ``copy_rmse_<k>`` (the same for "no change"), and for
    k = 1 ``reward_rmse``; ``n_<k>`` counts the starts."""
    out: dict[str, float] = {}
    for k in horizons:
        sq = copy_sq = 0.0
        count = 0
        for ep in episodes:
            n = ep.actions.shape[0] - k + 1
            if n <= 0:
                continue
            state = ep.states[:n]
            for j in range(k):
                result = step.expected(state, ep.actions[j : j + n])
                if j == 0 and k == 1:
                    out["reward_rmse"] = out.get("reward_rmse", 0.0) + float(
                        (result.reward - ep.rewards[:n]).square().sum()
                    )
                state = result.next_state
            real = ep.states[k : k + n]
            sq += float((state - real).square().mean(dim=-1).sum())
            copy_sq += float((ep.states[:n] - real).square().mean(dim=-1).sum())
            count += n
        if count:
            out[f"rmse_{k}"] = (sq / count) ** 0.5
            out[f"copy_rmse_{k}"] = (copy_sq / count) ** 0.5
            if k == 1 and "reward_rmse" in out:
                out["reward_rmse"] = (out["reward_rmse"] / count) ** 0.5
        out[f"n_{k}"] = float(count)
    return out


def collect_episodes(
    config: Config, actor: nn.Module, codec: StateCodec, steps: int, seed: int
) -> list[Episode]:
    """About ``steps`` real transitions driven by ``actor`` (sampled actions) in a new env
    built from ``config`` with ``seed``, split into episodes."""
    env = build_env(config)
    episodes: list[Episode] = []
    try:
        obs, _ = env.reset(seed=seed)
        states, actions, rewards = [obs], [], []
        for t in range(steps):
            parts = {BOX_KEY: obs} if isinstance(obs, np.ndarray) else obs
            with torch.no_grad():
                batch = {k: torch.as_tensor(np.asarray(v))[None] for k, v in parts.items()}
                action, _ = actor(batch, deterministic=False, with_logprob=False)
            act = action[0].numpy().astype(np.float32)
            obs, reward, terminated, truncated, _ = env.step(act)
            states.append(obs)
            actions.append(act)
            rewards.append(float(reward))
            if terminated or truncated or t == steps - 1:
                episodes.append(_episode(codec, states, actions, rewards))
                obs, _ = env.reset()
                states, actions, rewards = [obs], [], []
    finally:
        env.close()
    return [ep for ep in episodes if ep.actions.shape[0] > 0]


def _episode(
    codec: StateCodec, states: list[Any], actions: list[np.ndarray], rewards: list[float]
) -> Episode:
    parts = [{BOX_KEY: s} if isinstance(s, np.ndarray) else s for s in states]
    stacked = {k: torch.as_tensor(np.stack([p[k] for p in parts])) for k in parts[0]}
    return Episode(
        codec.flatten(stacked),
        torch.as_tensor(np.stack(actions)) if actions else torch.zeros(0, codec.act_dim),
        torch.as_tensor(rewards, dtype=torch.float32),
    )


def load_world_model(checkpoint: Path, config: Config) -> tuple[StateCodec, GaussianEnsemble]:
    """The codec and the trained ensemble of a run's checkpoint (its ``world_model``
    state), on the CPU.

    Raises:
        ValueError: the run had no world model.
    """
    if not isinstance(config.world_model, WorldModelConfig):
        raise ValueError(f"{checkpoint}: the run has no world model (world_model.kind none)")
    payload = load_checkpoint(checkpoint)
    saved = payload["algorithm"].get(STATE_KEY)
    if not isinstance(saved, dict):
        raise ValueError(f"{checkpoint}: the checkpoint holds no world model")
    env = build_env(config)
    try:
        action_space = env.action_space
        assert isinstance(action_space, spaces.Box)
        codec, ensemble = build_ensemble(config.world_model, env.observation_space, action_space)
    finally:
        env.close()
    ensemble.load_state_dict(saved["ensemble"])
    return codec, ensemble.eval()

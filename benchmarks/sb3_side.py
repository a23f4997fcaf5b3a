"""The Stable-Baselines3 side of ``benchmarks/bench_gym.py``: train SAC, evaluate, one JSON line.

Runs in the baseline's own virtualenv (``bash scripts/install_sb3_baseline.sh`` makes
``.venv-sb3``; SB3 is never a dependency of tmrl2), so it imports neither tmrl2 nor anything
of this repository. ``bench_gym.py`` derives every setting from the same resolved EVO RL config
as its own side and passes them as one JSON argument::

    .venv-sb3/bin/python benchmarks/sb3_side.py '{"env_id": "Pendulum-v1", "steps": 20000, ...}'

It trains ``SAC("MlpPolicy")`` with one torch thread, then drives ``eval_episodes``
deterministic episodes, each in a fresh env reset with seed ``eval_seed + i`` (the protocol of
``tmrl2 eval``), and prints ``RESULT {json}``: the returns, the training wall clock of
``model.learn`` alone, and the env steps per second.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC, __version__
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def make_env(p: dict[str, Any]) -> gym.Env[Any, Any]:
    """The env as the EVO RL side makes it (``gymnasium.make(id, max_episode_steps, **kwargs)``)."""
    return gym.make(p["env_id"], max_episode_steps=p["max_episode_steps"], **p["env_kwargs"])


def build(p: dict[str, Any], env: gym.Env[Any, Any]) -> SAC:
    """SAC with the EVO RL config's hyper-parameters (bench_gym.py's ``sb3_payload``)."""
    alpha = p["alpha_init"]
    return SAC(
        "MlpPolicy",
        env,
        learning_rate=p["lr"],
        buffer_size=p["buffer_size"],
        learning_starts=p["learning_starts"],
        batch_size=p["batch_size"],
        tau=p["tau"],
        gamma=p["gamma"],
        train_freq=p["train_freq"],
        gradient_steps=p["gradient_steps"],
        ent_coef=f"auto_{alpha}" if p["learn_alpha"] else alpha,
        target_entropy="auto" if p["target_entropy"] is None else p["target_entropy"],
        policy_kwargs={
            "net_arch": list(p["hidden_sizes"]),
            "activation_fn": ACTIVATIONS[p["activation"]],
        },
        seed=p["seed"],
        device="cpu",
        verbose=0,
    )


def evaluate(p: dict[str, Any], model: SAC) -> list[float]:
    """Deterministic returns of ``eval_episodes`` episodes, reset with ``eval_seed + i``."""
    env = make_env(p)
    returns = []
    try:
        for i in range(p["eval_episodes"]):
            obs, _ = env.reset(seed=p["eval_seed"] + i)
            total, done = 0.0, False
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(np.asarray(action))
                total += float(reward)
                done = bool(terminated or truncated)
            returns.append(total)
    finally:
        env.close()
    return returns


def main() -> int:
    p: dict[str, Any] = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    env = make_env(p)
    model = build(p, env)
    start = time.perf_counter()
    model.learn(total_timesteps=p["steps"], progress_bar=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    returns = evaluate(p, model)
    eval_s = time.perf_counter() - start
    env.close()
    result = {
        "return_mean": statistics.fmean(returns) if returns else None,
        "return_std": statistics.pstdev(returns) if returns else None,
        "returns": returns,
        "train_s": train_s,
        "eval_s": eval_s,
        "steps": int(model.num_timesteps),
        "steps_per_s": model.num_timesteps / train_s if train_s > 0 else None,
        "updates": int(model._n_updates),
        "sb3": __version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

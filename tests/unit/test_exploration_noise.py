"""Exploration in the roles: parameter noise in the workers, the bonus kept out of what is
logged, evaluated or stored, and the exploration state through a trainer's checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import rolekit
import torch
from gymnasium import spaces
from rolekit import FakeHub, make_worker, run_together, tiny_config
from torch import nn

from tmrl2.algos.networks import MLPConfig, SquashedGaussianActor
from tmrl2.algos.policy import actor_weights, load_actor_weights
from tmrl2.checkpoint import load_checkpoint
from tmrl2.config.schema import Config
from tmrl2.exploration.base import build_actor_noise
from tmrl2.exploration.learner import ExploringLearner
from tmrl2.exploration.param_noise import ParamNoise, ParamNoiseConfig
from tmrl2.roles.trainer import Trainer
from tmrl2.roles.worker import Worker

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


def tiny_actor(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SquashedGaussianActor(MLPConfig(hidden_sizes=(16, 16)), OBS, ACT).eval()


def feed(noise: ParamNoise, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        noise.after_step({"obs": rng.uniform(-1, 1, (1, 3)).astype(np.float32)}, False)


def test_noise_scale_adapts_toward_its_target_from_either_side() -> None:
    for initial in (1e-4, 3.0):
        config = ParamNoiseConfig(
            initial_std=initial, target_distance=0.1, adapt_factor=1.05, adapt_every_steps=1
        )
        noise = ParamNoise(config, tiny_actor(), ACT, seed=1)
        feed(noise, 400)
        assert noise.distance is not None
        assert 0.05 < noise.distance < 0.2, (initial, noise.distance, noise.std)
        assert noise.stats()["noise_std"] == noise.std
        assert (noise.std > initial) == (initial < 0.01)


def test_the_clean_actor_is_never_perturbed_and_new_weights_keep_the_noise() -> None:
    actor = tiny_actor()
    before = actor_weights(actor)
    noise = ParamNoise(ParamNoiseConfig(initial_std=0.1), actor, ACT, seed=0)
    feed(noise, 120)  # adaptations
    for name, array in actor_weights(actor).items():
        assert np.array_equal(array, before[name]), name
    moved = actor_weights(noise.perturbed)
    assert not np.array_equal(moved["trunk.0.weight"], before["trunk.0.weight"])
    # new weights from the trainer: the perturbed copy follows them, same noise
    offset = {k: moved[k] - before[k] for k in before}
    load_actor_weights(actor, {k: v + 1.0 for k, v in before.items()})
    noise.weights_changed()
    for name, array in actor_weights(noise.perturbed).items():
        assert np.allclose(array - (before[name] + 1.0), offset[name], atol=1e-6), name


def test_a_new_perturbation_per_episode_or_every_k_steps() -> None:
    def first_weight(noise: ParamNoise) -> np.ndarray:
        return actor_weights(noise.perturbed)["head.weight"].copy()

    per_episode = ParamNoise(ParamNoiseConfig(adapt_every_steps=1000), tiny_actor(), ACT, 0)
    w0 = first_weight(per_episode)
    per_episode.after_step({"obs": np.zeros((1, 3), np.float32)}, False)
    assert np.array_equal(first_weight(per_episode), w0)
    per_episode.after_step({"obs": np.zeros((1, 3), np.float32)}, True)
    assert not np.array_equal(first_weight(per_episode), w0)

    config = ParamNoiseConfig(every_steps=3, adapt_every_steps=1000)
    every = ParamNoise(config, tiny_actor(), ACT, 0)
    w0 = first_weight(every)
    feed(every, 2)
    assert np.array_equal(first_weight(every), w0)
    feed(every, 1)
    assert not np.array_equal(first_weight(every), w0)


def test_build_actor_noise_only_for_worker_side_kinds() -> None:
    actor = tiny_actor()
    assert isinstance(
        build_actor_noise(tiny_config("exploration.kind=param_noise").exploration, actor, ACT, 0),
        ParamNoise,
    )
    for kind in ("none", "rnd", "icm"):
        config = tiny_config(f"exploration.kind={kind}").exploration
        assert build_actor_noise(config, actor, ACT, 0) is None


def noisy_worker(config: Config, hub: FakeHub, name: str = "worker") -> Worker:
    worker = make_worker(config, hub, name)
    worker.noise = build_actor_noise(config.exploration, worker.actor, worker.env.action_space, 0)  # type: ignore[arg-type]
    return worker


def make_trainer(
    config: Config, hub: FakeHub, run_dir: Path | None = None, resume: bool = False
) -> Trainer:
    """rolekit's trainer with the real, wrapped learner (``build_learner``), on real time."""
    return rolekit.make_trainer(
        config, hub, clock=time.monotonic, run_dir=run_dir, resume=resume, real_learner=True
    )


def test_workers_act_with_noise_and_report_its_scale_to_the_trainers_metrics() -> None:
    config = tiny_config("exploration.kind=param_noise", "exploration.adapt_every_steps=5")
    hub = FakeHub()
    trainer = make_trainer(config, hub)
    worker = noisy_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 200)
    assert worker.policy_version >= 1 and trainer.counters["episodes"] >= 5
    # the worker's clean actor holds exactly the trainer's published weights
    sent = trainer.client.of_kind("weights")  # type: ignore[union-attr]
    published = next(m for m in sent if m.meta["version"] == worker.policy_version)
    for name, array in actor_weights(worker.actor).items():
        assert np.array_equal(array, published.arrays[name]), name
    assert worker.noise is not None
    moved = actor_weights(worker.noise.acting_actor)
    assert not np.array_equal(moved["trunk.0.weight"], published.arrays["trunk.0.weight"])
    metrics = trainer.metrics()
    assert metrics["explore/noise_std"] > 0 and "explore/noise_distance" in metrics
    trainer.finish()
    worker.finish()


def episode_returns(chunks: list[Any]) -> list[float]:
    """Per-episode sums of the rewards the worker sent (the env's rewards)."""
    returns, total = [], 0.0
    for chunk in chunks:
        for reward, done in zip(chunk.arrays["reward"], chunk.arrays["terminated"], strict=True):
            total += float(reward)
            if done:
                returns.append(total)
                total = 0.0
    return returns


def test_the_intrinsic_reward_never_reaches_memory_logged_returns_or_evaluation(
    tmp_path: Path,
) -> None:
    config = tiny_config("exploration.kind=rnd", "exploration.weight=5.0")
    hub = FakeHub()
    trainer = make_trainer(config, hub, run_dir=tmp_path)
    assert isinstance(trainer.algo, ExploringLearner)
    seen: list[torch.Tensor] = []
    inner = trainer.algo.learner
    original = inner.update
    inner.update = lambda b: (seen.append(b.reward.clone()), original(b))[1]  # type: ignore[method-assign]
    worker = make_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 200)
    assert trainer.counters["updates"] > 0 and seen
    assert trainer.last_losses["intrinsic_mean"] > 0 and "predictor_loss" in trainer.last_losses
    assert "loss/intrinsic_max" in trainer.metrics()
    # the memory holds the env's rewards; the learner saw more (the bonus)
    chunks = worker.client.of_kind("chunk")  # type: ignore[union-attr]
    sent = np.concatenate([c.arrays["reward"] for c in chunks])
    stored = trainer.memory.sample(len(trainer.memory)).reward.numpy()  # type: ignore[attr-defined]
    assert set(np.round(stored, 5)) <= set(np.round(sent, 5))
    assert float(torch.cat(seen).mean()) > float(np.mean(sent)) + 1.0
    # the logged returns are the env's
    logged = list(trainer.returns.last)
    assert logged and np.allclose(logged, episode_returns(chunks)[: len(logged)], atol=1e-4)
    # what evaluation loads (the checkpoint's actor) is the actor alone
    trainer.finish()
    worker.finish()
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert set(payload["actor"]) == set(trainer.model.actor.state_dict())
    assert "exploration" in payload["algorithm"]


def test_a_resumed_trainer_restores_the_exploration_module(tmp_path: Path) -> None:
    config = tiny_config("exploration.kind=icm")
    hub = FakeHub()
    trainer = make_trainer(config, hub, run_dir=tmp_path)
    worker = make_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 150)
    trainer.finish()
    worker.finish()
    assert isinstance(trainer.algo, ExploringLearner)
    saved = trainer.algo.intrinsic.nets.state_dict()  # type: ignore[attr-defined]
    torch.manual_seed(99)
    resumed = make_trainer(config, FakeHub(), run_dir=tmp_path, resume=True)
    assert isinstance(resumed.algo, ExploringLearner)
    assert resumed.algo.updates == trainer.algo.updates > 0
    for key, value in resumed.algo.intrinsic.nets.state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(value, saved[key]), key
    resumed.finish()


def test_a_resumed_run_gives_new_workers_the_adapted_noise_scale(tmp_path: Path) -> None:
    """The worker-side module's state (parameter noise's adapted sigma) goes through the
    trainer's checkpoint: a resumed trainer sends it in its state, and a new worker starts
    from it instead of ``initial_std``; a worker that has adapted keeps its own."""
    config = tiny_config(
        "exploration.kind=param_noise",
        "exploration.adapt_every_steps=5",
        "exploration.target_distance=0.5",  # far above what 0.05 gives: sigma grows
    )
    hub = FakeHub()
    trainer = make_trainer(config, hub, run_dir=tmp_path)
    worker = noisy_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 200)
    trainer.finish()
    worker.finish()
    assert isinstance(worker.noise, ParamNoise)
    adapted = trainer.explore["noise_std"]
    assert adapted > config.exploration.initial_std  # type: ignore[attr-defined]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["explore"]["noise_std"] == adapted

    hub = FakeHub()
    resumed = make_trainer(config, hub, run_dir=tmp_path, resume=True)
    fresh = noisy_worker(config, hub, "fresh")
    assert isinstance(fresh.noise, ParamNoise)
    assert fresh.noise.std == config.exploration.initial_std  # type: ignore[attr-defined]
    resumed.start()
    fresh.start()
    run_together(resumed, [fresh], 3)  # the state arrives before its first adaptation
    assert fresh.noise.distance is None and fresh.noise.std == adapted
    run_together(resumed, [fresh], 20)
    assert fresh.noise.distance is not None  # adapted: a later state changes nothing
    assert not fresh.noise.restore({"noise_std": 0.01})
    resumed.finish()
    fresh.finish()


def test_every_worker_kind_is_built_with_its_noise_and_the_cars_share_it() -> None:
    from rolekit import make_trainer as make_fake_trainer

    from tmrl2.roles.vec_worker import VecWorker
    from tmrl2.roles.worker import build_worker

    sets = ("exploration.kind=param_noise", "exploration.every_steps=4")
    plain = build_worker(tiny_config(*sets), "tcp://127.0.0.1:9")
    assert isinstance(plain.noise, ParamNoise) and plain.noise.actor is plain.actor
    assert build_worker(tiny_config(), "tcp://127.0.0.1:9").noise is None
    config = tiny_config(*sets, "worker.envs=3")
    worker = build_worker(config, "tcp://127.0.0.1:9")
    assert isinstance(worker, VecWorker) and isinstance(worker.noise, ParamNoise)
    hub = FakeHub()
    worker._connect = hub.connector("worker", "vec")  # type: ignore[method-assign]
    trainer = make_fake_trainer(config, hub)
    trainer.start()
    worker.start()
    drawn = actor_weights(worker.noise.perturbed)["head.weight"].copy()
    run_together(trainer, [worker], 30)
    assert worker.steps == 90 and worker.noise._steps == 30  # one step of all cars: one
    assert worker.noise._recent.size == 90  # every car's observation is measured on
    assert not np.array_equal(actor_weights(worker.noise.perturbed)["head.weight"], drawn)
    trainer.finish()
    worker.finish()

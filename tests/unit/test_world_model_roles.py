"""The world model inside the roles: a trainer with a real SAC and a world model, workers
that plan (``explore``), metrics, a prioritized memory, and a resumed trainer."""

from __future__ import annotations

import time
from pathlib import Path

import rolekit
import torch
from rolekit import FakeHub, make_worker, run_together, tiny_config

from tmrl2.config.schema import Config
from tmrl2.roles.trainer import Trainer
from tmrl2.roles.worker import Worker
from tmrl2.worldmodel.explore import build_mpc_explorer
from tmrl2.worldmodel.learner import WorldModelLearner

WM = [
    "world_model.kind=mbpo",
    "world_model.ensemble_size=2",
    "world_model.hidden_sizes=[16]",
    "world_model.start_updates=5",
    "world_model.rollout.min_buffer=8",
    "world_model.rollout.starts=16",
    "world_model.rollout.every_updates=2",
]


def make_trainer(
    config: Config, hub: FakeHub, run_dir: Path | None = None, resume: bool = False
) -> Trainer:
    """rolekit's trainer with the real, wrapped learner (``build_learner``), on real time."""
    return rolekit.make_trainer(
        config, hub, clock=time.monotonic, run_dir=run_dir, resume=resume, real_learner=True
    )


def planning_worker(config: Config, hub: FakeHub) -> Worker:
    worker = make_worker(config, hub)
    env = worker.env
    worker.mpc = build_mpc_explorer(
        config.world_model,
        env.observation_space,
        env.action_space,  # type: ignore[arg-type]
        0,
    )
    return worker


def test_workers_plan_with_the_published_model_and_the_trainer_logs_it() -> None:
    config = tiny_config(*WM, "world_model.mpc.mode=explore", "world_model.mpc.explore_prob=0.5")
    hub = FakeHub()
    trainer = make_trainer(config, hub)
    worker = planning_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 250)
    assert worker.mpc is not None and worker.mpc.ready  # the model came with the weights
    trainer.report()
    metrics = trainer.metrics()
    assert 0.2 < metrics["explore/mpc_frac"] <= 0.8  # the planner acted on about half
    assert "loss/wm_train_nll" in metrics and "loss/wm_model_share" in metrics
    assert metrics["loss/wm_buffer"] > 0
    trainer.finish()
    worker.finish()


def test_a_prioritized_memory_gets_the_real_rows_td_errors() -> None:
    config = tiny_config(*WM, "memory.sampler=prioritized", "world_model.rollout.real_ratio=0.5")
    hub = FakeHub()
    trainer = make_trainer(config, hub)
    worker = make_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 200)
    assert trainer.counters["updates"] > 20
    assert trainer.metrics()["loss/wm_model_share"] == 0.5
    trainer.finish()
    worker.finish()


def test_a_resumed_trainer_restores_the_world_model(tmp_path: Path) -> None:
    config = tiny_config(*WM, "world_model.mpc.mode=guide", "world_model.mpc.guide_every=1")
    hub = FakeHub()
    trainer = make_trainer(config, hub, run_dir=tmp_path)
    worker = make_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 150)
    trainer.finish()
    worker.finish()
    assert isinstance(trainer.algo, WorldModelLearner)
    saved = trainer.algo.ensemble.state_dict()
    torch.manual_seed(99)
    resumed = make_trainer(config, FakeHub(), run_dir=tmp_path, resume=True)
    assert isinstance(resumed.algo, WorldModelLearner)
    assert resumed.algo.updates == trainer.algo.updates > 0
    assert len(resumed.algo.buffer) == len(trainer.algo.buffer) > 0
    for key, value in resumed.algo.ensemble.state_dict().items():
        assert torch.equal(value, saved[key]), key
    resumed.finish()

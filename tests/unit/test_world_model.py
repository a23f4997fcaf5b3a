"""The world model (``world_model:``): ensemble fit, rollouts, planner, real/model mix,
checkpoints, the state codec, the guide and explore modes, and config errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tmrl2.checkpoint import load_checkpoint, save_checkpoint
from tmrl2.config.load import ConfigError, load_config
from tmrl2.memory.batch import Batch
from tmrl2.net.codec import Message, decode, encode
from tmrl2.roles.components import build_algorithm, build_model
from tmrl2.worldmodel.config import MPCConfig, RolloutConfig, WorldModelConfig
from tmrl2.worldmodel.ensemble import GaussianEnsemble
from tmrl2.worldmodel.explore import MPCExplorer, split_weights
from tmrl2.worldmodel.heldout import Episode, collect_episodes, open_loop_errors
from tmrl2.worldmodel.learner import (
    STATE_KEY,
    WEIGHTS_PREFIX,
    WorldModelLearner,
    holdout_mask,
    wrap_world_model,
)
from tmrl2.worldmodel.planner import CEMPlanner
from tmrl2.worldmodel.rollouts import ModelStep, Step, TensorRing, rollout
from tmrl2.worldmodel.state import StateCodec

torch.set_num_threads(1)

VEC = spaces.Box(-10.0, 10.0, (4,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = {"ensemble_size": 3, "hidden_sizes": (32, 32)}


def box_batch(obs: np.ndarray, action: np.ndarray, reward: np.ndarray, nxt: np.ndarray) -> Batch:
    n = len(obs)
    return Batch(
        obs={"obs": torch.as_tensor(obs, dtype=torch.float32)},
        action=torch.as_tensor(action, dtype=torch.float32),
        reward=torch.as_tensor(reward, dtype=torch.float32),
        next_obs={"obs": torch.as_tensor(nxt, dtype=torch.float32)},
        terminated=torch.zeros(n),
        weights=torch.ones(n),
        indices=np.arange(n, dtype=np.int64),
    )


def linear_system(rng: np.random.Generator, n: int) -> Batch:
    """``s' = A s + B a``, ``r = c . s + d . a``, no noise."""
    a_mat = np.array([[0.9, 0.1, 0, 0], [0, 0.9, 0.1, 0], [0, 0, 0.9, 0.1], [0.1, 0, 0, 0.9]])
    b_mat = np.array([[0.5, 0], [0, 0.5], [0.2, 0.2], [0, -0.3]])
    obs = rng.uniform(-2, 2, (n, 4)).astype(np.float32)
    action = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    nxt = obs @ a_mat.T + action @ b_mat.T
    reward = obs @ np.array([1.0, -0.5, 0.2, 0.0]) + action @ np.array([0.3, -0.3])
    return box_batch(obs, action, reward.astype(np.float32), nxt.astype(np.float32))


# ---------------------------------------------------------------------- ensemble
def test_ensemble_fits_a_known_linear_system() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    codec = StateCodec(VEC, ACT)
    model = GaussianEnsemble(3, 6, codec.pred_dim + 1, (32, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def data(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        obs, nxt = codec.flatten(batch.obs), codec.flatten(batch.next_obs)
        x = torch.cat([obs, batch.action], dim=-1)
        return x, torch.cat([codec.target(obs, nxt), batch.reward[:, None]], dim=-1)

    for _ in range(200):
        x, y = data(linear_system(rng, 128))
        model.observe(x, y)
        loss, _ = model.loss(x.expand(3, -1, -1), y.expand(3, -1, -1), torch.zeros(3, 128))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test = linear_system(np.random.default_rng(99), 500)
    x, y = data(test)
    pred = model.predict(x)
    err = (pred.mean.mean(dim=0) - y).square().mean(dim=0)
    assert (err / y.var(dim=0) < 0.01).all(), err  # under 1 % of the targets' variance
    assert (pred.done_prob < 0.5).all()
    # the next state built from the prediction is the system's next state
    nxt = codec.next_state(codec.flatten(test.obs), test.action, pred.mean.mean(0)[:, :-1])
    assert torch.allclose(nxt, test.next_obs["obs"], atol=0.1)


def test_logvar_bounds_are_learned_parameters_and_bound_the_variance() -> None:
    model = GaussianEnsemble(2, 3, 2, (8,), logvar_bounds=(-3.0, 0.5))
    names = {name for name, _ in model.named_parameters()}
    assert {"min_logvar", "max_logvar"} <= names
    _, logvar, _ = model(torch.randn(5, 3) * 1000)
    # soft bounds (PETS): within a softplus(0) ~ 0.05 of them at the extremes
    assert (logvar <= 0.6).all() and (logvar >= -3.0 - 1e-5).all()


# ---------------------------------------------------------------------- state codec
def test_codec_shifts_histories_predicts_the_newest_frame_and_copies_the_action() -> None:
    space = spaces.Dict(
        {
            "lidar": spaces.Box(0.0, 1.0, (2, 3), np.float32),
            "prev_actions": spaces.Box(-1.0, 1.0, (2, 2), np.float32),
            "speed": spaces.Box(0.0, 1.0, (1,), np.float32),
        }
    )
    codec = StateCodec(space, ACT, ("lidar", "prev_actions"), ("prev_actions",))
    assert codec.obs_dim == 6 + 4 + 1 and codec.pred_dim == 3 + 1  # newest scan + speed
    obs = {
        "lidar": torch.tensor([[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]]),
        "prev_actions": torch.tensor([[[0.1, 0.2], [0.3, 0.4]]]),
        "speed": torch.tensor([[0.5]]),
    }
    action = torch.tensor([[-0.7, 0.9]])
    nxt = {
        "lidar": torch.tensor([[[0.4, 0.5, 0.6], [0.7, 0.8, 0.9]]]),
        "prev_actions": torch.tensor([[[0.3, 0.4], [-0.7, 0.9]]]),
        "speed": torch.tensor([[0.55]]),
    }
    flat, next_flat = codec.flatten(obs), codec.flatten(nxt)
    delta = codec.target(flat, next_flat)
    assert torch.allclose(delta, torch.tensor([[0.3, 0.3, 0.3, 0.05]]), atol=1e-6)
    rebuilt = codec.unflatten(codec.next_state(flat, action, delta))
    for key in nxt:
        assert torch.allclose(rebuilt[key], nxt[key], atol=1e-6), key
    too_far = codec.unflatten(codec.next_state(flat, action, delta + 5.0))
    assert too_far["lidar"].max() <= 1.0 and too_far["speed"].max() <= 1.0  # clipped


def test_codec_refuses_image_parts_naming_world_model() -> None:
    space = spaces.Dict({"image": spaces.Box(0, 255, (4, 8, 8), np.uint8)})
    with pytest.raises(ValueError, match="world_model.*image"):
        StateCodec(space, ACT)


# ---------------------------------------------------------------------- rollouts
class CountingStep:
    """A fake model: ``s' = s + 1``, reward ``s``, terminal when ``s' >= 3``; disagreement
    is ``s`` (so a threshold stops states beyond it)."""

    def __init__(self) -> None:
        self.codec = StateCodec(spaces.Box(-100.0, 100.0, (1,), np.float32), ACT)

    def sample(self, state: torch.Tensor, action: torch.Tensor, generator: Any = None) -> Step:
        nxt = state + 1.0
        return Step(nxt, state[:, 0], nxt[:, 0] >= 3.0, state[:, 0])


def zero_policy(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.zeros(obs["obs"].shape[0], 2)


def test_rollouts_stop_at_predicted_terminations() -> None:
    starts = torch.tensor([[0.0], [1.0], [2.5]])
    rows, stats = rollout(CountingStep(), zero_policy, starts, 10, 1e9)  # type: ignore[arg-type]
    assert len(rows["reward"]) == 3 + 2 + 1  # 0->1->2->3, 1->2->3, 2.5->3.5
    assert rows["terminated"].sum() == 3  # one terminal step per start, kept
    assert (rows["obs"] < 3.0).all()  # nothing continues past a predicted termination
    assert torch.equal(rows["terminated"] == 1, rows["next_obs"][:, 0] >= 3.0)
    assert stats["rollout_stop_done"] == 1.0 and stats["rollout_stop_disagree"] == 0.0


def test_rollouts_stop_at_high_disagreement_without_keeping_the_step() -> None:
    starts = torch.tensor([[-5.0], [0.0]])
    rows, stats = rollout(CountingStep(), zero_policy, starts, 4, 0.5)  # type: ignore[arg-type]
    # -5 runs 4 steps (disagreement -5..-2); 0 keeps 0->1, then s=1 > 0.5 stops it
    assert len(rows["reward"]) == 4 + 1
    assert stats["rollout_stop_disagree"] == 0.5


def test_particles_step_each_row_with_one_member() -> None:
    torch.manual_seed(0)
    codec = StateCodec(VEC, ACT)
    model = GaussianEnsemble(3, 6, codec.pred_dim + 1, (8,))
    state, action = torch.randn(7, 4), torch.rand(7, 2) * 2 - 1
    out = ModelStep(model, codec).particles(state, action)
    means = model.predict(torch.cat([state, action], dim=-1)).mean  # (K, 7, D)
    for i in range(7):
        assert torch.allclose(out.reward[i], means[i % 3, i, -1], atol=1e-5)
        expected = codec.next_state(
            state[i : i + 1], action[i : i + 1], means[i % 3, i : i + 1, :-1]
        )
        assert torch.allclose(out.next_state[i], expected[0], atol=1e-5)


# ---------------------------------------------------------------------- planner
def test_planner_finds_the_optimum_of_a_toy_quadratic_cost() -> None:
    targets = torch.tensor([[0.5, -0.3], [-0.8, 0.1], [0.2, 0.9]])

    def step(state: torch.Tensor, action: torch.Tensor) -> Step:
        # the state carries its own target: the cost is |a - target(s)|^2 at every step
        cost = (action - state).square().sum(dim=-1)
        return Step(state, -cost, torch.zeros_like(cost, dtype=torch.bool), cost * 0)

    config = MPCConfig(candidates=128, horizon=2, iterations=6, elites=12)
    planner = CEMPlanner(config, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    action, value = planner.plan(step, targets, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(action, targets, atol=0.05), action
    assert (value > -0.01).all()


def test_planner_adds_the_terminal_value() -> None:
    """A flat reward and a value that prefers states pushed right: the plan pushes right."""

    def step(state: torch.Tensor, action: torch.Tensor) -> Step:
        zero = torch.zeros(state.shape[0])
        return Step(state + action[:, :1], zero, zero.bool(), zero)

    config = MPCConfig(candidates=64, horizon=2, iterations=3, elites=8)
    planner = CEMPlanner(config, torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0]))
    g = torch.Generator().manual_seed(0)
    action, _ = planner.plan(step, torch.zeros(4, 1), value=lambda s: s[:, 0], generator=g)
    assert (action[:, 0] > 0.5).all()


# ---------------------------------------------------------------------- the learner wrapper
class FakeLearner:
    """Records the batches it gets; TD errors of the batch's size."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.last_td_error: torch.Tensor | None = None

    def update(self, batch: Batch) -> dict[str, float]:
        self.batches.append(batch)
        self.last_td_error = torch.arange(len(batch.reward), dtype=torch.float32)
        return {"loss_critic": 0.0}

    def actor_weights(self) -> dict[str, np.ndarray]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def wm_config(**extra: Any) -> WorldModelConfig:
    rollout_cfg = extra.pop("rollout", {})
    mpc = extra.pop("mpc", {})
    extra.setdefault("start_updates", 0)
    return WorldModelConfig(
        **SMALL,
        rollout=RolloutConfig(min_buffer=1, **rollout_cfg),
        mpc=MPCConfig(**mpc),
        **extra,
    )


def actor_critic() -> Any:
    config = load_config(None, ["model.hidden_sizes=[16]"])
    return build_model(config, VEC, ACT)


@pytest.mark.parametrize("real_ratio", [0.25, 0.5, 0.9])
def test_real_model_mixing_ratio_holds(real_ratio: float) -> None:
    torch.manual_seed(0)
    inner = FakeLearner()
    cfg = wm_config(rollout={"real_ratio": real_ratio, "every_updates": 1})
    learner = WorldModelLearner(inner, actor_critic(), cfg, VEC, ACT, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = linear_system(rng, 64)
        learner.update(batch._replace(reward=torch.full((64,), 123.0)))  # real rows: 123
    mixed = inner.batches[-1]
    n_real = round(64 * real_ratio)
    assert len(mixed.reward) == 64
    assert (mixed.reward[:n_real] == 123.0).all() and (mixed.reward[n_real:] != 123.0).all()
    assert len(mixed.indices) == n_real  # storage rows of the real part only
    assert learner.last_td_error is not None and len(learner.last_td_error) == n_real
    assert (mixed.weights[n_real:] == 1.0).all()
    for key in mixed.obs:
        assert mixed.obs[key].shape[0] == mixed.next_obs[key].shape[0] == 64


def test_no_model_rows_before_start_updates_and_held_out_rows_are_fixed() -> None:
    inner = FakeLearner()
    cfg = wm_config(start_updates=5, rollout={"real_ratio": 0.5, "every_updates": 1})
    learner = WorldModelLearner(inner, actor_critic(), cfg, VEC, ACT, torch.device("cpu"))
    stats = learner.update(linear_system(np.random.default_rng(0), 64))
    assert len(inner.batches[-1].indices) == 64 and stats["wm_model_share"] == 0.0
    assert "wm_val_mse" in stats and "wm_train_nll" in stats
    rows = np.arange(100_000)
    held = holdout_mask(rows, 0.1)
    assert 0.09 < held.mean() < 0.11 and np.array_equal(held, holdout_mask(rows, 0.1))


def sac_with_world_model(*sets: str) -> tuple[Any, WorldModelLearner]:
    config = load_config(
        None,
        [
            "model.hidden_sizes=[16]",
            "world_model.kind=mbpo",
            "world_model.ensemble_size=2",
            "world_model.hidden_sizes=[16]",
            "world_model.start_updates=0",
            "world_model.rollout.min_buffer=1",
            "world_model.rollout.every_updates=1",
            *sets,
        ],
    )
    model = build_model(config, VEC, ACT)
    sac = build_algorithm(config, model, torch.device("cpu"))
    learner = wrap_world_model(config.world_model, sac, model, VEC, ACT, torch.device("cpu"))
    assert isinstance(learner, WorldModelLearner)
    return sac, learner


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _, learner = sac_with_world_model()
    rng = np.random.default_rng(0)
    for _ in range(5):
        learner.update(linear_system(rng, 32))
    save_checkpoint(tmp_path / "checkpoint.pt", {"algorithm": learner.state_dict()})
    torch.manual_seed(123)
    _, restored = sac_with_world_model()
    payload = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only: tensors and data
    restored.load_state_dict(payload["algorithm"])
    assert restored.updates == learner.updates == 5
    assert len(restored.buffer) == len(learner.buffer) > 0
    assert len(restored.starts) == len(learner.starts) == 160
    for name, tensor in learner.ensemble.state_dict().items():
        assert torch.equal(tensor, restored.ensemble.state_dict()[name]), name
    for name in learner.buffer.data:
        assert torch.equal(learner.buffer.data[name], restored.buffer.data[name])
    assert restored.val == learner.val
    # the two continue identically (same RNG states, same optimizer moments)
    batch = linear_system(np.random.default_rng(1), 32)
    torch.manual_seed(7)
    a = learner.update(batch)
    torch.manual_seed(7)
    b = restored.update(batch)
    assert a["wm_train_nll"] == pytest.approx(b["wm_train_nll"])


def test_a_checkpoint_without_world_model_starts_it_fresh(tmp_path: Path) -> None:
    sac, _ = sac_with_world_model()
    _, learner = sac_with_world_model()
    learner.load_state_dict(sac.state_dict())
    assert learner.updates == 0 and len(learner.buffer) == 0
    assert STATE_KEY in learner.state_dict()


def test_guide_mode_adds_the_planner_term_to_the_actor_loss() -> None:
    torch.manual_seed(0)
    sac, learner = sac_with_world_model(
        "world_model.mpc.mode=guide", "world_model.mpc.guide_every=1"
    )
    assert sac.actor_guide is not None
    rng = np.random.default_rng(0)
    for _ in range(3):
        stats = learner.update(linear_system(rng, 32))
    assert stats["wm_guide_loss"] >= 0.0 and stats["wm_guide_weight"] == pytest.approx(1.0, 1e-3)
    assert stats["wm_plans"] == 3  # one plan per actor step
    learner.optimizer.zero_grad(set_to_none=True)
    sac.actor_optimizer.zero_grad(set_to_none=True)
    term = sac.actor_guide(linear_system(rng, 32))
    assert term is not None and term.requires_grad
    term.backward()  # the term's gradient reaches the actor (and only through it)
    assert all(p.grad is not None for p in sac.model.actor.parameters())
    assert all(p.grad is None for p in learner.ensemble.parameters())


def test_guide_weight_decays_linearly() -> None:
    mpc = MPCConfig(guide_weight=2.0, guide_weight_final=0.5, guide_decay_updates=100)
    assert mpc.guide_weight_at(0) == 2.0
    assert mpc.guide_weight_at(50) == pytest.approx(1.25)
    assert mpc.guide_weight_at(1000) == 0.5


def test_horizon_schedule() -> None:
    cfg = RolloutConfig(horizon=1, horizon_final=5, horizon_updates=100)
    assert [cfg.horizon_at(u) for u in (0, 50, 100, 10_000)] == [1, 3, 5, 5]


def test_explore_mode_ships_the_model_with_the_actor_and_the_worker_plans() -> None:
    torch.manual_seed(0)
    _, learner = sac_with_world_model(
        "world_model.mpc.mode=explore", "world_model.mpc.explore_prob=1.0"
    )
    learner.update(linear_system(np.random.default_rng(0), 32))
    weights = learner.actor_weights()
    actor_arrays, model_arrays = split_weights(weights)
    assert model_arrays and all(not k.startswith(WEIGHTS_PREFIX) for k in actor_arrays)
    assert all(isinstance(v, np.ndarray) for v in weights.values())  # raw arrays: no pickle
    # the wire: msgpack header + raw frames, no pickle; the decoded arrays are read-only
    meta = {"version": 1, "updates": 1, "session": "0123456789abcdef"}
    frames = [bytes(f) for f in encode(Message("weights", meta, weights))]
    weights = dict(decode(frames).arrays)
    actor_arrays, model_arrays = split_weights(weights)
    explorer = MPCExplorer(learner.config, VEC, ACT, seed=0)
    actor = learner.model.actor
    obs = np.zeros(4, np.float32)
    assert explorer.maybe_act(obs, actor) is None  # no model weights yet
    explorer.load(model_arrays)
    for name, tensor in learner.ensemble.state_dict().items():
        assert torch.equal(explorer.ensemble.state_dict()[name], tensor.cpu()), name
    action = explorer.maybe_act(obs, actor)
    assert action is not None and action.shape == (2,) and np.all(np.abs(action) <= 1.0)
    assert explorer.stats()["mpc_frac"] == pytest.approx(0.5)


def test_tensor_ring_wraps_and_keeps_the_newest_rows() -> None:
    ring = TensorRing({"x": ()}, 4, torch.device("cpu"))
    ring.add({"x": torch.arange(3.0)})
    ring.add({"x": torch.arange(3.0, 6.0)})
    assert len(ring) == 4 and sorted(ring.data["x"].tolist()) == [2.0, 3.0, 4.0, 5.0]
    ring.add({"x": torch.arange(10.0, 20.0)})
    assert sorted(ring.data["x"].tolist()) == [16.0, 17.0, 18.0, 19.0]


# ---------------------------------------------------------------------- config
def test_world_model_is_off_by_default() -> None:
    config = load_config(None)
    assert config.world_model.kind == "none"
    model = build_model(config, VEC, ACT)
    sac = build_algorithm(config, model, torch.device("cpu"))
    assert wrap_world_model(config.world_model, sac, model, VEC, ACT, torch.device("cpu")) is sac


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["world_model.kind=mbpx"], "world_model.kind"),
        (["world_model.kind=mbpo", "world_model.rollout.real_ratio=0"], "real_ratio"),
        (["world_model.kind=mbpo", "world_model.rollout.horizn=3"], "world_model.rollout.horizn"),
        (["world_model.kind=mbpo", "world_model.mpc.mode=plan"], "world_model.mpc.mode"),
        (["world_model.kind=mbpo", "world_model.mpc.elites=99"], "world_model.mpc.elites"),
        (["world_model.kind=mbpo", "world_model.rollout.horizon_final=5"], "horizon_updates"),
        (["world_model.kind=mbpo", "world_model.action_keys=[speed]"], "action_keys"),
        (
            ["world_model.kind=mbpo", "world_model.mpc.mode=explore", "worker.envs=2"],
            "config: world_model.mpc.mode explore",  # a cross-section check: no empty key
        ),
    ],
)
def test_bad_world_model_config_fails_naming_the_key(sets: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, sets)


def test_guide_needs_a_learner_with_the_hook() -> None:
    cfg = wm_config(mpc={"mode": "guide"})
    with pytest.raises(ValueError, match="world_model.mpc.mode guide"):
        WorldModelLearner(FakeLearner(), actor_critic(), cfg, VEC, ACT, torch.device("cpu"))


# ---------------------------------------------------------------------- held-out errors
class ExactStep:
    """A perfect model of ``s' = s + a[0]`` (1-D state), reward ``s``."""

    def __init__(self) -> None:
        self.codec = StateCodec(spaces.Box(-100.0, 100.0, (1,), np.float32), ACT)

    def expected(self, state: torch.Tensor, action: torch.Tensor) -> Step:
        zero = torch.zeros(state.shape[0])
        return Step(state + action[:, :1], state[:, 0], zero.bool(), zero)


def test_open_loop_errors_are_zero_for_a_perfect_model_and_scaled_by_the_copy_baseline() -> None:
    actions = torch.full((12, 2), 0.5)
    states = torch.arange(13.0)[:, None] * 0.5
    episode = Episode(states, actions, states[:-1, 0])
    errors = open_loop_errors(ExactStep(), [episode], (1, 10))  # type: ignore[arg-type]
    assert errors["rmse_1"] == pytest.approx(0.0) and errors["rmse_10"] == pytest.approx(0.0)
    assert errors["copy_rmse_1"] == pytest.approx(0.5) and errors["copy_rmse_10"] == 5.0
    assert errors["n_1"] == 12 and errors["n_10"] == 3 and errors["reward_rmse"] == 0.0


def test_held_out_errors_on_the_simulator() -> None:
    config = load_config(None, ["world_model.kind=mbpo", "world_model.hidden_sizes=[16]"])
    assert isinstance(config.world_model, WorldModelConfig)
    from tmrl2.envs.factory import build_env

    env = build_env(config)
    model = build_model(config, env.observation_space, env.action_space)
    codec = StateCodec(
        env.observation_space,
        env.action_space,  # type: ignore[arg-type]
        config.world_model.history_keys,
        config.world_model.action_keys,
    )
    env.close()
    episodes = collect_episodes(config, model.actor, codec, 40, seed=5)
    assert sum(ep.actions.shape[0] for ep in episodes) == 40
    ensemble = GaussianEnsemble(2, codec.obs_dim + codec.act_dim, codec.pred_dim + 1, (16,))
    errors = open_loop_errors(ModelStep(ensemble, codec), episodes, (1, 10))
    assert np.isfinite(errors["rmse_1"]) and np.isfinite(errors["rmse_10"])
    # the action history is copied, never predicted: the newest frame equals the action
    prev = codec.unflatten(episodes[0].states)["prev_actions"]
    assert torch.allclose(prev[1:, -1], episodes[0].actions.clamp(-1, 1))

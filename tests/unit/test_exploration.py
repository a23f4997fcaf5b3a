"""Exploration in the trainer: RND, ICM, the bonus in the critic target, checkpoints, config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tmrl2.checkpoint import load_checkpoint, save_checkpoint
from tmrl2.config.load import ConfigError, load_config
from tmrl2.exploration.base import IntrinsicConfig
from tmrl2.exploration.features import RunningMeanStd
from tmrl2.exploration.icm import ICM, ICMConfig
from tmrl2.exploration.learner import STATE_KEY, ExploringLearner, wrap_learner
from tmrl2.exploration.rnd import RND, RNDConfig
from tmrl2.memory.batch import Batch
from tmrl2.roles.components import build_algorithm, build_model
from tmrl2.telemetry.episodes import episode_stats

torch.set_num_threads(1)

VEC = spaces.Box(-10.0, 10.0, (4,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = {"feature_dim": 16, "hidden_sizes": (32,)}


def batch(obs: np.ndarray, next_obs: np.ndarray | None = None, action: Any = None) -> Batch:
    """A batch of ``Box`` observations (key ``obs``)."""
    n = len(obs)
    next_obs = obs if next_obs is None else next_obs
    action = np.zeros((n, 2), np.float32) if action is None else action
    return Batch(
        obs={"obs": torch.as_tensor(obs, dtype=torch.float32)},
        action=torch.as_tensor(action, dtype=torch.float32),
        reward=torch.zeros(n),
        next_obs={"obs": torch.as_tensor(next_obs, dtype=torch.float32)},
        terminated=torch.zeros(n),
        weights=torch.ones(n),
        indices=np.arange(n),
    )


def test_running_mean_std_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (1000, 3)).astype(np.float32)
    stats = RunningMeanStd((3,))
    for part in np.split(data, 10):
        stats.update(torch.as_tensor(part))
    assert np.allclose(stats.mean.numpy(), data.mean(0), atol=1e-3)
    assert np.allclose(stats.var.numpy(), data.var(0), rtol=1e-3)


def test_rnd_error_falls_on_states_it_trains_on_and_stays_high_on_new_ones() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rnd = RND(RNDConfig(lr=1e-3, **SMALL), VEC, ACT)

    def seen(n: int = 256) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (n, 4)).astype(np.float32)

    def error(obs: np.ndarray) -> float:
        return float(rnd.error({"obs": torch.as_tensor(obs)}).detach().mean())

    new = rng.uniform(4.0, 6.0, (256, 4)).astype(np.float32)
    rnd.whitener.update({"obs": torch.as_tensor(seen(2048))})
    before = error(seen())
    for _ in range(150):
        rnd.update(batch(seen(64)))
    after, novel = error(seen()), error(new)
    assert after < 0.2 * before, (before, after)
    assert novel > 10 * after, (novel, after)


def test_rnd_and_icm_read_image_and_lidar_observations() -> None:
    torch.manual_seed(0)
    obs_space = spaces.Dict(
        {
            "image": spaces.Box(0, 255, (2, 24, 24), np.uint8),
            "lidar": spaces.Box(0.0, 1.0, (5,), np.float32),
        }
    )
    rng = np.random.default_rng(0)
    n = 16

    def obs() -> dict[str, torch.Tensor]:
        return {
            "image": torch.as_tensor(rng.integers(0, 255, (n, 2, 24, 24), dtype=np.uint8)),
            "lidar": torch.as_tensor(rng.uniform(0, 1, (n, 5)).astype(np.float32)),
        }

    b = batch(np.zeros((n, 4), np.float32))._replace(obs=obs(), next_obs=obs())
    for module in (
        RND(RNDConfig(**SMALL), obs_space, ACT),
        ICM(ICMConfig(**SMALL), obs_space, ACT),
    ):
        reward, stats = module.update(b)
        assert (
            reward.shape == (n,)
            and bool(torch.isfinite(reward).all())
            and bool((reward >= 0).all())
        )
        assert np.isfinite(stats["predictor_loss"])
        assert set(module.whitener.stats) == {"image", "vectors"}


def test_icm_inverse_model_recovers_actions_on_a_toy_system() -> None:
    """``s' = s + 0.5 a``: the action is readable from the pair of states."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    icm = ICM(ICMConfig(lr=3e-3, **SMALL), VEC, ACT)

    def transitions(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = rng.uniform(-2.0, 2.0, (n, 4)).astype(np.float32)
        a = rng.uniform(-1.0, 1.0, (n, 2)).astype(np.float32)
        s2 = s.copy()
        s2[:, :2] += 0.5 * a
        return s, s2, a

    first = None
    for _ in range(500):
        s, s2, a = transitions(64)
        _, stats = icm.update(batch(s, s2, a))
        first = first if first is not None else stats["inverse_loss"]
    s, s2, a = transitions(256)
    predicted = icm.predict_action({"obs": torch.as_tensor(s)}, {"obs": torch.as_tensor(s2)})
    error = float((predicted - torch.as_tensor(a)).abs().mean())
    assert error < 0.12, error  # guessing 0 is off by 0.5 on average
    assert first is not None and stats["inverse_loss"] < 0.2 * first


def test_icm_forward_error_is_the_reward_and_falls_where_it_trains() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    icm = ICM(ICMConfig(**SMALL), VEC, ACT)
    s = rng.uniform(-1, 1, (64, 4)).astype(np.float32)
    a = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    first, _ = icm.update(batch(s, s + 0.1, a))
    for _ in range(300):
        last, _ = icm.update(batch(s, s + 0.1, a))
    assert float(last.mean()) < 0.5 * float(first.mean())


class SpyLearner:
    """Records the rewards its updates see; a Learner that learns nothing."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []
        self.last_td_error: torch.Tensor | None = None
        self.loaded: dict[str, Any] | None = None

    def update(self, b: Batch) -> dict[str, float]:
        self.seen.append(b.reward.clone())
        return {"loss_critic": 0.0}

    def actor_weights(self) -> dict[str, np.ndarray]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"updates": len(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded = state


def test_the_bonus_reaches_the_learners_batch_only_weighted_and_normalized() -> None:
    torch.manual_seed(0)
    spy = SpyLearner()
    config = RNDConfig(weight=0.5, **SMALL)
    learner = ExploringLearner(spy, RND(config, VEC, ACT), config)
    rng = np.random.default_rng(0)
    b = batch(rng.uniform(-1, 1, (32, 4)).astype(np.float32))
    b = b._replace(reward=torch.ones(32))
    stats = learner.update(b)
    assert torch.equal(b.reward, torch.ones(32))  # the caller's batch (the memory's) untouched
    bonus = spy.seen[0] - 1.0
    assert bool((bonus > 0).all())
    # normalize_reward: mean -> the bonus averages the weight
    assert float(bonus.mean()) == pytest.approx(0.5, rel=1e-3)
    assert stats["intrinsic_mean"] == pytest.approx(1.0, rel=1e-3)
    assert stats["intrinsic_max"] >= stats["intrinsic_mean"]
    assert stats["intrinsic_weight"] == 0.5 and "predictor_loss" in stats
    assert stats["loss_critic"] == 0.0


class CountingRND(RND):
    """RND that counts its training steps and its no-grad rewards."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.trained, self.rewarded = 0, 0

    def update(self, b: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        self.trained += 1
        return super().update(b)

    def reward(self, b: Batch) -> torch.Tensor:
        self.rewarded += 1
        return super().reward(b)


def test_the_module_trains_every_kth_batch_and_scores_every_batch() -> None:
    torch.manual_seed(0)
    spy = SpyLearner()
    config = RNDConfig(weight=1.0, train_every=3, **SMALL)
    module = CountingRND(config, VEC, ACT)
    learner = ExploringLearner(spy, module, config)
    rng = np.random.default_rng(0)
    b = batch(rng.uniform(-1, 1, (16, 4)).astype(np.float32))
    before = [p.detach().clone() for p in module.predictor.parameters()]
    learner.update(b)  # update 0: a training step
    after_train = [p.detach().clone() for p in module.predictor.parameters()]
    assert any(not torch.equal(x, y) for x, y in zip(before, after_train, strict=True))
    count = float(learner.reward_stats.count)
    stats = [learner.update(b) for _ in range(2)]  # updates 1, 2: scored, not trained
    for x, y in zip(after_train, module.predictor.parameters(), strict=True):
        assert torch.equal(x, y)
    assert float(learner.reward_stats.count) == count  # the scale moves with the module only
    assert (module.trained, module.rewarded) == (1, 2)
    # every batch got a bonus, and the logged module terms are those of its last training step
    assert all(bool((seen > 0).all()) for seen in spy.seen) and len(spy.seen) == 3
    assert all("predictor_loss" in s for s in stats)
    learner.update(b)
    assert (module.trained, module.rewarded) == (2, 2)
    with torch.no_grad():
        expected = module.error(b.next_obs)
    assert torch.allclose(module.reward(b), expected) and not module.reward(b).requires_grad


def test_icm_reward_is_its_forward_error_without_training() -> None:
    torch.manual_seed(0)
    icm = ICM(ICMConfig(**SMALL), VEC, ACT)
    rng = np.random.default_rng(1)
    s = rng.uniform(-1, 1, (32, 4)).astype(np.float32)
    a = rng.uniform(-1, 1, (32, 2)).astype(np.float32)
    b = batch(s, s + 0.1, a)
    icm.whitener.update(b.obs)
    scored = icm.reward(b)
    params = [p.detach().clone() for p in icm.nets.parameters()]
    trained, _ = icm.update(b)  # the errors before its step are the same rewards
    assert torch.allclose(scored, trained, rtol=1e-4, atol=1e-6) and not scored.requires_grad
    assert any(not torch.equal(x, y) for x, y in zip(params, icm.nets.parameters(), strict=True))


def test_weight_decays_linearly_then_holds() -> None:
    config = RNDConfig(weight=1.0, weight_final=0.0, decay_updates=100)
    assert [config.weight_at(u) for u in (0, 50, 100, 1000)] == [1.0, 0.5, 0.0, 0.0]
    assert RNDConfig(weight=0.3).weight_at(10**9) == 0.3
    spy = SpyLearner()
    learner = ExploringLearner(
        spy,
        RND(RNDConfig(**SMALL, weight=1.0, weight_final=0.0, decay_updates=2), VEC, ACT),
        RNDConfig(weight=1.0, weight_final=0.0, decay_updates=2),
    )
    weights = [
        learner.update(batch(np.ones((4, 4), np.float32)))["intrinsic_weight"] for _ in range(3)
    ]
    assert weights == [1.0, 0.5, 0.0]


def _sac(config_sets: list[str]) -> tuple[Any, Any]:
    config = load_config(None, ["model.hidden_sizes=[8]", "algorithm.batch_size=8", *config_sets])
    model = build_model(config, VEC, ACT)
    learner = build_algorithm(config, model, torch.device("cpu"))
    return config, wrap_learner(config.exploration, learner, VEC, ACT, torch.device("cpu"))


@pytest.mark.parametrize("kind", ["rnd", "icm"])
def test_checkpoints_restore_the_exploration_modules(kind: str, tmp_path: Path) -> None:
    sets = [
        f"exploration.kind={kind}",
        "exploration.feature_dim=8",
        "exploration.hidden_sizes=[16]",
    ]
    torch.manual_seed(0)
    _, learner = _sac(sets)
    assert isinstance(learner, ExploringLearner)
    rng = np.random.default_rng(0)
    b = batch(
        rng.uniform(-1, 1, (8, 4)).astype(np.float32), rng.uniform(-1, 1, (8, 4)).astype(np.float32)
    )
    for _ in range(8):  # the next update, 8, is a training step of the module (train_every 4)
        learner.update(b)
    save_checkpoint(tmp_path / "checkpoint.pt", {"algorithm": learner.state_dict()})
    torch.manual_seed(123)  # another random target: only the checkpoint can make them equal
    _, restored = _sac(sets)
    assert isinstance(restored, ExploringLearner)
    payload = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only: tensors and data
    restored.load_state_dict(payload["algorithm"])
    assert restored.updates == learner.updates == 8
    assert torch.equal(restored.reward_stats.mean, learner.reward_stats.mean)
    for key, value in learner.intrinsic.nets.state_dict().items():  # type: ignore[attr-defined]
        assert torch.equal(value, restored.intrinsic.nets.state_dict()[key]), key  # type: ignore[attr-defined]
    torch.manual_seed(7)
    one = learner.update(b)
    torch.manual_seed(7)
    two = restored.update(b)
    assert one["intrinsic_mean"] == pytest.approx(two["intrinsic_mean"])
    assert one["predictor_loss"] == pytest.approx(two["predictor_loss"])


def test_a_checkpoint_of_other_module_sizes_fails_naming_the_keys() -> None:
    small = ["exploration.kind=icm", "exploration.feature_dim=8", "exploration.hidden_sizes=[16]"]
    _, saved = _sac(small)
    _, other = _sac([*small[:2], "exploration.hidden_sizes=[32]"])
    with pytest.raises(ValueError, match="exploration.feature_dim, exploration.hidden_sizes"):
        other.load_state_dict(saved.state_dict())
    _, same = _sac(small)
    same.load_state_dict(saved.state_dict())  # the same sizes load


def test_a_checkpoint_without_exploration_state_starts_the_module_fresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, plain = _sac([])
    _, learner = _sac(["exploration.kind=rnd"])
    assert not isinstance(plain, ExploringLearner) and STATE_KEY not in plain.state_dict()
    learner.load_state_dict(plain.state_dict())  # resuming a run that had none
    assert "starts fresh" in caplog.text
    plain.load_state_dict(learner.state_dict())  # and turning it off again


def test_wrap_learner_leaves_other_kinds_alone() -> None:
    for kind in ("none", "param_noise"):
        config, learner = _sac([f"exploration.kind={kind}"])
        assert not isinstance(learner, ExploringLearner), kind


def test_worker_values_become_explore_metrics_and_bad_ones_are_dropped() -> None:
    record = {"exploration": {"noise_std": 0.1, "bad": float("nan"), "flag": True, "s": "x"}}
    assert episode_stats(record) == {"explore/noise_std": 0.1}
    assert episode_stats({"exploration": [1, 2]}) == {} and episode_stats({}) == {}


def _error(sets: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, sets)
    return str(info.value)


class NoSide:
    """An import-path component that does not say where it runs."""

    Config = IntrinsicConfig


class Custom:
    """A user's own intrinsic reward: constant novelty."""

    Config = IntrinsicConfig
    runs_in: ClassVar[str] = "trainer"

    def __init__(self, config: Any, obs_space: Any, action_space: Any, device: Any) -> None:
        self.calls = 0

    def update(self, b: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        self.calls += 1
        return torch.full((len(b.indices),), 2.0), {"custom": 1.0}

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = state["calls"]


def test_config_errors_name_the_key() -> None:
    assert "exploration.kind: unknown exploration 'rdn'; did you mean 'rnd'?" in _error(
        ["exploration.kind=rdn"]
    )
    assert "exploration.weight" in _error(["exploration.kind=rnd", "exploration.weight=-1"])
    assert "exploration.decay_updates" in _error(
        ["exploration.kind=rnd", "exploration.weight_final=0.0"]
    )
    assert "exploration.wieght: unknown key; did you mean 'weight'?" in _error(
        ["exploration.kind=icm", "exploration.wieght=1"]
    )
    assert "exploration.target_distance" in _error(
        ["exploration.kind=param_noise", "exploration.target_distance=0"]
    )
    assert "exploration.adapt_factor" in _error(
        ["exploration.kind=param_noise", "exploration.adapt_factor=0.9"]
    )
    assert "exploration.forward_weight" in _error(
        ["exploration.kind=icm", "exploration.forward_weight=2"]
    )
    message = _error([f"exploration.kind={__name__}:NoSide"])
    assert "exploration.kind" in message and "runs_in" in message
    message = _error(["exploration.kind=tmrl2.algos.sac:SAC"])
    assert "exploration.kind" in message and "runs_in" in message


def test_an_import_path_selects_your_own_component() -> None:
    sets = [f"exploration.kind={__name__}:Custom", "exploration.weight=1"]
    message = _error(sets)  # no reward(): it cannot skip training steps (train_every 4)
    assert "exploration.train_every" in message and "reward(batch)" in message
    config = load_config(None, [*sets, "exploration.train_every=1"])
    spy = SpyLearner()
    learner = wrap_learner(config.exploration, spy, VEC, ACT, torch.device("cpu"))  # type: ignore[arg-type]
    assert isinstance(learner, ExploringLearner)
    stats = learner.update(batch(np.zeros((4, 4), np.float32)))
    assert stats["custom"] == 1.0 and torch.allclose(spy.seen[0], torch.ones(4), rtol=1e-3)


def test_default_is_none_and_every_kind_loads() -> None:
    assert load_config().exploration.kind == "none"
    for kind, cls in (("rnd", RNDConfig), ("icm", ICMConfig)):
        assert isinstance(load_config(None, [f"exploration.kind={kind}"]).exploration, cls)

"""SAC: losses on hand-computed cases, target averaging, temperature, checkpoints, learning."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from learnkit import ACTION_SPACE as TASK_ACTION
from learnkit import OBS_SPACE as TASK_OBS
from learnkit import target_reaching_memory, worst_action_error
from pydantic import ValidationError

from tmrl2.algos.networks import MLPActorCritic, MLPConfig
from tmrl2.algos.sac import (
    SAC,
    STAT_NAMES,
    SACConfig,
    actor_loss,
    alpha_loss,
    critic_loss,
    td_target,
)
from tmrl2.memory.batch import Batch

torch.set_num_threads(1)

OBS_SPACE = spaces.Dict(speed=spaces.Box(0, np.inf, (1,)), lidar=spaces.Box(0, 1, (1, 5)))
ACTION_SPACE = spaces.Box(-1, 1, (2,))
SMALL = MLPConfig(hidden_sizes=(16, 16))


def make_sac(config: SACConfig | None = None, seed: int = 0) -> SAC:
    torch.manual_seed(seed)
    return SAC(config or SACConfig(), MLPActorCritic(SMALL, OBS_SPACE, ACTION_SPACE))


def make_batch(size: int = 32, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)

    def obs() -> dict[str, torch.Tensor]:
        return {
            "speed": torch.rand(size, 1, generator=gen),
            "lidar": torch.rand(size, 1, 5, generator=gen),
        }

    return Batch(
        obs=obs(),
        action=torch.rand(size, 2, generator=gen) * 2 - 1,
        reward=torch.randn(size, generator=gen),
        next_obs=obs(),
        terminated=(torch.rand(size, generator=gen) < 0.3).float(),
        weights=torch.ones(size),
        indices=np.arange(size),
    )


def test_td_target_by_hand() -> None:
    target = td_target(
        reward=torch.tensor([1.0, 2.0]),
        terminated=torch.tensor([0.0, 1.0]),
        next_q=torch.tensor([[3.0, 5.0], [4.0, 1.0]]),
        next_logp=torch.tensor([-1.0, 2.0]),
        alpha=0.5,
        gamma=0.9,
    )
    # 1 + 0.9 * (min(3, 4) - 0.5 * -1) = 4.15; the second is terminal: its reward alone.
    torch.testing.assert_close(target, torch.tensor([4.15, 2.0]))


def test_critic_loss_by_hand() -> None:
    q = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    target = torch.tensor([2.0, 1.0])
    # errors: critic 0 (-1, 1), critic 1 (1, -1); weighted squares (1, 2) each; means 1.5 + 1.5
    loss = critic_loss(q, target, weights=torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(loss, torch.tensor(3.0))
    torch.testing.assert_close(critic_loss(q, target, torch.ones(2)), torch.tensor(2.0))


def test_actor_loss_by_hand() -> None:
    logp = torch.tensor([-1.0, 0.5])
    q_pi = torch.tensor([[1.0, 4.0], [2.0, 3.0]])
    # mean(0.2 * -1 - min(1, 2), 0.2 * 0.5 - min(4, 3)) = mean(-1.2, -2.9)
    torch.testing.assert_close(actor_loss(logp, q_pi, alpha=0.2), torch.tensor(-2.05))


def test_alpha_loss_by_hand() -> None:
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    loss = alpha_loss(log_alpha, torch.tensor([-1.0, -3.0]), target_entropy=-2.0)
    torch.testing.assert_close(loss, torch.tensor(4 * math.log(0.5)))
    loss.backward()
    torch.testing.assert_close(log_alpha.grad, torch.tensor(4.0))  # entropy 2 > -2: alpha falls


def test_update_critic_loss_matches_a_step_by_step_recomputation() -> None:
    config = SACConfig(gamma=0.9, alpha_init=0.3)
    sac, batch = make_sac(config), make_batch()
    actor, critic = sac.model.actor, sac.model.critic
    with torch.no_grad():
        torch.manual_seed(123)  # the update draws the next actions first
        next_action, next_logp = actor(batch.next_obs)
        q_next = sac.target_critic(batch.next_obs, next_action)
        soft = torch.minimum(q_next[0], q_next[1]) - 0.3 * next_logp
        target = batch.reward + 0.9 * (1 - batch.terminated) * soft
        q = critic(batch.obs, batch.action)
        expected = ((q[0] - target) ** 2).mean() + ((q[1] - target) ** 2).mean()
    torch.manual_seed(123)
    stats = sac.update(batch)
    assert stats["loss_critic"] == pytest.approx(float(expected), rel=1e-5)
    assert stats["q_mean"] == pytest.approx(float(q.mean()), rel=1e-5)


def test_update_returns_named_floats_and_counts() -> None:
    sac = make_sac()
    stats = sac.update(make_batch())
    assert tuple(stats) == STAT_NAMES
    assert all(isinstance(value, float) and math.isfinite(value) for value in stats.values())
    assert sac.updates == 1
    assert all(p.requires_grad for p in sac.model.critic.parameters())
    assert not any(p.requires_grad for p in sac.target_critic.parameters())


def test_target_moves_by_exactly_polyak() -> None:
    sac = make_sac(SACConfig(polyak=0.9))
    before = [p.detach().clone() for p in sac.target_critic.parameters()]
    sac.update(make_batch())
    for old, new, online in zip(
        before, sac.target_critic.parameters(), sac.model.critic.parameters(), strict=True
    ):
        assert not torch.equal(old, online)
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online, rtol=0, atol=1e-7)


@pytest.mark.parametrize(("target_entropy", "falls"), [(-10.0, True), (10.0, False)])
def test_alpha_follows_the_entropy_target(target_entropy: float, falls: bool) -> None:
    sac = make_sac(SACConfig(target_entropy=target_entropy, lr_alpha=1e-2))
    start = sac.alpha
    stats = sac.update(make_batch())
    assert (stats["alpha"] < start) == falls
    assert stats["alpha"] == pytest.approx(sac.alpha)


def test_fixed_alpha() -> None:
    sac = make_sac(SACConfig(learn_alpha=False, alpha_init=0.05))
    assert sac.alpha_optimizer is None
    stats = sac.update(make_batch())
    assert stats["loss_alpha"] == 0.0 and sac.alpha == pytest.approx(0.05)
    assert sac.target_entropy == -2.0  # -action_dim by default


def test_optimizer_settings_are_used() -> None:
    sac = make_sac(SACConfig(optimizer="adamw", betas=(0.5, 0.6), weight_decay=1e-3))
    assert isinstance(sac.actor_optimizer, torch.optim.AdamW)
    for optimizer in (sac.actor_optimizer, sac.critic_optimizer, sac.alpha_optimizer):
        assert optimizer is not None and optimizer.param_groups[0]["betas"] == (0.5, 0.6)
    assert sac.critic_optimizer.param_groups[0]["weight_decay"] == 1e-3
    with pytest.raises(ValidationError):
        SACConfig(betas=(0.9, 1.0))


def test_gradient_clipping() -> None:
    sac = make_sac(SACConfig(grad_clip_norm=1e-3))
    sac.update(make_batch())
    for params in (sac.model.critic.parameters(), sac.model.actor.parameters()):
        grads = [p.grad for p in params if p.grad is not None]
        assert (
            grads
            and float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) <= 1.01e-3
        )


def test_state_dict_round_trip_through_torch_save() -> None:
    trained = make_sac(seed=0)
    for step in range(3):
        trained.update(make_batch(seed=step))
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    restored = make_sac(seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.updates == 3 and restored.alpha == trained.alpha
    for name, array in trained.actor_weights().items():
        np.testing.assert_array_equal(restored.actor_weights()[name], array)
    torch.manual_seed(7)
    expected = trained.update(make_batch(seed=9))
    torch.manual_seed(7)
    assert restored.update(make_batch(seed=9)) == expected


def test_sac_learns_a_one_step_target_reaching_task() -> None:
    """Reward -(a - 0.8 o)^2, episodes of one step: the mean action must go to 0.8 o."""
    torch.manual_seed(0)
    memory = target_reaching_memory()
    config = SACConfig(lr_actor=3e-3, lr_critic=3e-3, lr_alpha=3e-3, batch_size=128)
    model = MLPActorCritic(MLPConfig(hidden_sizes=(32, 32)), TASK_OBS, TASK_ACTION)
    sac = SAC(config, model)
    assert worst_action_error(sac.model.actor) > 0.3
    for _ in range(400):
        sac.update(memory.sample(config.batch_size))
    assert worst_action_error(sac.model.actor) < 0.1


def test_td_target_uses_per_sample_discounts_of_n_step_rows() -> None:
    from tmrl2.algos.sac import td_target

    reward = torch.tensor([1.0, 1.0, 1.0])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    next_q = torch.tensor([[2.0, 4.0, 4.0], [3.0, 5.0, 5.0]])
    next_logp = torch.zeros(3)
    discount = torch.tensor([0.5, 0.25, 0.5])  # gamma^k with different k per row
    target = td_target(reward, terminated, next_q, next_logp, 0.0, discount)
    assert torch.allclose(target, torch.tensor([1.0 + 0.5 * 2.0, 1.0 + 0.25 * 4.0, 1.0]))

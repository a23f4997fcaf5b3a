"""REDQ: the batched ensemble, the random-subset target, the mean-critic policy loss, the
policy delay; the SAC update's delay and AMP switches on a CPU."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from test_sac import ACTION_SPACE, OBS_SPACE, SMALL, make_batch, make_sac

from tmrl2.algos.networks import MLPActorCritic, QEnsemble
from tmrl2.algos.redq import REDQ, REDQConfig
from tmrl2.algos.sac import SACConfig, actor_loss, td_target

torch.set_num_threads(1)


def make_redq(**kwargs: object) -> REDQ:
    torch.manual_seed(0)
    model = MLPActorCritic(SMALL, OBS_SPACE, ACTION_SPACE)
    return REDQ(REDQConfig(**kwargs), model)  # type: ignore[arg-type]


def test_mean_critic_policy_loss_by_hand() -> None:
    logp = torch.tensor([-1.0, 0.5])
    q_pi = torch.tensor([[1.0, 2.0], [3.0, -2.0], [5.0, 0.0]])  # 3 critics, 2 samples
    # mean over critics: [3, 0]; loss = mean(0.1 * logp - [3, 0]) = mean([-3.1, 0.05])
    assert actor_loss(logp, q_pi, 0.1, reduce="mean").item() == pytest.approx(-1.525)
    # SAC's min over critics: [1, -2]; mean(0.1 * logp - [1, -2]) = mean([-1.1, 2.05])
    assert actor_loss(logp, q_pi, 0.1).item() == pytest.approx(0.475)


def test_subset_target_by_hand() -> None:
    # two target critics drawn out of the ensemble: the min over those two only
    next_q = torch.tensor([[4.0, 1.0], [2.0, 3.0]])
    target = td_target(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), next_q,
                       torch.tensor([0.5, 0.5]), 0.2, 0.9)  # fmt: skip
    # sample 0: 1 + 0.9 * (min(4, 2) - 0.2 * 0.5) = 2.71; sample 1: terminal -> 0
    assert target.tolist() == pytest.approx([2.71, 0.0])


def test_batched_ensemble_equals_separate_critics_and_subsets() -> None:
    torch.manual_seed(0)
    ens = QEnsemble(SMALL, OBS_SPACE, ACTION_SPACE, n=10)
    batch = make_batch(8)
    all_q = ens(batch.obs, batch.action)
    assert all_q.shape == (10, 8)
    x = torch.cat([ens.flatten(batch.obs), batch.action], dim=-1)
    for i in range(10):  # member i as an ordinary MLP
        h = x
        for k, layer in enumerate(ens.q.linear_layers):
            h = h @ layer.weight[i] + layer.bias[i, 0]
            if k < len(ens.q.linear_layers) - 1:
                h = torch.relu(h)
        assert torch.allclose(all_q[i], h.squeeze(-1), atol=1e-5)
    members = torch.tensor([7, 2])
    assert torch.allclose(ens(batch.obs, batch.action, members), all_q[members], atol=1e-6)


def test_redq_resizes_the_model_and_draws_m_of_n_targets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    algo = make_redq(n_critics=6, m_target=2, policy_delay=1)
    assert algo.model.critic.n_critics == 6 and algo.target_critic.n_critics == 6
    seen: list[torch.Tensor] = []
    forward = algo.target_critic.forward

    def spy(obs: object, action: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(members)  # type: ignore[arg-type]
        return forward(obs, action, members)  # type: ignore[arg-type]

    monkeypatch.setattr(algo.target_critic, "forward", spy)
    for seed in range(20):
        algo.update(make_batch(16, seed))
    assert all(m is not None and len(m) == 2 and len(set(m.tolist())) == 2 for m in seen)
    assert len({tuple(sorted(m.tolist())) for m in seen}) > 3  # different subsets each time


def test_policy_delay_updates_the_actor_every_g_critic_steps() -> None:
    algo = make_redq(n_critics=4, m_target=2, policy_delay=3)
    actor_w = algo.model.actor.head.weight
    critic_w = algo.model.critic.q.linear_layers[0].weight
    history = []
    for seed in range(6):
        before_a, before_c = actor_w.clone(), critic_w.clone()
        algo.update(make_batch(16, seed))
        history.append((not torch.equal(before_a, actor_w), not torch.equal(before_c, critic_w)))
    assert [a for a, _ in history] == [False, False, True, False, False, True]
    assert all(c for _, c in history)  # the critics step every time


def test_sac_policy_delay_and_fp32_on_cpu() -> None:
    algo = make_sac(SACConfig(policy_delay=2, amp="bf16"))
    assert algo.amp_dtype is None  # mixed precision is for CUDA only
    terms = [algo.update(make_batch(16, s))["loss_actor"] for s in range(4)]
    assert terms[0] == 0.0 and terms[1] != 0.0 and terms[2] == terms[1]


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="m_target"):
        REDQConfig(n_critics=3, m_target=4)
    with pytest.raises(ValidationError):
        SACConfig(amp="fp8")  # type: ignore[arg-type]


def test_state_dict_round_trip_restores_rng_and_ensemble() -> None:
    algo = make_redq(n_critics=5, m_target=2, policy_delay=2)
    for s in range(3):
        algo.update(make_batch(16, s))
    state = algo.state_dict()
    after = [torch.rand(3) for _ in range(2)]
    other = make_redq(n_critics=5, m_target=2, policy_delay=2)
    other.load_state_dict(state)
    assert torch.equal(torch.rand(3), after[0])  # the RNG continues where it was saved
    assert other.updates == 3
    for a, b in zip(algo.model.critic.parameters(), other.model.critic.parameters(), strict=True):
        assert torch.equal(a, b)

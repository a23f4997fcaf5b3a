"""Device placement: the critics (and their targets) on another device than the actor.

This machine has no second accelerator, so the split is exercised between ``cpu`` and
``cpu:0``: torch treats them as different devices (every cross-device copy and the gradient's
way back through the action run), while the numbers must equal a learner on one device.
"""

from __future__ import annotations

import pytest
import torch
from test_cnn import ACT, OBS
from test_cnn import SMALL as CNN_SMALL
from test_sac import ACTION_SPACE, OBS_SPACE, SMALL, make_batch

from tmrl2.algos.cnn import CNNActorCritic
from tmrl2.algos.networks import MLPActorCritic
from tmrl2.algos.redq import REDQ, REDQConfig
from tmrl2.algos.sac import SAC, SACConfig
from tmrl2.config.load import load_config
from tmrl2.roles.components import build_algorithm, build_model

torch.set_num_threads(1)


def _pair(cls: type[SAC], config: SACConfig) -> tuple[SAC, SAC]:
    learners = []
    for critic_device in (None, "cpu:0"):
        torch.manual_seed(0)
        model = MLPActorCritic(SMALL, OBS_SPACE, ACTION_SPACE)
        learners.append(cls(config, model, "cpu", critic_device=critic_device))
    return learners[0], learners[1]


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (SAC, SACConfig(batch_size=32)),
        (REDQ, REDQConfig(batch_size=32, n_critics=5, m_target=2, policy_delay=2)),
    ],
)
def test_split_learner_equals_one_device(cls: type[SAC], config: SACConfig) -> None:
    one, split = _pair(cls, config)
    assert not one.split and split.split
    assert split.critic_device == torch.device("cpu:0")
    for step in range(6):
        batch = make_batch(seed=step)
        torch.manual_seed(100 + step)  # the actor's noise and REDQ's subset draws
        stats_one = one.update(batch)
        torch.manual_seed(100 + step)
        stats_split = split.update(batch)
        assert stats_split == pytest.approx(stats_one, rel=1e-5, abs=1e-6)
    pairs = zip(one.model.state_dict().items(), split.model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        torch.testing.assert_close(a, b, msg=name)  # the actor learned through the critics
    torch.testing.assert_close(one.last_td_error, split.last_td_error)


def test_cnn_models_refuse_a_split() -> None:
    model = CNNActorCritic(CNN_SMALL, OBS, ACT)
    with pytest.raises(ValueError, match="critic_device=cpu:0.*encoder is shared"):
        SAC(SACConfig(), model, "cpu", critic_device="cpu:0")


def test_config_places_the_critics() -> None:
    config = load_config(overrides=["trainer.critic_device=cpu:0", "algorithm.kind=redq"])
    env_spaces = (OBS_SPACE, ACTION_SPACE)
    model = build_model(config, *env_spaces)
    algo = build_algorithm(config, model, torch.device("cpu"))
    assert algo.split and next(algo.target_critic.parameters()).device == torch.device("cpu")
    same = load_config(overrides=["trainer.critic_device=cpu"])
    assert not build_algorithm(same, build_model(same, *env_spaces), torch.device("cpu")).split

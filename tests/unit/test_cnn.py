"""The CNN actor-critic and DrQ's random shift: shapes, uint8 inputs, the detached actor,
determinism for a seed, and a trainer-level smoke run on the simulator's images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tmrl2.algos.augment import random_shift
from tmrl2.algos.cnn import CNNActorCritic, CNNConfig
from tmrl2.algos.policy import actor_act, actor_weights, load_actor_weights
from tmrl2.algos.redq import REDQ, REDQConfig
from tmrl2.algos.sac import SAC, SACConfig
from tmrl2.memory.batch import Batch

torch.set_num_threads(1)
OBS = spaces.Dict(
    image=spaces.Box(0, 255, (4, 32, 32), np.uint8),
    speed=spaces.Box(0, 1, (1,), np.float32),
    prev_actions=spaces.Box(-1, 1, (2, 3), np.float32),
)
ACT = spaces.Box(-1, 1, (3,), np.float32)
SMALL = CNNConfig(channels=(8, 8), strides=(2, 1), feature_dim=16, hidden_sizes=(32,))


def _batch(n: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)

    def obs() -> dict[str, torch.Tensor]:
        return {
            "image": torch.randint(0, 256, (n, 4, 32, 32), generator=g, dtype=torch.uint8),
            "speed": torch.rand(n, 1, generator=g),
            "prev_actions": torch.rand(n, 2, 3, generator=g) * 2 - 1,
        }

    return Batch(obs=obs(), action=torch.rand(n, 3, generator=g) * 2 - 1,
                 reward=torch.randn(n, generator=g), next_obs=obs(),
                 terminated=torch.zeros(n), weights=torch.ones(n),
                 indices=np.arange(n))  # fmt: skip


def test_shapes_with_uint8_images_grey_and_colour() -> None:
    model = CNNActorCritic(SMALL, OBS, ACT)
    batch = _batch()
    action, logp = model.actor(batch.obs)
    assert action.shape == (8, 3) and logp is not None and logp.shape == (8,)
    assert model.critic(batch.obs, action).shape == (2, 8)
    colour = spaces.Dict(image=spaces.Box(0, 255, (2, 16, 16, 3), np.uint8))
    cmodel = CNNActorCritic(CNNConfig(channels=(4,), strides=(1,), feature_dim=8,
                                      hidden_sizes=(8,)), colour, ACT)  # fmt: skip
    img = torch.randint(0, 256, (5, 2, 16, 16, 3), dtype=torch.uint8)
    assert cmodel.actor({"image": img})[0].shape == (5, 3)


def test_the_actor_step_leaves_the_encoder_to_the_critic() -> None:
    torch.manual_seed(0)
    model = CNNActorCritic(SMALL, OBS, ACT)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    assert not encoder_ids & {id(p) for p in model.actor_parameters()}
    assert encoder_ids <= {id(p) for p in model.critic_parameters()}
    algo = SAC(SACConfig(), model)
    before = [p.clone() for p in model.encoder.parameters()]
    algo._policy_step(_batch(), torch.tensor(0.1))  # the actor's step alone
    assert all(torch.equal(a, b) for a, b in zip(before, model.encoder.parameters(), strict=True))
    algo.update(_batch(seed=1))  # the critic's step trains the encoder
    assert not all(
        torch.equal(a, b) for a, b in zip(before, model.encoder.parameters(), strict=True)
    )


def test_worker_weights_include_the_encoder_and_act_the_same() -> None:
    torch.manual_seed(0)
    trained, fresh = CNNActorCritic(SMALL, OBS, ACT), CNNActorCritic(SMALL, OBS, ACT)
    weights = actor_weights(trained.actor)
    assert any(name.startswith("flatten.encoder.") for name in weights)
    load_actor_weights(fresh.actor, weights)
    obs = {k: v[0].numpy() for k, v in _batch(1).obs.items()}
    assert np.allclose(actor_act(trained.actor, obs, True), actor_act(fresh.actor, obs, True))


def test_redq_with_images_shares_one_encoder() -> None:
    model = CNNActorCritic(SMALL, OBS, ACT)
    algo = REDQ(REDQConfig(n_critics=5, m_target=2, policy_delay=2), model)
    assert model.critic.n_critics == 5 and model.critic.flatten.encoder is model.encoder
    terms = algo.update(_batch())
    assert np.isfinite(terms["loss_critic"])


def test_random_shift_is_a_bounded_shift_deterministic_for_a_seed() -> None:
    images = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    a = random_shift(images, 2, torch.Generator().manual_seed(5))
    b = random_shift(images, 2, torch.Generator().manual_seed(5))
    c = random_shift(images, 2, torch.Generator().manual_seed(6))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for i in range(2):  # each sample is one window of the padded image, frames shifted alike
        windows = [padded[i, :, y : y + 12, x : x + 12] for y in range(5) for x in range(5)]
        assert any(torch.equal(a[i], w) for w in windows)
    u8 = random_shift(images.to(torch.uint8), 4, torch.Generator().manual_seed(0))
    assert u8.dtype == torch.uint8
    colour = torch.randint(0, 256, (3, 2, 10, 10, 3), dtype=torch.uint8)
    shifted = random_shift(colour, 3, torch.Generator().manual_seed(1))
    assert shifted.shape == colour.shape and shifted.dtype == torch.uint8
    assert torch.equal(random_shift(colour, 0, torch.Generator()), colour)


def test_cnn_needs_an_image_part() -> None:
    with pytest.raises(ValueError, match="env.image: true"):
        CNNActorCritic(SMALL, spaces.Dict(speed=spaces.Box(0, 1, (1,))), ACT)
    with pytest.raises(ValueError, match="one stride per"):
        CNNActorCritic(CNNConfig(channels=(4, 4), strides=(1,)), OBS, ACT)


def test_image_config_trains_a_few_updates_on_the_simulator() -> None:
    from tmrl2.algos.loop import train_inline
    from tmrl2.config.load import load_config
    from tmrl2.envs.factory import build_env
    from tmrl2.roles.components import build_algorithm, build_memory, build_model

    config = load_config("configs/sim_image.yaml", ["memory.capacity=2000",
                                                    "memory.check_ram=false"])  # fmt: skip
    env = build_env(config)
    assert "image" in env.observation_space.spaces and "lidar" not in env.observation_space.spaces
    model = build_model(config, env.observation_space, env.action_space)
    algo = build_algorithm(config, model, torch.device("cpu"))
    memory = build_memory(config, env.observation_space, env.action_space, torch.device("cpu"))
    result = train_inline(env, algo, memory, 80, batch_size=16, start_steps=70)
    assert result.updates == 10 and np.isfinite(result.last_terms["loss_critic"])

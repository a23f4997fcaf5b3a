"""MLP actor-critic: shapes, bounds, log-likelihoods, the batched twin critic, weight transfer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pydantic import ValidationError
from torch import nn
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from tmrl2.algos.networks import (
    EnsembleMLP,
    MLPActorCritic,
    MLPConfig,
    ObsFlattener,
    Policy,
    SquashedGaussianActor,
    actor_act,
    actor_weights,
    load_actor_weights,
    mlp,
)

torch.set_num_threads(1)

OBS_SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1, (1, 19)),
    speed=spaces.Box(0, np.inf, (1,)),
    prev_actions=spaces.Box(-1, 1, (2, 3)),
)
ACTION_SPACE = spaces.Box(-1, 1, (3,))
SMALL = MLPConfig(hidden_sizes=(32, 16))


def random_obs(
    batch: int, obs_space: spaces.Dict = OBS_SPACE, seed: int = 0
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        key: torch.rand(batch, *(box.shape or ()), generator=gen)
        for key, box in obs_space.spaces.items()
    }


def test_output_shapes() -> None:
    torch.manual_seed(0)
    model = MLPActorCritic(SMALL, OBS_SPACE, ACTION_SPACE)
    obs = random_obs(5)
    action, logp = model.actor(obs)
    assert action.shape == (5, 3) and logp is not None and logp.shape == (5,)
    assert model.critic(obs, action).shape == (2, 5)
    action, logp = model.actor(obs, with_logprob=False)
    assert logp is None


def test_actions_stay_within_asymmetric_bounds() -> None:
    torch.manual_seed(0)
    bounds = spaces.Box(
        np.array([-2.0, 0.0, 1.0], np.float32), np.array([2.0, 1.0, 3.0], np.float32)
    )
    actor = SquashedGaussianActor(SMALL, OBS_SPACE, bounds)
    obs = {key: value * 100.0 for key, value in random_obs(1000).items()}  # saturates tanh
    for deterministic in (False, True):
        action, _ = actor(obs, deterministic=deterministic)
        assert (action >= torch.as_tensor(bounds.low)).all()
        assert (action <= torch.as_tensor(bounds.high)).all()
    action, _ = actor(random_obs(1000))
    assert action.std(dim=0).min() > 0.01  # samples do spread


def test_deterministic_action_is_tanh_of_mean() -> None:
    torch.manual_seed(0)
    actor = SquashedGaussianActor(SMALL, OBS_SPACE, ACTION_SPACE)
    obs = random_obs(8)
    mu, _ = actor.distribution_params(obs)
    action, _ = actor(obs, deterministic=True)
    torch.testing.assert_close(action, torch.tanh(mu))


def test_log_likelihood_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    bounds = spaces.Box(
        np.array([-2.0, 0.0, 1.0], np.float32), np.array([2.0, 1.0, 3.0], np.float32)
    )
    actor = SquashedGaussianActor(SMALL, OBS_SPACE, bounds)
    obs = random_obs(64)
    action, logp = actor(obs)
    mu, log_std = actor.distribution_params(obs)
    scale = (torch.as_tensor(bounds.high) - torch.as_tensor(bounds.low)) / 2
    shift = (torch.as_tensor(bounds.high) + torch.as_tensor(bounds.low)) / 2
    reference = TransformedDistribution(
        Normal(mu, log_std.exp()), [TanhTransform(), AffineTransform(shift, scale)]
    )
    inner = action.detach().clamp(shift - scale + 1e-4, shift + scale - 1e-4)
    torch.testing.assert_close(logp, reference.log_prob(inner).sum(-1), atol=2e-3, rtol=1e-3)


def test_log_std_is_clamped() -> None:
    actor = SquashedGaussianActor(SMALL, OBS_SPACE, ACTION_SPACE)
    with torch.no_grad():
        actor.head.weight[3:].zero_()  # rows 3: are the log standard deviations
        actor.head.bias[3:].fill_(100.0)
    _, log_std = actor.distribution_params(random_obs(4))
    assert torch.all(log_std == SquashedGaussianActor.LOG_STD_MAX)
    with torch.no_grad():
        actor.head.bias[3:].fill_(-100.0)
    _, log_std = actor.distribution_params(random_obs(4))
    assert torch.all(log_std == SquashedGaussianActor.LOG_STD_MIN)


def test_flattener_sorts_keys_and_casts() -> None:
    obs_space = spaces.Dict(b=spaces.Box(0, 255, (2, 2), np.uint8), a=spaces.Box(-1, 1, (3,)))
    flatten = ObsFlattener(obs_space)
    assert flatten.keys == ("a", "b") and flatten.dim == 7
    obs = {"b": torch.arange(8, dtype=torch.uint8).reshape(2, 2, 2), "a": -torch.ones(2, 3)}
    flat = flatten(obs)
    assert flat.dtype == torch.float32
    torch.testing.assert_close(flat[1], torch.tensor([-1.0, -1, -1, 4, 5, 6, 7]))


def test_twin_critic_equals_two_separate_mlps() -> None:
    torch.manual_seed(0)
    model = MLPActorCritic(SMALL, OBS_SPACE, ACTION_SPACE)
    in_dim = model.critic.flatten.dim + 3
    separate = [nn.Sequential(*mlp([in_dim, 32, 16], "relu"), nn.Linear(16, 1)) for _ in range(2)]
    model.critic.q.load_members(separate)
    obs, action = random_obs(7), torch.rand(7, 3) * 2 - 1
    q = model.critic(obs, action)
    x = torch.cat([model.critic.flatten(obs), action], dim=-1)
    for i, member in enumerate(separate):
        torch.testing.assert_close(q[i], member(x).squeeze(-1))
    assert not torch.allclose(q[0], q[1])
    q.sum().backward()  # both members get gradients from one backward pass
    for layer in model.critic.q.linear_layers:
        assert layer.weight.grad is not None and (layer.weight.grad.abs().sum(dim=(1, 2)) > 0).all()


def test_ensemble_members_start_independent() -> None:
    torch.manual_seed(0)
    ensemble = EnsembleMLP(2, [5, 8, 1], "tanh")
    weight = ensemble.linear_layers[0].weight
    assert not torch.equal(weight[0], weight[1])
    assert weight.abs().max() <= 1 / np.sqrt(5)


def test_actor_act_on_unbatched_numpy() -> None:
    torch.manual_seed(0)
    actor = SquashedGaussianActor(SMALL, OBS_SPACE, ACTION_SPACE)
    obs = {key: box.sample() for key, box in OBS_SPACE.spaces.items()}
    obs["speed"] = np.frombuffer(np.array([3.0], np.float32).tobytes(), np.float32)  # read-only
    action = actor_act(actor, obs, deterministic=True)
    assert action.shape == (3,) and action.dtype == np.float32
    np.testing.assert_array_equal(action, actor_act(actor, obs, deterministic=True))
    batched = {key: torch.tensor(value)[None] for key, value in obs.items()}
    expected, _ = actor(batched, deterministic=True)
    np.testing.assert_allclose(action, expected[0].detach().numpy(), rtol=1e-6)
    assert not np.array_equal(actor_act(actor, obs), actor_act(actor, obs))


def test_actor_act_on_box_space() -> None:
    box = spaces.Box(-1, 1, (4,))
    policy = Policy(SquashedGaussianActor(SMALL, box, ACTION_SPACE))
    action = policy.act(np.zeros(4, np.float32))
    assert action.shape == (3,) and np.all(np.abs(action) <= 1)


def test_actor_weights_round_trip_exactly() -> None:
    torch.manual_seed(0)
    source = SquashedGaussianActor(SMALL, OBS_SPACE, ACTION_SPACE)
    target = SquashedGaussianActor(SMALL, OBS_SPACE, ACTION_SPACE)
    arrays = actor_weights(source)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays.values())
    wire = {k: np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape) for k, a in arrays.items()}
    load_actor_weights(target, wire)
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, source.state_dict()[name]), name
    obs = random_obs(3)
    assert torch.equal(source(obs, deterministic=True)[0], target(obs, deterministic=True)[0])
    with torch.no_grad():  # the arrays are copies, not views of the live parameters
        source.head.bias.add_(1.0)
    np.testing.assert_array_equal(arrays["head.bias"], wire["head.bias"])


def test_load_actor_weights_rejects_mismatches() -> None:
    actor = SquashedGaussianActor(SMALL, OBS_SPACE, ACTION_SPACE)
    arrays = actor_weights(actor)
    wider = actor_weights(
        SquashedGaussianActor(MLPConfig(hidden_sizes=(64, 16)), OBS_SPACE, ACTION_SPACE)
    )
    with pytest.raises(ValueError, match="trunk.0.weight"):
        load_actor_weights(actor, wider)
    del arrays["head.bias"]
    with pytest.raises(ValueError, match="missing.*head.bias"):
        load_actor_weights(actor, arrays)


def test_config_and_space_validation() -> None:
    with pytest.raises(ValidationError):
        MLPConfig(hidden_sizes=(0,))
    with pytest.raises(ValidationError):
        MLPConfig(activation="gelu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite bounds"):
        MLPActorCritic(SMALL, OBS_SPACE, spaces.Box(-np.inf, np.inf, (3,)))
    with pytest.raises(TypeError, match="Discrete"):
        MLPActorCritic(SMALL, spaces.Dict(a=spaces.Discrete(3)), ACTION_SPACE)

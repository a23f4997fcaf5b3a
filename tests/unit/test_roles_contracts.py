"""The component contracts: the built-in components satisfy them, and a plug-in that does not
is refused at construction naming what it lacks (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rolekit import FakeClientTransport, FakeHub, TinyEnv, tiny_config

from tmrl2.contracts import (
    ActorCritic,
    ClientTransport,
    Learner,
    ReplayMemory,
    check_component,
)
from tmrl2.net.transport import ClientSocket
from tmrl2.roles import components


@pytest.mark.parametrize("algorithm", ["sac", "redq"])
def test_builtin_components_satisfy_their_contracts(algorithm: str) -> None:
    config = tiny_config(f"algorithm.kind={algorithm}", "memory.sampler=prioritized")
    env = TinyEnv()
    device = torch.device("cpu")
    model: ActorCritic = components.build_model(config, env.observation_space, env.action_space)
    learner: Learner = components.build_algorithm(config, model, device)
    memory: ReplayMemory = components.build_memory(
        config, env.observation_space, env.action_space, device
    )
    assert memory.wants_priorities and learner.last_td_error is None
    assert memory.bytes_per_transition > 0 and len(memory) == 0


def test_the_fake_and_the_socket_are_client_transports() -> None:
    fake: ClientTransport = FakeClientTransport(FakeHub(), "w", {})
    assert fake.chunk_credit is None
    for name in ("send", "try_send", "recv", "can_send_chunk", "close"):
        assert callable(getattr(ClientSocket, name))


class _HalfMemory:
    """A plug-in memory that forgot ``sample`` and ``wants_priorities``."""

    def __init__(self, config: object, obs: object, act: object, **kwargs: object) -> None:
        self.bytes_per_transition = 1

    def __len__(self) -> int:
        return 0

    def append(self, chunk: object) -> None: ...

    def update_priorities(self, indices: np.ndarray, td: object) -> None: ...

    def save(self, path: object) -> None: ...

    def load(self, path: object) -> None: ...


def test_a_plugin_lacking_members_is_refused_naming_them(monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config()  # before the patch: loading resolves (and checks) the env too
    monkeypatch.setattr(components.registry, "resolve", lambda section, kind: _HalfMemory)
    env = TinyEnv()
    with pytest.raises(TypeError) as info:
        components.build_memory(
            config, env.observation_space, env.action_space, torch.device("cpu")
        )
    text = str(info.value)
    assert "memory.kind" in text and "is not a ReplayMemory" in text
    assert "sample" in text and "wants_priorities" in text and "append" not in text
    with pytest.raises(TypeError, match="is not a Learner"):
        check_component(object(), Learner, "algorithm.kind")

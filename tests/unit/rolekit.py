"""In-memory fakes to run the roles in one process: a fake server hub and its transports, a
tiny env, a fake clock, and builders of a Trainer and Workers wired to them.

:class:`FakeHub` plays the server: it registers hellos, grants workers ``worker_credit``
chunks, forwards chunks to the trainer while it has credit (queueing them otherwise), and
forwards the trainer's latest ``state`` and ``weights`` to every worker (coalesced, as the
real server). :meth:`FakeHub.outage` makes every send fail (a server away); :meth:`restart`
brings a new server session (credit and state gone) and welcomes every client again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tmrl2.algos.policy import actor_weights
from tmrl2.config.load import load_config
from tmrl2.config.schema import Config
from tmrl2.contracts import ActorCritic
from tmrl2.memory.batch import Batch
from tmrl2.net.codec import Message
from tmrl2.net.errors import NetTimeout
from tmrl2.roles.chunks import wire_spec
from tmrl2.roles.components import build_memory, build_model
from tmrl2.roles.trainer import Trainer, build_learner
from tmrl2.roles.worker import Worker

torch.set_num_threads(1)  # the roles' setting; two threads fight the other tests on 2 cores

TINY = [
    "run.eval_episodes=0",
    "run.log_every_s=1000",
    "model.hidden_sizes=[8, 8]",
    "algorithm.batch_size=8",
    "memory.capacity=2000",
    "trainer.start_samples=40",
    "trainer.publish_every_updates=5",
    "trainer.credit=4",
    "trainer.checkpoint_every_s=1000",
    "worker.chunk_steps=10",
    "worker.random_steps=0",
    "trainer.updates_per_step=0.5",
]


def tiny_config(*sets: str) -> Config:
    return load_config(None, [*TINY, *sets])


class FakeClock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class TinyEnv(gym.Env[np.ndarray, np.ndarray]):
    """3 floats of observation, 2 of action; episodes of 15 steps that 'finish' a lap."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.t = 0
        self.closed = False

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        done = self.t >= 15
        info = {"finished": done, "lap_time_s": 1.5 if done else None, "progress_frac": 0.5}
        obs = np.full(3, self.t / 15, np.float32)
        return obs, float(action[0]), done, False, info

    def close(self) -> None:
        self.closed = True


class FakeClientTransport:
    """A client's end of :class:`FakeHub`, with the ClientTransport interface."""

    def __init__(self, hub: FakeHub, identity: str, hello: dict[str, Any]) -> None:
        self.hub, self.identity, self.hello = hub, identity, hello
        self.inbox: deque[Message] = deque()
        self.chunk_credit: int | None = None
        self.rejoins = 0
        self.closed = False
        self.sent: list[Message] = []

    def send(self, msg: Message, copy: bool = True, compress: str | None = "default") -> None:
        if not self.try_send(msg):
            raise NetTimeout("the fake server is away")

    def try_send(self, msg: Message) -> bool:
        if self.hub.down or self.closed:
            return False
        if msg.kind == "chunk" and self.chunk_credit is not None:
            self.chunk_credit -= 1
        self.sent.append(msg)
        self.hub.route(self, msg)
        return True

    def recv(self, timeout_ms: int) -> Message | None:
        return self.inbox.popleft() if self.inbox else None

    def can_send_chunk(self) -> bool:
        return self.chunk_credit is None or self.chunk_credit > 0

    def close(self, linger_ms: int = 0) -> None:
        self.closed = True

    def of_kind(self, kind: str) -> list[Message]:
        return [m for m in self.sent if m.kind == kind]


class FakeHub:
    """An in-memory server (module docstring)."""

    def __init__(self, worker_credit: int = 8, weights_version: int = 0) -> None:
        self.worker_credit = worker_credit
        self.trainer: FakeClientTransport | None = None
        self.workers: list[FakeClientTransport] = []
        self.queue: deque[Message] = deque()
        self.trainer_credit = 0
        self.state: Message | None = None
        self.weights: Message | None = None
        self.weights_version = weights_version
        self.down = False
        self.hellos: list[dict[str, Any]] = []

    def connector(self, role: str, name: str) -> Any:
        def connect(session: str, extra: dict[str, Any]) -> tuple[FakeClientTransport, dict]:
            hello = {"role": role, "name": name, "session": session, **extra}
            self.hellos.append(hello)
            client = FakeClientTransport(self, f"{role}-{name}-{session}", hello)
            if role == "trainer":
                self.trainer = client
            else:
                self.workers.append(client)
            welcome = self._welcome(client)
            return client, welcome

        return connect

    def _welcome(self, client: FakeClientTransport) -> dict[str, Any]:
        if client is self.trainer:
            return {"weights_version": self.weights_version}
        client.chunk_credit = self.worker_credit
        for msg in (self.state, self.weights):
            if msg is not None:
                client.inbox.append(msg)
        return {"chunk_credit": self.worker_credit, "weights_version": self.weights_version}

    def route(self, sender: FakeClientTransport, msg: Message) -> None:
        if msg.kind == "chunk":
            self.queue.append(msg)
            sender.chunk_credit = (sender.chunk_credit or 0) + 1  # credit comes back at once
        elif msg.kind == "credit":
            self.trainer_credit += int(msg.meta["n"])
        elif msg.kind in ("state", "weights"):
            if msg.kind == "weights":
                self.weights_version = max(self.weights_version, int(msg.meta["version"]))
                self.weights = msg
            else:
                self.state = msg
            for worker in self.workers:
                worker.inbox.append(msg)
        self._forward()

    def _forward(self) -> None:
        while self.queue and self.trainer is not None and self.trainer_credit > 0:
            self.trainer.inbox.append(self.queue.popleft())
            self.trainer_credit -= 1

    def outage(self) -> None:
        self.down = True

    def restart(self) -> None:
        """A new server on the same address: nothing kept; every client rejoins."""
        self.down = False
        self.queue.clear()
        self.trainer_credit = 0
        self.state = self.weights = None
        self.weights_version = 0
        for client in [c for c in (self.trainer, *self.workers) if c is not None]:
            client.rejoins += 1
            client.inbox.append(Message("welcome", self._welcome(client), {}))


class FakeLearner:
    """A :class:`~tmrl2.contracts.Learner` that counts updates and learns nothing (fast)."""

    def __init__(self, model: ActorCritic) -> None:
        self.model = model
        self.updates = 0
        self.last_td_error: torch.Tensor | None = None

    def update(self, batch: Batch) -> dict[str, float]:
        self.updates += 1
        self.last_td_error = torch.ones(len(batch.indices))
        return {"critic": 0.0}

    def actor_weights(self) -> dict[str, np.ndarray]:
        return actor_weights(self.model.actor)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])


def make_trainer(
    config: Config,
    hub: FakeHub,
    clock: Callable[[], float] | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    real_learner: bool = False,
) -> Trainer:
    """A trainer on the hub, for :class:`TinyEnv`; ``real_learner``: the configured
    algorithm with its exploration and world-model wrappers, as ``build_trainer`` wires them
    (else a :class:`FakeLearner`); ``clock``: a :class:`FakeClock` by default."""
    env = TinyEnv()
    assert isinstance(env.action_space, gym.spaces.Box)
    torch.manual_seed(0)
    model = build_model(config, env.observation_space, env.action_space)
    device = torch.device("cpu")
    if real_learner:
        learner = build_learner(config, model, env.observation_space, env.action_space, device)
    else:
        learner = FakeLearner(model)
    return Trainer(
        config,
        memory=build_memory(config, env.observation_space, env.action_space, device),
        learner=learner,
        model=model,
        spec=wire_spec(env.observation_space, env.action_space, compact=False),
        connect=hub.connector("trainer", "trainer"),
        address="fake://hub",
        run_dir=run_dir,
        resume=resume,
        live=False,
        clock=clock or FakeClock(),
    )


def make_worker(
    config: Config, hub: FakeHub, name: str = "worker", clock: FakeClock | None = None
) -> Worker:
    env = TinyEnv()
    actor = build_model(config, env.observation_space, env.action_space).actor
    return Worker(
        config,
        env=env,
        actor=actor,
        connect=hub.connector("worker", name),
        name=name,
        seed=0,
        clock=clock or FakeClock(),
    )


def box_chunk(n: int = 10, worker: str = "evil", **meta: Any) -> Message:
    """A well-formed chunk of :class:`TinyEnv` transitions."""
    arrays = {
        "obs": np.zeros((n, 3), np.float32),
        "next_obs": np.zeros((n, 3), np.float32),
        "action": np.zeros((n, 2), np.float32),
        "reward": np.ones(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }
    return Message(
        "chunk", {"worker": worker, "policy_version": 0, "n": n, "episodes": [], **meta}, arrays
    )


def run_together(trainer: Trainer, workers: list[Worker], passes: int) -> None:
    """Interleave ``passes`` worker steps with trainer steps (one trainer step per 5)."""
    for i in range(passes):
        for worker in workers:
            worker.step(wait_ms=0)
        if i % 5 == 0:
            trainer.step()

"""The server tells the trainer its queue depth and drops (``stats``); the trainer's metrics
carry them as ``server_<counter>``. A real server on 127.0.0.1 (ephemeral port) in a thread,
real clients; one fake-transport case for the opt-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import gymnasium as gym
import pytest
import torch
from netkit import FakeServerTransport, running
from rolekit import FakeLearner, TinyEnv, box_chunk, tiny_config

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles import server as server_module
from tmrl2.roles.chunks import wire_spec
from tmrl2.roles.common import connector
from tmrl2.roles.components import build_memory, build_model
from tmrl2.roles.server import Server
from tmrl2.roles.trainer import Trainer
from tmrl2.telemetry.sinks import scalars

SERVER_KEYS = (
    "server_queued_chunks",
    "server_chunks_dropped",
    "server_over_credit",
    "server_rejected",
    "server_malformed",
)


def hello(role: str, name: str, **meta: object) -> Message:
    return Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION, **meta})


def poll(until: Callable[[], bool], step: Callable[[], None], timeout_s: float = 10.0) -> None:
    """Run ``step`` until ``until()`` holds (no fixed sleep: each step waits on a socket)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "condition not met in time"
        step()


@pytest.fixture
def fast_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "STATS_PERIOD_S", 0.02)


@pytest.fixture
def server(fast_stats: None) -> Iterator[Server]:
    config = ServerConfig(port=0, max_queued_chunks=2, worker_credit=8)
    with running(Server(config)) as serving:
        yield serving


def join(address: str, identity: str, msg: Message) -> ClientSocket:
    client = ClientSocket(address, identity=identity)
    client.send(msg)
    reply = client.recv(timeout_ms=3000)
    assert reply is not None and reply.kind == "welcome", reply
    return client


def test_a_trainer_that_asks_gets_the_queue_depth_and_drops(server: Server) -> None:
    address = f"tcp://127.0.0.1:{server.port}"
    trainer = join(address, "trainer-t", hello("trainer", "t", server_stats=True))
    worker = join(address, "worker-w", hello("worker", "w"))
    stranger = ClientSocket(address, identity="stranger")
    try:
        for _ in range(4):  # no trainer credit: 2 queued, the 2 oldest dropped
            worker.send(box_chunk(n=5, worker="w"))
        stranger.send(box_chunk(n=5, worker="x"))  # before any hello: malformed
        latest: dict[str, object] = {}

        def read() -> None:
            msg = trainer.recv(timeout_ms=50)
            if msg is not None and msg.kind == "stats":
                latest.update(msg.meta)

        poll(lambda: latest.get("chunks_dropped") == 2 and latest.get("malformed") == 1, read)
        assert latest == {
            "queued_chunks": 2,
            "chunks_dropped": 2,
            "over_credit": 0,
            "rejected": 0,
            "malformed": 1,
        }
    finally:
        for client in (trainer, worker, stranger):
            client.close()


def test_stats_go_only_to_a_trainer_whose_hello_asked(fast_stats: None) -> None:
    fake = FakeServerTransport()
    server = Server(ServerConfig(port=0), transport=fake)
    fake.push(b"t", hello("trainer", "t"))
    server.serve_once(0)
    server.serve_once(0)
    assert [m.kind for _, m in fake.sent] == ["welcome"]
    fake.push(b"t", Message("bye"))
    fake.push(b"u", hello("trainer", "u", server_stats=True))
    server.serve_once(0)
    kinds = [(identity, m.kind) for identity, m in fake.sent]
    assert kinds[1:] == [(b"u", "welcome"), (b"u", "stats")]


def test_a_worker_may_not_ask_for_server_stats() -> None:
    from tmrl2.net.codec import encode

    with pytest.raises(ValueError, match="server_stats"):
        encode(hello("worker", "w", server_stats=True))
    with pytest.raises(ValueError, match="number"):
        encode(Message("stats", {"queued_chunks": "many"}))


def test_the_trainer_metrics_carry_the_server_counters(server: Server) -> None:
    config = tiny_config()
    address = f"tcp://127.0.0.1:{server.port}"
    env = TinyEnv()
    assert isinstance(env.action_space, gym.spaces.Box)
    torch.manual_seed(0)
    model = build_model(config, env.observation_space, env.action_space)
    trainer = Trainer(
        config,
        memory=build_memory(config, env.observation_space, env.action_space, torch.device("cpu")),
        learner=FakeLearner(model),
        model=model,
        spec=wire_spec(env.observation_space, env.action_space, compact=False),
        connect=connector(config, address, "trainer", "trainer", threading.Event()),
        address=address,
        live=False,
    )
    trainer.start()
    worker = join(address, "worker-w", hello("worker", "w"))
    stranger = ClientSocket(address, identity="stranger")
    try:
        worker.send(box_chunk(n=10, worker="w"))
        stranger.send(box_chunk(n=10, worker="x"))  # malformed: no hello
        poll(
            lambda: (
                trainer.metrics().get("server_malformed") == 1 and trainer.counters["samples"] == 10
            ),
            trainer.step,
        )
        metrics = trainer.metrics()
        assert {key: metrics[key] for key in SERVER_KEYS} == {
            "server_queued_chunks": 0,
            "server_chunks_dropped": 0,
            "server_over_credit": 0,
            "server_rejected": 0,
            "server_malformed": 1,
        }
        tags = scalars(metrics)
        for key in ("server_queued_chunks", "server_chunks_dropped", "server_rejected"):
            assert f"net/{key}" in tags
    finally:
        worker.close()
        stranger.close()
        trainer.finish()

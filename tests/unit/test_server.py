"""Server: a real server in a thread on 127.0.0.1, real clients; plus one fake-transport case."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Buffer, Message, encode
from tmrl2.net.transport import ClientSocket, SendResult
from tmrl2.roles import server as server_module
from tmrl2.roles.server import Server


class Running:
    """A server serving in a background thread; clients made by :meth:`client`."""

    def __init__(self, config: ServerConfig) -> None:
        self.server = Server(config)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.server.run, args=(self.stop, 5), daemon=True)
        self.thread.start()
        self.clients: list[ClientSocket] = []

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.server.port}"

    def client(self, identity: str) -> ClientSocket:
        client = ClientSocket(self.address, identity=identity)
        self.clients.append(client)
        return client

    def join(self, role: str, name: str, identity: str | None = None) -> ClientSocket:
        client = self.client(identity or f"{role}-{name}")
        client.send(hello(role, name))
        reply = client.recv(timeout_ms=2000)
        assert reply is not None and reply.kind == "welcome", reply
        return client

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        assert not self.thread.is_alive()
        for client in self.clients:
            client.close()
        self.server.close()


@pytest.fixture
def running() -> Iterator[Running]:
    run = Running(ServerConfig(port=0, max_queued_chunks=3))
    yield run
    run.close()


def hello(role: str, name: str, protocol: int = PROTOCOL_VERSION) -> Message:
    return Message("hello", {"role": role, "name": name, "protocol": protocol})


def chunk(tag: float, n: int = 5, worker: str = "w") -> Message:
    arrays = {
        "obs/lidar": np.full((n, 19), tag, np.float32),
        "next_obs/lidar": np.full((n, 19), tag, np.float32),
        "action": np.zeros((n, 3), np.float32),
        "reward": np.full(n, tag, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }
    return Message("chunk", {"worker": worker, "policy_version": 0, "n": n, "episodes": []}, arrays)


def weights(version: int) -> Message:
    return Message(
        "weights",
        {"version": version, "updates": 10 * version},
        {"layer.weight": np.full((4, 4), version, np.float32)},
    )


def wait_until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def receive_all(client: ClientSocket, timeout_ms: int = 150, most: int = 20) -> list[Message]:
    """Messages until none comes for ``timeout_ms`` (a flood stops at ``most``)."""
    out: list[Message] = []
    msg = client.recv(timeout_ms=timeout_ms)
    while msg is not None and len(out) < most:
        out.append(msg)
        msg = client.recv(timeout_ms=timeout_ms)
    return out


def test_chunk_reaches_a_trainer_that_gave_credit(running: Running) -> None:
    worker = running.join("worker", "w")
    trainer = running.join("trainer", "t")
    trainer.send(Message("credit", {"n": 1}))
    worker.send(chunk(1.0))
    worker.send(chunk(2.0))
    got = trainer.recv(timeout_ms=2000)
    assert got is not None and got.kind == "chunk"
    np.testing.assert_array_equal(got.arrays["reward"], np.full(5, 1.0, np.float32))
    wait_until(lambda: running.server.stats.chunks_in == 2)
    assert trainer.recv(timeout_ms=100) is None  # no credit left for the second chunk
    trainer.send(Message("credit", {"n": 4}))
    got = trainer.recv(timeout_ms=2000)
    assert got is not None and got.arrays["reward"][0] == 2.0
    stats = running.server.stats
    wait_until(lambda: stats.chunks_forwarded == 2)
    assert (stats.samples_in, stats.samples_forwarded, stats.chunks_dropped) == (10, 10, 0)
    assert stats.workers["w"].chunks == 2 and stats.workers["w"].samples == 10
    assert running.server.credit == 3


def test_full_queue_drops_the_oldest_chunks_and_says_so(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tmrl2.roles.server")
    worker = running.join("worker", "w")
    for tag in range(5):
        worker.send(chunk(float(tag)))
    wait_until(lambda: running.server.stats.chunks_in == 5)
    assert running.server.stats.chunks_dropped == 2
    assert running.server.queued_chunks == 3
    assert "dropped the oldest chunk" in caplog.text
    trainer = running.join("trainer", "t")
    trainer.send(Message("credit", {"n": 10}))
    tags = [float(msg.arrays["reward"][0]) for msg in receive_all(trainer)]
    assert tags == [2.0, 3.0, 4.0]


def test_weights_reach_each_worker_once_per_version(running: Running) -> None:
    early = running.join("worker", "early")
    trainer = running.join("trainer", "t")
    trainer.send(weights(1))
    first = receive_all(early)
    assert [msg.meta["version"] for msg in first] == [1]
    assert first[0].arrays["layer.weight"][0, 0] == 1.0
    trainer.send(weights(2))
    trainer.send(Message("ping"))
    assert [msg.meta["version"] for msg in receive_all(early)] == [2]
    late = running.join("worker", "late")  # the latest weights follow its welcome
    assert [msg.meta["version"] for msg in receive_all(late)] == [2]
    assert receive_all(early, timeout_ms=50) == []
    assert running.server.stats.weights_version == 2
    assert running.server.stats.weights_sent == 3


def test_second_trainer_is_refused_until_the_first_says_bye(running: Running) -> None:
    first = running.join("trainer", "first")
    second = running.client("trainer-second")
    second.send(hello("trainer", "second"))
    reply = second.recv(timeout_ms=2000)
    assert reply is not None and reply.kind == "refused"
    assert "'first' is already connected" in reply.meta["reason"]
    first.send(Message("bye"))
    wait_until(lambda: not running.server.stats.trainer_connected)
    second.send(hello("trainer", "second"))
    reply = second.recv(timeout_ms=2000)
    assert reply is not None and reply.kind == "welcome"


def test_a_trainer_gone_without_bye_does_not_block_a_new_one(running: Running) -> None:
    running.join("trainer", "crashed").close()  # no bye, no credit: no send finds it gone
    time.sleep(0.3)  # the server's socket notices the closed connection
    running.join("trainer", "new")
    assert running.server.stats.trainer_connected


def test_other_protocol_is_refused_naming_both_versions(running: Running) -> None:
    client = running.client("worker-old")
    client.send(hello("worker", "old", protocol=PROTOCOL_VERSION + 41))
    reply = client.recv(timeout_ms=2000)
    assert reply is not None and reply.kind == "refused"
    assert f"client protocol {PROTOCOL_VERSION + 41}" in reply.meta["reason"]
    assert f"server protocol {PROTOCOL_VERSION}" in reply.meta["reason"]


def raw_client(running: Running, identity: bytes) -> zmq.Socket[bytes]:
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.connect(running.address)
    return socket


def unchecked_frames(msg: Message) -> list[bytes]:
    """Frames of ``msg`` built by hand, skipping the checks of ``encode``."""
    specs = [[name, a.dtype.str, list(a.shape)] for name, a in msg.arrays.items()]
    header = {"v": PROTOCOL_VERSION, "kind": msg.kind, "meta": msg.meta, "arrays": specs}
    return [msgpack.packb(header), *(a.tobytes() for a in msg.arrays.values())]


def test_malformed_messages_are_counted_and_serving_goes_on(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tmrl2.roles.server")
    trainer = running.join("trainer", "t")
    trainer.send(Message("credit", {"n": 5}))
    running.join("worker", "w")
    raw = raw_client(running, b"worker-w")  # same identity: takes the worker's connection over
    bad_shape = chunk(9.0)
    bad_shape.arrays["action"] = np.zeros((4, 3), np.float32)  # 4 rows in a chunk of 5
    stranger = running.client("stranger")
    try:
        raw.send_multipart([b"\x00garbage", b"more"])
        raw.send_multipart(unchecked_frames(bad_shape))
        stranger.send(chunk(8.0))  # chunk before hello
        raw.send_multipart([msgpack.packb({"v": PROTOCOL_VERSION + 1, "kind": "ping"})])
        # three malformed messages; the bad shape is a well-formed message whose chunk the
        # server's checks reject (tmrl2.roles.chunk_checks)
        wait_until(lambda: running.server.stats.malformed == 3)
        wait_until(lambda: running.server.stats.rejected == 1)
    finally:
        raw.close()
    worker = running.join("worker", "w")  # its hello opens a new session
    worker.send(chunk(1.0))
    got = receive_all(trainer)
    assert [float(m.arrays["reward"][0]) for m in got] == [1.0]
    stats = running.server.stats
    assert stats.chunks_in == 2 and stats.rejected == 1 and stats.errors == 0  # 1 bad, 1 good
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 2  # once for worker-w (rate limited), once for the stranger


def test_wrong_role_for_the_kind_is_malformed(running: Running) -> None:
    trainer = running.join("trainer", "t")
    worker = running.join("worker", "w")
    trainer.send(chunk(1.0))
    worker.send(Message("credit", {"n": 3}))
    worker.send(weights(1))
    wait_until(lambda: running.server.stats.malformed == 3)
    assert running.server.credit == 0 and running.server.stats.weights_version == 0


def test_trainer_gone_without_bye_is_forgotten_and_chunks_wait(running: Running) -> None:
    trainer = running.join("trainer", "t")
    trainer.send(Message("credit", {"n": 5}))
    worker = running.join("worker", "w")
    wait_until(lambda: running.server.credit == 5)
    trainer.close()
    time.sleep(0.3)  # the server's socket notices the closed connection
    worker.send(chunk(1.0))
    wait_until(lambda: not running.server.stats.trainer_connected)
    assert running.server.queued_chunks == 1
    assert running.server.stats.chunks_forwarded == 0


def test_an_exception_in_a_handler_does_not_stop_the_server(running: Running) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    running.server._on_weights = broken  # type: ignore[method-assign,assignment]
    trainer = running.join("trainer", "t")
    trainer.send(weights(1))
    trainer.send(Message("stats", {"updates": 7}))
    wait_until(lambda: running.server.stats.trainer_stats == {"updates": 7})
    assert running.server.stats.errors == 1


def test_close_frees_the_port_for_a_new_server() -> None:
    first = Server(ServerConfig(port=0))
    port = first.port
    first.close()
    with Server(ServerConfig(port=port)) as second:
        assert second.port == port


class FakeTransport:
    """In-memory transport: scripted incoming messages, recorded (and scripted) sends."""

    port = 1

    def __init__(self, incoming: list[tuple[bytes, Message]], results: list[SendResult]) -> None:
        self.incoming = [(identity, encode(msg)) for identity, msg in incoming]
        self.results = results
        self.sent: list[tuple[bytes, str]] = []

    def send(self, identity: bytes, msg: Message) -> SendResult:
        self.sent.append((identity, msg.kind))
        return SendResult.SENT

    def send_frames(self, identity: bytes, frames: Sequence[Buffer]) -> SendResult:
        result = self.results.pop(0) if self.results else SendResult.SENT
        if result:
            self.sent.append((identity, "frames"))
        return result

    def recv(self, timeout_ms: int) -> tuple[bytes, list[Any]] | None:
        return self.incoming.pop(0) if self.incoming else None

    def close(self) -> None:
        pass


def test_weights_to_a_busy_worker_are_retried_and_a_gone_one_is_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "GONE_GRACE_S", 0.0)  # forgotten at the first GONE
    fake = FakeTransport(
        [
            (b"w1", hello("worker", "w1")),
            (b"w2", hello("worker", "w2")),
            (b"t", hello("trainer", "t")),
            (b"t", weights(1)),
        ],
        [SendResult.BUSY, SendResult.GONE, SendResult.BUSY],  # w1, w2, then w1's retry
    )
    server = Server(ServerConfig(port=0), transport=fake)
    server.serve_once(0)
    assert [sent for sent in fake.sent if sent[1] == "frames"] == []
    assert server.stats.weights_sent == 0
    server.serve_once(0)  # w1 was busy: retried; w2 was gone: forgotten
    server.serve_once(0)
    assert [sent for sent in fake.sent if sent[1] == "frames"] == [(b"w1", "frames")]
    assert server.stats.weights_sent == 1


def test_a_momentary_gone_does_not_unregister_the_trainer() -> None:
    """libzmq says EHOSTUNREACH for a peer whose full queue is just draining."""
    fake = FakeTransport(
        [
            (b"t", hello("trainer", "t")),
            (b"t", Message("credit", {"n": 2})),
            (b"w", hello("worker", "w")),
            (b"w", chunk(1.0)),
        ],
        [SendResult.GONE],  # the first forward: spurious; then sends succeed
    )
    server = Server(ServerConfig(port=0), transport=fake)
    server.serve_once(0)  # the forward fails once, the end-of-round flush retries it
    assert server.stats.trainer_connected and server.queued_chunks == 0
    assert server.stats.chunks_forwarded == 1 and server.credit == 1

"""Chunk flow control: a worker with ``flow_control`` never has more than its window of
chunks at the server; it waits (then times out) while the trainer takes nothing, and goes on
as the trainer consumes. Nothing is dropped."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from netkit import box_chunk, running

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.errors import NetTimeout
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.server import Server

WINDOW = 3


def chunk(reward: float, n: int = 4) -> Message:
    return box_chunk(reward, n)


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server(ServerConfig(port=0, worker_credit=WINDOW, max_queued_chunks=100))
    with running(server):
        yield server


def join(server: Server, role: str, **options: object) -> ClientSocket:
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity=role, **options)  # type: ignore[arg-type]
    client.send(Message("hello", {"role": role, "name": role, "protocol": PROTOCOL_VERSION}))
    reply = client.recv(timeout_ms=2000)
    assert reply is not None and reply.kind == "welcome"
    return client


def test_worker_waits_for_credit_and_goes_on_as_the_trainer_consumes(server: Server) -> None:
    worker = join(server, "worker", flow_control=True, send_timeout_ms=300)
    assert worker.chunk_credit == WINDOW
    try:
        for i in range(WINDOW):
            worker.send(chunk(float(i)))
        assert not worker.can_send_chunk()
        start = time.monotonic()
        with pytest.raises(NetTimeout, match="credit"):
            worker.send(chunk(99.0))
        assert time.monotonic() - start >= 0.25
        assert server.queued_chunks == WINDOW and server.stats.chunks_dropped == 0

        trainer = join(server, "trainer")
        trainer.send(Message("credit", {"n": 100}))
        for i in range(WINDOW, 4 * WINDOW):  # each send waits for one chunk to leave
            worker.send(chunk(float(i)))
        got: list[float] = []
        deadline = time.monotonic() + 3
        while len(got) < 4 * WINDOW and time.monotonic() < deadline:
            msg = trainer.recv(timeout_ms=50)
            if msg is not None and msg.kind == "chunk":
                got.append(float(msg.arrays["reward"][0]))
        assert got == [float(i) for i in range(4 * WINDOW)]
        assert server.stats.chunks_dropped == 0
        trainer.close()
    finally:
        worker.close()


def test_messages_arriving_while_waiting_are_kept_for_recv(server: Server) -> None:
    worker = join(server, "worker", flow_control=True, send_timeout_ms=2000)
    trainer = join(server, "trainer")
    try:
        for i in range(WINDOW):
            worker.send(chunk(float(i)))
        weights = Message("weights", {"version": 4, "updates": 1}, {"w": np.ones(3, np.float32)})
        trainer.send(weights)
        time.sleep(0.1)  # the weights reach the worker before any credit
        trainer.send(Message("credit", {"n": 1}))
        worker.send(chunk(9.0))  # waits; the weights arrive meanwhile
        msg = worker.recv(timeout_ms=1000)
        assert msg is not None and msg.kind == "weights" and msg.meta["version"] == 4
    finally:
        worker.close()
        trainer.close()


def test_without_flow_control_chunks_go_at_once_and_the_server_enforces_credit(
    server: Server,
) -> None:
    """A socket without flow control sends at once; the server queues the worker's window
    only and counts the rest as over credit (never queued)."""
    worker = join(server, "worker", send_timeout_ms=300)
    try:
        for i in range(2 * WINDOW):
            worker.send(chunk(float(i)))
        deadline = time.monotonic() + 2
        while server.stats.over_credit < WINDOW:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert server.queued_chunks == WINDOW
        assert server.stats.workers["worker"].over_credit == WINDOW
    finally:
        worker.close()


def test_lz4_chunks_pass_the_server_compressed_and_arrive_intact(server: Server) -> None:
    worker = join(server, "worker", compress="lz4")
    trainer = join(server, "trainer")
    try:
        trainer.send(Message("credit", {"n": 5}))
        sent = chunk(3.0, n=64)
        sent.arrays["obs"] = np.tile(np.arange(2, dtype=np.float32), (64, 1))
        worker.send(sent)
        got = trainer.recv(timeout_ms=2000)
        assert got is not None and got.kind == "chunk"
        for name, array in sent.arrays.items():
            np.testing.assert_array_equal(got.arrays[name], array)
        raw = sum(array.nbytes for array in sent.arrays.values())
        assert server.stats.workers["worker"].bytes < raw / 2  # forwarded as received
    finally:
        worker.close()
        trainer.close()

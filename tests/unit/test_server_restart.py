"""A server restarted mid-run: clients made with ``hello=`` rejoin by themselves and chunks
flow again; nothing is queued towards the dead server meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from netkit import box_chunk

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.server import Server


def wait_until(condition: Callable[[], bool], timeout_s: float = 4.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def hello(role: str, name: str) -> Message:
    return Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION})


def chunk(reward: float, n: int = 5) -> Message:
    return box_chunk(reward, n)


class Serving:
    def __init__(self, port: int) -> None:
        self.server = Server(ServerConfig(port=port))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.server.run, args=(self.stop, 5), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.server.close()


def join(address: str, role: str, name: str) -> ClientSocket:
    client = ClientSocket(address, identity=f"{role}-{name}", hello=hello(role, name))
    client.send(hello(role, name))
    reply = client.recv(timeout_ms=2000)
    assert reply is not None and reply.kind == "welcome"
    return client


def rewards(client: ClientSocket, wait_ms: int = 200) -> list[float]:
    got = []
    msg = client.recv(timeout_ms=wait_ms)
    while msg is not None:
        if msg.kind == "chunk":
            got.append(float(msg.arrays["reward"][0]))
        msg = client.recv(timeout_ms=wait_ms)
    return got


def test_clients_rejoin_a_restarted_server_and_losses_are_counted() -> None:
    first = Serving(0)
    port = first.server.port
    address = f"tcp://127.0.0.1:{port}"
    trainer = join(address, "trainer", "t")
    worker = join(address, "worker", "w")
    try:
        trainer.send(Message("credit", {"n": 100}))
        worker.send(chunk(1.0))
        assert rewards(trainer) == [1.0]
        first.close()  # the server dies mid-run

        # nothing queues towards a server that is down (ZMQ_IMMEDIATE): the chunk stays with
        # the worker, which counts it as lost (the trainer sees the gap in its numbering)
        wait_until(lambda: not worker.try_send(chunk(2.0)))
        second = Serving(port)
        try:
            # once reconnected, the clients' pings reach the new server, which asks them to
            # rejoin; their hellos open new sessions
            def pinged() -> bool:
                worker.recv(timeout_ms=20)  # a silent client pings from recv
                trainer.recv(timeout_ms=20)
                return second.server.stats.unregistered >= 1

            wait_until(pinged)
            deadline = time.monotonic() + 4
            while (
                len(second.server.stats.workers) == 0 or not second.server.stats.trainer_connected
            ):
                assert time.monotonic() < deadline, second.server.stats
                worker.recv(timeout_ms=20)
                trainer.recv(timeout_ms=20)
            assert worker.rejoins >= 1 and trainer.rejoins >= 1
            trainer.send(Message("credit", {"n": 100}))  # credit belongs to a session
            worker.send(chunk(3.0))
            assert rewards(trainer) == [3.0]
            stats = second.server.stats
            assert stats.chunks_in == 1 and stats.errors == 0
        finally:
            second.close()
    finally:
        worker.close()
        trainer.close()

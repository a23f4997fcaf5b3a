"""A worker process killed mid-chunk: the server keeps serving, the other worker carries on,
and the counters add up (every chunk received is forwarded, queued or counted as dropped;
a half-sent chunk never reaches anyone)."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
from netkit import box_chunk

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.server import Server


def image_chunk(worker: str, reward: float, n: int = 50) -> Message:
    return box_chunk(reward, n, worker, obs=np.zeros((n, 4, 64, 64), np.uint8))


def join(address: str, role: str, name: str) -> ClientSocket:
    client = ClientSocket(address, identity=f"{role}-{name}")
    client.send(Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION}))
    reply = client.recv(timeout_ms=5000)
    assert reply is not None and reply.kind == "welcome"
    return client


def flood(address: str) -> None:
    """Sends 1.6 MB chunks until killed."""
    client = join(address, "worker", "doomed")
    msg = image_chunk("doomed", 7.0)
    while True:
        client.send(msg, copy=False)


def test_worker_killed_mid_chunk() -> None:
    server = Server(ServerConfig(port=0, max_queued_chunks=8))
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop, 5), daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.port}"
    trainer = join(address, "trainer", "t")
    good = join(address, "worker", "good")
    proc = mp.get_context("spawn").Process(target=flood, args=(address,), daemon=True)
    proc.start()
    try:
        trainer.send(Message("credit", {"n": 1000}))
        deadline = time.monotonic() + 10
        while server.stats.workers.get("doomed") is None or (
            server.stats.workers["doomed"].chunks < 3
        ):
            assert time.monotonic() < deadline, "the flooding worker never got going"
            trainer.recv(timeout_ms=10)
        proc.kill()  # SIGKILL while it streams: very likely in the middle of a message
        proc.join(timeout=5)
        time.sleep(0.2)

        good.send(image_chunk("good", 1.0))
        rewards = []
        deadline = time.monotonic() + 3
        while 1.0 not in rewards and time.monotonic() < deadline:
            msg = trainer.recv(timeout_ms=20)
            if msg is not None:
                rewards.append(float(msg.arrays["reward"][0]))
        assert 1.0 in rewards and set(rewards) <= {1.0, 7.0}
        stats = server.stats
        assert stats.malformed == 0 and stats.errors == 0
        assert (
            stats.chunks_in == stats.chunks_forwarded + server.queued_chunks + stats.chunks_dropped
        )
        assert stats.workers["good"].chunks == 1
    finally:
        if proc.is_alive():
            proc.kill()
        stop.set()
        thread.join(timeout=2)
        trainer.close()
        good.close()
        server.close()

"""Transport limits (issue 14): oversized frames refused by libzmq before they are buffered,
on both socket kinds; ``try_send`` never blocks; a hello suspends chunk credit until its
welcome."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import zmq
from netkit import box_chunk, running

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message, encode
from tmrl2.net.transport import ClientSocket, ServerSocket
from tmrl2.roles.server import Server

HELLO = Message("hello", {"role": "worker", "name": "w", "protocol": PROTOCOL_VERSION})
LIMIT = 1 << 20
BIG = 96 << 20


def rss_bytes() -> int:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def server() -> Iterator[Server]:
    with running(Server(ServerConfig(port=0, max_message_bytes=LIMIT))) as server:
        yield server


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_an_oversized_message_is_refused_before_it_is_buffered(server: Server) -> None:
    payload = bytearray(BIG)  # allocated (and touched) before the baseline
    payload[::4096] = b"x" * len(payload[::4096])
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(f"tcp://127.0.0.1:{server.port}")
    try:
        before = rss_bytes()
        raw.send_multipart([encode(HELLO)[0], memoryview(payload)], copy=False)
        deadline = time.monotonic() + 1.0
        peak = before
        while time.monotonic() < deadline:  # the server's I/O thread would buffer it here
            peak = max(peak, rss_bytes())
            time.sleep(0.02)
        assert peak - before < BIG // 4, f"RSS grew by {(peak - before) >> 20} MiB"
    finally:
        raw.close()
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity="worker-w")
    try:  # and the server keeps serving
        client.send(HELLO)
        reply = client.recv(timeout_ms=3000)
        assert reply is not None and reply.kind == "welcome"
        assert server.stats.messages == 1 and server.stats.errors == 0
    finally:
        client.close()


def test_the_client_refuses_oversized_frames_too() -> None:
    socket = ServerSocket("127.0.0.1", 0)
    client = ClientSocket(f"tcp://127.0.0.1:{socket.port}", identity="c", max_message_bytes=LIMIT)
    try:
        client.send(HELLO)
        assert socket.recv(timeout_ms=2000) is not None
        socket.send_frames(b"c", [encode(Message("ping"))[0], bytes(4 * LIMIT)])
        assert client.recv(timeout_ms=500) is None  # refused by libzmq, never decoded
    finally:
        client.close()
        socket.close()


def test_try_send_never_blocks() -> None:
    holder = ServerSocket("127.0.0.1", 0)
    port = holder.port
    holder.close()  # nobody listens: the queue fills
    client = ClientSocket(f"tcp://127.0.0.1:{port}", sndhwm=2, send_timeout_ms=5000)
    try:
        start = time.monotonic()
        results = [client.try_send(Message("ping")) for _ in range(50)]
        assert time.monotonic() - start < 1.0
        # nothing is queued towards a server that is not there (ZMQ_IMMEDIATE): a trainer's
        # weights during an outage stay with the trainer, coalesced, instead of piling up
        assert not any(results)
    finally:
        client.close()


def test_try_send_of_a_chunk_needs_credit(server: Server) -> None:
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity="worker-w")
    try:
        client.send(HELLO)
        reply = client.recv(timeout_ms=3000)
        assert reply is not None and reply.kind == "welcome"
        credit = client.chunk_credit
        assert credit is not None and credit > 0
        assert all(client.try_send(box_chunk(1.0)) for _ in range(credit))
        assert client.chunk_credit == 0
        assert not client.try_send(box_chunk(1.0))  # no credit: nothing sent
        assert server.stats.over_credit == 0
    finally:
        client.close()


def test_a_hello_suspends_chunk_credit_until_its_welcome(server: Server) -> None:
    """Chunks sent between a re-hello and its welcome would count against the new session on
    top of its grant, and the server drops chunks beyond credit."""
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity="worker-w", hello=HELLO)
    try:
        client.send(HELLO)
        assert client.chunk_credit is None  # no flow control known before the first welcome
        reply = client.recv(timeout_ms=3000)
        assert reply is not None and reply.kind == "welcome"
        assert client.chunk_credit == server.config.worker_credit
        client.send(HELLO)
        assert client.chunk_credit == 0  # until the welcome is read
        reply = client.recv(timeout_ms=3000)
        assert reply is not None and reply.kind == "welcome"
        assert client.chunk_credit == server.config.worker_credit
    finally:
        client.close()

"""Transport: a real ROUTER and DEALERs on 127.0.0.1 with a free port."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from tmrl2.net.codec import PROTOCOL_VERSION, Message, decode
from tmrl2.net.errors import DecodeError, NetTimeout
from tmrl2.net.transport import ClientSocket, SendResult, ServerSocket

HELLO = Message("hello", {"role": "worker", "name": "w", "protocol": PROTOCOL_VERSION})


@pytest.fixture
def server() -> Iterator[ServerSocket]:
    socket = ServerSocket("127.0.0.1", 0)
    yield socket
    socket.close()


def client_of(server: ServerSocket, identity: str | None = None) -> ClientSocket:
    return ClientSocket(f"tcp://127.0.0.1:{server.port}", identity=identity)


def test_port_zero_binds_a_free_port(server: ServerSocket) -> None:
    assert server.port > 0
    assert server.endpoint == f"tcp://127.0.0.1:{server.port}"


def test_messages_flow_both_ways(server: ServerSocket) -> None:
    client = client_of(server, "worker-w")
    try:
        client.send(HELLO)
        item = server.recv(timeout_ms=2000)
        assert item is not None
        identity, frames = item
        assert identity == b"worker-w"
        assert decode(frames) == HELLO
        weights = {"w": np.arange(10, dtype=np.float32)}
        assert server.send(identity, Message("weights", {"version": 1, "updates": 5}, weights))
        reply = client.recv(timeout_ms=2000)
        assert reply is not None and reply.kind == "weights"
        np.testing.assert_array_equal(reply.arrays["w"], weights["w"])
    finally:
        client.close()


def test_received_frames_are_forwarded_without_reencoding(server: ServerSocket) -> None:
    sender, receiver = client_of(server, "a"), client_of(server, "b")
    try:
        receiver.send(Message("ping"))
        assert server.recv(timeout_ms=2000) is not None  # the server now knows "b"
        big = {"w": np.random.default_rng(0).random((256, 256)).astype(np.float32)}
        sender.send(Message("weights", {"version": 7, "updates": 0}, big))
        item = server.recv(timeout_ms=2000)
        assert item is not None
        assert server.send_frames(b"b", item[1]) is SendResult.SENT
        got = receiver.recv(timeout_ms=2000)
        assert got is not None and got.meta["version"] == 7
        np.testing.assert_array_equal(got.arrays["w"], big["w"])
    finally:
        sender.close()
        receiver.close()


def test_send_to_unknown_peer_returns_gone_without_blocking(server: ServerSocket) -> None:
    start = time.monotonic()
    result = server.send(b"nobody", Message("ping"))
    assert result is SendResult.GONE and not result
    assert time.monotonic() - start < 0.5


def test_recv_times_out_with_none(server: ServerSocket) -> None:
    start = time.monotonic()
    assert server.recv(timeout_ms=50) is None
    assert server.recv(timeout_ms=0) is None
    assert 0.04 <= time.monotonic() - start < 1.0


def test_client_raises_on_malformed_message(server: ServerSocket) -> None:
    client = client_of(server, "c")
    try:
        client.send(HELLO)
        assert server.recv(timeout_ms=2000) is not None
        assert server.send_frames(b"c", [b"\xc1not msgpack"])
        with pytest.raises(DecodeError):
            client.recv(timeout_ms=2000)
        assert client.recv(timeout_ms=10) is None
    finally:
        client.close()


def test_close_frees_the_port() -> None:
    first = ServerSocket("127.0.0.1", 0)
    port = first.port
    first.close()
    second = ServerSocket("127.0.0.1", port)
    try:
        assert second.port == port
        with pytest.raises(OSError, match=str(port)):
            ServerSocket("127.0.0.1", port)
    finally:
        second.close()


def test_client_send_times_out_when_nobody_reads() -> None:
    port_holder = ServerSocket("127.0.0.1", 0)
    port = port_holder.port
    port_holder.close()  # nothing listens there now
    client = ClientSocket(f"tcp://127.0.0.1:{port}", send_timeout_ms=50, sndhwm=1)
    try:
        with pytest.raises(NetTimeout, match="send queue"):
            for _ in range(10):
                client.send(Message("ping"))
    finally:
        client.close()


@pytest.mark.parametrize("address", ["ipc:///tmp/x", "127.0.0.1:5555"])
def test_client_needs_a_tcp_address(address: str) -> None:
    with pytest.raises(ValueError, match="tcp://"):
        ClientSocket(address)


def test_client_identity_is_checked() -> None:
    with pytest.raises(ValueError, match="identity"):
        ClientSocket("tcp://127.0.0.1:1", identity="x" * 300)

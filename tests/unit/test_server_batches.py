"""Chunks in batches to a trainer that asks for them (hello ``batch_chunks``, issue 18).

The server sends up to ``batch_chunks`` queued chunks in one ``chunks`` message (the received
frames unchanged behind one header frame), never beyond the trainer's credit or
``max_message_bytes``; :func:`decode_many` and :class:`ClientSocket` hand them over one by one,
exactly as single chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Buffer, Message, decode, decode_many, encode
from tmrl2.net.errors import DecodeError
from tmrl2.net.transport import ClientSocket, SendResult, ServerSocket
from tmrl2.roles.server import Server


def hello(role: str, name: str, **meta: Any) -> Message:
    return Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION, **meta})


def chunk(worker: str, seq: int, n: int = 3) -> Message:
    arrays = {
        "obs": np.full((n, 2), seq, np.float32),
        "next_obs": np.full((n, 2), seq, np.float32),
        "action": np.zeros((n, 1), np.float32),
        "reward": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }
    meta = {"worker": worker, "policy_version": 0, "n": n, "episodes": [], "seq": seq}
    return Message("chunk", meta, arrays)


class Recorder:
    """In-memory transport: scripted incoming messages; frames sent to each peer kept."""

    port = 1

    def __init__(self, incoming: list[tuple[bytes, Message]]) -> None:
        self.incoming = [(identity, [bytes(f) for f in encode(m)]) for identity, m in incoming]
        self.sent: list[tuple[bytes, list[bytes]]] = []

    def push(self, identity: bytes, msg: Message) -> None:
        self.incoming.append((identity, [bytes(f) for f in encode(msg)]))

    def send(self, identity: bytes, msg: Message) -> SendResult:
        return self.send_frames(identity, encode(msg))

    def send_frames(self, identity: bytes, frames: Sequence[Buffer]) -> SendResult:
        self.sent.append((identity, [bytes(f) for f in frames]))
        return SendResult.SENT

    def recv(self, timeout_ms: int) -> tuple[bytes, list[Any]] | None:
        return self.incoming.pop(0) if self.incoming else None

    def peer_key(self, frames: Sequence[Any]) -> str | None:
        return None

    def close(self) -> None:
        pass

    def to(self, identity: bytes) -> list[list[Message]]:
        """Messages sent to ``identity``, each as the messages it held (a batch: several)."""
        return [decode_many(frames) for who, frames in self.sent if who == identity]


def run(trainer_meta: dict[str, Any], credit: int, chunks: int, **config: Any) -> Recorder:
    incoming = [
        (b"w1", hello("worker", "w1")),
        (b"w2", hello("worker", "w2")),
        (b"t", hello("trainer", "t", **trainer_meta)),
    ]
    fake = Recorder(incoming)
    server = Server(ServerConfig(port=0, worker_credit=8, **config), transport=fake)
    server.serve_once(0)
    for seq in range(1, chunks + 1):
        fake.push(b"w1" if seq % 2 else b"w2", chunk("w1" if seq % 2 else "w2", seq))
    fake.push(b"t", Message("credit", {"n": credit}))
    server.serve_once(0)
    return fake


def chunks_of(messages: list[list[Message]]) -> list[int]:
    return [m.meta["seq"] for batch in messages for m in batch if m.kind == "chunk"]


def test_a_trainer_that_asks_gets_batches_in_order_within_its_credit() -> None:
    fake = run({"batch_chunks": 4}, credit=6, chunks=9)
    sent = [m for m in fake.to(b"t") if m[0].kind == "chunk"]
    assert [len(batch) for batch in sent] == [4, 2]  # credit 6: 4, then the 2 left of it
    assert chunks_of(sent) == [1, 2, 3, 4, 5, 6]


def test_without_the_flag_each_chunk_is_its_own_message() -> None:
    fake = run({}, credit=6, chunks=9)
    sent = [m for m in fake.to(b"t") if m[0].kind == "chunk"]
    assert [len(batch) for batch in sent] == [1] * 6
    assert chunks_of(sent) == [1, 2, 3, 4, 5, 6]


def test_a_batch_forwards_the_received_frames_unchanged() -> None:
    fake = run({"batch_chunks": 8}, credit=2, chunks=2)
    (frames,) = [f for who, f in fake.sent if who == b"t" and len(f) > 1]
    single = [bytes(f) for f in encode(chunk("w1", 1))]
    assert frames[1 : 1 + len(single)] == single
    with pytest.raises(DecodeError, match="not a single message"):
        decode(frames)


def test_a_batch_stays_within_max_message_bytes() -> None:
    size = sum(len(f) for f in encode(chunk("w1", 1)))
    fake = run({"batch_chunks": 8}, credit=8, chunks=8, max_message_bytes=3 * size + 10)
    sent = [m for m in fake.to(b"t") if m[0].kind == "chunk"]
    assert [len(batch) for batch in sent] == [3, 3, 2]


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        ({"role": "worker", "batch_chunks": 4}, "trainer only"),
        ({"role": "trainer", "batch_chunks": 0}, "batch_chunks"),
        ({"role": "trainer", "batch_chunks": 65}, "batch_chunks"),
        ({"role": "trainer", "batch_chunks": True}, "batch_chunks"),
    ],
)
def test_bad_batch_flags_are_refused(meta: dict[str, Any], says: str) -> None:
    msg = Message("hello", {"name": "x", "protocol": PROTOCOL_VERSION, **meta})
    with pytest.raises(ValueError, match=says):
        encode(msg)


def batch_frames(*parts: list[bytes], counts: list[int] | None = None) -> list[bytes]:
    header = encode(Message("chunks", {"frames": counts or [len(p) for p in parts]}))[0]
    return [bytes(header), *(f for p in parts for f in p)]


def test_decode_many_refuses_malformed_batches() -> None:
    one = [bytes(f) for f in encode(chunk("w1", 1))]
    assert [m.meta["seq"] for m in decode_many(batch_frames(one, one))] == [1, 1]
    with pytest.raises(DecodeError, match="announces"):
        decode_many(batch_frames(one, one, counts=[len(one), len(one) + 1]))
    ping = [bytes(f) for f in encode(Message("ping"))] + [b""]  # 2 frames, not a chunk
    with pytest.raises(DecodeError):
        decode_many(batch_frames(one, ping))
    bad = [*one[:-1], b"\0"]  # a chunk whose last frame has the wrong size
    with pytest.raises(DecodeError, match="frame holds"):
        decode_many(batch_frames(one, bad))
    with pytest.raises(DecodeError, match="over|exceeds"):
        decode_many(batch_frames(one, one), max_bytes=sum(map(len, one)) - 1)


def test_a_client_socket_hands_a_batch_over_chunk_by_chunk() -> None:
    server = ServerSocket("127.0.0.1", 0)
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity="t")
    try:
        client.send(Message("ping"))
        assert server.recv(timeout_ms=2000) is not None
        parts = [[bytes(f) for f in encode(chunk("w1", seq))] for seq in (1, 2, 3)]
        assert server.send_frames(b"t", batch_frames(*parts))
        assert server.send(b"t", chunk("w2", 4))
        got = [client.recv(timeout_ms=2000) for _ in range(4)]
        received = [m for m in got if m is not None]
        assert [m.meta["seq"] for m in received] == [1, 2, 3, 4]
        np.testing.assert_array_equal(received[1].arrays["obs"], chunk("w1", 2).arrays["obs"])
    finally:
        client.close()
        server.close()

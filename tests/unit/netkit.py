"""Helpers shared by the network tests: a server running in a thread, small chunks, and an
in-memory server transport."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from tmrl2.net.codec import Message, decode, encode
from tmrl2.net.transport import SendResult
from tmrl2.roles.server import Server


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """Serve in a background thread (5 ms polls); stop, join and close on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=server.run, args=(stop, 5), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def box_chunk(
    reward: float, n: int = 5, worker: str = "w", obs: np.ndarray | None = None
) -> Message:
    """A chunk of ``n`` transitions of a Box observation (``obs``, default 2 floats each, also
    used as ``next_obs``), rewards all ``reward``."""
    obs = np.zeros((n, 2), np.float32) if obs is None else obs
    arrays = {
        "obs": obs,
        "next_obs": obs,
        "action": np.zeros((n, 3), np.float32),
        "reward": np.full(n, reward, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }
    meta = {"worker": worker, "policy_version": 0, "n": n, "episodes": []}
    return Message("chunk", meta, arrays)


class FakeServerTransport:
    """In-memory :class:`~tmrl2.net.transport.ServerTransport`: messages pushed with
    :meth:`push` are received in order; sends are decoded and recorded in :attr:`sent`;
    :attr:`results` scripts the outcome of sends to given identities (default SENT);
    :attr:`keys` gives each identity's Curve public key (as ZAP's User-Id would)."""

    port = 1

    def __init__(self) -> None:
        self.incoming: list[tuple[bytes, list[Any]]] = []
        self.sent: list[tuple[bytes, Message]] = []
        self.results: dict[bytes, SendResult] = {}
        self.keys: dict[bytes, str] = {}
        self._key_of_frames: dict[int, str] = {}

    def push(self, identity: bytes, msg: Message) -> None:
        frames = [bytes(frame) for frame in encode(msg)]
        if identity in self.keys:
            self._key_of_frames[id(frames[0])] = self.keys[identity]
        self.incoming.append((identity, frames))

    def send(self, identity: bytes, msg: Message) -> SendResult:
        return self.send_frames(identity, encode(msg))

    def send_frames(self, identity: bytes, frames: Sequence[Any]) -> SendResult:
        result = self.results.get(identity, SendResult.SENT)
        if result:
            self.sent.append((identity, decode([bytes(frame) for frame in frames])))
        return result

    def recv(self, timeout_ms: int) -> tuple[bytes, list[Any]] | None:
        return self.incoming.pop(0) if self.incoming else None

    def peer_key(self, frames: Sequence[Any]) -> str | None:
        return self._key_of_frames.get(id(frames[0])) if frames else None

    def close(self) -> None:
        pass

    def to(self, identity: bytes, kind: str | None = None) -> list[Message]:
        """Messages sent to ``identity`` (of ``kind``), in order; clears nothing."""
        return [m for i, m in self.sent if i == identity and (kind is None or m.kind == kind)]

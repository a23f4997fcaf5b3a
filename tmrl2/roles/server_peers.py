"""The server's records of its peers and of the chunks it holds (:mod:`tmrl2.roles.server`).

A :class:`Peer` lives from a client's ``hello`` to its ``bye`` (or until a send finds it
gone); it carries what the server enforces per connection: the Curve key the session was
opened with, its chunks in flight (its credit is ``worker_credit`` minus those), and which of the
latest weights and trainer state it has had. A :class:`QueuedChunk` remembers the session it
came in, so that its credit never goes to a later session of the same identity.
:func:`next_batch` and :class:`BatchHeaders` make the ``chunks`` messages that carry several
queued chunks to a trainer whose hello set ``batch_chunks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tmrl2.net.codec import Buffer, Message, encode
from tmrl2.roles.server_stats import WorkerStats

__all__ = ["BatchHeaders", "Peer", "QueuedChunk", "next_batch"]


@dataclass
class Peer:
    """A registered client: one session, from its hello to its bye (or its loss)."""

    role: str
    name: str
    session: str | None = None
    """The client's process session from its hello (None: an older client)."""
    key: str | None = None
    """The Curve public key its hello came with (None without Curve)."""
    worker: WorkerStats | None = None
    """Its counters (workers only)."""
    weights_sent: int = 0
    """Server-side sequence number of the latest weights sent to this peer."""
    state_sent: int = 0
    """Server-side sequence number of the latest trainer state sent to this peer."""
    in_flight: int = 0
    """Chunks of this session accepted and still queued (not yet forwarded, dropped or
    rejected): a chunk that would make it exceed ``worker_credit`` is dropped."""
    wants_stats: bool = False
    """A trainer whose hello set ``server_stats``: it gets the server's ``stats`` messages."""
    batch_chunks: int = 1
    """Most chunks per message to this trainer (its hello's ``batch_chunks``; 1: one each)."""


@dataclass
class QueuedChunk:
    """A worker chunk waiting for trainer credit."""

    frames: Sequence[Buffer]
    msg: Message
    """The decoded chunk (its arrays are views of ``frames``), for the spec check of chunks
    queued before the trainer declared its spec."""
    origin: bytes
    """Identity of the worker that sent it (its credit comes back when the chunk leaves)."""
    peer: Peer
    """The session it came in: credit goes back only to that session, not to a later one."""
    checked: bool
    """Whether it was checked against a trainer's spec."""
    n: int
    """Its transitions (meta ``n``)."""
    size: int
    """Its bytes, all frames together."""


def next_batch(queue: Sequence[QueuedChunk], most: int, limit: int) -> list[QueuedChunk]:
    """The oldest queued chunks, at most ``most`` of them and ``limit`` bytes in all (the
    first one always)."""
    batch = [queue[0]]
    size = batch[0].size
    for index in range(1, min(most, len(queue))):
        chunk = queue[index]
        size += chunk.size
        if size > limit:
            break
        batch.append(chunk)
    return batch


class BatchHeaders:
    """The frames of ``chunks`` messages, with their header frames encoded once per shape
    (the frame counts of the chunks in it) and at most ``most`` shapes kept."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._headers: dict[tuple[int, ...], bytes | memoryview] = {}

    def frames(self, batch: Sequence[QueuedChunk]) -> list[Buffer]:
        """A ``chunks`` message: its header frame, then every chunk's frames, unchanged."""
        counts = tuple(len(chunk.frames) for chunk in batch)
        header = self._headers.get(counts)
        if header is None:
            header = encode(Message("chunks", {"frames": list(counts)}))[0]
            if len(self._headers) >= self.most:
                self._headers.clear()
            self._headers[counts] = header
        frames: list[Buffer] = [header]
        for chunk in batch:
            frames.extend(chunk.frames)
        return frames

"""The server's counters: totals since it started and a bounded table of per-worker counters.

They are plain dataclasses read by the live status line (:mod:`tmrl2.roles.server_live`), the
tests and the benchmarks. The per-worker table is keyed by the name a worker gave in its
``hello``; :func:`prune_workers` keeps it bounded (entries of workers not seen for
``peer_ttl_s`` go, then the longest unseen beyond ``max_peers``), so that workers coming and
going for days, or a peer inventing names, cannot grow the server's memory.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkerStats:
    """Counters of one worker, by the name it gave in its ``hello``."""

    samples: int = 0
    """Transitions received from it (within its credit)."""
    chunks: int = 0
    """Chunks received from it (within its credit)."""
    policy_version: int = 0
    """Weights version of its latest chunk."""
    bytes: int = 0
    """Bytes of its chunks as received (compressed where they were)."""
    last_seen_s: float = 0.0
    """``time.monotonic()`` of its latest message."""
    rejected: int = 0
    """Its chunks rejected: arrays unlike the trainer's ``spec``, or not finite."""
    over_credit: int = 0
    """Its chunks dropped because it had no credit left (it ignores flow control)."""


@dataclass
class ServerStats:
    """Counters of the server since it started."""

    messages: int = 0
    """Messages received, malformed ones included."""
    malformed: int = 0
    """Messages dropped as malformed (undecodable, unregistered sender, wrong role)."""
    unregistered: int = 0
    """Of the malformed, valid messages from peers without a session (asked to rejoin)."""
    samples_lost: int = 0
    """Transitions in chunks dropped because their sender had no session, counted only for
    senders that held a session within ``peer_ttl_s`` or open one afterwards (so a stranger
    sending chunks cannot inflate it; its chunks count in :attr:`unregistered` only)."""
    refused: int = 0
    """Hellos refused (protocol, token, config hash, role, name, second trainer, rate)."""
    refused_codes: dict[str, int] = field(default_factory=dict)
    """Refused hellos by ``code``."""
    auth_rejected: int = 0
    """Connections refused because the client's Curve key is not authorized."""
    errors: int = 0
    """Messages whose handling raised unexpectedly (a server bug; logged with traceback)."""
    chunks_in: int = 0
    """Chunks received from registered workers within their credit; each one is then
    forwarded, queued, dropped (queue full) or rejected."""
    samples_in: int = 0
    """Transitions in those chunks."""
    bytes_in: int = 0
    """Bytes of all received messages."""
    chunks_forwarded: int = 0
    """Chunks sent to the trainer."""
    messages_forwarded: int = 0
    """Messages that carried them (fewer than the chunks when the trainer takes batches)."""
    samples_forwarded: int = 0
    """Transitions in those chunks."""
    chunks_dropped: int = 0
    """Chunks dropped because the queue was full."""
    rejected: int = 0
    """Chunks rejected: arrays unlike the trainer's ``spec`` (names, dtypes, row shapes), or
    float values that are not finite. Per worker: :attr:`WorkerStats.rejected`."""
    over_credit: int = 0
    """Chunks dropped because their worker had no credit left (never queued, so a greedy
    worker cannot push out other workers' chunks). Per worker: :attr:`WorkerStats.over_credit`."""
    weights_version: int = 0
    """Version of the latest weights received from the trainer (0 = none yet)."""
    weights_sent: int = 0
    """Weights messages sent to workers."""
    states_sent: int = 0
    """``state`` messages sent to workers."""
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    """Per-worker counters, by worker name (bounded: :func:`prune_workers`)."""
    workers_connected: int = 0
    """Workers registered now."""
    trainer_connected: bool = False
    """Whether a trainer is registered."""
    trainer_stats: dict[str, Any] = field(default_factory=dict)
    """Meta of the trainer's latest ``stats`` message."""
    trainer_state: dict[str, Any] = field(default_factory=dict)
    """Meta of the trainer's latest ``state`` message."""


def prune_workers(
    workers: dict[str, WorkerStats],
    live: Collection[str],
    now: float,
    ttl_s: float,
    most: int,
) -> int:
    """Drop the entries of workers not in ``live`` and not seen for ``ttl_s``, then the
    longest unseen non-live ones beyond ``most`` entries. Returns how many were dropped."""
    stale = [
        name for name, w in workers.items() if name not in live and now - w.last_seen_s > ttl_s
    ]
    for name in stale:
        del workers[name]
    dropped = len(stale)
    if len(workers) > most:
        idle = sorted((w.last_seen_s, name) for name, w in workers.items() if name not in live)
        for _, name in idle[: len(workers) - most]:
            del workers[name]
            dropped += 1
    return dropped

"""The trainer's ingestion: every chunk is checked before it reaches the replay memory.

The server checks chunks too, but the trainer does not trust it to (an older server, a bug, a
peer with a trainer's key): a chunk whose arrays differ from the run's spec (names, dtypes,
per-row shapes), whose float arrays hold NaN or infinity, or whose meta is malformed is
dropped and counted (``rejected_chunks``), never fatal; so is an episode record that cannot be
true (``rejected_episodes``: a negative lap time would otherwise become the best lap).

Loss accounting: a worker numbers its chunks per process session (``session``, ``seq``) and
says how many transitions it has sent so far (``sent``, this chunk included). The trainer
keeps the last ``sent`` per (worker, session): what arrives beyond it minus the chunk's own
rows was lost on the way (``samples_lost``). The first chunk seen of a session counts from 0
only when it is the session's first chunk (``seq == 1``); otherwise the trainer restarted
under a running worker and has no baseline yet.

A vectorized worker's chunk (meta ``cars: k``, see docs/vectorized.md) holds k car-major
sub-chunks of ``n / k`` rows; it is checked and counted as one chunk of ``n`` rows, and
:meth:`Accepted.parts` hands the sub-chunks over one by one, so that the replay memory appends
each car's consecutive steps on their own (n-step returns and frame histories never run from
one car into the next).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmrl2.memory.compact import expand_chunk
from tmrl2.roles.chunk_checks import Spec, check_chunk_arrays, check_episode, chunk_cars
from tmrl2.roles.pacing import Clock

log = logging.getLogger(__name__)

WARN_PERIOD_S = 10.0
"""Shortest time between two warnings about rejected input."""
MAX_SESSIONS = 4096
"""Worker sessions remembered for loss accounting (least recently seen forgotten first)."""


@dataclass
class Accepted:
    """A chunk that passed every check, in the plain layout."""

    arrays: dict[str, np.ndarray]
    n: int
    worker: str
    policy_version: int
    episodes: list[dict[str, Any]] = field(default_factory=list)
    cars: int = 1
    """Car-major sub-chunks in :attr:`arrays` (a vectorized worker's cars; 1: one car)."""

    def parts(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        """``(source, arrays)`` per car, in order: the chunk itself for one car (source: the
        worker's name), else views of each car's ``n / cars`` rows (source
        ``<worker>/car<i>``). Append each part to the replay memory on its own."""
        if self.cars == 1:
            return [(self.worker, self.arrays)]
        rows = self.n // self.cars
        return [
            (
                f"{self.worker}/car{i}",
                {k: a[i * rows : (i + 1) * rows] for k, a in self.arrays.items()},
            )
            for i in range(self.cars)
        ]


class Ingest:
    """Checks chunks against the run's spec and keeps the books (module docstring)."""

    def __init__(self, spec: Spec, clock: Clock = time.monotonic) -> None:
        self.spec = spec
        self.clock = clock
        self.rejected_chunks = 0
        self.rejected_episodes = 0
        self.samples_lost = 0
        self._sent: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._last_warning = -math.inf

    def counters(self) -> dict[str, int]:
        return {
            "rejected_chunks": self.rejected_chunks,
            "rejected_episodes": self.rejected_episodes,
            "samples_lost": self.samples_lost,
        }

    def take(self, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Accepted | None:
        """The chunk, checked and expanded, or None (rejected and counted)."""
        worker = str(meta.get("worker", "?"))[:128]
        try:
            n = meta["n"]
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                raise ValueError(f"n={n!r}")
            policy_version = int(meta.get("policy_version", 0))
            cars = chunk_cars(meta, n)
        except (KeyError, TypeError, ValueError) as exc:
            self._reject(worker, f"malformed meta ({exc!r})")
            return None
        self._account(worker, meta, n)
        why = check_chunk_arrays(arrays, n, self.spec)
        if why is not None:
            self._reject(worker, why)
            return None
        episodes = meta.get("episodes", [])
        good: list[dict[str, Any]] = []
        for record in episodes if isinstance(episodes, list) else [episodes]:
            bad = check_episode(record)
            if bad is None:
                good.append(dict(record))
            else:
                self.rejected_episodes += 1
                self._warn(f"dropped an episode record of worker {worker!r}: {bad}")
        return Accepted(expand_chunk(arrays), n, worker, policy_version, good, cars)

    def _account(self, worker: str, meta: Mapping[str, Any], n: int) -> None:
        session, seq, sent = meta.get("session"), meta.get("seq"), meta.get("sent")
        if not (isinstance(session, str) and isinstance(seq, int) and isinstance(sent, int)):
            return  # a worker without loss accounting (an older version)
        key = (worker, session)
        previous = self._sent.pop(key, 0 if seq == 1 else None)
        if previous is not None and sent - n > previous:
            self.samples_lost += sent - n - previous
        self._sent[key] = max(sent, previous or 0)
        while len(self._sent) > MAX_SESSIONS:
            self._sent.popitem(last=False)

    def _reject(self, worker: str, why: str) -> None:
        self.rejected_chunks += 1
        self._warn(f"dropped a chunk of worker {worker!r}: {why}")

    def _warn(self, text: str) -> None:
        now = self.clock()
        if now - self._last_warning >= WARN_PERIOD_S:
            self._last_warning = now
            log.warning(
                "%s (rejected so far: %d chunks, %d episode records)",
                text,
                self.rejected_chunks,
                self.rejected_episodes,
            )

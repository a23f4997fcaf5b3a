"""Helpers shared by the network tests: a server running in a thread, and small chunks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from tmrl2.net.codec import Message
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

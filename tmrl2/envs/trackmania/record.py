"""Record a reference lap from the game: the positions of a lap you drive, saved as N x 3.

The progress reward needs a line along the map (the game has no centerline to read). Start
the command, then drive one clean lap: recording starts at the next episode start (restart
the map) and stops at the finish; a restart in between starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import BridgeTimeout
from tmrl2.envs.trackmania.client import BridgeClient
from tmrl2.rewards.reference import ReferenceLine

MIN_STEP_M = 0.2
"""Positions closer than this to the previous one are skipped (a car standing still)."""


def record_game_reference(
    client: BridgeClient,
    out: Path,
    timeout_s: float = 900.0,
    tick: Callable[[], None] | None = None,
    wait_for_restart: bool = True,
) -> int:
    """Record one lap through ``client``; returns the number of points saved to ``out``.

    ``tick`` is called before each wait (to advance a lockstep simulator); the game streams
    by itself. With ``wait_for_restart`` the lap starts at the next EPISODE_START.
    """
    client.ensure_connected()
    state = client.wait_state(timeout=timeout_s)
    episode = state.episode + 1 if wait_for_restart else state.episode
    points: list[tuple[float, float, float]] = []
    seq = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        try:
            state = client.wait_state(after_seq=seq, episode=episode, timeout=5.0)
        except BridgeTimeout:
            continue  # still waiting for the restart, or the game is paused
        seq = state.seq
        if state.episode > episode:  # restarted mid-lap: start over
            episode, points = state.episode, []
        if state.race_time_ms < 0:
            continue  # countdown
        if not points or np.hypot(*np.subtract(state.pos, points[-1])[[0, 2]]) >= MIN_STEP_M:
            points.append(state.pos)
        if state.has(p.StateFlag.FINISHED):
            array = np.asarray(points, np.float32)
            ReferenceLine(array)  # refuses a line too short to be a lap
            out.parent.mkdir(parents=True, exist_ok=True)
            np.save(out, array, allow_pickle=False)
            return len(array)
    raise BridgeTimeout(f"no finished lap within {timeout_s:g} s: drive a lap to the finish")

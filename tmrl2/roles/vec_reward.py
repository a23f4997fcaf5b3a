"""The configured reward of N cars at once, when it is made of built-in terms only.

A :class:`~tmrl2.rewards.manager.RewardManager` (``reward.kind: terms``) whose terms are all
built-in and need no reference line is computed here for every car with numpy, with the very
arithmetic of :mod:`tmrl2.rewards.terms` (same operations, same order, same float64 values),
from the batch's telemetry columns: no ``info`` dict per car and no Python call per car and
term. ``tests/unit/test_vec_worker.py`` holds it equal, term by term and car by car, to one
real reward object per car fed ``SimEnv``'s ``info`` dicts. Any other reward (custom terms,
reference lines, another ``reward.kind``) is computed car by car by the real objects
(:class:`~tmrl2.roles.vec_worker.CarBatch` decides).
"""

from __future__ import annotations

import numpy as np

from tmrl2.envs.sim import kernels
from tmrl2.envs.sim.track import SURFACES
from tmrl2.rewards.base import Reward
from tmrl2.rewards.manager import RewardManager
from tmrl2.rewards.terms import (
    AirTime,
    Checkpoint,
    Finish,
    OffTrack,
    Progress,
    Speed,
    Steering,
    Term,
    Time,
    Wall,
)

ROAD = SURFACES.index("road")
"""Surface code of the road (``off_track`` pays on any other)."""


def _supported(term: Term) -> bool:
    if isinstance(term, Progress | OffTrack):
        return term.line is None
    return type(term) in (Checkpoint, Speed, Wall, Steering, AirTime, Time, Finish)


class VecReward:
    """The terms of one :class:`RewardManager`, for ``n`` cars (module docstring)."""

    def __init__(self, manager: RewardManager, n: int) -> None:
        """Args:
        manager: a reward for which :meth:`applies` holds (its terms and weights are read).
        n: cars.
        """
        self.terms = dict(manager.terms)
        self.names = list(self.terms)
        self.n = n
        self._progress = np.zeros(n)
        self._checkpoint = np.zeros(n, np.int64)
        self._steer = np.zeros(n)
        self._race_ms = np.zeros(n, np.int64)

    @staticmethod
    def applies(reward: Reward) -> bool:
        """Whether ``reward`` can be computed here (a manager of supported terms only)."""
        return type(reward) is RewardManager and all(map(_supported, reward.terms.values()))

    def reset(self, cars: np.ndarray, tele: dict[str, np.ndarray]) -> None:
        """New episodes for ``cars`` (``tele``: their telemetry, one row per car)."""
        self._progress[cars] = tele["progress_m"]
        self._checkpoint[cars] = tele["checkpoint"]
        self._steer[cars] = 0.0
        self._race_ms[cars] = tele["race_time_ms"]

    def __call__(
        self, tele: dict[str, np.ndarray], states: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(total (n,), weighted terms (n, len(names)))`` of this step."""
        values = np.zeros((self.n, len(self.names)))
        total = np.zeros(self.n)
        for k, term in enumerate(self.terms.values()):
            values[:, k] = term.config.weight * self._term(term, tele, states, actions)
            total += values[:, k]  # sum(last_terms.values()), in the terms' order
        return total, values

    def _term(
        self, term: Term, tele: dict[str, np.ndarray], states: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        cfg = term.config
        if isinstance(term, Progress):
            progress = tele["progress_m"]
            gained = np.maximum(0.0, progress - self._progress)
            self._progress = np.maximum(progress, self._progress)
            return cfg.scale * gained
        if isinstance(term, Checkpoint):
            checkpoint = tele["checkpoint"]
            passed = checkpoint - self._checkpoint
            self._checkpoint = checkpoint.copy()
            return cfg.per_checkpoint * np.maximum(passed, 0) + cfg.finish * tele["finished"]
        if isinstance(term, Speed):
            return cfg.scale * tele["speed_ms"]
        if isinstance(term, OffTrack):
            return -cfg.penalty * (states[:, kernels.SURFACE] != ROAD)
        if isinstance(term, Wall):
            return -cfg.penalty * tele["wall_contact"]
        if isinstance(term, Steering):
            steer = actions[:, cfg.steer_index].astype(np.float64)
            change = np.abs(steer - self._steer)
            self._steer = steer
            return -cfg.scale * change
        if isinstance(term, AirTime):
            now = tele["race_time_ms"]
            dt_s = (now - self._race_ms) / 1000.0
            self._race_ms = now.copy()
            return cfg.scale * dt_s * (states[:, kernels.AIRBORNE] != 0.0)
        if isinstance(term, Time):
            return np.full(self.n, -cfg.penalty)
        if isinstance(term, Finish):
            return cfg.bonus * tele["finished"]
        raise TypeError(f"{type(term).__name__} is not vectorized")  # applies() said no

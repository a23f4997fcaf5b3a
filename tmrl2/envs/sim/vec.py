"""A batch of N cars on one track, stepped together (LIDAR observations).

The same physics and LIDAR as :class:`~tmrl2.envs.sim.car.Car` and
:class:`~tmrl2.envs.sim.lidar.Lidar` (the same compiled kernels of
:mod:`tmrl2.envs.sim.kernels`, called once for all N cars), for data throughput: the
per-call overhead that dominates a single car is paid once per batch. Cars that finish or
stall are reset on their own (auto-reset, like Gymnasium's vector envs); their last
observation is in ``info["final_obs_lidar"]``.

Not covered: images, previews, domain randomization and respawns (use :class:`SimEnv`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tmrl2.envs.sim import kernels
from tmrl2.envs.sim.car import Car, CarParams, CarState
from tmrl2.envs.sim.env import (
    SPEED_REF_MS,
    START_HEADING_NOISE_RAD,
    START_OFFSET_NOISE_M,
    SimEnvConfig,
)
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.track import load_track


class SimBatch:
    """``n`` independent cars; ``step(actions (n, 3))`` -> observations, rewards, flags."""

    def __init__(self, n: int, config: SimEnvConfig | None = None, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"a batch needs at least one car, got n={n}")
        self.n = n
        self.config = cfg = config or SimEnvConfig()
        self.track = track = load_track(cfg.track)
        self.params = CarParams()
        self.rng = np.random.default_rng(seed)
        self._table, self._walls = kernels.track_tables(track)
        self._packed = kernels.pack_params(self.params, track)
        lidar = Lidar(track, cfg.lidar_beams, cfg.lidar_range_m)  # the single car's window
        self.angles, self._ahead, self._behind = lidar.angles, lidar.ahead, lidar.behind
        self.states = np.zeros((n, kernels.NSTATE))
        """One row per car, columns :data:`kernels.STATE_FIELDS`."""
        self._contact = np.zeros(n, np.bool_)
        self._scan_out = np.zeros((n, cfg.lidar_beams))
        self.steps = np.zeros(n, np.int64)
        self.progress = np.zeros(n)
        self._stuck_anchor = np.zeros(n)
        self._stuck_since = np.zeros(n, np.int64)
        self._lidar = np.zeros((n, cfg.lidar_history, cfg.lidar_beams), np.float32)
        self._actions = np.zeros((n, cfg.action_history, 3), np.float32)

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> dict[str, np.ndarray]:
        """Views of :attr:`states`' columns by field name (integers stored as floats)."""
        return {name: self.states[:, k] for k, name in enumerate(kernels.STATE_FIELDS)}

    def set_car(self, i: int, car: CarState) -> None:
        """Put car ``i`` in a given single-car state (tests compare the two models)."""
        self.states[i] = [float(getattr(car, name)) for name in kernels.STATE_FIELDS]

    def _reset_cars(self, idx: np.ndarray) -> None:
        car = Car(self.track, self.params)
        for i in idx:
            noise = self.rng.uniform(-1.0, 1.0, 2)
            car.reset(
                offset=noise[0] * START_OFFSET_NOISE_M,
                heading_offset=noise[1] * START_HEADING_NOISE_RAD,
            )
            self.set_car(int(i), car.state)
        self.steps[idx] = 0
        self.progress[idx] = 0.0
        self._stuck_anchor[idx] = 0.0
        self._stuck_since[idx] = 0
        self._actions[idx] = 0.0
        self._lidar[idx] = self._scan(idx)[:, None, :]

    def reset(self) -> dict[str, np.ndarray]:
        self._reset_cars(np.arange(self.n))
        return self._obs()

    # ----------------------------------------------------------------- stepping
    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        cfg = self.config
        act = np.clip(np.asarray(actions, np.float32).reshape(self.n, 3), -1.0, 1.0)
        controls = act.astype(np.float64)
        np.maximum(controls[:, :2], 0.0, out=controls[:, :2])  # gas and brake
        duration = cfg.time_step_ms / 1000.0
        before = self.progress.copy()
        kernels.step_cars(self.states, controls, duration, self._packed, self._table, self._contact)
        st = self.state
        self.steps += 1
        self._actions[:, :-1] = self._actions[:, 1:]
        self._actions[:, -1] = act
        self._lidar[:, :-1] = self._lidar[:, 1:]
        self._lidar[:, -1] = self._scan()
        length = self.track.length_m
        finished = st["s"] >= length
        self.progress = np.maximum(self.progress, np.minimum(st["s"], length))
        moved = self.progress > self._stuck_anchor + cfg.stuck_progress_m
        self._stuck_anchor = np.where(moved, self.progress, self._stuck_anchor)
        self._stuck_since = np.where(moved, self.steps, self._stuck_since)
        truncated = ~finished & (
            (self.steps >= cfg.max_episode_steps)
            | (self.steps - self._stuck_since >= cfg.stuck_steps)
        )
        reward = 0.1 * (self.progress - before)  # the default progress term: 0.1 per metre
        info = {"progress_m": self.progress.copy(), "speed_ms": np.hypot(st["vx"], st["vz"])}
        done = finished | truncated
        if done.any():
            info["final_obs_lidar"] = self._lidar[done].copy()
            self._reset_cars(np.flatnonzero(done))
        return self._obs(), reward.astype(np.float32), finished, truncated, info

    def _obs(self) -> dict[str, np.ndarray]:
        speed = np.minimum(np.hypot(self.state["vx"], self.state["vz"]) / SPEED_REF_MS, 1.0)
        return {
            "lidar": self._lidar.copy(),
            "speed": speed.astype(np.float32)[:, None],
            "prev_actions": self._actions.copy(),
        }

    # ----------------------------------------------------------------- LIDAR
    def _scan(self, idx: np.ndarray | None = None) -> np.ndarray:
        """``(n, beams)`` distances / range, as :meth:`Lidar.measure` for each car (or for
        the cars ``idx``)."""
        rng = self.config.lidar_range_m
        states = self.states if idx is None else self.states[idx]
        out = self._scan_out if idx is None else np.empty((len(idx), len(self.angles)))
        kernels.lidar_cars(
            states, self.angles, rng, self._ahead, self._behind, self._table, self._walls, out
        )
        return (out / rng).astype(np.float32)

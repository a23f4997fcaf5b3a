"""The simulator as a Gymnasium environment (``env.kind: sim``), fast mode.

:class:`SimEnv` owns the episode: it places the car at the start, turns actions into
controls, advances exactly ``time_step_ms`` of simulated time per ``step`` (as fast as the CPU
allows), and builds the observation (LIDAR history, speed, previous actions), the telemetry
``info`` and the reward (from an injected :class:`~tmrl2.rewards.base.Reward`). The car
physics live in :mod:`~tmrl2.envs.sim.car`, the geometry in :mod:`~tmrl2.envs.sim.track`, the
rays in :mod:`~tmrl2.envs.sim.lidar`; real-time stepping is :mod:`tmrl2.envs.realtime`.

Action ``[gas, brake, steer]`` in ``[-1, 1]``: gas and brake are clipped to ``[0, 1]``,
steer is positive to the right (tmrl's convention).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field

from tmrl2.config.base import ComponentConfig
from tmrl2.envs.sim.car import Car
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.track import Track, load_track
from tmrl2.rewards.base import Reward
from tmrl2.rewards.progress import ProgressReward

SPEED_REF_MS = 100.0
"""The ``speed`` observation is the car's speed divided by this (top speed is about 80 m/s)."""
START_OFFSET_NOISE_M = 0.2
"""Largest random lateral offset of the car at the start (seeded)."""
START_HEADING_NOISE_RAD = 0.01
"""Largest random heading error of the car at the start (seeded)."""

Obs = dict[str, np.ndarray]


class SimEnvConfig(ComponentConfig):
    """Built-in TrackMania-like simulator."""

    kind: str = "sim"
    """Registry name of the built-in simulator."""
    track: str = "default"
    """Bundled track to drive (see :func:`tmrl2.envs.sim.track.known_tracks`)."""
    time_step_ms: int = Field(default=50, gt=0)
    """Simulated time per env step (20 Hz by default, like tmrl)."""
    realtime: bool = False
    """Step at ``1000 / time_step_ms`` Hz of wall clock through rtgym instead of fast mode."""
    max_episode_steps: int = Field(default=2400, gt=0)
    """Truncate the episode after this many steps (2 minutes at 50 ms)."""
    lidar_beams: int = Field(default=19, ge=1)
    """LIDAR rays over the front half-plane, from 90 degrees left to 90 degrees right."""
    lidar_range_m: float = Field(default=100.0, gt=0)
    """LIDAR distance cap; the observation is distance / range in [0, 1]."""
    lidar_history: int = Field(default=1, ge=1)
    """LIDAR frames in the observation, oldest first."""
    action_history: int = Field(default=2, ge=1)
    """Previous actions in the observation, newest last (at least 1: in real time the actions
    in flight are part of the state)."""
    stuck_steps: int = Field(default=100, gt=0)
    """Truncate when progress has not grown by ``stuck_progress_m`` for this many steps."""
    stuck_progress_m: float = Field(default=1.0, gt=0)
    """Progress that counts as moving on for ``stuck_steps``."""
    end_on_wall: bool = False
    """Truncate the episode on the first wall contact."""


class SimEnv(gym.Env[Obs, np.ndarray]):
    """A car on a track with LIDAR observations; Gymnasium API, fast mode."""

    Config = SimEnvConfig
    metadata: dict[str, Any] = {"render_modes": []}
    observation_space: spaces.Dict  # type: ignore[assignment]  # narrower than Env's Space
    action_space: spaces.Box

    def __init__(self, config: SimEnvConfig | None = None, reward: Reward | None = None) -> None:
        """Args:
        config: env settings (defaults: the default track, 20 Hz, 19 beams).
        reward: turns telemetry into rewards (default :class:`ProgressReward`).
        """
        self.config = config or SimEnvConfig()
        self.reward = reward if reward is not None else ProgressReward()
        cfg = self.config
        self.track: Track = load_track(cfg.track)
        self.car = Car(self.track)
        self.lidar = Lidar(self.track, cfg.lidar_beams, cfg.lidar_range_m)
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.observation_space = spaces.Dict(
            {
                "lidar": spaces.Box(0.0, 1.0, (cfg.lidar_history, cfg.lidar_beams), np.float32),
                "speed": spaces.Box(0.0, 1.0, (1,), np.float32),
                "prev_actions": spaces.Box(-1.0, 1.0, (cfg.action_history, 3), np.float32),
            }
        )
        self._dt_s = cfg.time_step_ms / 1000.0
        self._lidar = np.zeros((cfg.lidar_history, cfg.lidar_beams), np.float32)
        self._actions = np.zeros((cfg.action_history, 3), np.float32)
        self._steps = 0
        self._progress_m = 0.0
        self._stuck_anchor_m = 0.0
        self._stuck_since = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        noise = self.np_random.uniform(-1.0, 1.0, 2)
        self.car.reset(
            offset=float(noise[0]) * START_OFFSET_NOISE_M,
            heading_offset=float(noise[1]) * START_HEADING_NOISE_RAD,
        )
        self._steps = 0
        self._progress_m = 0.0
        self._stuck_anchor_m = 0.0
        self._stuck_since = 0
        self._actions[:] = 0.0
        self._lidar[:] = self._scan()
        info = self._info(wall_contact=False)
        self.reward.reset(info)
        return self._obs(), info

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        cfg, st = self.config, self.car.state
        act = np.clip(np.asarray(action, dtype=np.float32).reshape(3), -1.0, 1.0)
        gas, brake, steer = max(float(act[0]), 0.0), max(float(act[1]), 0.0), float(act[2])
        s_before = st.s
        wall_contact = self.car.step(gas, brake, steer, self._dt_s)
        self._steps += 1
        self._actions[:-1] = self._actions[1:]
        self._actions[-1] = act
        self._lidar[:-1] = self._lidar[1:]
        self._lidar[-1] = self._scan()

        finished = st.s >= self.track.length_m
        self._progress_m = max(self._progress_m, min(st.s, self.track.length_m))
        if self._progress_m > self._stuck_anchor_m + cfg.stuck_progress_m:
            self._stuck_anchor_m, self._stuck_since = self._progress_m, self._steps
        info = self._info(wall_contact)
        if finished:
            # The finish is crossed inside the step: interpolate when, as the game times it.
            frac = (self.track.length_m - s_before) / max(st.s - s_before, 1e-9)
            info["lap_time_s"] = ((self._steps - 1) + min(max(frac, 0.0), 1.0)) * self._dt_s
        truncated = not finished and (
            self._steps >= cfg.max_episode_steps
            or self._steps - self._stuck_since >= cfg.stuck_steps
            or (cfg.end_on_wall and wall_contact)
        )
        return self._obs(), float(self.reward(info)), finished, truncated, info

    def _scan(self) -> np.ndarray:
        st = self.car.state
        return self.lidar.measure(st.x, st.z, st.heading, st.seg) / self.lidar.range_m

    def _obs(self) -> Obs:
        speed = min(self.car.state.speed / SPEED_REF_MS, 1.0)
        return {
            "lidar": self._lidar.copy(),
            "speed": np.array([speed], np.float32),
            "prev_actions": self._actions.copy(),
        }

    def _info(self, wall_contact: bool) -> dict[str, Any]:
        st = self.car.state
        return {
            "progress_m": self._progress_m,
            "progress_frac": self._progress_m / self.track.length_m,
            "speed_ms": st.speed,
            "finished": st.s >= self.track.length_m,
            "wall_contact": wall_contact,
            "checkpoint": self.track.checkpoints_passed(self._progress_m),
            "race_time_ms": self._steps * self.config.time_step_ms,
            "track_length_m": self.track.length_m,
            "position": (st.x, st.y, st.z),
        }

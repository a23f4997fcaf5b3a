"""The simulator as a Gymnasium environment (``env.kind: sim``), fast mode.

:class:`SimEnv` owns the episode: it places the car at the start, turns actions into
controls, advances exactly ``time_step_ms`` of simulated time per ``step`` (as fast as the CPU
allows), and builds the observation (LIDAR history, speed, previous actions; optionally
images and a preview of the road ahead), the telemetry ``info`` and the reward (from an
injected :class:`~tmrl2.rewards.base.Reward`); it draws the optional domain randomization at
each reset and respawns the car at the last checkpoint on request. The car physics live in
:mod:`~tmrl2.envs.sim.car`, the geometry in :mod:`~tmrl2.envs.sim.track`, the rays in
:mod:`~tmrl2.envs.sim.lidar`, the images in :mod:`~tmrl2.envs.sim.render`; real-time stepping
is :mod:`tmrl2.envs.realtime`.

Action ``[gas, brake, steer]`` in ``[-1, 1]``: gas and brake are clipped to ``[0, 1]``,
steer is positive to the right (tmrl's convention).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field

from tmrl2.config.base import ComponentConfig, FrozenModel
from tmrl2.envs.sim.car import Car
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.render import Camera, Renderer
from tmrl2.envs.sim.track import SURFACES, Track, load_track
from tmrl2.rewards.base import Reward
from tmrl2.rewards.progress import ProgressReward

SPEED_REF_MS = 100.0
"""The ``speed`` observation is the car's speed divided by this (top speed is about 80 m/s)."""
START_OFFSET_NOISE_M = 0.2
"""Largest random lateral offset of the car at the start (seeded)."""
START_HEADING_NOISE_RAD = 0.01
"""Largest random heading error of the car at the start (seeded)."""

Obs = dict[str, np.ndarray]


class DomainRandomization(FrozenModel):
    """Per-episode randomization of the car and the camera; every knob 0 (off) by default.

    A knob ``k`` of a factor draws it uniformly in ``[1 - k, 1 + k]``; of an offset, in
    ``[-k, k]``.
    """

    grip_frac: float = Field(default=0.0, ge=0, lt=1)
    """Tyre grip factor."""
    mass_frac: float = Field(default=0.0, ge=0, lt=1)
    """Mass factor (divides engine and brake acceleration)."""
    engine_frac: float = Field(default=0.0, ge=0, lt=1)
    """Engine power factor."""
    brightness: float = Field(default=0.0, ge=0, le=1)
    """Image brightness offset, as a fraction of full scale."""
    contrast_frac: float = Field(default=0.0, ge=0, lt=1)
    """Image contrast factor (around mid-grey)."""
    noise_std: float = Field(default=0.0, ge=0, le=1)
    """Per-pixel Gaussian noise, standard deviation as a fraction of full scale (each frame)."""
    camera_height_m: float = Field(default=0.0, ge=0)
    """Camera height offset."""
    camera_pitch_deg: float = Field(default=0.0, ge=0)
    """Camera pitch offset."""


class SimEnvConfig(ComponentConfig):
    """Built-in TrackMania-like simulator."""

    kind: str = "sim"
    """Registry name of the built-in simulator."""
    track: str = "default"
    """Bundled track (see :func:`tmrl2.envs.sim.track.known_tracks`), ``gen:<seed>`` for a
    generated one, or the path of a ``.yaml``/``.json`` track file."""
    time_step_ms: int = Field(default=50, gt=0)
    """Simulated time per env step (20 Hz by default, like tmrl)."""
    realtime: bool = False
    """Step at ``1000 / time_step_ms`` Hz of wall clock through rtgym instead of fast mode."""
    max_episode_steps: int = Field(default=2400, gt=0)
    """Truncate the episode after this many steps (2 minutes at 50 ms)."""
    lidar: bool = True
    """A ``lidar`` observation (false: e.g. an image-only agent)."""
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
    image: bool = False
    """Add an ``image`` observation: the view from behind and above the car."""
    image_width: int = Field(default=64, ge=8)
    """Image width in pixels."""
    image_height: int = Field(default=64, ge=8)
    """Image height in pixels."""
    image_history: int = Field(default=4, ge=1)
    """Images in the observation, oldest first."""
    image_color: bool = False
    """RGB images ``(history, height, width, 3)`` instead of grey ``(history, height, width)``."""
    camera_height_m: float = Field(default=2.5, gt=0)
    """Camera height above the road."""
    camera_pitch_deg: float = Field(default=12.0, gt=0, lt=90)
    """Camera tilt below the horizon."""
    preview_points: int = Field(default=0, ge=0)
    """Add a ``preview`` observation of this many centerline points ahead, in the car's frame
    (``(forward, right)`` / ``lidar_range_m``, clipped to [-1, 1]); 0: no preview."""
    preview_spacing_m: float = Field(default=10.0, gt=0)
    """Arc length between the preview points."""
    randomization: DomainRandomization = DomainRandomization()
    """Domain randomization, drawn at each reset from the env's seeded generator (off)."""


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
        self._car_params = self.car.params
        self.lidar = Lidar(self.track, cfg.lidar_beams, cfg.lidar_range_m)
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        parts: dict[str, spaces.Space[Any]] = {
            "speed": spaces.Box(0.0, 1.0, (1,), np.float32),
            "prev_actions": spaces.Box(-1.0, 1.0, (cfg.action_history, 3), np.float32),
        }
        if cfg.lidar:
            lidar_shape = (cfg.lidar_history, cfg.lidar_beams)
            parts["lidar"] = spaces.Box(0.0, 1.0, lidar_shape, np.float32)
        self.renderer: Renderer | None = None
        if cfg.image:
            self._camera = Camera(height_m=cfg.camera_height_m, pitch_deg=cfg.camera_pitch_deg)
            self.renderer = Renderer(
                self.track, cfg.image_width, cfg.image_height, cfg.image_color, self._camera
            )
            shape: tuple[int, ...] = (cfg.image_history, cfg.image_height, cfg.image_width)
            shape += (3,) if cfg.image_color else ()
            parts["image"] = spaces.Box(0, 255, shape, np.uint8)
            self._images = np.zeros(shape, np.uint8)
            self._brightness, self._contrast = 0.0, 1.0
        if cfg.preview_points:
            parts["preview"] = spaces.Box(-1.0, 1.0, (cfg.preview_points, 2), np.float32)
        self.observation_space = spaces.Dict(parts)
        self._dt_s = cfg.time_step_ms / 1000.0
        self._lidar = np.zeros((cfg.lidar_history, cfg.lidar_beams), np.float32)
        self._actions = np.zeros((cfg.action_history, 3), np.float32)
        self._steps = 0
        self._respawns = 0
        self._progress_m = 0.0
        self._stuck_anchor_m = 0.0
        self._stuck_since = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        noise = self.np_random.uniform(-1.0, 1.0, 2)
        self._randomize()
        self.car.reset(
            offset=float(noise[0]) * START_OFFSET_NOISE_M,
            heading_offset=float(noise[1]) * START_HEADING_NOISE_RAD,
        )
        self._steps = 0
        self._respawns = 0
        self._progress_m = 0.0
        self._stuck_anchor_m = 0.0
        self._stuck_since = 0
        self._actions[:] = 0.0
        if self.config.lidar:
            self._lidar[:] = self._scan()
        if self.renderer is not None:
            self._images[:] = self._render()
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
        if cfg.lidar:
            self._lidar[:-1] = self._lidar[1:]
            self._lidar[-1] = self._scan()
        if self.renderer is not None:
            self._images[:-1] = self._images[1:]
            self._images[-1] = self._render()

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

    def respawn(self) -> tuple[Obs, dict[str, Any]]:
        """Put the car back, standing still on the centerline, at the last checkpoint passed
        (the start line if none), as the game's respawn does. The episode goes on: race time,
        progress and air time are kept, ``respawns`` in ``info`` counts up, and the stuck
        timer starts again. Returns the observation and info at the respawn point."""
        passed = self.track.checkpoints_passed(self._progress_m)
        air_time_s = self.car.state.air_time_s
        self.car.reset(s=self.track.checkpoints_m[passed - 1] if passed else 0.0)
        self.car.state.air_time_s = air_time_s
        self._respawns += 1
        self._stuck_anchor_m, self._stuck_since = self._progress_m, self._steps
        if self.config.lidar:
            self._lidar[:] = self._scan()
        if self.renderer is not None:
            self._images[:] = self._render()
        return self._obs(), self._info(wall_contact=False)

    def _scan(self) -> np.ndarray:
        st = self.car.state
        return self.lidar.measure(st.x, st.z, st.heading, st.seg) / self.lidar.range_m

    def _randomize(self) -> None:
        """Draw this episode's car and camera from the randomization knobs (if any is on)."""
        knobs = self.config.randomization
        if knobs == DomainRandomization():
            return
        rng = self.np_random

        def factor(k: float) -> float:
            return float(rng.uniform(1.0 - k, 1.0 + k))

        base = self._car_params
        mass, engine = factor(knobs.mass_frac), factor(knobs.engine_frac)
        self.car.params = replace(
            base,
            grip_ms2=base.grip_ms2 * factor(knobs.grip_frac),
            engine_accel_ms2=base.engine_accel_ms2 * engine / mass,
            brake_decel_ms2=base.brake_decel_ms2 / mass,
        )
        if self.renderer is not None:
            height = self._camera.height_m + float(rng.uniform(-1, 1)) * knobs.camera_height_m
            pitch = self._camera.pitch_deg + float(rng.uniform(-1, 1)) * knobs.camera_pitch_deg
            self.renderer.set_camera(
                replace(
                    self._camera, height_m=max(height, 0.2), pitch_deg=min(max(pitch, 1.0), 89.0)
                )
            )
            self._brightness = 255.0 * float(rng.uniform(-1, 1)) * knobs.brightness
            self._contrast = factor(knobs.contrast_frac)

    def _render(self) -> np.ndarray:
        assert self.renderer is not None
        st = self.car.state
        image = self.renderer.render(st.x, st.z, st.heading)
        knobs = self.config.randomization
        if self._brightness == 0.0 and self._contrast == 1.0 and knobs.noise_std == 0.0:
            return image
        out = (image.astype(np.float32) - 128.0) * self._contrast + 128.0 + self._brightness
        if knobs.noise_std > 0.0:
            out += self.np_random.normal(0.0, 255.0 * knobs.noise_std, out.shape)
        return np.clip(out, 0.0, 255.0).astype(np.uint8)

    def _preview(self) -> np.ndarray:
        """The next centerline points in the car's frame: ``(forward, right)`` / range."""
        st, cfg = self.car.state, self.config
        s = st.s + cfg.preview_spacing_m * np.arange(1, cfg.preview_points + 1)
        points = np.array([self.track.point_at(float(v)) for v in s])
        dx, dz = points[:, 0] - st.x, points[:, 1] - st.z
        c, sn = np.cos(st.heading), np.sin(st.heading)
        local = np.stack([dx * c + dz * sn, -dx * sn + dz * c], axis=1) / cfg.lidar_range_m
        return np.clip(local, -1.0, 1.0).astype(np.float32)

    def _obs(self) -> Obs:
        speed = min(self.car.state.speed / SPEED_REF_MS, 1.0)
        obs: Obs = {
            "speed": np.array([speed], np.float32),
            "prev_actions": self._actions.copy(),
        }
        if self.config.lidar:
            obs["lidar"] = self._lidar.copy()
        if self.renderer is not None:
            obs["image"] = self._images.copy()
        if self.config.preview_points:
            obs["preview"] = self._preview()
        return obs

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
            "gear": st.gear,
            "rpm": st.rpm,
            "surface": SURFACES[st.surface],
            "wheel_surfaces": tuple(SURFACES[c] for c in self.car.wheel_surfaces()),
            "wheel_contact": (not st.airborne,) * 4,
            "airborne": st.airborne,
            "air_time_s": st.air_time_s,
            "respawns": self._respawns,
            "velocity": (st.vx, st.vy, st.vz),
            # Pitch: the climb angle of the velocity (the car's nose follows it); no banking.
            "yaw_pitch_roll": (st.heading, math.atan2(st.vy, st.speed), 0.0),
        }

"""The simulator as a Gymnasium environment (``env.kind: sim``), fast mode.

:class:`SimEnv` owns the episode: it places the car at the start, turns actions into
controls, advances exactly ``time_step_ms`` of simulated time per ``step`` (as fast as the CPU
allows), and builds the observation (LIDAR history, speed, previous actions; optionally
images and a preview of the road ahead; the space is the game's,
:func:`tmrl2.envs.observation.observation_space`) and the telemetry ``info``; it draws the
optional domain randomization at each reset and respawns the car at the last checkpoint on
request. The reward and the stall detection are not its business: ``build_env`` wraps it
with the same wrappers as the game (:mod:`tmrl2.envs.wrappers`). The car physics live in
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
from pydantic import Field, field_validator

from tmrl2.config.base import FrozenModel
from tmrl2.envs.observation import TelemetryEnvConfig, action_space, observation_space
from tmrl2.envs.sim.car import Car
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.render import Camera, Renderer
from tmrl2.envs.sim.track import SURFACES, Track, check_track_name, load_track

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


class SimEnvConfig(TelemetryEnvConfig):
    """Built-in TrackMania-like simulator. The observation keys and the episode knobs are
    shared with the game (:class:`~tmrl2.envs.observation.TelemetryEnvConfig`)."""

    kind: str = "sim"
    """Registry name of the built-in simulator."""
    track: str = "default"
    """Bundled track (see :func:`tmrl2.envs.sim.track.known_tracks`), ``gen:<seed>`` for a
    generated one, or the path of a ``.yaml``/``.json`` track file."""
    realtime: bool = False
    """Step at ``1000 / time_step_ms`` Hz of wall clock through rtgym instead of fast mode."""
    lidar_range_m: float = Field(default=100.0, gt=0)
    """LIDAR distance cap; the observation is distance / range in [0, 1]."""
    end_on_wall: bool = False
    """Truncate the episode on the first wall contact."""
    camera_height_m: float = Field(default=2.5, gt=0)
    """Camera height above the road."""
    camera_pitch_deg: float = Field(default=12.0, gt=0, lt=90)
    """Camera tilt below the horizon."""
    randomization: DomainRandomization = DomainRandomization()
    """Domain randomization, drawn at each reset from the env's seeded generator (off)."""

    @field_validator("track")
    @classmethod
    def _known_track(cls, name: str) -> str:
        # fail when the config loads (naming `env.track`), not in every child process later
        check_track_name(name)
        return name


class SimEnv(gym.Env[Obs, np.ndarray]):
    """A car on a track with LIDAR observations; Gymnasium API, fast mode.

    It reports telemetry and returns reward 0: ``build_env`` (or ``tmrl2.get_environment``)
    adds the configured reward and the stall detection, the same as for the game.
    """

    Config = SimEnvConfig
    reports_telemetry = True
    metadata: dict[str, Any] = {"render_modes": []}
    observation_space: spaces.Dict  # type: ignore[assignment]  # narrower than Env's Space
    action_space: spaces.Box

    def __init__(self, config: SimEnvConfig | None = None) -> None:
        """Args:
        config: env settings (defaults: the default track, 20 Hz, 19 beams).
        """
        self.config = config or SimEnvConfig()
        cfg = self.config
        self.track: Track = load_track(cfg.track)
        self.car = Car(self.track)
        self._car_params = self.car.params
        self.lidar = Lidar(self.track, cfg.lidar_beams, cfg.lidar_range_m)
        self.action_space = action_space()
        self.observation_space = observation_space(cfg)
        self.renderer: Renderer | None = None
        if cfg.image:
            self._camera = Camera(height_m=cfg.camera_height_m, pitch_deg=cfg.camera_pitch_deg)
            self.renderer = Renderer(
                self.track, cfg.image_width, cfg.image_height, cfg.image_color, self._camera
            )
            shape: tuple[int, ...] = self.observation_space["image"].shape or ()
            self._images = np.zeros(shape, np.uint8)
            self._brightness, self._contrast = 0.0, 1.0
        self._dt_s = cfg.time_step_ms / 1000.0
        self._lidar = np.zeros((cfg.lidar_history, cfg.lidar_beams), np.float32)
        self._actions = np.zeros((cfg.action_history, 3), np.float32)
        self._steps = 0
        self._respawns = 0
        self._progress_m = 0.0
        self._respawn_pending = False

    @classmethod
    def from_config(cls, config: SimEnvConfig) -> gym.Env[Obs, np.ndarray]:
        """Fast mode, or real time through rtgym when ``config.realtime``."""
        if config.realtime:
            from tmrl2.envs.realtime import make_realtime_sim_env

            return make_realtime_sim_env(config)
        return cls(config)

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
        self._respawn_pending = False
        self._actions[:] = 0.0
        if self.config.lidar:
            self._lidar[:] = self._scan()
        if self.renderer is not None:
            self._images[:] = self._render()
        return self._obs(), self._info(wall_contact=False)

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        if self._respawn_pending:
            self.respawn()
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
        info = self._info(wall_contact)
        if finished:
            # The finish is crossed inside the step: interpolate when, as the game times it.
            frac = (self.track.length_m - s_before) / max(st.s - s_before, 1e-9)
            info["lap_time_s"] = ((self._steps - 1) + min(max(frac, 0.0), 1.0)) * self._dt_s
        truncated = not finished and (
            self._steps >= cfg.max_episode_steps or (cfg.end_on_wall and wall_contact)
        )
        return self._obs(), 0.0, finished, truncated, info

    def respawn(self) -> tuple[Obs, dict[str, Any]]:
        """Put the car back, standing still on the centerline, at the last checkpoint passed
        (the start line if none), as the game's respawn does. The episode goes on: race time,
        progress and air time are kept and ``respawns`` in ``info`` counts up. Returns the
        observation and info at the respawn point."""
        self._respawn_pending = False
        passed = self.track.checkpoints_passed(self._progress_m)
        air_time_s = self.car.state.air_time_s
        self.car.reset(s=self.track.checkpoints_m[passed - 1] if passed else 0.0)
        self.car.state.air_time_s = air_time_s
        self._respawns += 1
        if self.config.lidar:
            self._lidar[:] = self._scan()
        if self.renderer is not None:
            self._images[:] = self._render()
        return self._obs(), self._info(wall_contact=False)

    def request_respawn(self) -> None:
        """Respawn (:meth:`respawn`) at the start of the next step: what the stall wrapper
        calls with ``env.on_stuck: respawn``."""
        self._respawn_pending = True

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
        """The next centerline points in the car's frame: ``(forward, right)`` / range (the
        game's preview, :mod:`tmrl2.envs.trackmania.env`, is computed the same way)."""
        st, cfg = self.car.state, self.config
        s = st.s + cfg.preview_spacing_m * np.arange(1, cfg.preview_points + 1)
        points = np.array([self.track.point_at(float(v)) for v in s])
        dx, dz = points[:, 0] - st.x, points[:, 1] - st.z
        c, sn = np.cos(st.heading), np.sin(st.heading)
        local = np.stack([dx * c + dz * sn, -dx * sn + dz * c], axis=1) / cfg.preview_range_m
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

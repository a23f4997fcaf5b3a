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

import bisect
import itertools
import logging
import math
from dataclasses import replace
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field, field_validator

from tmrl2.envs.observation import TelemetryEnvConfig, action_space, observation_space
from tmrl2.envs.sim.car import Car, car_params
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.randomize import Controls, DomainRandomization, Draw, draw_randomization
from tmrl2.envs.sim.render import Camera, Renderer
from tmrl2.envs.sim.track import SURFACES, Track
from tmrl2.envs.sim.tracklist import TrackSampler, TrackSet, episode_cap_steps, expand_tracks

__all__ = ["DomainRandomization", "SimEnv", "SimEnvConfig"]

log = logging.getLogger(__name__)

SPEED_REF_MS = 1000.0 / 3.6
"""The ``speed`` observation is the car's speed divided by this: TrackMania's speed cap,
1000 km/h, so that the game's fast maps never saturate it (shared with the game env)."""
START_OFFSET_NOISE_M = 0.2
"""Largest random lateral offset of the car at the start (seeded)."""
START_HEADING_NOISE_RAD = 0.01
"""Largest random heading error of the car at the start (seeded)."""

Obs = dict[str, np.ndarray]
WHEEL_SURFACES = {
    codes: tuple(SURFACES[c] for c in codes)
    for codes in itertools.product(range(len(SURFACES)), repeat=4)
}
"""The ``wheel_surfaces`` info of each tuple of wheel surface codes (built once, not per
step)."""


class SimEnvConfig(TelemetryEnvConfig):
    """Built-in TrackMania-like simulator. The observation keys and the episode knobs are
    shared with the game (:class:`~tmrl2.envs.observation.TelemetryEnvConfig`)."""

    kind: str = "sim"
    """Registry name of the built-in simulator."""
    track: str = "default"
    """Bundled track (see :func:`tmrl2.envs.sim.track.known_tracks`), ``gen:<seed>`` for a
    generated one, the path of a ``.yaml``/``.json`` track file or of a recorded ``.npy``
    line; used when ``tracks`` is empty."""
    tracks: list[str] = []
    """The run's tracks, one drawn per episode (``track_sampling``): bundled names,
    ``gen:<seed>``, ``generated:A-B`` ranges, track files, recorded ``.npy`` lines (see
    :mod:`tmrl2.envs.sim.tracklist`). Empty: ``[track]``."""
    track_sampling: Literal["uniform", "adaptive"] = "uniform"
    """``uniform``, or ``adaptive``: more episodes on tracks with a low finish rate or a poor
    lap/reference ratio, never fewer than half a uniform share on any track."""
    eval_tracks: list[str] = []
    """Tracks held out of training: ``tmrl2 train``'s final evaluation and ``tmrl2 eval``
    drive them (besides ``tracks``); same spec forms as ``tracks``."""
    track_id_input: bool = False
    """A one-hot ``track_id`` observation (one entry per track of ``tracks``; all zero on any
    other track). Off: a generalist driver must not need it."""
    car: str = "tm2020"
    """The car (:data:`tmrl2.envs.sim.car.CAR_PRESETS`): ``tm2020``, calibrated to the
    TrackMania 2020 stadium car (docs/simulator.md), or ``classic``, the first simulator car
    (1.4 g, 306 km/h; laps about 1.5x slower)."""
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
    """Domain randomization, drawn at each reset from the env's seeded generator (off; see
    :mod:`tmrl2.envs.sim.randomize`)."""

    @field_validator("track")
    @classmethod
    def _known_track(cls, name: str) -> str:
        # fail when the config loads (naming `env.track`), not in every child process later
        expand_tracks([name])
        return name

    @field_validator("tracks", "eval_tracks")
    @classmethod
    def _known_tracks(cls, specs: list[str]) -> list[str]:
        expand_tracks(specs)
        return specs

    @field_validator("car")
    @classmethod
    def _known_car(cls, name: str) -> str:
        car_params(name)
        return name

    def track_names(self) -> list[str]:
        """The training tracks, expanded (``tracks``, or ``[track]``)."""
        return expand_tracks(self.tracks or [self.track])

    def eval_track_names(self) -> list[str]:
        """Every track an evaluation drives: the training tracks, then ``eval_tracks``."""
        names = self.track_names()
        return names + [n for n in expand_tracks(self.eval_tracks) if n not in names]


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
        self.tracks = TrackSet(cfg.track_names(), car_params(cfg.car))
        self.n_train = len(self.tracks)
        """Tracks ``0..n_train-1`` are drawn by the sampler (and have a ``track_id``); others
        are added when an evaluation asks for them (``reset(options={"track": spec})``)."""
        self.sampler = TrackSampler(self.n_train, cfg.track_sampling)
        self.track_index = 0
        self.track: Track = self.tracks.track(0)
        self.car = Car(self.track, self.tracks.params)
        self._car_params = self.car.params
        self._lidars: dict[int, Lidar] = {}
        self.lidar = self._lidar_for(0)
        self.action_space = action_space()
        self.observation_space = observation_space(cfg)
        if cfg.track_id_input:
            self.observation_space.spaces["track_id"] = spaces.Box(
                0.0, 1.0, (self.n_train,), np.float32
            )
        self.renderer: Renderer | None = None
        self._renderers: dict[int, Renderer] = {}
        if cfg.image:
            self._camera = Camera(height_m=cfg.camera_height_m, pitch_deg=cfg.camera_pitch_deg)
            self.renderer = self._renderer_for(0)
            shape: tuple[int, ...] = self.observation_space["image"].shape or ()
            self._images = np.zeros(shape, np.uint8)
            self._brightness, self._contrast = 0.0, 1.0
        self._dt_s = cfg.time_step_ms / 1000.0
        self._lidar = np.zeros((cfg.lidar_history, cfg.lidar_beams), np.float32)
        self._actions = np.zeros((cfg.action_history, 3), np.float32)
        self._draw = Draw(self._car_params)
        self._controls = Controls(self._draw, self._dt_s)
        self._cap = 1
        self._warned_caps: set[int] = set()
        self._steps = 0
        self._race_s = 0.0
        self._respawns = 0
        self._progress_m = 0.0
        self._lap_s: float | None = None
        self._respawn_pending = False
        self._reference_s = 0.0
        """Reference lap (s) of the current track (set with the track)."""

    @classmethod
    def from_config(cls, config: SimEnvConfig) -> gym.Env[Obs, np.ndarray]:
        """Fast mode, or real time through rtgym when ``config.realtime``."""
        if config.realtime:
            from tmrl2.envs.realtime import make_realtime_sim_env

            return make_realtime_sim_env(config)
        return cls(config)

    @property
    def reference_lap_s(self) -> float:
        """Reference lap (s) of the current track for the configured car."""
        return self.tracks.reference_s(self.track_index)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        """A new episode. ``options={"track": name_or_index}`` drives that track (any track
        spec; the evaluation's way to visit each track) instead of drawing one."""
        super().reset(seed=seed)
        self._record_outcome()
        self._select_track(self._choose_track(options))
        noise = self.np_random.uniform(-1.0, 1.0, 2)
        self._randomize()
        start_m = self._draw.start_frac * self.track.length_m
        self.car.reset(
            s=start_m,
            offset=float(noise[0]) * START_OFFSET_NOISE_M,
            heading_offset=float(noise[1]) * START_HEADING_NOISE_RAD,
        )
        self._steps = 0
        self._race_s = 0.0
        self._respawns = 0
        self._progress_m = self.car.state.s if start_m > 0.0 else 0.0
        self._lap_s = None
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
        act = np.array(action, dtype=np.float32).reshape(3)  # a copy: the caller's may change
        g, b, s = act.tolist()
        if not (-1.0 <= g <= 1.0 and -1.0 <= b <= 1.0 and -1.0 <= s <= 1.0):  # NaN too
            act = np.minimum(np.maximum(act, -1.0), 1.0)  # np.clip, without its Python layers
        gas, brake, steer = self._controls.apply(act)
        dt = self._dt_s
        if self._draw.jitter_frac > 0.0:
            j = self._draw.jitter_frac
            dt *= float(self.np_random.uniform(1.0 - j, 1.0 + j))
        s_before = st.s
        if cfg.lidar and self._draw.lidar_noise_std == 0.0:  # one compiled call for both
            wall_contact = self.car.step_and_scan(gas, brake, steer, dt, self.lidar, self._lidar)
        else:
            wall_contact = self.car.step(gas, brake, steer, dt)
            if cfg.lidar:
                self._lidar[:-1] = self._lidar[1:]
                self._lidar[-1] = self._scan()
        race_before = self._race_s
        self._steps += 1
        self._race_s += dt
        self._actions[:-1] = self._actions[1:]
        self._actions[-1] = act
        if self.renderer is not None:
            self._images[:-1] = self._images[1:]
            self._images[-1] = self._render()

        finished = st.s >= self.track.length_m
        self._progress_m = max(self._progress_m, min(st.s, self.track.length_m))
        info = self._info(wall_contact)
        if finished and self._draw.start_frac == 0.0:  # no lap from a start mid-track
            # The finish is crossed inside the step: interpolate when, as the game times it.
            frac = min(max((self.track.length_m - s_before) / max(st.s - s_before, 1e-9), 0.0), 1.0)
            if self._draw.jitter_frac > 0.0:
                lap = race_before + frac * dt
            else:  # the same number as ever (steps times the step, not a running sum)
                lap = ((self._steps - 1) + frac) * self._dt_s
            info["lap_time_s"] = self._lap_s = lap
        # a crash that ends the episode is terminal (no value beyond it), not a time limit:
        # bootstrapping through it would pay a per-step bonus (RND, ICM) for seeking walls
        crashed = cfg.end_on_wall and wall_contact and not finished
        truncated = not finished and not crashed and self._steps >= self._cap
        return self._obs(), 0.0, finished or crashed, truncated, info

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
        scan = self.lidar.measure(st.x, st.z, st.heading, st.seg) / self.lidar.range_m
        std = self._draw.lidar_noise_std
        if std > 0.0:
            scan = np.clip(scan + self.np_random.normal(0.0, std, scan.shape), 0.0, 1.0)
        return scan

    # ----------------------------------------------------------------- tracks
    def _record_outcome(self) -> None:
        """Tell the sampler how the episode that just ended went (if one did, on a track it
        draws from)."""
        if self._steps == 0 or self.track_index >= self.n_train or self._draw.start_frac > 0:
            return
        ratio = self._lap_s / self.reference_lap_s if self._lap_s is not None else None
        self.sampler.record(self.track_index, self._lap_s is not None, ratio)

    def _choose_track(self, options: dict[str, Any] | None) -> int:
        wanted = (options or {}).get("track")
        if wanted is None:
            return self.sampler.draw(self.np_random)
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            if not 0 <= wanted < len(self.tracks):
                raise ValueError(f"track index {wanted} is not in 0..{len(self.tracks) - 1}")
            return wanted
        if not isinstance(wanted, str):
            raise TypeError(f"options['track'] must be a track spec or index, got {wanted!r}")
        if wanted not in self.tracks.names:
            expand_tracks([wanted])  # a clear error for a bad spec
            self.tracks.names.append(wanted)
        return self.tracks.names.index(wanted)

    def _select_track(self, index: int) -> None:
        cfg = self.config
        self.track_index = index
        self.track = self.car.track = self.tracks.track(index)
        self.lidar = self._lidar_for(index)
        if cfg.image:
            self.renderer = self._renderer_for(index)
        reference = self._reference_s = self.tracks.reference_s(index)
        self._cap = episode_cap_steps(cfg.max_episode_steps, reference, cfg.time_step_ms)
        if cfg.max_episode_steps and index not in self._warned_caps:
            self._warned_caps.add(index)
            if cfg.max_episode_steps * self._dt_s < reference:
                log.warning(
                    "env.max_episode_steps=%d (%.0f s) is shorter than the reference lap of "
                    "track %r (%.0f s): episodes there can never finish; set it to 0 to derive "
                    "the cap from each track's reference lap",
                    cfg.max_episode_steps,
                    cfg.max_episode_steps * self._dt_s,
                    self.track.name,
                    reference,
                )

    def _lidar_for(self, index: int) -> Lidar:
        if index not in self._lidars:
            cfg = self.config
            self._lidars[index] = Lidar(
                self.tracks.track(index), cfg.lidar_beams, cfg.lidar_range_m
            )
        return self._lidars[index]

    def _renderer_for(self, index: int) -> Renderer:
        if index not in self._renderers:
            cfg = self.config
            self._renderers[index] = Renderer(
                self.tracks.track(index),
                cfg.image_width,
                cfg.image_height,
                cfg.image_color,
                self._camera,
            )
        return self._renderers[index]

    def _randomize(self) -> None:
        """Draw this episode's car, controls, noise and camera (nothing when all knobs are
        off: the random stream stays as without randomization)."""
        knobs = self.config.randomization
        self._draw = draw_randomization(knobs, self._car_params, self.np_random)
        self.car.params = self._draw.params
        self._controls = Controls(self._draw, self._dt_s)
        if not knobs.active:
            return
        rng = self.np_random
        if self.renderer is not None:
            height = self._camera.height_m + float(rng.uniform(-1, 1)) * knobs.camera_height_m
            pitch = self._camera.pitch_deg + float(rng.uniform(-1, 1)) * knobs.camera_pitch_deg
            self.renderer.set_camera(
                replace(
                    self._camera, height_m=max(height, 0.2), pitch_deg=min(max(pitch, 1.0), 89.0)
                )
            )
            self._brightness = 255.0 * float(rng.uniform(-1, 1)) * knobs.brightness
            self._contrast = float(
                rng.uniform(1.0 - knobs.contrast_frac, 1.0 + knobs.contrast_frac)
            )

    def _render(self) -> np.ndarray:
        assert self.renderer is not None
        st = self.car.state
        image = self.renderer.render(st.x, st.z, st.heading, st.y)
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
        if self._draw.speed_noise_std > 0.0:
            noise = float(self.np_random.normal(0.0, self._draw.speed_noise_std))
            speed = min(max(speed + noise, 0.0), 1.0)
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
        if self.config.track_id_input:
            one_hot = np.zeros(self.n_train, np.float32)
            if self.track_index < self.n_train:
                one_hot[self.track_index] = 1.0
            obs["track_id"] = one_hot
        return obs

    def _info(self, wall_contact: bool) -> dict[str, Any]:
        st, track = self.car.state, self.track
        speed = math.hypot(st.vx, st.vz)  # st.speed
        return {
            "progress_m": self._progress_m,
            "progress_frac": self._progress_m / track.length_m,
            "speed_ms": speed,
            "finished": st.s >= track.length_m,
            "wall_contact": wall_contact,
            "checkpoint": bisect.bisect_right(track.checkpoints_m, self._progress_m),
            "race_time_ms": round(self._race_s * 1000.0)
            if self._draw.jitter_frac > 0.0
            else self._steps * self.config.time_step_ms,
            "track_length_m": track.length_m,
            "position": (st.x, st.y, st.z),
            "gear": st.gear,
            "rpm": st.rpm,
            "surface": SURFACES[st.surface],
            "wheel_surfaces": WHEEL_SURFACES[self.car.wheel_surfaces()],
            "wheel_contact": (not st.airborne,) * 4,
            "airborne": st.airborne,
            "air_time_s": st.air_time_s,
            "respawns": self._respawns,
            "velocity": (st.vx, st.vy, st.vz),
            # Pitch: the climb angle of the velocity (the car's nose follows it); no banking.
            "yaw_pitch_roll": (st.heading, math.atan2(st.vy, speed), 0.0),
            "track": self.tracks.names[self.track_index],  # the spec, as the user wrote it
            "reference_lap_s": self._reference_s,
        }

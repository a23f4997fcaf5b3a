"""TrackMania 2020 as a Gymnasium env, through the OpenPlanet plugin (or ``tmrl2 sim serve``).

Observations and actions are the simulator's (``lidar``, ``speed``, ``prev_actions``, and
``image`` / ``preview`` when enabled; action ``[gas, brake, steer]`` in [-1, 1]) and ``info``
carries the same telemetry keys, so rewards, memories and models work unchanged. LIDAR comes
from the captured image (:class:`ImageLidar`); progress is measured along a reference line
(a recorded lap, or the track's centerline sent by the simulator).

Clocks: ``realtime`` runs through rtgym (action applied at a step's start, observation
captured just before its end); ``lockstep`` drives ``tmrl2 sim serve --lockstep`` with STEP,
deterministic and as fast as the CPU allows (tests, debugging).

The spaces come from the config alone: nothing connects until the first ``reset``, so the
trainer can build the env on a machine without the game.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pydantic import Field, model_validator

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import BridgeError, CommandFailed
from tmrl2.envs.observation import (
    DEFAULT_MAX_EPISODE_STEPS,
    TelemetryEnvConfig,
    action_space,
    observation_space,
)
from tmrl2.envs.realtime import StepResult, make_realtime_env
from tmrl2.envs.sim.env import SPEED_REF_MS, Obs
from tmrl2.envs.trackmania.capture import Capture, make_capture, to_observation
from tmrl2.envs.trackmania.client import DEFAULT_PORT, BridgeClient
from tmrl2.envs.trackmania.controls import Controls, make_controls
from tmrl2.envs.trackmania.lidar import ImageLidar
from tmrl2.rewards.reference import ReferenceLine

log = logging.getLogger(__name__)

_SURFACE_NAMES = {int(s): s.name.lower() for s in p.Surface}


class TrackManiaConfig(TelemetryEnvConfig):
    """TrackMania 2020 through the EVO RL OpenPlanet plugin (docs/trackmania.md).

    The observation keys (``lidar*``, ``image*``, ``action_history``, ``preview*``) and the
    episode knobs (``time_step_ms``, ``max_episode_steps``, ``stuck_*``, ``on_stuck``) are the
    simulator's (:class:`~tmrl2.envs.observation.TelemetryEnvConfig`); stall detection needs
    a reference line.
    """

    kind: str = "trackmania"
    """Registry name of this env."""
    host: str = "127.0.0.1"
    """Where the plugin (or ``tmrl2 sim serve``) listens."""
    port: int = Field(default=DEFAULT_PORT, gt=0, lt=65536)
    """The plugin's port (its settings in OpenPlanet)."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """How long to wait for the plugin's HELLO."""
    step_timeout_s: float = Field(default=2.0, gt=0)
    """A STATE must arrive within this time, or the game is reported silent."""
    clock: Literal["realtime", "lockstep"] = "realtime"
    """``realtime`` (the game; rtgym) or ``lockstep`` (``tmrl2 sim serve --lockstep`` only)."""
    capture_lead_ms: float = Field(default=10.0, ge=0)
    """Real time: start capturing the observation this long before the step ends."""
    control: Literal["auto", "sim", "gamepad", "uinput", "keyboard"] = "auto"
    """Input backend; ``auto``: SET_INPUT on the simulator, else vgamepad (Windows) or
    uinput (Linux)."""
    capture: Literal["auto", "frame", "dxcam", "bitblt", "mss", "none"] = "auto"
    """Screen capture; ``auto``: FRAME on the simulator, else dxcam (Windows) or mss."""
    capture_window: str = "Trackmania"
    """Title of the game window to capture."""
    capture_crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    """Part of the window kept: fractions left, top, right, bottom."""
    lidar_road_gray: tuple[int, int] = (100, 170)
    """Grey levels that count as road; a ray stops at the first other pixel."""
    lidar_origin_row: float = Field(default=0.95, ge=0, le=1)
    """Height of the rays' origin in the image (fraction from the top)."""
    lidar_image_size: tuple[int, int] = (64, 64)
    """Width, height of the grey image LIDAR is computed on."""
    reference: str = "track"
    """Progress is measured along: ``track`` (the centerline the server sends with GET_TRACK:
    the simulator), the path of a ``.npy`` N x 3 recorded lap, or ``""`` for none."""
    maps: list[str] = []
    """Maps to cycle through, one per episode, with LOAD_MAP (empty: stay on the open map)."""
    references: list[str] = []
    """One recorded lap (``.npy``) per entry of ``maps``, in the same order: each map's
    progress is measured along its own line (overrides ``reference``)."""

    @model_validator(mode="after")
    def _consistent(self) -> TrackManiaConfig:
        if self.references and len(self.references) != len(self.maps):
            raise ValueError(
                f"env.references has {len(self.references)} entries for {len(self.maps)} maps: "
                "give one recorded lap per map, in the same order"
            )
        if self.time_step_ms < 10 or (self.clock == "lockstep" and self.time_step_ms % 10):
            raise ValueError(
                "env.time_step_ms must be at least 10 ms, and a multiple of 10 ms with clock "
                "lockstep"
            )
        if self.preview_points and not self.reference and not self.references:
            raise ValueError("env.preview_points needs env.reference (a line to preview)")
        return self

    @property
    def realtime(self) -> bool:
        """Whether the world runs on its own clock (the worker must never stall it)."""
        return self.clock == "realtime"


class TrackManiaWorld:
    """The game seen through the bridge: connect, act, observe, manage episodes."""

    def __init__(self, config: TrackManiaConfig) -> None:
        self.config = cfg = config
        self.observation_space = observation_space(cfg)
        self.action_space = action_space()
        self.client = BridgeClient(cfg.host, cfg.port, cfg.connect_timeout_s, cfg.step_timeout_s)
        self.controls: Controls | None = None
        self.grabber: Capture | None = None
        self.line: ReferenceLine | None = None
        self.map_uid = ""
        self._map_index = -1
        self._loaded_map: int | None = None
        self._lidar = ImageLidar(
            *cfg.lidar_image_size, cfg.lidar_beams, cfg.lidar_road_gray, cfg.lidar_origin_row
        )
        lidar_shape = (cfg.lidar_history, cfg.lidar_beams) if cfg.lidar else (0,)
        self._lidar_hist: np.ndarray = np.zeros(lidar_shape, np.float32)
        image_shape = self.observation_space["image"].shape if cfg.image else None
        self._images: np.ndarray = np.zeros(image_shape or (0,), np.uint8)
        self._actions = np.zeros((cfg.action_history, 3), np.float32)
        self._state: p.State | None = None
        self._episode = 0
        self._steps = 0
        self._progress_m = 0.0
        self._finished = False
        self._respawn_pending = False

    # ----------------------------------------------------------------- connection
    def _connect(self) -> None:
        if self.client.connected:
            return
        self.client.ensure_connected()
        caps, cfg = self.client.caps, self.config
        if cfg.clock == "lockstep" and not caps & p.Caps.STEP:
            raise BridgeError(
                "env.clock 'lockstep' needs `tmrl2 sim serve --lockstep`; the "
                "game runs in real time: set env.clock to realtime"
            )
        if self.controls is None:
            self.controls = make_controls(
                cfg.control, self.client, sim_available=bool(caps & p.Caps.SET_INPUT)
            )
        if self.grabber is None and (cfg.lidar or cfg.image) and cfg.capture != "none":
            self.grabber = make_capture(
                cfg.capture,
                self.client,
                frames_available=bool(caps & p.Caps.IMAGE),
                window=cfg.capture_window,
            )
        if (cfg.lidar or cfg.image) and self.grabber is None:
            raise BridgeError("env.lidar and env.image need a screen capture: set env.capture")

    def _load_reference(self) -> None:
        ref = self.config.reference
        if ref == "track":
            track = self.client.get_track()
            if len(track.centerline) < 10:
                raise BridgeError(
                    "env.reference is 'track' but the game sends no centerline (only the "
                    "simulator does): record a lap with `tmrl2 record-reference` and set "
                    "env.reference to its .npy file"
                )
            self.line = ReferenceLine(np.asarray(track.centerline, np.float64))
            self.map_uid = track.map_uid
        elif ref:
            self.line = ReferenceLine.load(ref)

    # ----------------------------------------------------------------- episodes
    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Obs, dict[str, Any]]:
        self._connect()
        assert self.controls is not None
        self.controls.release()
        cfg = self.config
        if cfg.maps:
            self._map_index = (self._map_index + 1) % len(cfg.maps)
            if self._loaded_map != self._map_index:
                path = cfg.maps[self._map_index]
                self.map_uid = self.client.load_map(path) or Path(path).stem
                self._loaded_map = self._map_index
                self.line = None
                if cfg.references:
                    self.line = ReferenceLine.load(cfg.references[self._map_index])
        before = self.client.latest
        self._command("restart")
        self.client.events()  # drop the previous episode's events
        # never a frame of the episode that just ended
        state = self.client.wait_state(episode=before.episode + 1 if before else None)
        if self.line is None and cfg.reference:
            self._load_reference()
        if not self.map_uid and self.client.caps & p.Caps.TRACK_INFO:
            self.map_uid = self.client.get_track().map_uid
        self._episode = state.episode
        self._steps, self._finished = 0, False
        if self.line is not None:
            self.line.reset(state.pos)
        self._progress_m = self.line.progress_m if self.line is not None else 0.0
        self._respawn_pending = False
        self._actions[:] = 0.0
        self._state = state
        self._observe_pixels(fill=True)
        return self._obs(), self._info(state)

    def _command(self, what: str) -> None:
        """RESTART or RESPAWN through the plugin; where the plugin cannot (no rules script in
        this game mode), tap the game's input for it and wait for the effect."""
        before = self.client.latest
        try:
            getattr(self.client, what)()
            return
        except CommandFailed as exc:
            if exc.status != p.Status.UNSUPPORTED or self.controls is None:
                raise
        self.controls.press(what)
        if what == "restart":  # the next STATE of a new episode proves it worked
            episode = before.episode + 1 if before is not None else None
            self.client.wait_state(episode=episode, timeout=self.config.connect_timeout_s)

    def send(self, action: np.ndarray) -> None:
        assert self.controls is not None
        act = np.clip(np.asarray(action, np.float32).reshape(3), -1.0, 1.0)
        self._actions[:-1] = self._actions[1:]
        self._actions[-1] = act
        self.controls.apply(max(float(act[0]), 0.0), max(float(act[1]), 0.0), float(act[2]))

    def capture_step(self) -> StepResult:
        """The observation of the step just run (``capture`` in the real-time protocol)."""
        cfg = self.config
        assert self._state is not None
        if self._respawn_pending:
            self._respawn_pending = False
            self._command("respawn")
        if cfg.clock == "lockstep":
            state = self.client.step(cfg.time_step_ms // 10)
        else:
            state = self.client.wait_state(after_seq=self._state.seq, episode=self._episode)
        self._state = state
        self._steps += 1
        self._observe_pixels(fill=False)
        if self.line is not None:
            self.line.update(state.pos)
            self._progress_m = self.line.progress_m
        finished = state.has(p.StateFlag.FINISHED) or any(
            e.kind == p.EventKind.FINISH and e.episode == self._episode
            for e in self.client.events()
        )
        info = self._info(state)
        if finished and not self._finished:
            info["lap_time_s"] = state.race_time_ms / 1000.0
        self._finished = self._finished or finished
        truncated = not finished and self._steps >= (
            cfg.max_episode_steps or DEFAULT_MAX_EPISODE_STEPS
        )
        return self._obs(), 0.0, bool(finished), bool(truncated), info

    def request_respawn(self) -> None:
        """RESPAWN at the start of the next capture (on the thread that drives the bridge)."""
        self._respawn_pending = True

    def close(self) -> None:
        if self.controls is not None:
            self.controls.close()
        if self.grabber is not None:
            self.grabber.close()
        self.client.close()

    # ----------------------------------------------------------------- observations
    def _observe_pixels(self, fill: bool) -> None:
        cfg = self.config
        if self.grabber is None:
            return
        raw = self.grabber.grab()
        if cfg.lidar:
            w, h = cfg.lidar_image_size
            scan = self._lidar(to_observation(raw, w, h, gray=True, crop=cfg.capture_crop))
            self._push(self._lidar_hist, scan, fill)
        if cfg.image:
            img = to_observation(
                raw, cfg.image_width, cfg.image_height, not cfg.image_color, crop=cfg.capture_crop
            )
            self._push(self._images, img, fill)

    @staticmethod
    def _push(history: np.ndarray, item: np.ndarray, fill: bool) -> None:
        if fill:
            history[:] = item
        else:
            history[:-1] = history[1:]
            history[-1] = item

    def _obs(self) -> Obs:
        assert self._state is not None
        speed = np.linalg.norm(self._state.vel)
        obs: Obs = {
            "speed": np.array([min(float(speed) / SPEED_REF_MS, 1.0)], np.float32),
            "prev_actions": self._actions.copy(),
        }
        if self.config.lidar:
            obs["lidar"] = self._lidar_hist.copy()
        if self.config.image:
            obs["image"] = self._images.copy()
        if self.config.preview_points:
            obs["preview"] = self._preview()
        return obs

    def _preview(self) -> np.ndarray:
        assert self.line is not None and self._state is not None
        cfg, st = self.config, self._state
        s = self._progress_m + cfg.preview_spacing_m * np.arange(1, cfg.preview_points + 1)
        pts = self.line.points
        xs = np.interp(s, self.line.s, pts[:, 0])
        zs = np.interp(s, self.line.s, pts[:, 2])
        dx, dz = xs - st.pos[0], zs - st.pos[2]
        yaw = st.ypr[0]
        c, sn = np.cos(yaw), np.sin(yaw)
        local = np.stack([dx * c + dz * sn, -dx * sn + dz * c], axis=1) / cfg.preview_range_m
        return np.clip(local, -1.0, 1.0).astype(np.float32)

    def _info(self, st: p.State) -> dict[str, Any]:
        length = float(self.line.s[-1]) if self.line is not None else 0.0
        return {
            "progress_m": self._progress_m,
            "progress_frac": self._progress_m / length if length else 0.0,
            "speed_ms": float(np.linalg.norm(st.vel)),
            "finished": st.has(p.StateFlag.FINISHED),
            "wall_contact": False,  # the game does not report it
            "checkpoint": st.cp_passed,
            "race_time_ms": max(st.race_time_ms, 0),
            "track_length_m": length,
            "position": st.pos,
            "velocity": st.vel,
            "yaw_pitch_roll": st.ypr,
            "gear": st.gear,
            "rpm": st.rpm,
            "surface": _SURFACE_NAMES.get(st.surfaces[0], "other"),
            "wheel_surfaces": tuple(_SURFACE_NAMES.get(c, "other") for c in st.surfaces),
            "wheel_contact": tuple(bool(st.wheel_contact & (1 << k)) for k in range(4)),
            "airborne": st.wheel_contact == 0,
            "respawns": st.respawns,
            "map": self.map_uid,
            "episode": st.episode,
        }


class _RealTimeAdapter:
    """:class:`TrackManiaWorld` as the real-time glue's ``World``."""

    def __init__(self, world: TrackManiaWorld) -> None:
        self.world = world
        self.observation_space = world.observation_space
        self.action_space: spaces.Box = world.action_space

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Obs, dict[str, Any]]:
        return self.world.reset(seed, options)

    def send(self, action: np.ndarray) -> None:
        self.world.send(action)

    def capture(self) -> StepResult:
        return self.world.capture_step()

    def request_respawn(self) -> None:
        self.world.request_respawn()

    def close(self) -> None:
        self.world.close()


class TrackManiaEnv(gym.Env[Obs, np.ndarray]):
    """The env the registry builds for ``env.kind: trackmania``. It reports telemetry and
    returns reward 0: ``build_env`` adds the reward and stall detection, as for the simulator."""

    Config = TrackManiaConfig
    reports_telemetry = True
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, config: TrackManiaConfig | None = None) -> None:
        self.config = config or TrackManiaConfig()
        self.world = TrackManiaWorld(self.config)
        self.observation_space = self.world.observation_space  # type: ignore[assignment]
        self.action_space = self.world.action_space  # type: ignore[assignment]
        self._rt: gym.Env[Obs, np.ndarray] | None = None

    def _realtime(self) -> gym.Env[Obs, np.ndarray]:
        if self._rt is None:
            world = _RealTimeAdapter(self.world)
            self._rt = make_realtime_env(
                lambda: world,
                self.config.time_step_ms,
                self.config.action_history,
                self.config.capture_lead_ms,
            )
        return self._rt

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        super().reset(seed=seed)
        if self.config.clock == "realtime":
            return self._realtime().reset(seed=seed, options=options)
        return self.world.reset(seed, options)

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        if self.config.clock == "realtime":
            obs, reward, terminated, truncated, info = self._realtime().step(action)
            return obs, float(reward), terminated, truncated, info
        self.world.send(action)
        return self.world.capture_step()

    def request_respawn(self) -> None:
        """Back to the last checkpoint at the next step (``env.on_stuck: respawn``)."""
        self.world.request_respawn()

    def close(self) -> None:
        if self._rt is not None:
            self._rt.close()
        else:
            self.world.close()
        super().close()

"""What a racing env shares with every other: its observation, its episode knobs, its telemetry.

The simulator (``env.kind: sim``) and the game (``env.kind: trackmania``) are two sources of
the same data. A policy trained in one must act in the other, so their configs inherit the
observation settings from :class:`ObservationConfig` and both build their spaces with
:func:`observation_space`: equal settings give equal spaces, by construction rather than by
two hand-written copies that may drift apart.

An env class that sets ``reports_telemetry = True`` promises a ``Config`` subclassing
:class:`TelemetryEnvConfig` and the ``info`` keys of :data:`TELEMETRY_KEYS` at every ``reset``
and ``step``. :func:`tmrl2.envs.factory.build_env` then builds it as ``EnvClass(env_config)``
and adds the reward and the episode-end wrappers (:mod:`tmrl2.envs.wrappers`): the env itself
returns reward 0 and never detects a stall, so the simulator and the game are rewarded and
truncated by the same code.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from gymnasium import spaces
from pydantic import Field

from tmrl2.config.base import ComponentConfig, FrozenModel

TELEMETRY_KEYS: dict[str, str] = {
    "progress_m": "furthest arc length along the track's line since the start (m); 0 when the "
    "env has no line to measure along",
    "progress_frac": "progress_m / track_length_m (0 without a line)",
    "track_length_m": "length of the line progress is measured along; 0: progress unmeasured "
    "(stall detection is then off)",
    "speed_ms": "speed (m/s)",
    "finished": "the car has crossed the finish line",
    "wall_contact": "the car touches a wall this step (the game: always False)",
    "checkpoint": "checkpoints passed this episode",
    "race_time_ms": "race clock (ms)",
    "position": "(x, y, z), metres, Y up",
    "velocity": "(vx, vy, vz), m/s",
    "yaw_pitch_roll": "radians",
    "gear": "gear engaged",
    "rpm": "engine speed",
    "surface": "'road', 'dirt', 'grass', ... under the car",
    "wheel_surfaces": "the surface under each wheel (FL, FR, RL, RR)",
    "wheel_contact": "four booleans",
    "airborne": "no wheel touches the ground",
    "respawns": "respawns this episode",
}
"""The ``info`` keys a telemetry env reports, with their meaning: what reward terms
(:mod:`tmrl2.rewards.terms`) and the episode-end wrappers read. Besides these, ``lap_time_s``
appears in the step that crosses the finish; the wrappers add ``action``, ``reward_terms`` and
``stalled``."""


DEFAULT_MAX_EPISODE_STEPS = 2400
"""The episode cap of an env that knows no reference lap (2 minutes at 50 ms)."""


class ObservationConfig(FrozenModel):
    """Observation settings shared by the simulator and the game (equal settings, equal spaces).

    Observation parts: ``speed`` (1,) in [0, 1] (km/h / 1000, the game's speed cap);
    ``prev_actions`` (``action_history``, 3) in [-1, 1], newest last; ``lidar`` (``lidar_history``,
    ``lidar_beams``) in [0, 1]; ``image`` (``image_history``, h, w[, 3]) uint8; ``preview``
    (``preview_points``, 2) in [-1, 1].
    """

    lidar: bool = True
    """A ``lidar`` observation (false: e.g. an image-only agent)."""
    lidar_beams: int = Field(default=19, ge=1)
    """LIDAR rays from straight left to straight right."""
    lidar_history: int = Field(default=1, ge=1)
    """LIDAR frames in the observation, oldest first."""
    action_history: int = Field(default=2, ge=1)
    """Previous actions in the observation, newest last (at least 1: in real time the actions
    in flight are part of the state)."""
    image: bool = False
    """An ``image`` observation (frame history)."""
    image_width: int = Field(default=64, ge=8)
    """Image width in pixels."""
    image_height: int = Field(default=64, ge=8)
    """Image height in pixels."""
    image_history: int = Field(default=4, ge=1)
    """Images in the observation, oldest first."""
    image_color: bool = False
    """RGB images ``(history, height, width, 3)`` instead of grey ``(history, height, width)``."""
    preview_points: int = Field(default=0, ge=0)
    """A ``preview`` observation of this many points of the track's line ahead, in the car's
    frame (``(forward, right)`` / ``preview_range_m``, clipped to [-1, 1]); 0: no preview."""
    preview_spacing_m: float = Field(default=10.0, gt=0)
    """Arc length between the preview points."""
    preview_range_m: float = Field(default=100.0, gt=0)
    """Preview coordinates are divided by this (the same in the simulator and the game, so a
    policy sees the same numbers for the same road)."""


class TelemetryEnvConfig(ObservationConfig, ComponentConfig):
    """Config of an env that reports telemetry: its observation plus the episode knobs the
    shared wrappers apply (:func:`tmrl2.envs.factory.build_env`)."""

    time_step_ms: int = Field(default=50, gt=0)
    """Time per env step (20 Hz, like tmrl)."""
    max_episode_steps: int = Field(default=0, ge=0)
    """Truncate the episode after this many steps; 0: derived, 2.5x the track's reference lap
    where the env knows one (the simulator; a warning says when a set cap is shorter than
    that lap), else :data:`DEFAULT_MAX_EPISODE_STEPS`."""
    stuck_steps: int = Field(default=100, gt=0)
    """An episode whose ``progress_m`` has not grown by ``stuck_progress_m`` for this many
    steps is stuck (``reward.no_progress``, when set, overrides both, with a grace period)."""
    stuck_progress_m: float = Field(default=1.0, gt=0)
    """Progress that counts as moving on."""
    on_stuck: Literal["restart", "respawn"] = "restart"
    """``restart``: truncate the episode; ``respawn``: back to the last checkpoint, go on."""


def action_space() -> spaces.Box:
    """``[gas, brake, steer]`` in [-1, 1] (gas and brake are clipped to [0, 1] when applied;
    steer is positive to the right, tmrl's convention)."""
    return spaces.Box(-1.0, 1.0, (3,), np.float32)


def observation_space(cfg: ObservationConfig) -> spaces.Dict:
    """The observation space of any telemetry env configured with ``cfg``."""
    parts: dict[str, spaces.Space[Any]] = {
        "speed": spaces.Box(0.0, 1.0, (1,), np.float32),
        "prev_actions": spaces.Box(-1.0, 1.0, (cfg.action_history, 3), np.float32),
    }
    if cfg.lidar:
        parts["lidar"] = spaces.Box(0.0, 1.0, (cfg.lidar_history, cfg.lidar_beams), np.float32)
    if cfg.image:
        shape: tuple[int, ...] = (cfg.image_history, cfg.image_height, cfg.image_width)
        parts["image"] = spaces.Box(0, 255, shape + ((3,) if cfg.image_color else ()), np.uint8)
    if cfg.preview_points:
        parts["preview"] = spaces.Box(-1.0, 1.0, (cfg.preview_points, 2), np.float32)
    return spaces.Dict(parts)

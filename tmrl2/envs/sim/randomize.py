"""Domain randomization of the simulator: what varies from one episode to the next.

Every knob is 0 (off) by default. At each reset the env draws one :class:`Draw` from its seeded
generator (:func:`draw_randomization`): a factor knob ``k`` draws the factor uniformly in
``[1 - k, 1 + k]``, an offset knob in ``[-k, k]``, ``action_latency_steps`` an integer in
``[0, k]``. What the draw changes:

- the car: grip, mass (divides engine and brake acceleration), engine power;
- the controls: steering gain (times the steer command), steering lag (the applied steering
  follows the command as a first-order lag of time constant ``steer_lag_s``), action latency
  (the action applied at step ``t`` is the one chosen at ``t - k``; zeros before the first);
- the observation: Gaussian noise on the LIDAR and on the speed (clipped to [0, 1]);
- time: each step lasts ``time_step_ms`` times a factor drawn per step in
  ``[1 - j, 1 + j]`` (the jitter of a real-time loop);
- the start: a fraction of the episodes starts standing still at a random point of the
  track (``start_anywhere_frac``: standing starts and recoveries everywhere, not only on the
  start straight); such an episode times no lap;
- the camera and the image (brightness, contrast, pixel noise, camera height and pitch).

Evaluation runs without randomization unless asked (``tmrl2 eval --randomize``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from pydantic import Field

from tmrl2.config.base import FrozenModel
from tmrl2.envs.sim.car import CarParams


class DomainRandomization(FrozenModel):
    """Per-episode randomization of the car, the controls, the observation and the camera;
    every knob 0 (off) by default (see :mod:`tmrl2.envs.sim.randomize`)."""

    grip_frac: float = Field(default=0.0, ge=0, lt=1)
    """Tyre grip factor in ``[1 - k, 1 + k]``."""
    mass_frac: float = Field(default=0.0, ge=0, lt=1)
    """Mass factor (divides engine and brake acceleration)."""
    engine_frac: float = Field(default=0.0, ge=0, lt=1)
    """Engine power factor."""
    steer_gain_frac: float = Field(default=0.0, ge=0, lt=1)
    """Steering gain factor (the steer command is multiplied by it, then clipped)."""
    steer_lag_s: float = Field(default=0.0, ge=0, le=1)
    """Largest steering lag: each episode draws a time constant in ``[0, steer_lag_s]``."""
    action_latency_steps: int = Field(default=0, ge=0, le=2)
    """Largest action latency: each episode draws ``k`` in ``[0, max]`` steps."""
    lidar_noise_std: float = Field(default=0.0, ge=0, le=1)
    """Gaussian noise added to each LIDAR distance (as a fraction of the range), each step."""
    speed_noise_std: float = Field(default=0.0, ge=0, le=1)
    """Gaussian noise added to the ``speed`` observation, each step."""
    time_step_jitter_frac: float = Field(default=0.0, ge=0, lt=1)
    """Each step's simulated duration is ``time_step_ms`` times a factor in ``[1 - j, 1 + j]``
    (the jitter of a real-time loop; the race clock adds up the real durations)."""
    start_anywhere_frac: float = Field(default=0.0, ge=0, le=1)
    """Fraction of the episodes that start standing still at a uniformly random point of the
    first 90 % of the track instead of the start line (no lap is timed in those; they are
    left out of the adaptive sampler's outcomes)."""
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

    @property
    def active(self) -> bool:
        """Whether any knob is on."""
        return self != DomainRandomization()


@dataclass(frozen=True)
class Draw:
    """One episode's randomization (the identity when every knob is off)."""

    params: CarParams
    steer_gain: float = 1.0
    steer_lag_s: float = 0.0
    latency: int = 0
    lidar_noise_std: float = 0.0
    speed_noise_std: float = 0.0
    jitter_frac: float = 0.0
    start_frac: float = 0.0
    """Where the episode starts, as a fraction of the track's length (0: the start line)."""


def draw_randomization(
    knobs: DomainRandomization, base: CarParams, rng: np.random.Generator
) -> Draw:
    """This episode's draw from ``rng``; with every knob off, the identity and no draw at all
    (so that turning randomization off leaves the env's random stream as it was)."""
    if not knobs.active:
        return Draw(base)

    def factor(k: float) -> float:
        return float(rng.uniform(1.0 - k, 1.0 + k))

    mass, engine, grip = factor(knobs.mass_frac), factor(knobs.engine_frac), factor(knobs.grip_frac)
    params = replace(
        base,
        grip_ms2=base.grip_ms2 * grip,
        engine_accel_ms2=base.engine_accel_ms2 * engine / mass,
        brake_decel_ms2=base.brake_decel_ms2 / mass,
    )
    return Draw(
        params=params,
        steer_gain=factor(knobs.steer_gain_frac),
        steer_lag_s=float(rng.uniform(0.0, knobs.steer_lag_s)),
        latency=int(rng.integers(0, knobs.action_latency_steps + 1)),
        lidar_noise_std=knobs.lidar_noise_std,
        speed_noise_std=knobs.speed_noise_std,
        jitter_frac=knobs.time_step_jitter_frac,
        start_frac=_start(knobs.start_anywhere_frac, rng),
    )


def _start(frac: float, rng: np.random.Generator) -> float:
    """Where the episode starts (fraction of the track): 0, or with probability ``frac`` a
    uniform point of the first 90 % (no draw at all when ``frac`` is 0)."""
    if frac <= 0.0 or rng.random() >= frac:
        return 0.0
    return float(rng.uniform(0.0, 0.9))


class Controls:
    """The control chain of one car for one episode: latency, steering gain and lag.

    ``apply(action)`` takes the policy's action ``[gas, brake, steer]`` (already clipped to
    [-1, 1]) and returns the ``(gas, brake, steer)`` the car receives this step.
    """

    def __init__(self, draw: Draw, dt_s: float) -> None:
        self.draw = draw
        self._queue = [np.zeros(3, np.float32) for _ in range(draw.latency)]
        self._steer = 0.0
        self._alpha = 1.0 if draw.steer_lag_s <= 0.0 else min(1.0, dt_s / draw.steer_lag_s)

    def apply(self, action: np.ndarray) -> tuple[float, float, float]:
        if self._queue:
            self._queue.append(action)
            action = self._queue.pop(0)
        gas, brake, steer = action.tolist()  # Python floats of the float32 values
        gas, brake = max(gas, 0.0), max(brake, 0.0)
        if self.draw.steer_gain != 1.0:
            steer = min(max(steer * self.draw.steer_gain, -1.0), 1.0)
        if self._alpha < 1.0:
            self._steer += self._alpha * (steer - self._steer)
            steer = self._steer
        return gas, brake, steer

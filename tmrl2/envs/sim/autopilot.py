"""A scripted driver: pure pursuit on the centerline with a grip- and brake-limited speed plan.

It reads the car's state and the track (never the policy's observation), so it shows that a
track can be driven to the finish, gives a baseline lap time, and drives scripted tests.

Speed plan: the cornering speed at each centerline point is ``sqrt(grip / curvature)`` (with a
safety margin); a backward pass lowers it where the brakes could not slow the car in time.
Steering: pure pursuit towards the centerline point a speed-dependent distance ahead.
"""

from __future__ import annotations

import math

import numpy as np

from tmrl2.envs.sim.car import Car, CarParams, CarState
from tmrl2.envs.sim.reference import top_speed_ms
from tmrl2.envs.sim.track import Track


class Autopilot:
    """Drives a car along a track's centerline, as fast as the plan allows."""

    def __init__(
        self,
        track: Track,
        params: CarParams | None = None,
        grip_margin: float = 0.9,
        brake_margin: float = 0.8,
        lookahead_s: float = 0.5,
    ) -> None:
        """Args:
        track: the track to drive.
        params: the car's constants (defaults: :class:`CarParams`).
        grip_margin: fraction of the tyre grip used in corners.
        brake_margin: fraction of the brake deceleration assumed when planning.
        lookahead_s: pure-pursuit target distance in seconds of travel (at least 8 m).
        """
        self.track = track
        self.params = params or CarParams()
        self.lookahead_s = lookahead_s
        self.target_ms = self._speed_plan(grip_margin, brake_margin)
        """Planned speed (m/s) at each centerline point."""

    def _speed_plan(self, grip_margin: float, brake_margin: float) -> np.ndarray:
        p = self.params
        curvature = np.maximum(self.track.curvature(), 1e-6)
        # cap: where the linear engine law stops pushing, or the top speed of a curve's engine
        cap = top_speed_ms(p) if p.engine_curve else p.engine_cutoff_ms
        target = np.minimum(np.sqrt(grip_margin * p.grip_ms2 / curvature), cap)
        ds = np.diff(self.track.s_m)
        decel = brake_margin * p.brake_decel_ms2
        for i in range(len(target) - 2, -1, -1):
            target[i] = min(target[i], math.sqrt(target[i + 1] ** 2 + 2 * decel * ds[i]))
        return target

    def act(self, state: CarState) -> np.ndarray:
        """The action ``[gas, brake, steer]`` for the car in ``state``."""
        p = self.params
        u = state.forward_speed
        look = max(8.0, self.lookahead_s * u)
        px, pz = self.track.point_at(state.s + look)
        dx, dz = px - state.x, pz - state.z
        c, sn = math.cos(state.heading), math.sin(state.heading)
        alpha = math.atan2(-dx * sn + dz * c, dx * c + dz * sn)
        delta = math.atan(2.0 * math.sin(alpha) * p.wheelbase_m / math.hypot(dx, dz))
        max_delta = p.max_steer_rad / (1.0 + max(u, 0.0) / p.steer_fade_ms)
        steer = min(max(delta / max_delta, -1.0), 1.0)
        # Aim at the plan a little ahead: the car needs a moment to react.
        target = float(self.target_ms[min(state.seg + 2, len(self.target_ms) - 1)])
        error = target - u
        gas = min(max(error / 2.0, 0.0), 1.0)
        brake = min(max(-error / 2.0, 0.0), 1.0)
        return np.array([gas, brake, steer], dtype=np.float32)


def drive_lap(
    track: Track, params: CarParams | None = None, step_s: float = 0.05, max_time_s: float = 300.0
) -> float | None:
    """Lap time (s) of the autopilot from a standing start on ``track`` (no env, no LIDAR),
    interpolated inside the step that crosses the finish; ``None`` if it does not finish in
    ``max_time_s`` or stops making progress for 5 s."""
    car = Car(track, params)
    car.reset()
    pilot = Autopilot(track, params)
    best, best_step = 0.0, 0
    for step in range(int(max_time_s / step_s)):
        s_before = car.state.s
        gas, brake, steer = (float(v) for v in pilot.act(car.state))
        car.step(gas, brake, steer, step_s)
        if car.state.s >= track.length_m:
            frac = (track.length_m - s_before) / max(car.state.s - s_before, 1e-9)
            return (step + min(max(frac, 0.0), 1.0)) * step_s
        if car.state.s > best + 1.0:
            best, best_step = car.state.s, step
        elif (step - best_step) * step_s > 5.0:
            return None
    return None

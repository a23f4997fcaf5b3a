"""Reference lap time of a track: a quasi-steady-state speed profile along the centerline.

The yardstick that learned lap times are compared with. At each centerline point:

1. cornering: the grip-limited speed ``sqrt(grip * surface_grip / curvature)``, capped at the
   car's top speed;
2. forward pass from a standing start: the engine (its force envelope over the gears, the law
   the kernels apply, without the torque ripple and shift cuts) minus drag, rolling resistance
   and the slope, with only the grip left over from cornering (friction circle:
   ``sqrt(1 - (v^2 k / grip)^2)`` of it), limits how fast speed grows;
3. backward pass from the end: brakes (with the grip left over), drag, rolling resistance and
   the slope limit how late the car can slow down for the next corner.

The lap time integrates ``ds / v`` from the start line to the finish. It follows the
centerline (no racing line), so a driver cutting corners can beat it a little; a driver on
the centerline with margins for safety (:class:`~tmrl2.envs.sim.autopilot.Autopilot`) is
slower, and must stay within 115 % of it on every bundled track.
"""

from __future__ import annotations

import numpy as np

from tmrl2.envs.sim.car import CarParams, engine_envelope_ms2
from tmrl2.envs.sim.track import Track


def top_speed_ms(params: CarParams) -> float:
    """Speed where full gas on a level road just balances drag and rolling resistance (the
    engine's envelope: :func:`~tmrl2.envs.sim.car.engine_envelope_ms2`)."""
    if params.engine_curve:
        peak = params.engine_accel_ms2 * max(f for _, f in params.engine_curve)
        limit = float(np.sqrt(peak / params.drag_per_m)) if params.drag_per_m > 0 else 1e3
        speeds = np.linspace(0.0, max(limit, params.engine_curve[-1][0]), 20001)
    else:
        speeds = np.linspace(0.0, params.engine_cutoff_ms, 10001)
    net = engine_envelope_ms2(params, speeds) - params.rolling_ms2 - params.drag_per_m * speeds**2
    return float(speeds[np.argmax(net <= 0.0)]) if np.any(net <= 0.0) else float(speeds[-1])


def speed_profile(
    track: Track, params: CarParams | None = None, grip_frac: float = 1.0
) -> np.ndarray:
    """Quasi-steady-state speed (m/s) at each centerline point, from a standing start.

    Args:
        track: the track.
        params: the car (defaults: :class:`CarParams`).
        grip_frac: fraction of the grip used (1 for the reference; a driver may keep a margin).
    """
    p = params or CarParams()
    n = len(track.points)
    codes = np.r_[track.surfaces, track.surfaces[-1]]
    grip = grip_frac * p.grip_ms2 * np.asarray(p.surface_grip)[codes]
    rolling = p.rolling_ms2 + np.asarray(p.surface_drag_ms2)[codes]
    kappa = np.maximum(track.curvature(), 1e-9)
    corner = np.minimum(np.sqrt(grip / kappa), top_speed_ms(p))
    ds = np.diff(track.s_m)
    slope = np.diff(track.points[:, 1]) / ds

    def spare(v: float, i: int) -> float:
        """Fraction of the grip left for driving or braking at speed ``v`` on point ``i``."""
        used = min(v * v * kappa[i] / grip[i], 1.0)
        return float(np.sqrt(1.0 - used * used))

    v = corner.copy()
    v[0] = 0.0
    for i in range(n - 1):
        engine = float(engine_envelope_ms2(p, v[i]))
        accel = (
            spare(v[i], i) * engine
            - rolling[i]
            - p.drag_per_m * v[i] ** 2
            - p.gravity_ms2 * slope[i]
        )
        v[i + 1] = min(v[i + 1], float(np.sqrt(max(v[i] ** 2 + 2.0 * accel * ds[i], 0.0))))
    for i in range(n - 2, -1, -1):
        decel = (
            spare(v[i + 1], i + 1) * p.brake_decel_ms2 * p.surface_grip[codes[i]]
            + rolling[i]
            + p.drag_per_m * v[i + 1] ** 2
            + p.gravity_ms2 * slope[i]
        )
        v[i] = min(v[i], float(np.sqrt(max(v[i + 1] ** 2 + 2.0 * max(decel, 0.0) * ds[i], 0.0))))
    return v


def reference_lap_time_s(track: Track, params: CarParams | None = None) -> float:
    """Time (s) to drive the speed profile from the start line to the finish line."""
    v = speed_profile(track, params)
    ds = np.diff(track.s_m)
    mean_v = np.maximum(0.5 * (v[:-1] + v[1:]), 1e-3)
    # Segments up to the finish, the last one cut at the finish line.
    covered = np.clip(track.length_m - track.s_m[:-1], 0.0, ds)
    return float(np.sum(covered / mean_v))

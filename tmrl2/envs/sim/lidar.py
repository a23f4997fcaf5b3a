"""LIDAR of the simulator: distances to the track's walls along rays over the front half-plane.

Like tmrl's LIDAR on TrackMania screenshots, ``beams`` rays fan out evenly from 90 degrees
left of the heading (beam 0) to 90 degrees right (the last beam); each measures the distance
to the nearest wall, capped at ``range_m``. Rays are intersected with the wall pieces of a
window of road around the car (all beams against all pieces at once in numpy), so the cost
does not grow with the track's length. The window reaches ``WINDOW_AHEAD`` ranges of arc
length in the direction the car faces and ``WINDOW_BEHIND`` ranges the other way: walls
further along the road (rare: a hairpin's far leg) are not seen.
"""

from __future__ import annotations

import math

import numpy as np

from tmrl2.envs.sim.track import Track

WINDOW_AHEAD = 1.5
"""Arc length searched in the direction the car faces, in LIDAR ranges."""
WINDOW_BEHIND = 0.5
"""Arc length searched behind the car, in LIDAR ranges (beams at +-90 degrees look sideways)."""


class Lidar:
    """Wall distances along a fan of rays for one track."""

    def __init__(self, track: Track, beams: int, range_m: float) -> None:
        """Args:
        track: the track whose walls the rays hit.
        beams: number of rays; one ray looks straight ahead.
        range_m: distance reported when a ray hits nothing closer.
        """
        if beams < 1 or range_m <= 0:
            raise ValueError(f"need beams >= 1 and range_m > 0, got {beams}, {range_m}")
        self.track = track
        self.range_m = float(range_m)
        self.angles = np.linspace(-math.pi / 2, math.pi / 2, beams) if beams > 1 else np.zeros(1)
        """Beam directions relative to the heading (rad, negative to the left)."""
        self._ahead = math.ceil(WINDOW_AHEAD * range_m / track.spacing_m)
        self._behind = math.ceil(WINDOW_BEHIND * range_m / track.spacing_m)

    def measure(self, x: float, z: float, heading: float, seg: int) -> np.ndarray:
        """Distances (m) from ``(x, z)`` along each beam for a car facing ``heading`` on
        segment ``seg``, at most ``range_m``."""
        track = self.track
        tx, tz = track.tangent(seg)
        if math.cos(heading) * tx + math.sin(heading) * tz >= 0.0:
            lo, hi = seg - self._behind, seg + self._ahead
        else:
            lo, hi = seg - self._ahead, seg + self._behind
        # Wall rows are shifted by one (row 0 is the start wall; see Track._build_walls).
        rows = slice(max(lo + 1, 0), min(hi + 2, track.segments + 2))
        start = track.wall_start[rows].reshape(-1, 2)
        delta = track.wall_delta[rows].reshape(-1, 2)
        angle = heading + self.angles
        rx, rz = np.cos(angle)[:, None], np.sin(angle)[:, None]
        ax, az = start[:, 0] - x, start[:, 1] - z
        ex, ez = delta[:, 0], delta[:, 1]
        # Ray o + t r meets piece a + v e where t = (a x e) / (r x e), v = (a x r) / (r x e).
        denom = rx * ez - rz * ex
        t_num = ax * ez - az * ex
        v_num = ax * rz - az * rx
        # Compare numerators against the denominator's sign to avoid dividing by it.
        sign = np.sign(denom)
        v_num *= sign
        hit = (v_num >= 0.0) & (v_num <= np.abs(denom)) & (t_num * sign > 0.0)
        dist = np.divide(t_num, denom, out=np.full(denom.shape, self.range_m), where=hit)
        return np.minimum(dist.min(axis=1), self.range_m)

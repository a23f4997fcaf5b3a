"""LIDAR of the simulator: distances to the track's walls along rays over the front half-plane.

Like tmrl's LIDAR on TrackMania screenshots, ``beams`` rays fan out evenly from 90 degrees
left of the heading (beam 0) to 90 degrees right (the last beam); each measures the distance
to the nearest wall, capped at ``range_m``. Rays are intersected with the wall pieces of a
window of road around the car (:func:`~tmrl2.envs.sim.kernels.lidar_cars`), so the cost
does not grow with the track's length. The window reaches ``WINDOW_AHEAD`` ranges of arc
length in the direction the car faces and ``WINDOW_BEHIND`` ranges the other way: walls
further along the road (rare: a hairpin's far leg) are not seen.
"""

from __future__ import annotations

import math

import numpy as np

from tmrl2.envs.sim import kernels
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
        self.ahead = math.ceil(WINDOW_AHEAD * range_m / track.spacing_m)
        """Segments searched in the direction the car faces."""
        self.behind = math.ceil(WINDOW_BEHIND * range_m / track.spacing_m)
        """Segments searched the other way."""
        self.lookup = kernels.beam_lookup(self.angles)
        """The beams each wall piece can stop, by pseudo-angle (:func:`kernels.beam_lookup`)."""
        self._tables = kernels.track_tables(track)
        self._row = np.zeros((1, kernels.NSTATE))
        self.kernel_args = (
            self.angles, self.lookup, self.range_m, self.ahead, self.behind, self._tables[1],
        )  # fmt: skip
        """The LIDAR's arguments to :func:`kernels.step_car_scan`, in its order (beams, their
        lookup, range, window, wall pieces)."""

    def measure(self, x: float, z: float, heading: float, seg: int) -> np.ndarray:
        """Distances (m) from ``(x, z)`` along each beam for a car facing ``heading`` on
        segment ``seg``, at most ``range_m``."""
        row = self._row
        row[0, kernels.X], row[0, kernels.Z] = x, z
        row[0, kernels.HEADING], row[0, kernels.SEG] = heading, seg
        table, walls = self._tables
        out = np.empty((1, len(self.angles)))
        kernels.lidar_cars(
            row, self.angles, self.lookup, self.range_m, self.ahead, self.behind, table, walls,
            out,
        )  # fmt: skip
        return out[0]

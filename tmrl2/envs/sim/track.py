"""Tracks of the simulator: centerline geometry, walls, checkpoints, finish, projection.

A track is a point-to-point road like most TrackMania maps: a centerline of ``N`` points
``(x, y, z)`` with Y up (the car drives on the x-z plane, ``y`` is the road height), a width,
checkpoints at regular arc length and a finish line, followed by a short run-off so that the
LIDAR sees open road past the finish. Walls run along both borders and close both ends.

Conventions: arc length ``s`` is measured along the centerline from the start line (metres);
the signed lateral offset is positive to the left of the driving direction; a heading ``psi``
points along ``(cos psi, sin psi)`` in ``(x, z)`` and grows when the car turns right.

:func:`build_track` makes a track from a few control points (centripetal Catmull-Rom, then
resampled at a fixed spacing); :func:`load_track` returns a bundled track by name.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

SAMPLES_PER_SPAN = 64
"""Dense samples per Catmull-Rom span before resampling at uniform arc length."""
SURFACES = ("road", "dirt", "grass")
"""Surface names; a track stores one code (index) per segment. Off an open road is grass."""
ROAD, DIRT, GRASS = 0, 1, 2
OPEN_BORDER_M = 12.0
"""Width of grass beyond each border of a track without walls, before an outer wall."""


class Track:
    """Centerline geometry with O(1) projection of a position onto the road.

    Per-segment data used every physics substep is kept as Python lists: indexing a list of
    floats is several times faster than indexing numpy arrays one scalar at a time.
    """

    def __init__(
        self,
        name: str,
        centerline: np.ndarray,
        width_m: float | np.ndarray,
        finish_m: float,
        checkpoint_spacing_m: float = 100.0,
        *,
        checkpoints_m: list[float] | None = None,
        surfaces: np.ndarray | list[int] | None = None,
        walls: bool = True,
        laps: int = 1,
    ) -> None:
        """Args:
        name: track name.
        centerline: ``(N, 3)`` points ``(x, y, z)``, Y up, at roughly even spacing.
        width_m: road width between the borders, constant or one value per point.
        finish_m: arc length of the finish line (the centerline may run on past it).
        checkpoint_spacing_m: distance between checkpoints along the centerline.
        checkpoints_m: explicit checkpoint arc lengths (overrides the spacing).
        surfaces: surface code of each segment (index into :data:`SURFACES`; default road).
        walls: walls along the borders; ``False`` leaves them open: grass runs
            :data:`OPEN_BORDER_M` beyond each border before an outer wall stops the car.
        laps: laps of a closed loop unrolled into this centerline (information only).
        """
        points = np.asarray(centerline, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
            raise ValueError(f"centerline must have shape (N >= 3, 3), got {points.shape}")
        self.name = name
        self.points = points
        self.width_m = np.broadcast_to(np.asarray(width_m, np.float64), (len(points),)).copy()
        delta = np.diff(points[:, [0, 2]], axis=0)
        seg_len = np.hypot(delta[:, 0], delta[:, 1])
        if np.any(seg_len <= 1e-6):
            raise ValueError("centerline has repeated points")
        self.s_m = np.concatenate([[0.0], np.cumsum(seg_len)])
        """Arc length of each centerline point."""
        self.segment_m = seg_len
        """Length of each segment (not exactly ``diff(s_m)``: that differs by rounding)."""
        self.total_m = float(self.s_m[-1])
        if not 0.0 < finish_m <= self.total_m:
            raise ValueError(
                f"finish_m={finish_m} is not within the centerline (0, {self.total_m}]"
            )
        self.length_m = float(finish_m)
        """Arc length from the start line to the finish line."""
        self.spacing_m = float(np.mean(seg_len))
        if checkpoints_m is None:
            count = int(np.ceil(self.length_m / checkpoint_spacing_m)) - 1
            checkpoints_m = [checkpoint_spacing_m * (i + 1) for i in range(max(count, 0))]
        if any(not 0.0 < c < self.length_m for c in checkpoints_m) or checkpoints_m != sorted(
            checkpoints_m
        ):
            raise ValueError("checkpoints_m must be increasing and between start and finish")
        self.checkpoints_m = [float(c) for c in checkpoints_m]
        """Arc lengths of the checkpoints between start and finish (the finish is not one)."""
        codes = np.zeros(len(seg_len), np.int64) if surfaces is None else np.asarray(surfaces)
        if codes.shape != (len(seg_len),) or codes.min() < 0 or codes.max() >= len(SURFACES):
            raise ValueError(f"surfaces must be {len(seg_len)} codes in [0, {len(SURFACES)})")
        self.surfaces = codes.astype(np.int64)
        """Surface code of each segment (index into :data:`SURFACES`)."""
        self.walls = bool(walls)
        self.laps = int(laps)
        self.border_m = 0.0 if walls else OPEN_BORDER_M
        """Grass beyond each border before the outer wall (0 with walls)."""
        tangent = delta / seg_len[:, None]
        self.tangents = tangent
        """Unit tangent of each segment in ``(x, z)``."""
        self.normals = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
        """Unit normal of each segment pointing to the left of the driving direction."""
        self._build_walls()
        # Hot-path copies (see the class docstring).
        self._ax = points[:-1, 0].tolist()
        self._az = points[:-1, 2].tolist()
        self._tx = tangent[:, 0].tolist()
        self._tz = tangent[:, 1].tolist()
        self._len = seg_len.tolist()
        self._s = self.s_m.tolist()
        self._y = points[:, 1].tolist()
        self._half_width = (0.5 * self.width_m[:-1]).tolist()
        self._slope = (np.diff(points[:, 1]) / seg_len).tolist()
        self._surface = self.surfaces.tolist()
        self.segments = len(seg_len)

    def _build_walls(self) -> None:
        """Wall segments for the LIDAR, laid out so that a window of road is one slice.

        Row ``k + 1`` holds the left and right wall pieces beside centerline segment ``k``;
        rows ``0`` and ``-1`` hold the two halves of the walls closing the start and the end.
        """
        normals = np.vstack([self.normals, self.normals[-1:]])
        # Point normals averaged over the two neighbouring segments keep the walls continuous.
        point_normals = normals.copy()
        point_normals[1:-1] = normals[:-2] + normals[1:-1]
        point_normals /= np.linalg.norm(point_normals, axis=1, keepdims=True)
        center = self.points[:, [0, 2]]
        half = 0.5 * self.width_m[:, None]
        left = center + point_normals * half
        right = center - point_normals * half
        # Border polylines ``(N, 2)`` in ``(x, z)``, kept for drawing and checks.
        self.left_wall, self.right_wall = left, right
        pieces = np.stack(
            [np.stack([left[:-1], left[1:]], 1), np.stack([right[:-1], right[1:]], 1)], 1
        )
        start_cap = np.stack([np.stack([left[0], center[0]]), np.stack([center[0], right[0]])])
        end_cap = np.stack([np.stack([left[-1], center[-1]]), np.stack([center[-1], right[-1]])])
        walls = np.concatenate([start_cap[None], pieces, end_cap[None]])  # (rows, 2, 2 ends, 2)
        self.wall_start = np.ascontiguousarray(walls[:, :, 0])
        """``(segments + 2, 2 walls, 2)`` start point of each wall piece."""
        self.wall_delta = np.ascontiguousarray(walls[:, :, 1] - walls[:, :, 0])
        """``(segments + 2, 2 walls, 2)`` vector from start to end of each wall piece."""

    def project(self, x: float, z: float, hint: int) -> tuple[int, float, float]:
        """Segment index, arc length and signed lateral offset (left positive) of a position.

        Walks from segment ``hint`` to the segment whose span contains the position, so the
        cost is O(1) when the hint is the previous answer and the position moved less than a
        segment or two. Arc length is not clamped at the two ends: it is negative behind the
        start line and exceeds :attr:`total_m` past the end of the road.
        """
        i = min(max(hint, 0), self.segments - 1)
        t = self._along(x, z, i)
        last = self.segments - 1
        while t > self._len[i] and i < last and self._along(x, z, i + 1) >= 0.0:
            i += 1
            t = self._along(x, z, i)
        while t < 0.0 and i > 0 and self._along(x, z, i - 1) <= self._len[i - 1]:
            i -= 1
            t = self._along(x, z, i)
        # In the gap outside a bend the position is past the end of one segment and before
        # the start of the next: it belongs to the shared vertex.
        if i > 0 and t < 0.0:
            t = 0.0
        if i < last and t > self._len[i]:
            t = self._len[i]
        offset = (x - self._ax[i]) * self._tz[i] - (z - self._az[i]) * self._tx[i]
        return i, self._s[i] + t, offset

    def _along(self, x: float, z: float, i: int) -> float:
        return (x - self._ax[i]) * self._tx[i] + (z - self._az[i]) * self._tz[i]

    def tangent(self, seg: int) -> tuple[float, float]:
        """Unit tangent ``(tx, tz)`` of a segment."""
        return self._tx[seg], self._tz[seg]

    def half_width(self, seg: int) -> float:
        """Half the road width at a segment."""
        return self._half_width[seg]

    def surface(self, seg: int) -> int:
        """Surface code of a segment's road (index into :data:`SURFACES`)."""
        return self._surface[seg]

    def slope(self, seg: int) -> float:
        """Rise per metre of arc length along a segment (positive uphill)."""
        return self._slope[seg]

    def height(self, seg: int, s: float) -> float:
        """Road height ``y`` at arc length ``s`` on segment ``seg``."""
        frac = min(max((s - self._s[seg]) / self._len[seg], 0.0), 1.0)
        return self._y[seg] + frac * (self._y[seg + 1] - self._y[seg])

    def segment_at(self, s: float) -> int:
        """Index of the segment holding arc length ``s`` (clamped to the road)."""
        return min(max(bisect.bisect_right(self._s, s) - 1, 0), self.segments - 1)

    def point_at(self, s: float) -> tuple[float, float]:
        """Centerline position ``(x, z)`` at arc length ``s`` (clamped to the road)."""
        s = min(max(s, 0.0), self.total_m)
        i = self.segment_at(s)
        along = s - self._s[i]
        return self._ax[i] + along * self._tx[i], self._az[i] + along * self._tz[i]

    def checkpoints_passed(self, progress_m: float) -> int:
        """Checkpoints passed once the car has reached ``progress_m`` (0: only the start)."""
        return bisect.bisect_right(self.checkpoints_m, progress_m)

    def curvature(self) -> np.ndarray:
        """Unsigned curvature (1/m) at each centerline point, from the heading change."""
        # math.atan2, not np.arctan2: numpy's float64 arctan2 takes SVML's on AVX-512 CPUs,
        # whose last bits differ from libm's (9 of the default track's 517 headings), and the
        # autopilot's speeds, hence its laps, would then depend on the machine
        angle = np.unwrap([math.atan2(tz, tx) for tx, tz in self.tangents.tolist()])
        dpsi = np.abs(np.diff(angle)) / (0.5 * (self.s_m[2:] - self.s_m[:-2]))
        return np.concatenate([[dpsi[0]], dpsi, [dpsi[-1]]])


def _length(vector: np.ndarray) -> float:
    """Euclidean length of a short vector, its squares summed in order with Python floats.
    Not ``np.linalg.norm``: of a 1-D array that is a BLAS dot, whose kernel (and so the last
    bits of every track point) depends on the CPU (OpenBLAS's AVX-512 kernel and its AVX2
    one differ), and a track must be the same on every machine."""
    total = 0.0
    for value in vector.tolist():
        total += value * value
    return math.sqrt(total)


def catmull_rom(control: np.ndarray, samples_per_span: int = SAMPLES_PER_SPAN) -> np.ndarray:
    """Dense centripetal Catmull-Rom curve through all control points (rows of any width).

    Centripetal parameterisation (alpha = 0.5) never forms cusps or loops between points.
    """
    pts = np.asarray(control, dtype=np.float64)
    padded = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    out = []
    u = np.linspace(0.0, 1.0, samples_per_span, endpoint=False)[:, None]
    for k in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[k - 1 : k + 3]
        t1 = _length(p1 - p0) ** 0.5
        t2 = t1 + _length(p2 - p1) ** 0.5
        t3 = t2 + _length(p3 - p2) ** 0.5
        t = t1 + u * (t2 - t1)
        a1 = (t1 - t) / t1 * p0 + t / t1 * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / t2 * a1 + t / t2 * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    out.append(pts[-1:])
    return np.vstack(out)


def resample(points: np.ndarray, spacing_m: float) -> np.ndarray:
    """Points at (nearly) uniform arc length ``spacing_m`` along a dense polyline."""
    seg = np.linalg.norm(np.diff(points[:, [0, 2]], axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    count = max(int(round(s[-1] / spacing_m)), 2)
    target = np.linspace(0.0, s[-1], count + 1)
    return np.stack([np.interp(target, s, points[:, k]) for k in range(points.shape[1])], axis=1)


def build_track(
    name: str,
    control_points: list[tuple[float, float, float]],
    width_m: float,
    spacing_m: float = 2.0,
    checkpoint_spacing_m: float = 100.0,
    runoff_m: float = 40.0,
    *,
    surface_sections: list[tuple[float, float, int]] | None = None,
    walls: bool = True,
) -> Track:
    """A track through ``control_points`` ``(x, y, z)``: smoothed, resampled, with run-off.

    The finish line is at the last control point; the road continues straight for
    ``runoff_m`` past it so that the finish looks like open road to the LIDAR.
    ``surface_sections`` lists ``(from_m, to_m, surface code)``; the rest is road.
    """
    dense = catmull_rom(np.asarray(control_points, dtype=np.float64))
    line = resample(dense, spacing_m)
    finish_m = float(np.sum(np.linalg.norm(np.diff(line[:, [0, 2]], axis=0), axis=1)))
    points = add_runoff(line, runoff_m, spacing_m)
    return Track(
        name,
        points,
        width_m,
        finish_m,
        checkpoint_spacing_m,
        surfaces=surface_codes(points, surface_sections or []),
        walls=walls,
    )


def add_runoff(line: np.ndarray, runoff_m: float, spacing_m: float) -> np.ndarray:
    """``line`` continued straight (level) for ``runoff_m`` past its last point; columns
    after ``(x, y, z)`` (a width) keep their last value."""
    direction = line[-1] - line[-2]
    direction[1] = 0.0
    direction[3:] = 0.0
    direction /= _length(direction[[0, 2]])
    steps = np.arange(1, int(round(runoff_m / spacing_m)) + 1)[:, None] * spacing_m
    return np.vstack([line, line[-1] + steps * direction])


def surface_codes(points: np.ndarray, sections: list[tuple[float, float, int]]) -> np.ndarray:
    """Surface code of each segment of a centerline from ``(from_m, to_m, code)`` sections
    (a segment takes the section holding its middle; the rest is road)."""
    seg = np.linalg.norm(np.diff(points[:, [0, 2]], axis=0), axis=1)
    middle = np.cumsum(seg) - 0.5 * seg
    codes = np.full(len(seg), ROAD, np.int64)
    for start, end, code in sections:
        if not 0 <= code < len(SURFACES):
            raise ValueError(f"surface code {code} is not one of 0..{len(SURFACES) - 1}")
        codes[(middle >= start) & (middle < end)] = code
    return codes


Piece = tuple[float, float, float]
"""A piece of a course: ``(turn_deg, length_m, rise_m)``; turn is positive to the right and
0 means a straight; the radius of a bend is ``length_m / radians(turn_deg)``."""


def course_points(pieces: list[Piece], every_m: float = 25.0) -> list[tuple[float, float, float]]:
    """Control points ``(x, y, z)`` every ``every_m`` or so along a course of straights and
    bends, starting at the origin heading +x: a readable way to lay out a track."""
    x = y = z = psi = 0.0
    points = [(x, y, z)]
    for turn_deg, length_m, rise_m in pieces:
        # A point every 30 degrees of turn too, so that tight bends keep their radius.
        count = max(1, round(length_m / every_m), math.ceil(abs(turn_deg) / 30.0))
        step, dpsi = length_m / count, math.radians(turn_deg) / count
        for _ in range(count):
            # Chord of an arc of angle dpsi: direction at its middle, length 2 R sin(dpsi/2).
            chord = step if dpsi == 0.0 else step * math.sin(dpsi / 2) / (dpsi / 2)
            x += chord * math.cos(psi + dpsi / 2)
            z += chord * math.sin(psi + dpsi / 2)
            y += rise_m / count
            psi += dpsi
            points.append((x, y, z))
    return points


def _default() -> Track:
    """About 900 m, 14 m wide: fast straights, medium bends, an S, and a hairpin to brake for."""
    course: list[Piece] = [
        (0.0, 150.0, 0.0),  # start straight
        (90.0, 126.0, 3.0),  # medium right bend, R 80 m, uphill
        (0.0, 60.0, 1.0),
        (-60.0, 52.0, 0.0),  # S: left then right, R 50 m
        (60.0, 52.0, 0.0),
        (0.0, 220.0, -4.0),  # fast straight downhill towards the hairpin
        (-180.0, 50.0, 0.0),  # hairpin left, R 16 m: brake hard
        (0.0, 90.0, 0.0),
        (90.0, 94.0, 2.0),  # medium right bend, R 60 m
        (0.0, 100.0, -2.0),  # finish straight
    ]
    return build_track("default", course_points(course), width_m=14.0)


_TRACKS: dict[str, Callable[[], Track]] = {"default": _default}
TRACK_DIR = Path(__file__).resolve().parents[2] / "data" / "tracks"
"""Bundled track files (``tmrl2/data/tracks/<name>.yaml``), loaded by name."""
GENERATED_PREFIX = "gen:"
"""``gen:<seed>`` names a procedurally generated track (see ``sim/generator.py``)."""


def _bundled_files() -> dict[str, Path]:
    if not TRACK_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(TRACK_DIR.iterdir()) if p.suffix in _TRACK_SUFFIXES}


_TRACK_SUFFIXES = (".yaml", ".yml", ".json")


def known_tracks() -> list[str]:
    """Bundled names accepted by :func:`load_track`."""
    from tmrl2.envs.sim.courses import COURSES

    return sorted({*_TRACKS, *COURSES, *_bundled_files()})


def check_track_name(name: str) -> None:
    """Raise a one-line :class:`ValueError` naming the known tracks unless :func:`load_track`
    accepts ``name`` (checked when a config loads, without building the track)."""
    if name in _TRACKS or name in known_tracks():
        return
    if name.startswith(GENERATED_PREFIX) and name[len(GENERATED_PREFIX) :].isdigit():
        return
    if name.endswith(_TRACK_SUFFIXES):
        if not Path(name).is_file():
            raise ValueError(f"track file {name!r} does not exist")
        return
    raise ValueError(
        f"unknown track {name!r}; known tracks: {', '.join(known_tracks())}; or "
        f"'{GENERATED_PREFIX}<seed>', or the path of a .yaml/.json track file"
    )


def load_track(name: str) -> Track:
    """A track by name: a bundled track, ``gen:<seed>`` for a generated one, or the path of
    a track file (``.yaml``, ``.yml``, ``.json``; see ``sim/trackfile.py``)."""
    from tmrl2.envs.sim.courses import COURSES
    from tmrl2.envs.sim.generator import generate_track
    from tmrl2.envs.sim.trackfile import load_track_file

    check_track_name(name)
    if name in _TRACKS:
        return _TRACKS[name]()
    if name in COURSES:
        return COURSES[name]()
    files = _bundled_files()
    if name in files:
        return load_track_file(files[name])
    if name.startswith(GENERATED_PREFIX):
        return generate_track(int(name[len(GENERATED_PREFIX) :]))
    return load_track_file(name)

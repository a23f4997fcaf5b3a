"""Compiled kernels of the simulator: car physics and LIDAR, for one car or a batch of cars.

The model is the one described in :mod:`tmrl2.envs.sim.car` (read that first); this module is
its only implementation. Functions are compiled by numba (``cache=True``: the machine code is
kept in ``__pycache__``, so only the first process on a machine pays the few seconds of
compilation) and work on flat arrays:

- a car is a row of :data:`NSTATE` float64 values indexed by the column constants below
  (integer fields such as the segment are stored as exact floats);
- the car's constants are a float64 vector (:func:`pack_params`), the track's per-segment
  arrays one ``(segments + 1, 10)`` table and its wall pieces one ``(rows, 8)`` table
  (:func:`pack_track`), so that a call passes five arrays and numba's dispatch stays cheap
  (a few microseconds: the single car is called once per env step).

:class:`~tmrl2.envs.sim.car.Car` and :class:`~tmrl2.envs.sim.lidar.Lidar` call these with one
row; :class:`~tmrl2.envs.sim.vec.SimBatch` with N rows (:func:`step_cars_each`: a duration and a
constants row per car, so that cars with randomized constants share one call).
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

if TYPE_CHECKING:
    from tmrl2.envs.sim.car import CarParams
    from tmrl2.envs.sim.track import Track

# ---------------------------------------------------------------- car state columns
X, Y, Z, HEADING, VX, VZ, VY, S, OFFSET, AIR_TIME, RPM, SHIFT_TIMER = range(12)
SEG, GEAR, SURFACE, WALL, AIRBORNE = range(12, 17)
NSTATE = 17
STATE_FIELDS = (
    "x", "y", "z", "heading", "vx", "vz", "vy", "s", "offset", "air_time_s", "rpm",
    "shift_timer_s", "seg", "gear", "surface", "wall_contact", "airborne",
)  # fmt: skip
"""Names of the columns, equal to :class:`~tmrl2.envs.sim.car.CarState`'s fields."""

# ---------------------------------------------------------------- car constants
(
    P_WHEELBASE, P_HALF_WIDTH, P_ENGINE, P_CUTOFF, P_BRAKE, P_DRAG, P_ROLLING, P_GRIP,
    P_MAX_STEER, P_STEER_FADE, P_DRIFT_YAW, P_WALL_LOSS, P_WALL_FRICTION, P_WALL_ALIGN,
    P_GRAVITY, P_SUBSTEP, P_IDLE_RPM, P_REDLINE_RPM, P_UPSHIFT, P_DOWNSHIFT, P_RIPPLE,
    P_SHIFT_TIME, P_CONTACT, P_BORDER, P_TOTAL, P_NGEARS,
) = range(26)  # fmt: skip
P_SURFACE_GRIP = 26  # three values: road, dirt, grass
P_SURFACE_DRAG = 29  # three values
P_GEAR_TOPS = 32  # P_NGEARS values

# ---------------------------------------------------------------- track table columns
T_AX, T_AZ, T_TX, T_TZ, T_LEN, T_S, T_Y, T_HALF, T_SLOPE, T_SURFACE = range(10)

GRASS_CODE = 2.0  # track.GRASS


def pack_params(p: CarParams, track: Track) -> np.ndarray:
    """The car's constants (and the track's border and length) as the kernels' vector."""
    head = [
        p.wheelbase_m, p.half_width_m, p.engine_accel_ms2, p.engine_cutoff_ms,
        p.brake_decel_ms2, p.drag_per_m, p.rolling_ms2, p.grip_ms2, p.max_steer_rad,
        p.steer_fade_ms, p.drift_yaw_factor, p.wall_impact_loss, p.wall_friction_ms2,
        p.wall_align, p.gravity_ms2, p.substep_s, p.idle_rpm, p.redline_rpm, p.upshift_frac,
        p.downshift_frac, p.torque_ripple, p.shift_time_s, p.contact_m, track.border_m,
        track.total_m, float(len(p.gear_top_ms)),
    ]  # fmt: skip
    if len(p.surface_grip) != 3 or len(p.surface_drag_ms2) != 3:
        raise ValueError("surface_grip and surface_drag_ms2 need one value per surface (3)")
    values = head + list(p.surface_grip) + list(p.surface_drag_ms2) + list(p.gear_top_ms)
    # engine curve (count, speeds, fractions) at the end: see _engine_curve
    curve = list(p.engine_curve)
    values += [float(len(curve))] + [c[0] for c in curve] + [c[1] for c in curve]
    return np.asarray(values, np.float64)


def pack_track(track: Track) -> tuple[np.ndarray, np.ndarray]:
    """``(table, walls)``: per-segment values ``(segments + 1, 10)`` (the last row holds only
    the end point's arc length and height) and wall pieces ``(segments + 2, 8)``: left start
    x, z, left delta x, z, then the same for the right piece (see ``Track._build_walls``)."""
    n = track.segments
    table = np.zeros((n + 1, 10))
    pts = track.points
    table[:n, T_AX], table[:n, T_AZ] = pts[:-1, 0], pts[:-1, 2]
    table[:n, T_TX], table[:n, T_TZ] = track.tangents[:, 0], track.tangents[:, 1]
    seg_len = track.segment_m
    table[:n, T_LEN] = seg_len
    table[:, T_S], table[:, T_Y] = track.s_m, pts[:, 1]
    table[:n, T_HALF] = 0.5 * track.width_m[:-1]
    table[:n, T_SLOPE] = np.diff(pts[:, 1]) / seg_len
    table[:n, T_SURFACE] = track.surfaces
    walls = np.concatenate(
        [track.wall_start[:, 0], track.wall_delta[:, 0], track.wall_start[:, 1],
         track.wall_delta[:, 1]], axis=1,
    )  # fmt: skip
    return np.ascontiguousarray(table), np.ascontiguousarray(walls, np.float64)


_TABLES: weakref.WeakKeyDictionary[Track, tuple[np.ndarray, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def track_tables(track: Track) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pack_track` of a track, computed once per track object."""
    tables = _TABLES.get(track)
    if tables is None:
        tables = _TABLES[track] = pack_track(track)
    return tables


# ---------------------------------------------------------------- physics
@njit(cache=True, inline="always")
def _along(tk: np.ndarray, x: float, z: float, i: int) -> float:
    return (x - tk[i, T_AX]) * tk[i, T_TX] + (z - tk[i, T_AZ]) * tk[i, T_TZ]


@njit(cache=True)
def project(tk: np.ndarray, x: float, z: float, hint: int) -> tuple[int, float, float]:
    """Segment, arc length and left offset of ``(x, z)``, walking from segment ``hint`` (the
    same walk as :meth:`Track.project`)."""
    last = tk.shape[0] - 2
    i = min(max(hint, 0), last)
    t = _along(tk, x, z, i)
    while t > tk[i, T_LEN] and i < last and _along(tk, x, z, i + 1) >= 0.0:
        i += 1
        t = _along(tk, x, z, i)
    while t < 0.0 and i > 0 and _along(tk, x, z, i - 1) <= tk[i - 1, T_LEN]:
        i -= 1
        t = _along(tk, x, z, i)
    if i > 0 and t < 0.0:
        t = 0.0
    if i < last and t > tk[i, T_LEN]:
        t = tk[i, T_LEN]
    offset = (x - tk[i, T_AX]) * tk[i, T_TZ] - (z - tk[i, T_AZ]) * tk[i, T_TX]
    return i, tk[i, T_S] + t, offset


@njit(cache=True)
def _engine_curve(p: np.ndarray, u: float) -> float:
    """Fraction of the engine force at speed ``u`` from the car's engine curve (its count sits
    after the gear tops, then its speeds, then its fractions); -1 when the car has none."""
    base = P_GEAR_TOPS + int(p[P_NGEARS])
    n = int(p[base])
    if n == 0:
        return -1.0
    speeds, fractions = base + 1, base + 1 + n
    if u <= p[speeds]:
        return p[fractions]
    for k in range(1, n):
        if u < p[speeds + k]:
            lo, hi = p[speeds + k - 1], p[speeds + k]
            w = (u - lo) / (hi - lo)
            return p[fractions + k - 1] + w * (p[fractions + k] - p[fractions + k - 1])
    return p[fractions + n - 1]


@njit(cache=True)
def _engine(st: np.ndarray, p: np.ndarray, u: float, dt: float) -> float:
    """Engine acceleration at forward speed ``u`` with full gas; shifts gear and sets rpm."""
    gear = int(st[GEAR])
    frac = u / p[P_GEAR_TOPS + gear - 1]
    if frac > p[P_UPSHIFT] and gear < int(p[P_NGEARS]):
        gear += 1
        st[SHIFT_TIMER] = p[P_SHIFT_TIME]
    elif frac < p[P_DOWNSHIFT] and gear > 1:
        gear -= 1
    st[GEAR] = gear
    frac = min(max(u, 0.0) / p[P_GEAR_TOPS + gear - 1], 1.0)
    st[RPM] = p[P_IDLE_RPM] + (p[P_REDLINE_RPM] - p[P_IDLE_RPM]) * frac
    if st[SHIFT_TIMER] > 0.0:
        st[SHIFT_TIMER] -= dt
        return 0.0
    torque = 1.0  # what the ripple term gives without one (1 + 0 cos): no cos to compute
    if p[P_RIPPLE] != 0.0:
        r = min(max(frac, 0.4), 1.0)
        torque = 1.0 + p[P_RIPPLE] * math.cos(math.pi * (r - 0.8) / 0.4)
    curve = _engine_curve(p, u)
    if curve >= 0.0:
        return torque * p[P_ENGINE] * curve
    return torque * p[P_ENGINE] * max(0.0, 1.0 - u / p[P_CUTOFF])


@njit(cache=True)
def _move(
    st: np.ndarray, p: np.ndarray, tk: np.ndarray, gas: float, brake: float, steer: float,
    dt: float,
) -> None:  # fmt: skip
    if st[AIRBORNE] != 0.0:
        # Ballistic: no steering, traction, brakes or grip; only the air slows the car.
        keep = max(0.0, 1.0 - p[P_DRAG] * math.hypot(st[VX], st[VZ]) * dt)
        st[VX] *= keep
        st[VZ] *= keep
        st[X] += st[VX] * dt
        st[Z] += st[VZ] * dt
        return
    surf = int(st[SURFACE])
    c, sn = math.cos(st[HEADING]), math.sin(st[HEADING])
    u = st[VX] * c + st[VZ] * sn
    grip_ms2 = p[P_GRIP] * p[P_SURFACE_GRIP + surf]
    delta = steer * p[P_MAX_STEER] / (1.0 + max(u, 0.0) / p[P_STEER_FADE])
    yaw_rate = u * math.tan(delta) / p[P_WHEELBASE]
    yaw_cap = p[P_DRIFT_YAW] * grip_ms2 / max(u, 1.0)
    st[HEADING] += min(max(yaw_rate, -yaw_cap), yaw_cap) * dt
    c, sn = math.cos(st[HEADING]), math.sin(st[HEADING])
    u = st[VX] * c + st[VZ] * sn
    w = -st[VX] * sn + st[VZ] * c
    seg = int(st[SEG])
    uphill = tk[seg, T_SLOPE] * (c * tk[seg, T_TX] + sn * tk[seg, T_TZ])
    # Friction ellipse: grip spent turning is not available to drive or brake.
    lateral = min(abs(w) / dt, grip_ms2) / grip_ms2
    traction = math.sqrt(1.0 - lateral * lateral)
    accel = (
        traction * gas * _engine(st, p, u, dt)
        - traction * brake * p[P_BRAKE] * p[P_SURFACE_GRIP + surf]
        - p[P_ROLLING]
        - p[P_SURFACE_DRAG + surf]
        - p[P_DRAG] * u * abs(u)
        - p[P_GRAVITY] * uphill
    )
    u = max(u + accel * dt, 0.0)  # no reverse gear
    grip = grip_ms2 * dt
    w -= min(max(w, -grip), grip)
    st[VX], st[VZ] = u * c - w * sn, u * sn + w * c
    st[X] += st[VX] * dt
    st[Z] += st[VZ] * dt


@njit(cache=True)
def _push(st: np.ndarray, nx: float, nz: float, depth: float) -> None:
    """Move the car ``depth`` back against the outward wall normal and remove its velocity
    into the wall."""
    st[X] -= nx * depth
    st[Z] -= nz * depth
    into = st[VX] * nx + st[VZ] * nz
    if into > 0.0:
        st[VX] -= into * nx
        st[VZ] -= into * nz


@njit(cache=True)
def _collide(st: np.ndarray, p: np.ndarray, tk: np.ndarray, dt: float) -> bool:
    """Keep the car on the road; return whether it touched a wall in this substep."""
    seg, s, offset = project(tk, st[X], st[Z], int(st[SEG]))
    st[SEG], st[S], st[OFFSET] = seg, s, offset
    tx, tz = tk[seg, T_TX], tk[seg, T_TZ]
    limit = tk[seg, T_HALF] + p[P_BORDER] - p[P_HALF_WIDTH]
    total = p[P_TOTAL]
    if offset > limit:
        _push(st, tz, -tx, offset - limit)  # through the left wall
        st[OFFSET] = limit
    elif offset < -limit:
        _push(st, -tz, tx, -limit - offset)  # through the right wall
        st[OFFSET] = -limit
    elif s < 0.0:
        _push(st, -tx, -tz, -s)  # behind the start line
        st[S] = 0.0
    elif s > total:
        _push(st, tx, tz, s - total)  # past the end of the run-off
        st[S] = total
    else:
        st[WALL] = 0.0
        return False
    # Scrape: speed loss (impact, then friction), then turn towards the wall's direction.
    speed = math.hypot(st[VX], st[VZ])
    if st[WALL] != 0.0:
        keep = max(0.0, 1.0 - p[P_WALL_FRICTION] * dt / speed) if speed > 0.0 else 0.0
    else:
        keep = 1.0 - p[P_WALL_LOSS]
    st[VX] *= keep
    st[VZ] *= keep
    st[WALL] = 1.0
    c, sn = math.cos(st[HEADING]), math.sin(st[HEADING])
    if c * tx + sn * tz < 0.0:
        tx, tz = -tx, -tz
    st[HEADING] += p[P_WALL_ALIGN] * math.atan2(c * tz - sn * tx, c * tx + sn * tz)
    return True


@njit(cache=True)
def _vertical(st: np.ndarray, p: np.ndarray, tk: np.ndarray, dt: float) -> None:
    """Height: ballistic where the road falls away faster than gravity pulls the car down."""
    seg = int(st[SEG])
    frac = min(max((st[S] - tk[seg, T_S]) / tk[seg, T_LEN], 0.0), 1.0)
    road = tk[seg, T_Y] + frac * (tk[seg + 1, T_Y] - tk[seg, T_Y])
    vy = st[VY] - p[P_GRAVITY] * dt
    y = st[Y] + vy * dt
    if y <= road:
        st[VY] = (road - st[Y]) / dt
        st[Y] = road
    else:
        st[VY], st[Y] = vy, y
    airborne = st[Y] - road > p[P_CONTACT]
    st[AIRBORNE] = 1.0 if airborne else 0.0
    if airborne:
        st[AIR_TIME] += dt
        st[SURFACE] = tk[seg, T_SURFACE]
    elif abs(st[OFFSET]) > tk[seg, T_HALF]:
        st[SURFACE] = GRASS_CODE
    else:
        st[SURFACE] = tk[seg, T_SURFACE]


@njit(cache=True)
def step_cars(
    states: np.ndarray, controls: np.ndarray, duration_s: float, p: np.ndarray, tk: np.ndarray,
    contact: np.ndarray,
) -> None:  # fmt: skip
    """Drive each car ``duration_s`` with its controls ``(gas, brake, steer)`` (gas and brake
    in [0, 1], steer in [-1, 1], positive right), in equal substeps no longer than the
    car's substep; ``contact[i]`` tells whether car ``i`` touched a wall."""
    for i in range(states.shape[0]):
        c = controls[i]
        contact[i] = _drive(states[i], c[0], c[1], c[2], duration_s, p, tk)


@njit(cache=True)
def step_car(
    st: np.ndarray, gas: float, brake: float, steer: float, duration_s: float, p: np.ndarray,
    tk: np.ndarray,
) -> bool:  # fmt: skip
    """:func:`step_cars` of one car (its state row ``st``), controls as numbers: the single
    car's call, with fewer arrays to hand over (numba's dispatch is per argument)."""
    return _drive(st, gas, brake, steer, duration_s, p, tk)


@njit(cache=True)
def _drive(
    st: np.ndarray, gas: float, brake: float, steer: float, duration_s: float, p: np.ndarray,
    tk: np.ndarray,
) -> bool:  # fmt: skip
    """One car's step (see :func:`step_cars`): True when it touched a wall."""
    substeps = max(1, math.ceil(duration_s / p[P_SUBSTEP] - 1e-9))
    dt = duration_s / substeps
    touched = False
    for _ in range(substeps):
        _move(st, p, tk, gas, brake, steer, dt)
        touched = _collide(st, p, tk, dt) or touched
        _vertical(st, p, tk, dt)
    return touched


@njit(cache=True)
def step_cars_each(
    states: np.ndarray, controls: np.ndarray, durations_s: np.ndarray, params: np.ndarray,
    tk: np.ndarray, contact: np.ndarray,
) -> None:  # fmt: skip
    """:func:`step_cars` with a duration and a constants vector per car (``durations_s``
    ``(cars,)``, ``params`` ``(cars, P)``: each row :func:`pack_params` of that car, e.g.
    randomized per episode), every car on the track ``tk``: the same arithmetic, car by car."""
    for i in range(states.shape[0]):
        c = controls[i]
        contact[i] = _drive(states[i], c[0], c[1], c[2], durations_s[i], params[i], tk)


@njit(cache=True)
def wheel_surfaces_cars(
    tk: np.ndarray, states: np.ndarray, params: np.ndarray, out: np.ndarray
) -> None:  # fmt: skip
    """:func:`wheel_surfaces` of each car (its wheels half its wheelbase ahead and behind,
    half its width to each side, from its ``params`` row) into ``out`` ``(cars, 4)``."""
    for i in range(states.shape[0]):
        st = states[i]
        codes = wheel_surfaces(
            tk, st[X], st[Z], st[HEADING], int(st[SEG]), 0.5 * params[i, P_WHEELBASE],
            params[i, P_HALF_WIDTH],
        )  # fmt: skip
        for k in range(4):
            out[i, k] = codes[k]


@njit(cache=True)
def wheel_surfaces(
    tk: np.ndarray, x: float, z: float, heading: float, seg: int, ahead: float, side: float
) -> tuple[int, int, int, int]:
    """Surface code under each wheel (front-left, front-right, rear-left, rear-right) of a
    car at ``(x, z)`` facing ``heading``, its wheels ``ahead`` metres before and behind the
    centre and ``side`` metres to each side: grass beyond the road's border, else the road
    segment's surface."""
    c, sn = math.cos(heading), math.sin(heading)
    codes = [0, 0, 0, 0]
    k = 0
    for fwd in (ahead, -ahead):
        for left in (side, -side):
            # forward is (c, sn) in (x, z); left of it is (sn, -c)
            wseg, _, offset = project(tk, x + fwd * c + left * sn, z + fwd * sn - left * c, seg)
            grass = abs(offset) > tk[wseg, T_HALF]
            codes[k] = int(GRASS_CODE) if grass else int(tk[wseg, T_SURFACE])
            k += 1
    return codes[0], codes[1], codes[2], codes[3]


# ---------------------------------------------------------------- LIDAR
BEAM_BINS = 128
"""Bins of the beam lookup of :func:`lidar_cars` over the pseudo-angle range [-1, 1]."""
PSEUDO_EPS = 1e-7
"""Widening of a wall piece's pseudo-angle interval (about radians): far larger than the
rounding of the hit tests (1e-16 relative), far smaller than the beams' spacing, so that no
beam a piece could stop is left out."""


@njit(cache=True, inline="always")
def _pseudo_angle(f: float, left: float) -> float:
    """A number in [-1, 1] that grows with the angle of the direction ``(f, left)`` (forward,
    left) of the front half-plane (``f > 0``) from -90 to +90 degrees: cheaper than atan2."""
    return left / (f + abs(left))


@njit(cache=True)
def beam_lookup(angles: np.ndarray) -> np.ndarray:
    """``(2, BEAM_BINS)``: for each bin of pseudo-angle (:func:`_pseudo_angle`, [-1, 1] in
    :data:`BEAM_BINS` equal bins), the number of beams below the bin's lower edge, and below
    its upper edge: a wall piece whose ends' pseudo-angles lie in bins ``k0..k1`` can only
    stop beams ``first[k0]..stop[k1] - 1``. Beams not sorted within [-90, 90] degrees get
    the whole fan for every bin (every piece meets every beam)."""
    beams = angles.shape[0]
    lookup = np.empty((2, BEAM_BINS), np.int64)
    lookup[0, :], lookup[1, :] = 0, beams
    pseudo = np.empty(beams)
    for b in range(beams):
        a = angles[b]
        if not -0.5 * math.pi <= a <= 0.5 * math.pi or (b > 0 and a < angles[b - 1]):
            return lookup
        pseudo[b] = math.sin(a) / (abs(math.cos(a)) + abs(math.sin(a)))
    below = 0
    for k in range(BEAM_BINS):
        edge = -1.0 + 2.0 * k / BEAM_BINS  # exact in binary
        while below < beams and pseudo[below] < edge:
            below += 1
        lookup[0, k] = below
        if k > 0:
            lookup[1, k - 1] = below  # below the previous bin's upper edge
    return lookup


@njit(cache=True, inline="always")
def _bin_of(pseudo: float, half_bins: float) -> int:
    """The bin of :func:`beam_lookup` a pseudo-angle falls in."""
    return min(max(int((pseudo + 1.0) * half_bins), 0), BEAM_BINS - 1)


@njit(cache=True, error_model="numpy")
def lidar_cars(
    states: np.ndarray, angles: np.ndarray, lookup: np.ndarray, range_m: float, ahead: int,
    behind: int, tk: np.ndarray, walls: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    """Wall distances (m, at most ``range_m``) along each beam for each car, into ``out``
    ``(cars, beams)``; the wall pieces searched are those beside the segments from
    ``behind`` before to ``ahead`` after the car's, in the direction the car faces (see
    :mod:`tmrl2.envs.sim.lidar`).

    A piece wholly in front of the car is intersected only with the beams whose direction
    falls within the angle it subtends (``lookup``, :func:`beam_lookup` of ``angles``, at
    the pseudo-angles of its ends widened by :data:`PSEUDO_EPS`), not with all of them: the
    same hits, in the same order, so the same numbers, for about one beam per piece instead
    of all of them (issue 18).
    """
    scratch = np.empty((3, angles.shape[0]))
    for i in range(states.shape[0]):
        _lidar_car(states[i], angles, lookup, range_m, ahead, behind, tk, walls, scratch)
        out[i, :] = scratch[0]


@njit(cache=True, error_model="numpy")
def step_car_scan(
    st: np.ndarray, gas: float, brake: float, steer: float, duration_s: float, p: np.ndarray,
    tk: np.ndarray, angles: np.ndarray, lookup: np.ndarray, range_m: float, ahead: int,
    behind: int, walls: np.ndarray, history: np.ndarray,
) -> bool:  # fmt: skip
    """:func:`step_car`, then the LIDAR (:func:`lidar_cars`) at the car's new pose pushed
    into ``history`` ``(scans, beams)`` (float32 distance / ``range_m``, oldest row first):
    the single car's env step in one call instead of a dozen numpy and numba calls."""
    scratch = np.empty((3, angles.shape[0]))
    return step_scan_row(
        st, gas, brake, steer, duration_s, p, tk, angles, lookup, range_m, ahead, behind, walls,
        history, scratch,
    )  # fmt: skip


@njit(cache=True, error_model="numpy", inline="always")
def step_scan_row(
    st: np.ndarray, gas: float, brake: float, steer: float, duration_s: float, p: np.ndarray,
    tk: np.ndarray, angles: np.ndarray, lookup: np.ndarray, range_m: float, ahead: int,
    behind: int, walls: np.ndarray, history: np.ndarray, scratch: np.ndarray,
) -> bool:  # fmt: skip
    """One car's step and scan, the body of :func:`step_car_scan` and of the batch kernels
    (``scratch``: :func:`_lidar_car`'s ``(3, beams)``); whether the car touched a wall."""
    hit = _drive(st, gas, brake, steer, duration_s, p, tk)
    _lidar_car(st, angles, lookup, range_m, ahead, behind, tk, walls, scratch)
    best = scratch[0]
    last = history.shape[0] - 1
    for k in range(last):
        history[k, :] = history[k + 1, :]
    for b in range(best.shape[0]):
        history[last, b] = best[b] / range_m
    return hit


@njit(cache=True, error_model="numpy")
def step_cars_scan_each(
    states: np.ndarray, controls: np.ndarray, durations_s: np.ndarray, params: np.ndarray,
    tk: np.ndarray, contact: np.ndarray, angles: np.ndarray, lookup: np.ndarray,
    range_m: float, ahead: int, behind: int, walls: np.ndarray, history: np.ndarray,
) -> None:  # fmt: skip
    """:func:`step_cars_each`, then each car's LIDAR at its new pose pushed into its
    ``history[i]`` ``(scans, beams)`` (float32 distance / ``range_m``, oldest row first), as
    :func:`step_car_scan` does for one car: the batch's step in one call."""
    scratch = np.empty((3, angles.shape[0]))
    for i in range(states.shape[0]):
        c = controls[i]
        contact[i] = step_scan_row(
            states[i], c[0], c[1], c[2], durations_s[i], params[i], tk, angles, lookup,
            range_m, ahead, behind, walls, history[i], scratch,
        )  # fmt: skip


@njit(cache=True)
def finish_cars_step(
    states: np.ndarray, s_before: np.ndarray, durations_s: np.ndarray, act: np.ndarray,
    actions: np.ndarray, steps: np.ndarray, race_s: np.ndarray, progress: np.ndarray,
    length: np.ndarray, start_frac: np.ndarray, jitter: np.ndarray, caps: np.ndarray,
    contact: np.ndarray, dt: float, end_on_wall: bool, new_progress: np.ndarray,
    lap: np.ndarray, lap_s: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
) -> None:  # fmt: skip
    """A batch step's bookkeeping after the physics, car by car (``SimBatch.step`` did it with
    two dozen numpy calls): step count and race time, the action
    history (``actions`` ``(cars, history, 3)``, ``act`` pushed last), ``new_progress`` (the
    best arc length, at most the track's ``length``), the lap of a car that crossed the
    finish from a standing start (interpolated within the step; NaN in ``lap`` otherwise,
    also stored in ``lap_s``), and the episode's end. The same arithmetic as the numpy
    code it replaces, so the same numbers bit for bit (``tests/unit/test_sim_vec.py``)."""
    history = actions.shape[1]
    for i in range(states.shape[0]):
        race_before = race_s[i]
        steps[i] += 1
        race_s[i] += durations_s[i]
        for k in range(history - 1):
            actions[i, k, :] = actions[i, k + 1, :]
        actions[i, history - 1, :] = act[i, :]
        s, end = states[i, S], length[i]
        finished = s >= end
        new_progress[i] = max(progress[i], min(s, end))
        lap[i] = np.nan
        if finished and start_frac[i] == 0.0:  # no lap from a start mid-track
            frac = (end - s_before[i]) / max(s - s_before[i], 1e-9)
            frac = min(max(frac, 0.0), 1.0)
            if jitter[i] > 0.0:
                lap[i] = race_before + frac * durations_s[i]
            else:
                lap[i] = ((steps[i] - 1) + frac) * dt
            lap_s[i] = lap[i]
        crashed = end_on_wall and not finished and contact[i]
        terminated[i] = finished or crashed
        truncated[i] = not finished and not crashed and steps[i] >= caps[i]


@njit(cache=True, error_model="numpy")
def _lidar_car(
    st: np.ndarray, angles: np.ndarray, lookup: np.ndarray, range_m: float, ahead: int,
    behind: int, tk: np.ndarray, walls: np.ndarray, scratch: np.ndarray,
) -> None:  # fmt: skip
    """One car's row of :func:`lidar_cars`, into ``scratch[0]``; ``scratch`` ``(3, beams)``
    also holds the beams' directions (rows 1 and 2), so that a car allocates nothing."""
    best, rx, rz = scratch[0], scratch[1], scratch[2]
    rows = walls.shape[0]
    beams = angles.shape[0]
    half_bins = 0.5 * BEAM_BINS
    x, z, heading, seg = st[X], st[Z], st[HEADING], int(st[SEG])
    if math.cos(heading) * tk[seg, T_TX] + math.sin(heading) * tk[seg, T_TZ] >= 0.0:
        lo, hi = seg - behind, seg + ahead
    else:
        lo, hi = seg - ahead, seg + behind
    first, stop = max(lo + 1, 0), min(hi + 2, rows)  # wall row k + 1 is beside segment k
    best[:] = range_m
    for b in range(beams):  # np.cos(heading + angles) without its three arrays: same values
        angle = heading + angles[b]
        rx[b], rz[b] = math.cos(angle), math.sin(angle)
    hx, hz = math.cos(heading), math.sin(heading)
    range2 = range_m * range_m
    for r in range(first, stop):
        for side in range(2):
            k = 4 * side
            ax, az = walls[r, k] - x, walls[r, k + 1] - z
            ex, ez = walls[r, k + 2], walls[r, k + 3]
            # Skip pieces no beam can reach: wholly behind the car (the beams look over
            # the front half-plane) or wholly beyond the range (pieces are short).
            fa, fb = ax * hx + az * hz, (ax + ex) * hx + (az + ez) * hz
            if fa < 0.0 and fb < 0.0:
                continue
            # (the piece's nearest point is within half its length of an end)
            near2 = min(ax * ax + az * az, (ax + ex) ** 2 + (az + ez) ** 2)
            if near2 > range2 + 0.25 * (ex * ex + ez * ez):
                continue
            b0, b1 = 0, beams
            if fa > 0.0 and fb > 0.0:
                la = hx * az - hz * ax
                lb = hx * (az + ez) - hz * (ax + ex)
                pa, pb = _pseudo_angle(fa, la), _pseudo_angle(fb, lb)
                p_lo, p_hi = min(pa, pb) - PSEUDO_EPS, max(pa, pb) + PSEUDO_EPS
                b0 = lookup[0, _bin_of(p_lo, half_bins)]
                b1 = lookup[1, _bin_of(p_hi, half_bins)]
            # Ray o + t r meets piece a + v e at t = (a x e) / (r x e), v = (a x r) / (r x e):
            # compare numerators against the denominator (sign folded in); divide only on
            # a nearer hit. The numerator of t does not depend on the beam.
            t_num = ax * ez - az * ex
            for b in range(b0, b1):
                denom = rx[b] * ez - rz[b] * ex
                vn = ax * rz[b] - az * rx[b]
                if denom < 0.0:
                    d, tn, v = -denom, -t_num, -vn
                else:
                    d, tn, v = denom, t_num, vn
                if tn > 0.0 and v >= 0.0 and v <= d and tn < best[b] * d:
                    best[b] = tn / d

"""Car physics of the simulator: a planar bicycle-style model with a tyre grip limit and walls.

The car is a point with a heading, moving on the x-z plane of a :class:`Track`. Each physics
substep:

1. steering sets a yaw rate ``u * tan(delta) / wheelbase`` (kinematic bicycle), with the
   steering angle ``delta`` limited and reduced at speed; the yaw rate is capped at
   ``drift_yaw_factor`` times the rate the tyres can follow, so the car over-rotates a little
   (drifts) but does not spin like a top;
2. the velocity is split into forward ``u`` and sideways ``w`` parts in the car's frame:
   the engine (an envelope falling linearly with speed, shaped by a torque curve over the rpm
   of the gear the automatic gearbox picks), brakes, drag, rolling resistance and the road
   slope act on ``u``; the tyres cancel ``w`` with at most ``grip_ms2`` of acceleration
   (times the surface's grip: road, dirt, grass),
   and grip spent sideways is taken from engine and brakes (friction ellipse). Cornering
   harder than the grip allows leaves a sideways velocity: the velocity direction lags the
   heading, the tyres scrub speed away and the engine cannot push (a slide);
3. walls: a car that would cross a border is put back inside, loses its velocity into the
   wall, is turned towards the wall's direction, and loses ``wall_impact_loss`` of its speed on
   impact (then ``wall_friction_ms2`` while it keeps scraping);
4. height: gravity pulls the car down and the road holds it up; where the road falls away
   faster than gravity (a crest at speed) the car flies, and while its wheels are more than
   ``contact_m`` above the road it is airborne: no steering, traction, brakes or grip.

The arithmetic lives in :mod:`tmrl2.envs.sim.kernels` (compiled by numba), shared by this
single car and the batch of cars (:class:`~tmrl2.envs.sim.vec.SimBatch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tmrl2.envs.sim import kernels
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.track import Track

WHEELS = ("FL", "FR", "RL", "RR")
"""Wheel order of :meth:`Car.wheel_surfaces` (and of the protocol's wheel bits)."""


@dataclass(frozen=True)
class CarParams:
    """Physical constants of the car (a TrackMania-like stadium car, simplified)."""

    wheelbase_m: float = 2.7
    """Distance between the axles; sets the turn radius for a steering angle."""
    half_width_m: float = 1.0
    """Half the car's width: how close the centre can get to a wall."""
    engine_accel_ms2: float = 16.0
    """Engine acceleration at standstill with full gas."""
    engine_cutoff_ms: float = 100.0
    """Speed at which the engine force has fallen linearly to zero."""
    brake_decel_ms2: float = 15.0
    """Deceleration with full brake."""
    drag_per_m: float = 3.1e-4
    """Aerodynamic drag: deceleration ``drag_per_m * v**2`` (top speed about 85 m/s)."""
    rolling_ms2: float = 0.15
    """Rolling resistance deceleration while moving."""
    grip_ms2: float = 13.7
    """Tyre grip limit: the most sideways acceleration the tyres give (1.4 g)."""
    max_steer_rad: float = 0.5
    """Steering angle at full lock, standing still."""
    steer_fade_ms: float = 15.0
    """Speed at which full lock is halved (``max_steer / (1 + u / steer_fade)``)."""
    drift_yaw_factor: float = 1.5
    """Yaw rate cap as a multiple of the grip-limited rate ``grip / u`` (over-rotation)."""
    wall_impact_loss: float = 0.35
    """Fraction of the speed lost when the car hits a wall."""
    wall_friction_ms2: float = 20.0
    """Deceleration while the car keeps scraping along a wall."""
    wall_align: float = 0.5
    """Fraction of the angle between heading and wall removed at each contact substep."""
    gravity_ms2: float = 9.81
    """Gravity, for the slope of the road."""
    substep_s: float = 0.01
    """Longest physics substep; an env step is split into equal substeps no longer than this."""
    gear_top_ms: tuple[float, ...] = (16.0, 27.0, 39.0, 53.0, 70.0, 100.0)
    """Speed at the red line in each gear (first to sixth); sets the rpm."""
    idle_rpm: float = 1500.0
    """Engine speed at standstill."""
    redline_rpm: float = 11000.0
    """Engine speed at the red line (the rev limiter)."""
    upshift_frac: float = 0.92
    """The automatic gearbox shifts up above this fraction of the red line..."""
    downshift_frac: float = 0.5
    """...and down below this fraction."""
    torque_ripple: float = 0.05
    """Torque curve: engine force times ``1 + ripple cos(pi (r - 0.8) / 0.4)`` at rpm fraction
    ``r`` (clipped to [0.4, 1]): strongest at 80 % of the red line, a little weaker just after
    a shift. The envelope over the gears is the linear force law above."""
    shift_time_s: float = 0.0
    """Engine force is cut for this long at each shift (TrackMania's shifts are instant)."""
    surface_grip: tuple[float, ...] = (1.0, 0.7, 0.55)
    """Grip (and brake) multiplier on road, dirt and grass (see ``track.SURFACES``)."""
    surface_drag_ms2: tuple[float, ...] = (0.0, 1.0, 4.0)
    """Extra rolling resistance on road, dirt and grass."""
    contact_m: float = 0.05
    """Suspension travel: the car is airborne when its wheels are higher than this above the
    road (no steering, traction, brakes or grip until it lands)."""
    engine_curve: tuple[tuple[float, float], ...] = ()
    """Engine envelope as ``(speed m/s, fraction of engine_accel_ms2)`` points with increasing
    speeds, interpolated linearly and constant beyond the ends (TrackMania's table of
    acceleration over speed bands). Empty: the linear law of ``engine_accel_ms2`` and
    ``engine_cutoff_ms``."""

    def __post_init__(self) -> None:
        speeds = [point[0] for point in self.engine_curve]
        if any(len(point) != 2 for point in self.engine_curve) or any(
            b <= a for a, b in zip(speeds, speeds[1:], strict=False)
        ):
            raise ValueError(
                "CarParams.engine_curve: give (speed_ms, fraction) pairs with increasing speeds"
            )
        if any(b <= a for a, b in zip(self.gear_top_ms, self.gear_top_ms[1:], strict=False)):
            raise ValueError("CarParams.gear_top_ms: give increasing red-line speeds, one per gear")


def engine_envelope_ms2(params: CarParams, speed_ms: np.ndarray | float) -> np.ndarray:
    """Engine acceleration (m/s^2) with full gas at each forward speed, over all gears (no
    torque ripple or shift cut): the law the kernels apply, for the reference lap and plans."""
    u = np.maximum(np.asarray(speed_ms, dtype=np.float64), 0.0)
    if params.engine_curve:
        speeds, fractions = (np.array(column) for column in zip(*params.engine_curve, strict=True))
        return params.engine_accel_ms2 * np.interp(u, speeds, fractions)
    return params.engine_accel_ms2 * np.maximum(0.0, 1.0 - u / params.engine_cutoff_ms)


@dataclass
class CarState:
    """Where the car is and how it moves; ``seg`` is also the hint of the next projection."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    heading: float = 0.0
    """Yaw (rad): the car points along ``(cos, sin)`` in ``(x, z)``; it grows turning right."""
    vx: float = 0.0
    vz: float = 0.0
    seg: int = 0
    """Track segment the car is on."""
    s: float = 0.0
    """Arc length of the car's projection on the centerline (m)."""
    offset: float = 0.0
    """Signed distance from the centerline, left positive (m)."""
    wall_contact: bool = False
    """Whether the last substep touched a wall."""
    vy: float = 0.0
    """Vertical velocity (m/s, up positive)."""
    airborne: bool = False
    """Whether the wheels are off the road (see ``CarParams.contact_m``)."""
    air_time_s: float = 0.0
    """Time spent airborne since the last reset."""
    gear: int = 1
    """Gear engaged by the automatic gearbox (1 = first)."""
    rpm: float = 0.0
    """Engine speed."""
    surface: int = 0
    """Surface code under the car (index into ``track.SURFACES``)."""
    shift_timer_s: float = 0.0
    """Time left of the torque cut of the last shift."""

    @property
    def speed(self) -> float:
        """Speed over the ground (m/s)."""
        return math.hypot(self.vx, self.vz)

    @property
    def forward_speed(self) -> float:
        """Velocity along the heading (m/s)."""
        return self.vx * math.cos(self.heading) + self.vz * math.sin(self.heading)

    @property
    def side_speed(self) -> float:
        """Velocity to the right of the heading (m/s): non-zero while sliding."""
        return -self.vx * math.sin(self.heading) + self.vz * math.cos(self.heading)


class Car:
    """One car driving on one track."""

    def __init__(self, track: Track, params: CarParams | None = None) -> None:
        self.track = track
        self.params = params or CarParams()
        self.state = CarState()
        self._table = kernels.track_tables(track)[0]
        self._packed = kernels.pack_params(self.params, track)
        self._packed_for = (self.params, track)
        self._row = np.zeros(kernels.NSTATE)

    def reset(self, s: float = 0.0, offset: float = 0.0, heading_offset: float = 0.0) -> None:
        """Stand still at arc length ``s``, ``offset`` left of the centerline, facing the road
        direction turned right by ``heading_offset`` radians."""
        x, z = self.track.point_at(s)
        tx, tz = self.track.tangent(self.track.segment_at(s))
        x, z = x + offset * tz, z - offset * tx
        seg, s_on, off = self.track.project(x, z, self.track.segment_at(s))
        heading = math.atan2(tz, tx) + heading_offset
        y = self.track.height(seg, s_on)
        self.state = CarState(x=x, y=y, z=z, heading=heading, seg=seg, s=s_on, offset=off)
        self.state.rpm = self.params.idle_rpm
        self.state.surface = self.track.surface(seg)

    def wheel_surfaces(self) -> tuple[int, int, int, int]:
        """Surface code under each wheel (:data:`WHEELS` order): the wheels sit at the corners
        of the car's footprint (half the wheelbase ahead and behind, half the width to each
        side), so one wheel can be on the grass while the others are on the road. The point
        car has one height: all four wheels touch the ground or none does (``airborne``)."""
        st, p = self.state, self.params
        return kernels.wheel_surfaces(
            self._tables()[0], st.x, st.z, st.heading, st.seg, 0.5 * p.wheelbase_m,
            p.half_width_m,
        )  # fmt: skip

    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The track table and the packed constants, packed again after a change of params
        (domain randomization) or of track."""
        packed_for = self._packed_for
        if packed_for[0] is not self.params or packed_for[1] is not self.track:
            self._table = kernels.track_tables(self.track)[0]
            self._packed = kernels.pack_params(self.params, self.track)
            self._packed_for = (self.params, self.track)
        return self._table, self._packed

    def step(self, gas: float, brake: float, steer: float, duration_s: float) -> bool:
        """Drive ``duration_s`` with these controls (gas, brake in [0, 1], steer in [-1, 1],
        positive right); return whether the car touched a wall."""
        table, packed = self._tables()
        row = self._load_row()
        hit = kernels.step_car(row, gas, brake, steer, duration_s, packed, table)
        self._store_row(row)
        return hit

    def step_and_scan(
        self, gas: float, brake: float, steer: float, duration_s: float, lidar: Lidar,
        history: np.ndarray,
    ) -> bool:  # fmt: skip
        """:meth:`step`, then ``lidar.measure`` at the new pose divided by ``lidar.range_m``
        pushed into ``history`` ``(scans, beams)`` float32 (oldest row first), in one
        compiled call (the env's step, issue 18); the same numbers as the two calls."""
        if lidar.track is not self.track:
            raise ValueError("the LIDAR is for another track than the car's")
        table, packed = self._tables()
        row = self._load_row()
        angles, lookup, range_m, ahead, behind, walls = lidar.kernel_args
        hit = kernels.step_car_scan(
            row, gas, brake, steer, duration_s, packed, table, angles, lookup, range_m, ahead,
            behind, walls, history,
        )  # fmt: skip
        self._store_row(row)
        return hit

    def _load_row(self) -> np.ndarray:
        """The state as the kernels' row. One tuple each way, in kernels.STATE_FIELDS order:
        a loop of getattr/setattr was the largest Python cost of a step (issue 18)."""
        row, st = self._row, self.state
        row[:] = (
            st.x, st.y, st.z, st.heading, st.vx, st.vz, st.vy, st.s, st.offset, st.air_time_s,
            st.rpm, st.shift_timer_s, st.seg, st.gear, st.surface, st.wall_contact,
            st.airborne,
        )  # fmt: skip
        return row

    def _store_row(self, row: np.ndarray) -> None:
        st = self.state
        (
            st.x, st.y, st.z, st.heading, st.vx, st.vz, st.vy, st.s, st.offset, st.air_time_s,
            st.rpm, st.shift_timer_s, seg, gear, surface, wall, airborne,
        ) = row.tolist()  # fmt: skip
        st.seg, st.gear, st.surface = int(seg), int(gear), int(surface)
        st.wall_contact, st.airborne = wall != 0.0, airborne != 0.0


_KMH = 1.0 / 3.6

TM2020 = CarParams(
    engine_accel_ms2=16.0,
    engine_curve=(
        (0.0, 1.0),
        (100 * _KMH, 1.0),
        (101 * _KMH, 11 / 16),
        (200 * _KMH, 11 / 16),
        (201 * _KMH, 7 / 16),
        (400 * _KMH, 7 / 16),
        (401 * _KMH, 5.5 / 16),
        (800 * _KMH, 5.5 / 16),
        (801 * _KMH, 1 / 16),
    ),
    drag_per_m=0.85 / (900 * _KMH) ** 2,
    rolling_ms2=0.15,
    grip_ms2=75.0,
    brake_decel_ms2=30.0,
    gear_top_ms=(102 * _KMH, 162 * _KMH, 235 * _KMH, 342 * _KMH, 900 * _KMH),
    upshift_frac=1.0,
    downshift_frac=0.35,
    torque_ripple=0.0,
    shift_time_s=0.1,
    surface_grip=(1.0, 0.25, 0.15),
)
"""The TrackMania 2020 stadium car, from public community measurements (docs/simulator.md,
"Car presets"): five gears shifting up at 102, 162, 235 and 342 km/h; engine acceleration
16 m/s^2 up to 100 km/h, 11 to 200, 7 to 400, 5.5 to 800, 1 beyond; top speed about 900 km/h
on a level road; grip 75 m/s^2 (7.6 g; x 0.25 on dirt, x 0.15 on grass); brakes 30 m/s^2
(assumed); the engine stops pushing for 0.1 s at each shift."""

CAR_PRESETS: dict[str, CarParams] = {"classic": CarParams(), "tm2020": TM2020}
"""Named cars (``env.car``): ``classic`` is the simulator's first car (1.4 g, 306 km/h);
``tm2020`` the TrackMania 2020 stadium car (:data:`TM2020`)."""


def car_params(name: str) -> CarParams:
    """The preset car ``name``; a one-line :class:`ValueError` naming the presets otherwise."""
    try:
        return CAR_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown car {name!r}; known cars: {', '.join(sorted(CAR_PRESETS))}"
        ) from None

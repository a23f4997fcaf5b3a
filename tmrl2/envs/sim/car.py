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

All per-substep arithmetic is on Python floats: at one car, numpy's per-call overhead would
cost more than the maths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tmrl2.envs.sim.track import GRASS, Track


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

    def step(self, gas: float, brake: float, steer: float, duration_s: float) -> bool:
        """Drive ``duration_s`` with these controls (gas, brake in [0, 1], steer in [-1, 1],
        positive right); return whether the car touched a wall."""
        substeps = max(1, math.ceil(duration_s / self.params.substep_s - 1e-9))
        dt = duration_s / substeps
        contact = False
        for _ in range(substeps):
            self._move(gas, brake, steer, dt)
            contact = self._collide(dt) or contact
            self._vertical(dt)
        return contact

    def _move(self, gas: float, brake: float, steer: float, dt: float) -> None:
        p, st = self.params, self.state
        if st.airborne:
            # Ballistic: no steering, traction, brakes or grip; only the air slows the car.
            speed = math.hypot(st.vx, st.vz)
            keep = max(0.0, 1.0 - p.drag_per_m * speed * dt)
            st.vx *= keep
            st.vz *= keep
            st.x += st.vx * dt
            st.z += st.vz * dt
            return
        c, sn = math.cos(st.heading), math.sin(st.heading)
        u = st.vx * c + st.vz * sn
        grip_ms2 = p.grip_ms2 * p.surface_grip[st.surface]
        delta = steer * p.max_steer_rad / (1.0 + max(u, 0.0) / p.steer_fade_ms)
        yaw_rate = u * math.tan(delta) / p.wheelbase_m
        yaw_cap = p.drift_yaw_factor * grip_ms2 / max(u, 1.0)
        st.heading += min(max(yaw_rate, -yaw_cap), yaw_cap) * dt
        c, sn = math.cos(st.heading), math.sin(st.heading)
        u = st.vx * c + st.vz * sn
        w = -st.vx * sn + st.vz * c
        tx, tz = self.track.tangent(st.seg)
        uphill = self.track.slope(st.seg) * (c * tx + sn * tz)
        # Friction ellipse: grip spent turning is not available to drive or brake; a sliding
        # car (all grip spent sideways) neither accelerates nor brakes.
        lateral = min(abs(w) / dt, grip_ms2) / grip_ms2
        traction = math.sqrt(1.0 - lateral * lateral)
        accel = (
            traction * gas * self._engine(u, dt)
            - traction * brake * p.brake_decel_ms2 * p.surface_grip[st.surface]
            - p.rolling_ms2
            - p.surface_drag_ms2[st.surface]
            - p.drag_per_m * u * abs(u)
            - p.gravity_ms2 * uphill
        )
        # No reverse gear: brakes and resistances stop the car, they do not back it up.
        u = max(u + accel * dt, 0.0)
        grip = grip_ms2 * dt
        w -= min(max(w, -grip), grip)
        st.vx, st.vz = u * c - w * sn, u * sn + w * c
        st.x += st.vx * dt
        st.z += st.vz * dt

    def _engine(self, u: float, dt: float) -> float:
        """Engine acceleration at forward speed ``u`` with full gas; shifts gear and sets rpm."""
        p, st = self.params, self.state
        tops = p.gear_top_ms
        frac = u / tops[st.gear - 1]
        if frac > p.upshift_frac and st.gear < len(tops):
            st.gear += 1
            st.shift_timer_s = p.shift_time_s
        elif frac < p.downshift_frac and st.gear > 1:
            st.gear -= 1
        frac = min(max(u, 0.0) / tops[st.gear - 1], 1.0)
        st.rpm = p.idle_rpm + (p.redline_rpm - p.idle_rpm) * frac
        if st.shift_timer_s > 0.0:
            st.shift_timer_s -= dt
            return 0.0
        r = min(max(frac, 0.4), 1.0)
        torque = 1.0 + p.torque_ripple * math.cos(math.pi * (r - 0.8) / 0.4)
        return torque * p.engine_accel_ms2 * max(0.0, 1.0 - u / p.engine_cutoff_ms)

    def _vertical(self, dt: float) -> None:
        """Height: ballistic when the road falls away faster than gravity pulls the car down
        (a crest at speed), otherwise on the road."""
        p, st = self.params, self.state
        road = self.track.height(st.seg, st.s)
        vy = st.vy - p.gravity_ms2 * dt
        y = st.y + vy * dt
        if y <= road:
            st.vy = (road - st.y) / dt
            st.y = road
        else:
            st.vy, st.y = vy, y
        st.airborne = st.y - road > p.contact_m
        if st.airborne:
            st.air_time_s += dt
            st.surface = self.track.surface(st.seg)
        elif abs(st.offset) > self.track.half_width(st.seg):
            st.surface = GRASS
        else:
            st.surface = self.track.surface(st.seg)

    def _collide(self, dt: float) -> bool:
        """Keep the car on the road; return whether it touched a wall in this substep."""
        st, track = self.state, self.track
        st.seg, st.s, st.offset = track.project(st.x, st.z, st.seg)
        tx, tz = track.tangent(st.seg)
        limit = track.half_width(st.seg) + track.border_m - self.params.half_width_m
        if st.offset > limit:
            self._push(tz, -tx, st.offset - limit)  # through the left wall
            st.offset = limit
        elif st.offset < -limit:
            self._push(-tz, tx, -limit - st.offset)  # through the right wall
            st.offset = -limit
        elif st.s < 0.0:
            self._push(-tx, -tz, -st.s)  # behind the start line
            st.s = 0.0
        elif st.s > track.total_m:
            self._push(tx, tz, st.s - track.total_m)  # past the end of the run-off
            st.s = track.total_m
        else:
            st.wall_contact = False
            return False
        self._scrape(dt, tx, tz)
        return True

    def _push(self, nx: float, nz: float, depth: float) -> None:
        """Move the car ``depth`` back against the outward wall normal ``(nx, nz)`` and remove
        its velocity into the wall."""
        st = self.state
        st.x -= nx * depth
        st.z -= nz * depth
        into = st.vx * nx + st.vz * nz
        if into > 0.0:
            st.vx -= into * nx
            st.vz -= into * nz

    def _scrape(self, dt: float, tx: float, tz: float) -> None:
        """Speed loss and heading alignment of a car touching a wall."""
        p, st = self.params, self.state
        speed = math.hypot(st.vx, st.vz)
        if st.wall_contact:
            keep = max(0.0, 1.0 - p.wall_friction_ms2 * dt / speed) if speed > 0.0 else 0.0
        else:
            keep = 1.0 - p.wall_impact_loss
        st.vx *= keep
        st.vz *= keep
        st.wall_contact = True
        # Turn towards the wall's direction (whichever way the car already points), so that
        # a car nosed into a wall can drive away instead of pushing into it forever.
        c, sn = math.cos(st.heading), math.sin(st.heading)
        if c * tx + sn * tz < 0.0:
            tx, tz = -tx, -tz
        error = math.atan2(c * tz - sn * tx, c * tx + sn * tz)
        st.heading += p.wall_align * error

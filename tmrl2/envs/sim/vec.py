"""A batch of N cars on one track, stepped together in numpy (LIDAR observations).

The same physics as :class:`~tmrl2.envs.sim.car.Car` (the equations are transcribed one for
one, on arrays of N cars instead of Python floats) and the same LIDAR as
:class:`~tmrl2.envs.sim.lidar.Lidar`, for data throughput: one numpy call serves every car, so
the per-call overhead that dominates a single car is paid once per batch. Cars that finish or
stall are reset on their own (auto-reset, like Gymnasium's vector envs); their last
observation is in ``info["final_obs_lidar"]``.

Not covered: images, previews, domain randomization and respawns (use :class:`SimEnv`).
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import numpy as np

from tmrl2.envs.sim.car import CarParams, CarState
from tmrl2.envs.sim.env import (
    SPEED_REF_MS,
    START_HEADING_NOISE_RAD,
    START_OFFSET_NOISE_M,
    SimEnvConfig,
)
from tmrl2.envs.sim.lidar import WINDOW_AHEAD, WINDOW_BEHIND
from tmrl2.envs.sim.track import GRASS, load_track

_STATE = (
    "x",
    "y",
    "z",
    "heading",
    "vx",
    "vz",
    "vy",
    "s",
    "offset",
    "air_time_s",
    "rpm",
    "shift_timer_s",
)
_INT_STATE = ("seg", "gear", "surface")
_BOOL_STATE = ("wall_contact", "airborne")


class SimBatch:
    """``n`` independent cars; ``step(actions (n, 3))`` -> observations, rewards, flags."""

    def __init__(self, n: int, config: SimEnvConfig | None = None, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"a batch needs at least one car, got n={n}")
        self.n = n
        self.config = cfg = config or SimEnvConfig()
        self.track = track = load_track(cfg.track)
        self.params = CarParams()
        self.rng = np.random.default_rng(seed)
        pts = track.points
        self._ax, self._az = pts[:-1, 0].copy(), pts[:-1, 2].copy()
        self._tx, self._tz = track.tangents[:, 0].copy(), track.tangents[:, 1].copy()
        self._len = np.diff(track.s_m)
        self._s, self._y = track.s_m, pts[:, 1]
        self._half = 0.5 * track.width_m[:-1]
        self._slope = np.diff(pts[:, 1]) / self._len
        self._surface = track.surfaces
        self._grip = np.asarray(self.params.surface_grip)
        self._sdrag = np.asarray(self.params.surface_drag_ms2)
        self._tops = np.asarray(self.params.gear_top_ms)
        # float32 walls relative to the track's first point keep the LIDAR's precision
        self._wall_start = track.wall_start.astype(np.float32)
        self._wall_delta = track.wall_delta.astype(np.float32)
        self.angles = np.linspace(-math.pi / 2, math.pi / 2, cfg.lidar_beams)
        self._ahead = math.ceil(WINDOW_AHEAD * cfg.lidar_range_m / track.spacing_m)
        self._behind = math.ceil(WINDOW_BEHIND * cfg.lidar_range_m / track.spacing_m)
        self.state: dict[str, np.ndarray] = {k: np.zeros(n) for k in _STATE}
        self.state |= {k: np.zeros(n, np.int64) for k in _INT_STATE}
        self.state |= {k: np.zeros(n, bool) for k in _BOOL_STATE}
        self.steps = np.zeros(n, np.int64)
        self.progress = np.zeros(n)
        self._stuck_anchor = np.zeros(n)
        self._stuck_since = np.zeros(n, np.int64)
        self._lidar = np.zeros((n, cfg.lidar_history, cfg.lidar_beams), np.float32)
        self._actions = np.zeros((n, cfg.action_history, 3), np.float32)

    # ----------------------------------------------------------------- state
    def set_car(self, i: int, car: CarState) -> None:
        """Put car ``i`` in a given single-car state (tests compare the two models)."""
        for f in fields(car):
            self.state[f.name][i] = getattr(car, f.name)

    def _reset_cars(self, idx: np.ndarray) -> None:
        from tmrl2.envs.sim.car import Car

        car = Car(self.track, self.params)
        for i in idx:
            noise = self.rng.uniform(-1.0, 1.0, 2)
            car.reset(
                offset=noise[0] * START_OFFSET_NOISE_M,
                heading_offset=noise[1] * START_HEADING_NOISE_RAD,
            )
            self.set_car(int(i), car.state)
        self.steps[idx] = 0
        self.progress[idx] = 0.0
        self._stuck_anchor[idx] = 0.0
        self._stuck_since[idx] = 0
        self._actions[idx] = 0.0
        self._lidar[idx] = self._scan()[idx, None, :]

    def reset(self) -> dict[str, np.ndarray]:
        self._reset_cars(np.arange(self.n))
        return self._obs()

    # ----------------------------------------------------------------- stepping
    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        cfg = self.config
        act = np.clip(np.asarray(actions, np.float32).reshape(self.n, 3), -1.0, 1.0)
        controls = act.astype(np.float64)  # the single car computes in Python floats
        gas, brake = np.maximum(controls[:, 0], 0.0), np.maximum(controls[:, 1], 0.0)
        steer = controls[:, 2]
        duration = cfg.time_step_ms / 1000.0
        substeps = max(1, math.ceil(duration / self.params.substep_s - 1e-9))
        dt = duration / substeps
        before = self.progress.copy()
        for _ in range(substeps):
            self._move(gas, brake, steer, dt)
            self._collide(dt)
            self._vertical(dt)
        st = self.state
        self.steps += 1
        self._actions[:, :-1] = self._actions[:, 1:]
        self._actions[:, -1] = act
        self._lidar[:, :-1] = self._lidar[:, 1:]
        self._lidar[:, -1] = self._scan()
        length = self.track.length_m
        finished = st["s"] >= length
        self.progress = np.maximum(self.progress, np.minimum(st["s"], length))
        moved = self.progress > self._stuck_anchor + cfg.stuck_progress_m
        self._stuck_anchor = np.where(moved, self.progress, self._stuck_anchor)
        self._stuck_since = np.where(moved, self.steps, self._stuck_since)
        truncated = ~finished & (
            (self.steps >= cfg.max_episode_steps)
            | (self.steps - self._stuck_since >= cfg.stuck_steps)
        )
        reward = 0.1 * (self.progress - before)  # the default progress term: 0.1 per metre
        info = {"progress_m": self.progress.copy(), "speed_ms": np.hypot(st["vx"], st["vz"])}
        done = finished | truncated
        if done.any():
            info["final_obs_lidar"] = self._lidar[done].copy()
            self._reset_cars(np.flatnonzero(done))
        return self._obs(), reward.astype(np.float32), finished, truncated, info

    def _obs(self) -> dict[str, np.ndarray]:
        speed = np.minimum(np.hypot(self.state["vx"], self.state["vz"]) / SPEED_REF_MS, 1.0)
        return {
            "lidar": self._lidar.copy(),
            "speed": speed.astype(np.float32)[:, None],
            "prev_actions": self._actions.copy(),
        }

    # ----------------------------------------------------------------- physics
    def _engine(self, u: np.ndarray, dt: float, ground: np.ndarray) -> np.ndarray:
        p, st = self.params, self.state
        gear = st["gear"]
        frac = u / self._tops[gear - 1]
        up = ground & (frac > p.upshift_frac) & (gear < len(self._tops))
        down = ground & ~up & (frac < p.downshift_frac) & (gear > 1)
        gear = gear + up - down
        st["gear"] = gear
        st["shift_timer_s"] = np.where(up, p.shift_time_s, st["shift_timer_s"])
        frac = np.minimum(np.maximum(u, 0.0) / self._tops[gear - 1], 1.0)
        st["rpm"] = np.where(ground, p.idle_rpm + (p.redline_rpm - p.idle_rpm) * frac, st["rpm"])
        shifting = ground & (st["shift_timer_s"] > 0.0)
        st["shift_timer_s"] = np.where(shifting, st["shift_timer_s"] - dt, st["shift_timer_s"])
        r = np.clip(frac, 0.4, 1.0)
        torque = 1.0 + p.torque_ripple * np.cos(np.pi * (r - 0.8) / 0.4)
        force = torque * p.engine_accel_ms2 * np.maximum(0.0, 1.0 - u / p.engine_cutoff_ms)
        return np.where(shifting, 0.0, force)

    def _move(self, gas: np.ndarray, brake: np.ndarray, steer: np.ndarray, dt: float) -> None:
        p, st = self.params, self.state
        air = st["airborne"]
        ground = ~air
        vx, vz, heading = st["vx"], st["vz"], st["heading"]
        # airborne: ballistic, only the air slows the car
        speed = np.hypot(vx, vz)
        keep = np.maximum(0.0, 1.0 - p.drag_per_m * speed * dt)
        # on the ground
        surf = st["surface"]
        c, sn = np.cos(heading), np.sin(heading)
        u = vx * c + vz * sn
        grip_ms2 = p.grip_ms2 * self._grip[surf]
        delta = steer * p.max_steer_rad / (1.0 + np.maximum(u, 0.0) / p.steer_fade_ms)
        yaw_rate = u * np.tan(delta) / p.wheelbase_m
        yaw_cap = p.drift_yaw_factor * grip_ms2 / np.maximum(u, 1.0)
        heading = np.where(ground, heading + np.clip(yaw_rate, -yaw_cap, yaw_cap) * dt, heading)
        c, sn = np.cos(heading), np.sin(heading)
        u = vx * c + vz * sn
        w = -vx * sn + vz * c
        seg = st["seg"]
        uphill = self._slope[seg] * (c * self._tx[seg] + sn * self._tz[seg])
        lateral = np.minimum(np.abs(w) / dt, grip_ms2) / grip_ms2
        traction = np.sqrt(1.0 - lateral * lateral)
        accel = (
            traction * gas * self._engine(u, dt, ground)
            - traction * brake * p.brake_decel_ms2 * self._grip[surf]
            - p.rolling_ms2
            - self._sdrag[surf]
            - p.drag_per_m * u * np.abs(u)
            - p.gravity_ms2 * uphill
        )
        u = np.maximum(u + accel * dt, 0.0)
        grip = grip_ms2 * dt
        w = w - np.clip(w, -grip, grip)
        st["heading"] = heading
        st["vx"] = np.where(ground, u * c - w * sn, vx * keep)
        st["vz"] = np.where(ground, u * sn + w * c, vz * keep)
        st["x"] = st["x"] + st["vx"] * dt
        st["z"] = st["z"] + st["vz"] * dt

    def _project(self) -> None:
        """Vectorized :meth:`Track.project`: walk each car's hint to its segment."""
        st = self.state
        x, z = st["x"], st["z"]
        last = len(self._len) - 1
        i = np.clip(st["seg"], 0, last)

        def along(k: np.ndarray) -> np.ndarray:
            return (x - self._ax[k]) * self._tx[k] + (z - self._az[k]) * self._tz[k]

        t = along(i)
        for _ in range(64):  # a car moves at most a few segments per substep
            nxt = np.minimum(i + 1, last)
            fwd = (t > self._len[i]) & (i < last) & (along(nxt) >= 0.0)
            prv = np.maximum(i - 1, 0)
            back = ~fwd & (t < 0.0) & (i > 0) & (along(prv) <= self._len[prv])
            if not (fwd.any() or back.any()):
                break
            i = i + fwd - back
            t = along(i)
        t = np.where((i > 0) & (t < 0.0), 0.0, t)
        t = np.where((i < last) & (t > self._len[i]), self._len[i], t)
        st["seg"] = i
        st["s"] = self._s[i] + t
        st["offset"] = (x - self._ax[i]) * self._tz[i] - (z - self._az[i]) * self._tx[i]

    def _collide(self, dt: float) -> None:
        p, st, track = self.params, self.state, self.track
        self._project()
        seg, off, s = st["seg"], st["offset"], st["s"]
        tx, tz = self._tx[seg], self._tz[seg]
        limit = self._half[seg] + track.border_m - p.half_width_m
        left, right = off > limit, off < -limit
        behind = ~left & ~right & (s < 0.0)
        past = ~left & ~right & ~behind & (s > track.total_m)
        hit = left | right | behind | past
        # outward normal of the wall crossed, and how far through it the car is (the four
        # cases are exclusive: each car gets at most one of the terms)
        fl, fr, fb, fp = (m.astype(np.float64) for m in (left, right, behind, past))
        nx = (fl - fr) * tz + (fp - fb) * tx
        nz = (fr - fl) * tx + (fp - fb) * tz
        depth = fl * (off - limit) + fr * (-limit - off) + fb * -s + fp * (s - track.total_m)
        st["offset"] = np.where(left, limit, np.where(right, -limit, off))
        st["s"] = np.where(behind, 0.0, np.where(past, track.total_m, s))
        st["x"] = st["x"] - nx * depth
        st["z"] = st["z"] - nz * depth
        into = st["vx"] * nx + st["vz"] * nz
        into = np.where(into > 0.0, into, 0.0)
        vx, vz = st["vx"] - into * nx, st["vz"] - into * nz
        # scrape: speed loss, then turn towards the wall's direction
        speed = np.hypot(vx, vz)
        scraping = np.where(
            speed > 0.0,
            np.maximum(0.0, 1.0 - p.wall_friction_ms2 * dt / np.maximum(speed, 1e-12)),
            0.0,
        )
        keep = np.where(st["wall_contact"], scraping, 1.0 - p.wall_impact_loss)
        st["vx"] = np.where(hit, vx * keep, st["vx"])
        st["vz"] = np.where(hit, vz * keep, st["vz"])
        c, sn = np.cos(st["heading"]), np.sin(st["heading"])
        flip = c * tx + sn * tz < 0.0
        wtx, wtz = np.where(flip, -tx, tx), np.where(flip, -tz, tz)
        error = np.arctan2(c * wtz - sn * wtx, c * wtx + sn * wtz)
        st["heading"] = np.where(hit, st["heading"] + p.wall_align * error, st["heading"])
        st["wall_contact"] = hit

    def _vertical(self, dt: float) -> None:
        p, st = self.params, self.state
        seg = st["seg"]
        frac = np.clip((st["s"] - self._s[seg]) / self._len[seg], 0.0, 1.0)
        road = self._y[seg] + frac * (self._y[seg + 1] - self._y[seg])
        vy = st["vy"] - p.gravity_ms2 * dt
        y = st["y"] + vy * dt
        land = y <= road
        st["vy"] = np.where(land, (road - st["y"]) / dt, vy)
        st["y"] = np.where(land, road, y)
        air = st["y"] - road > p.contact_m
        st["airborne"] = air
        st["air_time_s"] = st["air_time_s"] + np.where(air, dt, 0.0)
        off_road = ~air & (np.abs(st["offset"]) > self._half[seg])
        st["surface"] = np.where(off_road, GRASS, self._surface[seg])

    # ----------------------------------------------------------------- LIDAR
    def _scan(self) -> np.ndarray:
        """``(n, beams)`` distances / range, as :meth:`Lidar.measure` for each car."""
        st, track, cfg = self.state, self.track, self.config
        seg, heading = st["seg"], st["heading"]
        facing = np.cos(heading) * self._tx[seg] + np.sin(heading) * self._tz[seg] >= 0.0
        lo = np.where(facing, seg - self._behind, seg - self._ahead)
        rows = np.clip(
            lo[:, None] + 1 + np.arange(self._ahead + self._behind + 1), 0, track.segments + 1
        )
        start = self._wall_start[rows].reshape(self.n, -1, 2)
        delta = self._wall_delta[rows].reshape(self.n, -1, 2)
        angle = heading[:, None] + self.angles  # (n, beams)
        rx = np.cos(angle).astype(np.float32)[:, :, None]
        rz = np.sin(angle).astype(np.float32)[:, :, None]
        ax = (start[:, :, 0] - st["x"][:, None].astype(np.float32))[:, None, :]
        az = (start[:, :, 1] - st["z"][:, None].astype(np.float32))[:, None, :]
        ex, ez = delta[:, None, :, 0], delta[:, None, :, 1]
        denom = rx * ez - rz * ex
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (ax * ez - az * ex) / denom  # along the ray
            v = (ax * rz - az * rx) / denom  # along the wall piece
        rng = cfg.lidar_range_m
        dist = np.where((v >= 0.0) & (v <= 1.0) & (t > 0.0), t, rng)
        return (np.minimum(dist.min(axis=2), rng) / rng).astype(np.float32)

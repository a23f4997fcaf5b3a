"""N simulator cars stepped together: :class:`SimEnv`'s episodes, N at a time (LIDAR only).

:class:`SimBatch` is ``n`` independent :class:`~tmrl2.envs.sim.env.SimEnv` s (without the
reward and stall wrappers, which :mod:`tmrl2.roles.vec_worker` applies per car) behind one call
per step: the same compiled kernels of :mod:`tmrl2.envs.sim.kernels`, called once per track in
use for all the cars on it, so that the per-call overhead that dominates a single car is paid
once per batch. Each car has

- its own random generator, seeded as ``SimEnv.reset(seed=seeds[i])`` seeds the env's, and
  drawn from in the same order (track, start noise, randomization, LIDAR and speed noise,
  step jitter): car ``i`` drives exactly the episodes of a ``SimEnv`` with that seed;
- its own track per episode (drawn from the run's :class:`TrackSet` by a
  :class:`TrackSampler` shared by the cars, which learns from all of their outcomes), its own
  episode cap (:func:`episode_cap_steps`), and its own randomization draw
  (:func:`draw_randomization`: car constants as one row per car of the kernels' constants
  table, steering gain and lag, action latency, observation noise, step jitter).

Stepping does not reset: :meth:`SimBatch.step` returns the observation that ended an episode
(the chunk's ``next_obs``) and the caller resets the cars it names (:meth:`SimBatch.reset`).

Not covered (refused with one line naming the key): images, real time, respawns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tmrl2.envs.sim import kernels
from tmrl2.envs.sim.car import Car, CarParams, CarState, car_params
from tmrl2.envs.sim.env import (
    SPEED_REF_MS,
    START_HEADING_NOISE_RAD,
    START_OFFSET_NOISE_M,
    SimEnvConfig,
)
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.parallel import step_cars_scan_parallel, use_threads
from tmrl2.envs.sim.randomize import Draw, draw_randomization
from tmrl2.envs.sim.track import SURFACES, Track
from tmrl2.envs.sim.tracklist import TrackSampler, TrackSet, episode_cap_steps
from tmrl2.envs.sim.vec_check import check_batch_config

__all__ = ["SimBatch", "check_batch_config"]

log = logging.getLogger(__name__)

MAX_LATENCY = 2
"""Longest action latency a randomization draw may give (``action_latency_steps``)."""


class _TrackKit:
    """What the batch keeps per track: kernel tables, LIDAR window, a car to place starts."""

    def __init__(
        self, track: Track, cfg: SimEnvConfig, reference_s: float, base: CarParams
    ) -> None:
        self.track = track
        self.table, self.walls = kernels.track_tables(track)
        lidar = Lidar(track, cfg.lidar_beams, cfg.lidar_range_m)  # the single car's window
        self.ahead, self.behind = lidar.ahead, lidar.behind
        self.car = Car(track, base)
        self.cap = episode_cap_steps(cfg.max_episode_steps, reference_s, cfg.time_step_ms)
        if cfg.max_episode_steps and cfg.max_episode_steps * cfg.time_step_ms / 1000 < reference_s:
            log.warning(  # as SimEnv says it
                "env.max_episode_steps=%d (%.0f s) is shorter than the reference lap of track "
                "%r (%.0f s): episodes there can never finish; set it to 0 to derive the cap "
                "from each track's reference lap",
                cfg.max_episode_steps,
                cfg.max_episode_steps * cfg.time_step_ms / 1000,
                track.name,
                reference_s,
            )
        self.reference_s = reference_s
        self.seg_s = np.asarray(track.s_m, np.float64)
        self.ax, self.az = track.points[:-1, 0], track.points[:-1, 2]
        self.tx, self.tz = track.tangents[:, 0], track.tangents[:, 1]
        self.checkpoints = np.asarray(track.checkpoints_m, np.float64)
        self._base = (base, kernels.pack_params(base, track))

    def pack(self, params: CarParams) -> np.ndarray:
        """The kernels' constants row of ``params`` on this track (the unrandomized car's is
        packed once)."""
        return self._base[1] if params is self._base[0] else kernels.pack_params(params, self.track)


class SimBatch:
    """``n`` independent cars (module docstring): ``reset(idx)``, ``step(actions (n, 3))``."""

    def __init__(
        self,
        n: int,
        config: SimEnvConfig | None = None,
        seeds: int | Sequence[int] = 0,
        threads: int = 1,
    ) -> None:
        """Args:
        n: cars.
        config: env settings (checked by :func:`check_batch_config`).
        seeds: one seed per car, or ``s`` for ``s, s + 1, ..., s + n - 1``.
        threads: threads stepping the cars (:mod:`tmrl2.envs.sim.parallel`; the same
            results as 1, which stays in the calling thread).
        """
        if n < 1:
            raise ValueError(f"a batch needs at least one car, got n={n}")
        if threads < 1:
            raise ValueError(f"a batch needs at least one thread, got threads={threads}")
        self.n = n
        self.threads = 1 if threads == 1 else use_threads(threads)
        self.config = cfg = config or SimEnvConfig()
        check_batch_config(cfg)
        seed_list = list(range(seeds, seeds + n)) if isinstance(seeds, int) else list(seeds)
        if len(seed_list) != n:
            raise ValueError(f"{len(seed_list)} seeds for {n} cars")
        self.rngs = [np.random.default_rng(s) for s in seed_list]
        """Car ``i``'s generator (``SimEnv.reset(seed)`` seeds its ``np_random`` so)."""
        self.base_params = car_params(cfg.car)
        self.tracks = TrackSet(cfg.track_names(), self.base_params)
        self.n_train = len(self.tracks)
        self.sampler = TrackSampler(self.n_train, cfg.track_sampling)
        self._kits: dict[int, _TrackKit] = {}
        self._dt_s = cfg.time_step_ms / 1000.0
        lidar = Lidar(self.kit(0).track, cfg.lidar_beams, cfg.lidar_range_m)
        self.angles, self._lookup = lidar.angles, lidar.lookup
        beams = cfg.lidar_beams
        self.states = np.zeros((n, kernels.NSTATE))
        """One row per car, columns :data:`kernels.STATE_FIELDS`."""
        self.params = np.zeros((n, len(kernels.pack_params(self.base_params, self.kit(0).track))))
        """One row of kernel constants per car (:func:`kernels.pack_params` of its draw)."""
        self.track_index = np.zeros(n, np.int64)
        self.draws = [Draw(self.base_params)] * n
        self.contact = np.zeros(n, np.bool_)
        self.steps = np.zeros(n, np.int64)
        self.race_s = np.zeros(n)
        self.progress = np.zeros(n)
        self.lap_s = np.full(n, np.nan)
        """Lap time of each car's episode (NaN until it finishes)."""
        self.caps = np.ones(n, np.int64)
        self.length = np.ones(n)
        self._lidar = np.zeros((n, cfg.lidar_history, beams), np.float32)
        self._actions = np.zeros((n, cfg.action_history, 3), np.float32)
        self._speed = np.zeros(n)
        self._speed_obs = np.zeros(n)
        # controls (randomize.Controls, vectorized): latency history, gain, lag
        self._applied = np.zeros((n, MAX_LATENCY + 1, 3), np.float32)
        self._latency = np.zeros(n, np.int64)
        self._gain = np.ones(n)
        self._alpha = np.ones(n)
        self._steer = np.zeros(n)
        self._jitter = np.zeros(n)
        self._start_frac = np.zeros(n)
        self._noisy = np.zeros(n, np.bool_)
        """Cars whose draw adds observation noise or step jitter (they draw per step)."""
        self._flags = dict.fromkeys(("latency", "gain", "lag", "jitter", "noisy"), True)
        """Whether any car has that part of a randomization draw (kept at each reset)."""
        self._durations = np.full(n, self._dt_s)
        self._one_track = True
        """Whether every car is on the same track (kept at each reset)."""

    # ----------------------------------------------------------------- tracks
    def kit(self, index: int) -> _TrackKit:
        """What the batch keeps for track ``index`` of :attr:`tracks` (built on first use)."""
        kit = self._kits.get(index)
        if kit is None:
            kit = self._kits[index] = _TrackKit(
                self.tracks.track(index),
                self.config,
                self.tracks.reference_s(index),
                self.base_params,
            )
        return kit

    def _groups(self, idx: np.ndarray | None = None) -> list[tuple[_TrackKit, np.ndarray | None]]:
        """``(kit, cars)`` per track in use among ``idx`` (all cars: None when one track)."""
        if idx is None and self._one_track:
            return [(self.kit(int(self.track_index[0])), None)]
        tracks = self.track_index if idx is None else self.track_index[idx]
        first = int(tracks[0])
        if (tracks == first).all():
            return [(self.kit(first), idx)]
        base = np.arange(self.n) if idx is None else idx
        return [(self.kit(int(t)), base[tracks == t]) for t in np.unique(tracks)]

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> dict[str, np.ndarray]:
        """Views of :attr:`states`' columns by field name (integers stored as floats)."""
        return {name: self.states[:, k] for k, name in enumerate(kernels.STATE_FIELDS)}

    def set_car(self, i: int, car: CarState) -> None:
        """Put car ``i`` in a given single-car state (tests compare the two models)."""
        self.states[i] = [float(getattr(car, name)) for name in kernels.STATE_FIELDS]

    # ----------------------------------------------------------------- episodes
    def reset(self, idx: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Start a new episode for the cars ``idx`` (all by default), as ``SimEnv.reset``
        does for each: record the last episode's outcome, draw the track, the start noise and
        the randomization from the car's generator. Returns every car's observation."""
        cars = np.arange(self.n) if idx is None else np.asarray(idx, np.int64).reshape(-1)
        cfg = self.config
        if not len(cars):
            return self._obs()
        for i in cars.tolist():
            rng = self.rngs[i]
            self._record_outcome(i)
            t = self.sampler.draw(rng)
            kit = self.kit(t)
            noise = rng.uniform(-1.0, 1.0, 2)
            draw = draw_randomization(cfg.randomization, self.base_params, rng)
            self.track_index[i], self.draws[i] = t, draw
            self.params[i] = kit.pack(draw.params)
            kit.car.params = draw.params
            kit.car.reset(
                s=draw.start_frac * kit.track.length_m,
                offset=float(noise[0]) * START_OFFSET_NOISE_M,
                heading_offset=float(noise[1]) * START_HEADING_NOISE_RAD,
            )
            self.set_car(i, kit.car.state)
            self.caps[i], self.length[i] = kit.cap, kit.track.length_m
            self._latency[i], self._gain[i] = draw.latency, draw.steer_gain
            self._alpha[i] = (
                1.0 if draw.steer_lag_s <= 0.0 else min(1.0, self._dt_s / draw.steer_lag_s)
            )
            self._jitter[i] = draw.jitter_frac
            self._start_frac[i] = draw.start_frac
            self._noisy[i] = (
                draw.jitter_frac > 0 or draw.lidar_noise_std > 0 or draw.speed_noise_std > 0
            )
        self._one_track = bool((self.track_index == self.track_index[0]).all())
        self._flags = {
            "latency": bool(self._latency.any()),
            "gain": bool((self._gain != 1.0).any()),
            "lag": bool((self._alpha < 1.0).any()),
            "jitter": bool((self._jitter > 0.0).any()),
            "noisy": bool(self._noisy.any()),
        }
        self.steps[cars] = 0
        self.race_s[cars] = 0.0
        starts = np.array([self.draws[i].start_frac for i in cars.tolist()])
        self.progress[cars] = np.where(starts > 0.0, self.states[cars, kernels.S], 0.0)
        self.lap_s[cars] = np.nan
        self.contact[cars] = False
        self._actions[cars] = 0.0
        self._applied[cars] = 0.0
        self._steer[cars] = 0.0
        scans = self._scan(cars)
        self._lidar[cars] = scans[:, None, :]
        self._measure_speed(cars)
        return self._obs()

    def _record_outcome(self, i: int) -> None:
        """``SimEnv._record_outcome`` for car ``i``."""
        t = int(self.track_index[i])
        if self.steps[i] == 0 or t >= self.n_train or self.draws[i].start_frac > 0:
            return
        lap = float(self.lap_s[i])
        finished = not math.isnan(lap)
        self.sampler.record(t, finished, lap / self.kit(t).reference_s if finished else None)

    # ----------------------------------------------------------------- stepping
    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Advance every car one step with its action (rows of ``(n, 3)``).

        Returns ``(obs, terminated, truncated, lap_time_s)``: ``terminated`` where a car
        crossed the finish (``lap_time_s`` its lap, NaN elsewhere) or, with ``end_on_wall``,
        touched a wall; ``truncated`` at the episode cap. The telemetry of the step is in
        :meth:`telemetry` / :meth:`infos`. Cars are not reset here.
        """
        cfg, n = self.config, self.n
        act = np.asarray(actions, np.float32).reshape(n, 3)
        act = np.minimum(np.maximum(act, -1.0), 1.0)  # np.clip, without its Python wrapper
        controls = self._controls(act)
        durations = self._durations
        if self._flags["jitter"]:
            durations = np.full(n, self._dt_s)
            for i in np.flatnonzero(self._jitter > 0.0).tolist():  # SimEnv draws it first
                j = self._jitter[i]
                durations[i] = self._dt_s * float(self.rngs[i].uniform(1.0 - j, 1.0 + j))
        s_before = self.states[:, kernels.S].copy()
        if self._one_track and not self._flags["noisy"]:  # physics and LIDAR in one call
            kit = self.kit(int(self.track_index[0]))
            step = kernels.step_cars_scan_each if self.threads == 1 else step_cars_scan_parallel
            step(
                self.states, controls, durations, self.params, kit.table, self.contact,
                self.angles, self._lookup, float(cfg.lidar_range_m), kit.ahead, kit.behind,
                kit.walls, self._lidar,
            )  # fmt: skip
        else:
            self._step_cars(controls, durations)
            self._lidar[:, :-1] = self._lidar[:, 1:]
            self._lidar[:, -1] = self._scan()
        lap, progress = np.empty(n), np.empty(n)  # a new progress: telemetry hands out views
        terminated, truncated = np.empty(n, np.bool_), np.empty(n, np.bool_)
        kernels.finish_cars_step(
            self.states, s_before, durations, act, self._actions, self.steps, self.race_s,
            self.progress, self.length, self._start_frac, self._jitter, self.caps, self.contact,
            self._dt_s, bool(cfg.end_on_wall), progress, lap, self.lap_s, terminated, truncated,
        )  # fmt: skip
        self.progress = progress
        self._measure_speed()
        return self._obs(), terminated, truncated, lap

    def _step_cars(self, controls: np.ndarray, durations: np.ndarray) -> None:
        """The physics of every car, one kernel call per track in use."""
        for kit, cars in self._groups():
            if cars is None:
                kernels.step_cars_each(
                    self.states, controls, durations, self.params, kit.table, self.contact
                )
            else:
                sub, hit = self.states[cars], self.contact[cars]
                kernels.step_cars_each(
                    sub, controls[cars], durations[cars], self.params[cars], kit.table, hit
                )
                self.states[cars], self.contact[cars] = sub, hit

    def _controls(self, act: np.ndarray) -> np.ndarray:
        """``randomize.Controls.apply`` for every car: latency, steering gain and lag."""
        applied = act
        flags = self._flags
        if flags["latency"]:
            self._applied[:, :-1] = self._applied[:, 1:]
            self._applied[:, -1] = act
            applied = self._applied[np.arange(self.n), MAX_LATENCY - self._latency]
        controls = applied.astype(np.float64)
        np.maximum(controls[:, :2], 0.0, out=controls[:, :2])  # gas and brake
        steer = controls[:, 2]
        if flags["gain"]:
            gained = self._gain != 1.0
            steer[gained] = np.minimum(np.maximum(steer[gained] * self._gain[gained], -1.0), 1.0)
        if flags["lag"]:
            lagged = self._alpha < 1.0
            self._steer[lagged] += self._alpha[lagged] * (steer[lagged] - self._steer[lagged])
            steer[lagged] = self._steer[lagged]
        return controls

    def _measure_speed(self, idx: np.ndarray | None = None) -> None:
        """Speed (m/s) of the cars ``idx`` (all by default), with ``math.hypot`` (bit for bit
        ``CarState.speed``), and their ``speed`` observation (noise drawn as ``SimEnv._obs``)."""
        cars = slice(None) if idx is None else idx
        rows = self.states[cars]
        vx, vz = rows[:, kernels.VX].tolist(), rows[:, kernels.VZ].tolist()
        speed = np.fromiter(map(math.hypot, vx, vz), np.float64, len(vx))
        self._speed[cars] = speed
        obs = np.minimum(speed / SPEED_REF_MS, 1.0)
        noisy = np.flatnonzero(self._noisy[cars]).tolist() if self._flags["noisy"] else []
        for k in noisy:
            i = k if idx is None else int(idx[k])
            std = self.draws[i].speed_noise_std
            if std > 0.0:
                noise = float(self.rngs[i].normal(0.0, std))
                obs[k] = min(max(obs[k] + noise, 0.0), 1.0)
        self._speed_obs[cars] = obs

    def _obs(self) -> dict[str, np.ndarray]:
        cfg = self.config
        obs = {
            "speed": self._speed_obs.astype(np.float32)[:, None],
            "prev_actions": self._actions.copy(),
            "lidar": self._lidar.copy(),
        }
        if cfg.preview_points:
            obs["preview"] = self._preview()
        if cfg.track_id_input:
            one_hot = np.zeros((self.n, self.n_train), np.float32)
            one_hot[np.arange(self.n), self.track_index] = 1.0
            obs["track_id"] = one_hot
        return obs

    def _preview(self) -> np.ndarray:
        """``SimEnv._preview`` for every car: ``(n, points, 2)``."""
        cfg = self.config
        out = np.empty((self.n, cfg.preview_points, 2), np.float32)
        ahead = cfg.preview_spacing_m * np.arange(1, cfg.preview_points + 1)
        for kit, cars in self._groups():
            rows = self.states if cars is None else self.states[cars]
            track = kit.track
            s = np.clip(rows[:, kernels.S, None] + ahead, 0.0, track.total_m)
            seg = np.clip(np.searchsorted(kit.seg_s, s, side="right") - 1, 0, track.segments - 1)
            along = s - kit.seg_s[seg]
            px, pz = kit.ax[seg] + along * kit.tx[seg], kit.az[seg] + along * kit.tz[seg]
            dx, dz = px - rows[:, kernels.X, None], pz - rows[:, kernels.Z, None]
            heading = rows[:, kernels.HEADING, None]
            c, sn = np.cos(heading), np.sin(heading)
            local = np.stack([dx * c + dz * sn, -dx * sn + dz * c], axis=2) / cfg.preview_range_m
            out[slice(None) if cars is None else cars] = np.clip(local, -1.0, 1.0)
        return out

    # ----------------------------------------------------------------- LIDAR
    def _scan(self, idx: np.ndarray | None = None) -> np.ndarray:
        """``(cars, beams)`` distances / range (``SimEnv._scan`` of each car, noise included)."""
        range_m = float(self.config.lidar_range_m)
        cars = np.arange(self.n) if idx is None else idx
        out = np.empty((len(cars), len(self.angles)))
        tracks = self.track_index[cars]
        if (idx is None and self._one_track) or (tracks == tracks[0]).all():
            parts: list[tuple[int, Any]] = [(int(tracks[0]), slice(None))]
        else:
            parts = [(int(t), tracks == t) for t in np.unique(tracks)]
        for t, sel in parts:
            kit = self.kit(t)
            whole = idx is None and isinstance(sel, slice)
            rows = self.states if whole else self.states[cars[sel]]
            part = out if isinstance(sel, slice) else np.empty((len(rows), len(self.angles)))
            kernels.lidar_cars(
                rows, self.angles, self._lookup, range_m, kit.ahead, kit.behind, kit.table,
                kit.walls, part,
            )  # fmt: skip
            if not isinstance(sel, slice):
                out[sel] = part
        scans = out / range_m
        noisy = np.flatnonzero(self._noisy[cars]).tolist() if self._flags["noisy"] else []
        for k in noisy:
            i = int(cars[k])
            std = self.draws[i].lidar_noise_std
            if std > 0.0:
                noise = self.rngs[i].normal(0.0, std, scans[k].shape)
                scans[k] = np.clip(scans[k] + noise, 0.0, 1.0)
        return scans.astype(np.float32)

    # ----------------------------------------------------------------- telemetry
    def telemetry(self, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The step's telemetry of the cars ``idx`` (all by default) as one array per key,
        one row per car (the keys a reward reads most; :meth:`infos` has them all)."""
        cars: Any = slice(None) if idx is None else np.asarray(idx, np.int64)  # all: views
        st = self.states[cars]
        length, progress = self.length[cars], self.progress[cars]
        tracks = self.track_index[cars]
        if (idx is None and self._one_track) or (len(tracks) and (tracks == tracks[0]).all()):
            checkpoint = np.searchsorted(self.kit(int(tracks[0])).checkpoints, progress, "right")
        else:
            checkpoint = np.zeros(len(tracks), np.int64)
            for t in np.unique(tracks).tolist():
                sel = tracks == t
                checkpoint[sel] = np.searchsorted(self.kit(t).checkpoints, progress[sel], "right")
        jitter = self._jitter[cars]
        race_ms = self.steps[cars] * self.config.time_step_ms
        if self._flags["jitter"] and (jitter > 0.0).any():
            race_s = np.round(self.race_s[cars] * 1000.0).astype(np.int64)
            race_ms = np.where(jitter > 0.0, race_s, race_ms)
        return {
            "progress_m": progress,
            "progress_frac": progress / length,
            "speed_ms": self._speed[cars],
            "finished": st[:, kernels.S] >= length,
            "wall_contact": self.contact[cars],
            "checkpoint": checkpoint,
            "race_time_ms": race_ms,
            "track_length_m": length,
        }

    def _wheels(self, cars: np.ndarray) -> np.ndarray:
        """``(cars, 4)`` surface codes under the wheels (``Car.wheel_surfaces`` of each)."""
        wheels = np.zeros((len(cars), 4), np.int64)
        tracks = self.track_index[cars]
        for t in np.unique(tracks).tolist():
            sel = tracks == t
            out = np.zeros((int(sel.sum()), 4), np.int64)
            rows = self.states[cars[sel]]
            kernels.wheel_surfaces_cars(self.kit(t).table, rows, self.params[cars[sel]], out)
            wheels[sel] = out
        return wheels

    def infos(
        self, idx: np.ndarray | None = None, wall_contact: bool = True
    ) -> list[dict[str, Any]]:
        """Car by car (the cars ``idx``, all by default), the ``info`` dict ``SimEnv``
        reports (every telemetry key, the track and its reference lap; ``lap_time_s`` is the
        caller's to add for a finishing car); ``wall_contact=False`` for a reset's infos."""
        cars = np.arange(self.n) if idx is None else np.asarray(idx, np.int64)
        count = len(cars)
        tele = self.telemetry(cars)
        st = self.states[cars]
        cols = {name: st[:, k].tolist() for k, name in enumerate(kernels.STATE_FIELDS)}
        x, y, z, heading = cols["x"], cols["y"], cols["z"], cols["heading"]
        vx, vy, vz = cols["vx"], cols["vy"], cols["vz"]
        gear, rpm, surface = cols["gear"], cols["rpm"], cols["surface"]
        airborne, air = cols["airborne"], cols["air_time_s"]
        progress, frac = tele["progress_m"].tolist(), tele["progress_frac"].tolist()
        speed, finished = tele["speed_ms"].tolist(), tele["finished"].tolist()
        wall = tele["wall_contact"].tolist() if wall_contact else [False] * count
        checkpoint, race = tele["checkpoint"].tolist(), tele["race_time_ms"].tolist()
        length, wheels = tele["track_length_m"].tolist(), self._wheels(cars).tolist()
        tracks = self.track_index[cars].tolist()
        names = [self.tracks.names[t] for t in tracks]
        refs = [self.kit(t).reference_s for t in tracks]
        atan2 = math.atan2
        return [
            {
                "progress_m": progress[i],
                "progress_frac": frac[i],
                "speed_ms": speed[i],
                "finished": finished[i],
                "wall_contact": wall[i],
                "checkpoint": checkpoint[i],
                "race_time_ms": race[i],
                "track_length_m": length[i],
                "position": (x[i], y[i], z[i]),
                "gear": int(gear[i]),
                "rpm": rpm[i],
                "surface": SURFACES[int(surface[i])],
                "wheel_surfaces": tuple(SURFACES[c] for c in wheels[i]),
                "wheel_contact": (airborne[i] == 0.0,) * 4,
                "airborne": airborne[i] != 0.0,
                "air_time_s": air[i],
                "respawns": 0,
                "velocity": (vx[i], vy[i], vz[i]),
                "yaw_pitch_roll": (heading[i], atan2(vy[i], speed[i]), 0.0),
                "track": names[i],
                "reference_lap_s": refs[i],
            }
            for i in range(count)
        ]

"""The LIDAR's beam window (issue 18) gives the distances of the full search, bit for bit; the
fused step kernels push the same scans as ``Lidar.measure``.

:func:`kernels.lidar_cars` intersects each wall piece only with the beams within the angle the
piece subtends. The reference here is the kernel as it was before that: every beam against
every piece that the range and half-plane culls keep, in the same order. Poses: random
places and headings on and beside the road (beyond the borders of an open track too), cars
exactly on a wall vertex or a piece's midpoint, headings exactly along the axes, and several
beam counts (one, two, an odd and an even fan).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from tmrl2.envs.sim import kernels
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.track import load_track
from tmrl2.envs.sim.vec import SimBatch


@njit(error_model="numpy")
def _full_search(
    states: np.ndarray, angles: np.ndarray, range_m: float, ahead: int, behind: int,
    tk: np.ndarray, walls: np.ndarray, out: np.ndarray,
) -> None:  # fmt: skip
    rows, beams = walls.shape[0], angles.shape[0]
    best = np.empty(beams)
    for i in range(states.shape[0]):
        st = states[i]
        x, z, heading, seg = st[0], st[2], st[3], int(st[12])
        if math.cos(heading) * tk[seg, 2] + math.sin(heading) * tk[seg, 3] >= 0.0:
            lo, hi = seg - behind, seg + ahead
        else:
            lo, hi = seg - ahead, seg + behind
        best[:] = range_m
        rx, rz = np.cos(heading + angles), np.sin(heading + angles)
        hx, hz = math.cos(heading), math.sin(heading)
        for r in range(max(lo + 1, 0), min(hi + 2, rows)):
            for side in range(2):
                k = 4 * side
                ax, az = walls[r, k] - x, walls[r, k + 1] - z
                ex, ez = walls[r, k + 2], walls[r, k + 3]
                if ax * hx + az * hz < 0.0 and (ax + ex) * hx + (az + ez) * hz < 0.0:
                    continue
                near2 = min(ax * ax + az * az, (ax + ex) ** 2 + (az + ez) ** 2)
                if near2 > range_m * range_m + 0.25 * (ex * ex + ez * ez):
                    continue
                t_num = ax * ez - az * ex
                for b in range(beams):
                    denom = rx[b] * ez - rz[b] * ex
                    vn = ax * rz[b] - az * rx[b]
                    neg = denom < 0.0
                    d = -denom if neg else denom
                    tn = -t_num if neg else t_num
                    v = -vn if neg else vn
                    if (tn > 0.0) & (v >= 0.0) & (v <= d) & (tn < best[b] * d):
                        best[b] = tn / d
        out[i, :] = best


def _poses(track_name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    track = load_track(track_name)
    table, walls = kernels.track_tables(track)
    rng = np.random.default_rng(seed)
    segs = rng.integers(0, track.segments, n)
    offset = rng.uniform(-1, 1, n) * (0.5 * track.width_m[segs] + track.border_m)
    tx, tz = track.tangents[segs, 0], track.tangents[segs, 1]
    states = np.zeros((n, kernels.NSTATE))
    states[:, kernels.X] = track.points[segs, 0] + offset * tz + rng.normal(0, 0.5, n)
    states[:, kernels.Z] = track.points[segs, 2] - offset * tx + rng.normal(0, 0.5, n)
    states[:, kernels.HEADING] = rng.uniform(-50, 50, n)
    states[:, kernels.SEG] = segs
    q = n // 4  # on a wall vertex or a piece's midpoint
    rows = np.clip(segs[:q] + 1, 0, len(walls) - 1)
    side = 4 * rng.integers(0, 2, q)
    frac = rng.choice([0.0, 0.5, 1.0], q)
    states[:q, kernels.X] = walls[rows, side] + frac * walls[rows, side + 2]
    states[:q, kernels.Z] = walls[rows, side + 1] + frac * walls[rows, side + 3]
    axis = slice(q, 2 * q)  # headings exactly along the axes
    states[axis, kernels.HEADING] = np.round(states[axis, kernels.HEADING] / (np.pi / 2)) * (
        np.pi / 2
    )
    return states, table, walls


@pytest.mark.parametrize("track_name", ["default", "rally", "ring", "gen:3"])
@pytest.mark.parametrize("beams", [1, 2, 19, 64])
def test_windowed_lidar_equals_the_full_search(track_name: str, beams: int) -> None:
    states, table, walls = _poses(track_name, 1500, seed=beams)
    lidar = Lidar(load_track(track_name), beams, 100.0)
    got = np.empty((len(states), beams))
    want = np.empty_like(got)
    args = (100.0, lidar.ahead, lidar.behind, table, walls)
    kernels.lidar_cars(states, lidar.angles, lidar.lookup, *args, got)
    _full_search(states, lidar.angles, *args, want)
    np.testing.assert_array_equal(got, want)
    assert (want < 100.0).any()  # the poses see walls


def test_unsorted_beams_are_searched_in_full() -> None:
    angles = np.array([0.3, -0.2, 1.0])  # not a fan from left to right
    lookup = kernels.beam_lookup(angles)
    assert (lookup[0] == 0).all() and (lookup[1] == len(angles)).all()
    states, table, walls = _poses("default", 200, seed=0)
    lidar = Lidar(load_track("default"), 19, 100.0)
    got, want = np.empty((200, 3)), np.empty((200, 3))
    args = (100.0, lidar.ahead, lidar.behind, table, walls)
    kernels.lidar_cars(states, angles, lookup, *args, got)
    _full_search(states, angles, *args, want)
    np.testing.assert_array_equal(got, want)


def test_fused_steps_push_the_scans_of_lidar_measure() -> None:
    """``Car.step_and_scan`` (the env) and ``step_cars_scan_each`` (the batch) push into a
    history of 3 the scan ``Lidar.measure`` gives at the new pose, divided by the range."""
    cfg = SimEnvConfig(lidar_history=3, lidar_beams=9, max_episode_steps=10**6)
    env = SimEnv(cfg)
    batch = SimBatch(3, cfg, seeds=4)
    env.reset(seed=2)
    batch.reset()
    rng = np.random.default_rng(0)
    history: list[np.ndarray] = []
    for _ in range(40):
        obs = env.step(rng.uniform(-1.0, 1.0, 3))[0]
        st = env.car.state
        history.append(env.lidar.measure(st.x, st.z, st.heading, st.seg) / cfg.lidar_range_m)
        want = np.asarray(history[-3:], np.float32)
        np.testing.assert_array_equal(obs["lidar"][-len(want) :], want)
        obs = batch.step(rng.uniform(-1.0, 1.0, (3, 3)))[0]
        lidar = Lidar(batch.kit(0).track, cfg.lidar_beams, cfg.lidar_range_m)
        for i in range(3):
            row = batch.states[i]
            scan = lidar.measure(
                row[kernels.X], row[kernels.Z], row[kernels.HEADING], int(row[kernels.SEG])
            )
            np.testing.assert_array_equal(obs["lidar"][i, -1], (scan / 100.0).astype(np.float32))

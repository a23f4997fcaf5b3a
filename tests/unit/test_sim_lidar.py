"""LIDAR distances against analytic values in a straight corridor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tmrl2.envs.sim.lidar import Lidar
from tmrl2.envs.sim.track import Track, build_track

WIDTH_M = 14.0


@pytest.fixture(scope="module")
def corridor() -> Track:
    """A straight road along +x, 400 m to the finish (440 m with run-off)."""
    return build_track("corridor", [(0.0, 0.0, 0.0), (200.0, 0.0, 0.0), (400.0, 0.0, 0.0)], WIDTH_M)


def test_beams_in_a_corridor_match_the_geometry(corridor: Track) -> None:
    lidar = Lidar(corridor, beams=19, range_m=100.0)
    dist = lidar.measure(50.0, 0.0, 0.0, corridor.segment_at(50.0))
    angles = np.radians(np.linspace(-90.0, 90.0, 19))
    # Side beams hit the walls at half the width, slanted beams at half width / sin(angle);
    # the centre beam looks down the road and reports the range.
    expected = np.minimum(WIDTH_M / 2 / np.maximum(np.abs(np.sin(angles)), 1e-12), 100.0)
    np.testing.assert_allclose(dist, expected, rtol=1e-6)
    assert dist[9] == 100.0


def test_centre_beam_hits_the_wall_closing_the_road(corridor: Track) -> None:
    lidar = Lidar(corridor, beams=3, range_m=100.0)
    x = corridor.total_m - 30.0
    dist = lidar.measure(x, 2.0, 0.0, corridor.segment_at(x))
    assert dist[1] == pytest.approx(30.0)
    # The car is 2 m right of the centre (+z is to the right when heading +x).
    assert dist[0] == pytest.approx(WIDTH_M / 2 + 2.0)
    assert dist[2] == pytest.approx(WIDTH_M / 2 - 2.0)


def test_beams_turn_with_the_heading(corridor: Track) -> None:
    lidar = Lidar(corridor, beams=1, range_m=100.0)
    heading = math.radians(45.0)  # to the right, towards +z
    dist = lidar.measure(100.0, 0.0, heading, corridor.segment_at(100.0))
    assert dist[0] == pytest.approx(WIDTH_M / 2 * math.sqrt(2.0))


def _brute_force(track: Track, lidar: Lidar, x: float, z: float, heading: float) -> np.ndarray:
    """Every beam against every wall piece of the track (no window, no culling), in numpy."""
    start, delta = track.wall_start.reshape(-1, 2), track.wall_delta.reshape(-1, 2)
    angle = heading + lidar.angles
    rx, rz = np.cos(angle)[:, None], np.sin(angle)[:, None]
    ax, az = start[:, 0] - x, start[:, 1] - z
    ex, ez = delta[:, 0], delta[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = rx * ez - rz * ex
        t = (ax * ez - az * ex) / denom
        v = (ax * rz - az * rx) / denom
    dist = np.where((t > 0) & (v >= 0) & (v <= 1), t, np.inf)
    return np.minimum(dist.min(axis=1), lidar.range_m)


@pytest.mark.parametrize("name", ["default", "alpine", "rally"])
def test_compiled_lidar_equals_brute_force_on_curved_tracks(name: str) -> None:
    """The windowed, culled kernel sees what every wall piece of the track shows, at random
    poses on the road (headings along and against the road); a far leg of a hairpin outside
    the window is the documented exception, so poses where brute force sees a wall the
    window does not hold are counted and must stay rare."""
    from tmrl2.envs.sim.track import load_track

    track = load_track(name)
    lidar = Lidar(track, beams=19, range_m=100.0)
    rng = np.random.default_rng(0)
    exact = 0
    for _ in range(300):
        s = float(rng.uniform(0.0, track.length_m))
        seg = track.segment_at(s)
        x, z = track.point_at(s)
        tx, tz = track.tangent(seg)
        off = float(rng.uniform(-0.4, 0.4)) * 2 * track.half_width(seg)
        x, z = x + off * tz, z - off * tx
        seg, _, _ = track.project(x, z, seg)
        heading = math.atan2(tz, tx) + float(rng.normal(0.0, 0.3)) + math.pi * (rng.random() < 0.2)
        got = lidar.measure(x, z, heading, seg)
        want = _brute_force(track, lidar, x, z, heading)
        assert (got >= want - 1e-9).all()  # the window only ever misses walls, never invents
        exact += bool(np.allclose(got, want, rtol=1e-9, atol=1e-9))
    assert exact >= 285, f"only {exact}/300 poses match brute force"

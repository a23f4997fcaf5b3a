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

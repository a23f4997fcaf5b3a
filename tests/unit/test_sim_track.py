"""Track geometry: bundled tracks, smoothing, projection onto the centerline."""

from __future__ import annotations

import numpy as np
import pytest

from tmrl2.envs.sim.track import build_track, catmull_rom, known_tracks, load_track


def test_default_track_is_a_drivable_point_to_point_road() -> None:
    track = load_track("default")
    assert 600.0 <= track.length_m <= 1000.0
    assert track.total_m > track.length_m  # run-off past the finish
    assert np.all((track.width_m >= 12.0) & (track.width_m <= 16.0))
    spacing = np.diff(track.s_m)
    assert spacing.min() > 1.0 and spacing.max() < 2.5
    # Walls do not fold over themselves: every bend is wider than half the road...
    radius = 1.0 / np.maximum(track.curvature(), 1e-9)
    assert radius.min() > track.width_m.max() / 2 + 2.0
    # ...and at least one bend is sharp enough to need braking (under 25 m).
    assert radius.min() < 25.0
    assert track.checkpoints_m == [100.0 * (i + 1) for i in range(len(track.checkpoints_m))]
    assert track.checkpoints_m[-1] < track.length_m


def test_unknown_track_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown track 'nope'.*default"):
        load_track("nope")
    assert "default" in known_tracks()


def test_catmull_rom_passes_through_its_control_points() -> None:
    control = np.array([[0.0, 0.0, 0.0], [10.0, 1.0, 5.0], [20.0, 0.0, 0.0], [30.0, 2.0, 10.0]])
    curve = catmull_rom(control, samples_per_span=8)
    for point in control:
        assert np.min(np.linalg.norm(curve - point, axis=1)) < 1e-9


def test_projection_gives_monotone_progress_and_signed_offset() -> None:
    track = load_track("default")
    seg, previous = 0, -1.0
    # Walk the segments' midpoints shifted 3 m to the left, carrying the hint.
    for k in range(track.segments):
        (tx, tz), (x, _, z) = track.tangent(k), 0.5 * (track.points[k] + track.points[k + 1])
        seg, s, offset = track.project(x + 3.0 * tz, z - 3.0 * tx, seg)
        assert seg == k
        assert s > previous
        assert s == pytest.approx(0.5 * (track.s_m[k] + track.s_m[k + 1]))
        assert offset == pytest.approx(3.0)
        previous = s


def test_projection_beyond_the_ends_is_not_clamped() -> None:
    track = build_track("line", [(0.0, 0.0, 0.0), (50.0, 0.0, 0.0), (100.0, 0.0, 0.0)], 10.0)
    assert track.project(-3.0, 0.0, 5)[1] == pytest.approx(-3.0)
    assert track.project(track.total_m + 2.0, 1.0, 0) == (
        track.segments - 1,
        pytest.approx(track.total_m + 2.0),
        pytest.approx(-1.0),
    )

"""Track files, import of a recorded reference line, generated and bundled tracks, the
reference lap time and the autopilot against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmrl2.envs.sim.autopilot import drive_lap
from tmrl2.envs.sim.car import CarParams
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.generator import crosses_itself, generate_track
from tmrl2.envs.sim.reference import reference_lap_time_s, speed_profile, top_speed_ms
from tmrl2.envs.sim.track import DIRT, build_track, known_tracks, load_track
from tmrl2.envs.sim.trackfile import (
    import_reference_line,
    load_track_file,
    save_track_file,
)

CHUNK = 8
GENERATED_CHUNKS = 3
"""Generated tracks the autopilot drives in the unit tests: 3 x 8 (the benchmark drives 100)."""


def recorded_lap(length_m: float, seed: int = 0) -> np.ndarray:
    """Positions every ~1 m along a wavy line with 20 cm of jitter, a car waiting at the
    start, and hills: what a recorder from the game saves."""
    rng = np.random.default_rng(seed)
    s = np.arange(0.0, length_m, 1.0)
    x = s
    z = 150.0 * np.sin(s / 400.0)
    y = 5.0 * np.sin(s / 250.0)
    line = np.stack([x, y, z], 1) + rng.normal(0.0, 0.2, (len(s), 3))
    return np.vstack([np.repeat(line[:1], 30, axis=0), line])


def test_track_file_round_trip_keeps_geometry_checkpoints_and_surfaces(tmp_path: Path) -> None:
    track = build_track(
        "t",
        [(0.0, 0.0, 0.0), (100.0, 2.0, 30.0), (200.0, 0.0, 0.0), (300.0, 1.0, -40.0)],
        12.0,
        surface_sections=[(100.0, 180.0, DIRT)],
        walls=False,
    )
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"t{suffix}"
        save_track_file(track, path)
        back = load_track_file(path)
        np.testing.assert_allclose(back.points, track.points)
        np.testing.assert_allclose(back.width_m, track.width_m)
        assert back.length_m == pytest.approx(track.length_m)
        assert back.checkpoints_m == pytest.approx(track.checkpoints_m)
        np.testing.assert_array_equal(back.surfaces, track.surfaces)
        assert back.walls is False and back.name == "t"
    assert DIRT in track.surfaces and 0 in track.surfaces


def test_hand_written_track_file_loads_through_the_env(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(
        "format: tmrl2-track/1\n"
        "centerline: [[0, 0, 0], [200, 0, 0], [200, 0, 200], [0, 0, 200]]\n"
        "width_m: [14, 14, 18, 18]\n"
        "resample_m: 2.0\n"
        "smooth_m: 20.0\n"
        "closed: true\n"
        "laps: 2\n"
        "checkpoint_spacing_m: 150\n"
        "surfaces: [{from_m: 0, to_m: 100, surface: dirt}]\n",
        encoding="utf-8",
    )
    env = SimEnv(SimEnvConfig(track=str(path)))
    track = env.track
    assert track.laps == 2 and track.name == "loop"
    # Two laps of a smoothed loop of about 800 m, the second lap on the same ground.
    assert 1200.0 < track.length_m < 1700.0
    assert track.total_m > track.length_m
    lap_start = np.array(track.point_at(track.length_m / 2))
    assert np.linalg.norm(lap_start - np.array(track.point_at(0.0))) < 0.5
    assert track.width_m.min() == pytest.approx(14.0, abs=0.5)
    assert track.width_m.max() == pytest.approx(18.0, abs=0.5)
    assert track.checkpoints_m[:2] == [150.0, 300.0]
    assert track.surfaces[0] == DIRT
    obs, info = env.reset(seed=0)
    assert info["surface"] == "dirt" and env.observation_space.contains(obs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("format: other\ncenterline: [[0,0,0],[1,0,0],[2,0,0]]\n", "not a track file"),
        ("format: tmrl2-track/1\n", "needs 'centerline'"),
        ("format: tmrl2-track/1\ncenterline: [[0,0,0],[9,0,0],[20,0,0]]\nwidht_m: 3\n", "widht_m"),
        (
            "format: tmrl2-track/1\ncenterline: [[0,0,0],[9,0,0],[20,0,0]]\n"
            "surfaces: [{from_m: 0, to_m: 5, surface: ice}]\n",
            "surface 'ice'",
        ),
    ],
)
def test_bad_track_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_track_file(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_track(str(tmp_path / "missing.json"))


def test_import_of_a_recorded_line_resamples_smooths_and_places_checkpoints() -> None:
    line = recorded_lap(3000.0)
    track = import_reference_line(line, width_m=12.0, checkpoint_spacing_m=250.0)
    spacing = np.diff(track.s_m)
    assert spacing.min() > 1.8 and spacing.max() < 2.2
    # The smoothed line follows the recording (its jitter removed) and keeps its length.
    assert track.length_m == pytest.approx(3000.0, rel=0.08)
    assert np.abs(track.points[:-20, 1] - 5.0 * np.sin(track.points[:-20, 0] / 250.0)).max() < 0.3
    assert track.checkpoints_m == [250.0 * (k + 1) for k in range(len(track.checkpoints_m))]
    assert len(track.checkpoints_m) == int(np.ceil(track.length_m / 250.0)) - 1
    assert np.all(track.width_m == 12.0)
    lap = drive_lap(track)
    assert lap is not None and lap < 1.15 * reference_lap_time_s(track)


def test_kilometres_of_recorded_track_load_quickly() -> None:
    track = import_reference_line(recorded_lap(20_000.0, seed=1))
    assert track.length_m > 19_000.0
    # Projection is O(1) from a nearby hint whatever the length.
    _, s, _ = track.project(*track.point_at(15_000.0), hint=track.segment_at(14_990.0))
    assert s == pytest.approx(15_000.0, abs=0.5)


def test_reference_profile_respects_grip_engine_and_brakes() -> None:
    track, params = load_track("default"), CarParams()
    v = speed_profile(track)
    assert v[0] == 0.0
    assert np.all(v**2 * track.curvature() <= params.grip_ms2 * 1.001)
    assert v.max() <= top_speed_ms(params) < 90.0
    dv2 = np.diff(v**2) / (2.0 * np.diff(track.s_m))
    assert dv2.max() <= params.engine_accel_ms2 + 1e-6
    assert dv2.min() >= -(params.brake_decel_ms2 + 2.0)  # brakes plus drag at most
    assert 25.0 < reference_lap_time_s(track) < 45.0
    # More grip, faster lap.
    grippy = CarParams(grip_ms2=2.0 * params.grip_ms2)
    assert reference_lap_time_s(track, grippy) < reference_lap_time_s(track) - 1.0


@pytest.mark.parametrize("name", known_tracks())
def test_autopilot_finishes_each_bundled_track_within_115_percent(name: str) -> None:
    track = load_track(name)
    assert track.laps > 1 or not crosses_itself(track)  # later laps drive on the first
    lap = drive_lap(track)
    reference = reference_lap_time_s(track)
    assert lap is not None and lap <= 1.15 * reference, (name, lap, reference)


def test_generator_is_seeded_and_varied() -> None:
    first, again, other = generate_track(5), generate_track(5), generate_track(6)
    np.testing.assert_array_equal(first.points, again.points)
    assert first.points.shape != other.points.shape or np.any(first.points != other.points)
    assert load_track("gen:5").length_m == first.length_m
    radius = 1.0 / np.maximum(first.curvature(), 1e-9)
    assert radius.min() > first.width_m.max() / 2 + 2.0
    assert 800.0 < first.length_m < 2000.0


@pytest.mark.parametrize("chunk", range(GENERATED_CHUNKS))
def test_autopilot_finishes_95_percent_of_generated_tracks(chunk: int) -> None:
    """Seeds in chunks (each test stays short); 95 % of each chunk of 8 is all of it."""
    finished = hairpins = hills = 0
    seeds = range(1000 + chunk * CHUNK, 1000 + (chunk + 1) * CHUNK)
    for seed in seeds:
        track = generate_track(seed)
        assert not crosses_itself(track)
        radius = 1.0 / np.maximum(track.curvature(), 1e-9)
        hairpins += radius.min() < 25.0
        hills += np.ptp(track.points[:, 1]) > 3.0
        lap = drive_lap(track)
        finished += lap is not None and lap <= 1.15 * reference_lap_time_s(track)
    assert finished >= 0.95 * len(seeds)
    assert hairpins >= 1 and hills >= 1  # variety: tight bends and elevation appear

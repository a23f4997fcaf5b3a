"""``tmrl2 track import|info``: a recorded line becomes a track file, one-line errors for bad
lines, options and track files, the summary's reference lap and episode cap, and the round
trip of a line recorded in the simulator."""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tmrl2.config.load import ConfigError
from tmrl2.envs.sim.car import car_params
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.record import record_sim_reference
from tmrl2.envs.sim.reference import reference_lap_time_s
from tmrl2.envs.sim.track import DIRT, GRASS, ROAD, load_track
from tmrl2.envs.sim.trackfile import import_reference_line, load_track_file
from tmrl2.track_cli import add_commands, default_car


def run_cli(argv: list[str]) -> int:
    """``tmrl2 <argv>`` with only the ``track`` command, errors handled as ``tmrl2.cli.main``
    does (one line on stderr, exit code 2)."""
    parser = argparse.ArgumentParser(prog="tmrl2")
    handlers = add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"tmrl2: {exc}", file=sys.stderr)
        return 2


def wavy_line(length_m: float = 1500.0, seed: int = 0) -> np.ndarray:
    """Positions every metre along a wavy, hilly line with 20 cm of jitter and a car waiting
    at the start: what a recorder saves."""
    rng = np.random.default_rng(seed)
    s = np.arange(0.0, length_m, 1.0)
    line = np.stack([s, 3.0 * np.sin(s / 200.0), 120.0 * np.sin(s / 300.0)], 1)
    line += rng.normal(0.0, 0.2, line.shape)
    return np.vstack([np.repeat(line[:1], 20, axis=0), line])


@pytest.fixture
def line_file(tmp_path: Path) -> Path:
    path = tmp_path / "line.npy"
    np.save(path, wavy_line(), allow_pickle=False)
    return path


def surface_metres(track_surfaces: np.ndarray, segment_m: np.ndarray, code: int) -> float:
    return float(segment_m[track_surfaces == code].sum())


def test_imported_line_with_surfaces_and_no_walls_round_trips(
    tmp_path: Path, line_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tracks" / "mine.yaml"
    argv = ["track", "import", str(line_file), str(out), "--width", "12", "--no-walls"]
    argv += ["--surface", "100:300:dirt", "--surface", "500:560:GRASS", "--name", "wavy"]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"wrote {out}: track wavy:")
    back = load_track_file(out)
    direct = import_reference_line(
        wavy_line(), 12.0, surface_sections=[(100.0, 300.0, DIRT), (500.0, 560.0, GRASS)]
    )
    np.testing.assert_allclose(back.points, direct.points)
    assert back.name == "wavy" and back.walls is False and np.all(back.width_m == 12.0)
    assert back.length_m == pytest.approx(direct.length_m)
    assert back.checkpoints_m == pytest.approx(direct.checkpoints_m)
    np.testing.assert_array_equal(back.surfaces, direct.surfaces)
    assert surface_metres(back.surfaces, back.segment_m, DIRT) == pytest.approx(200.0, abs=2.5)
    assert surface_metres(back.surfaces, back.segment_m, GRASS) == pytest.approx(60.0, abs=2.5)
    assert back.surfaces[0] == ROAD
    # a run drives it like any track file
    env = SimEnv(SimEnvConfig(track=str(out)))
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and env.track.walls is False


def test_closed_loop_imports_with_the_end_joined_to_the_start(tmp_path: Path) -> None:
    angle = np.linspace(0.0, 2.0 * np.pi, 600, endpoint=False)
    ring = np.stack([200.0 * np.cos(angle), np.zeros_like(angle), 150.0 * np.sin(angle)], 1)
    np.save(tmp_path / "ring.npy", ring, allow_pickle=False)
    out = tmp_path / "ring.json"
    assert run_cli(["track", "import", str(tmp_path / "ring.npy"), str(out), "--closed"]) == 0
    track = load_track_file(out)
    perimeter = np.pi * (3 * 350 - np.sqrt((3 * 200 + 150) * (200 + 3 * 150)))  # Ramanujan
    assert track.length_m == pytest.approx(perimeter, rel=0.02)
    assert np.hypot(*np.subtract(track.point_at(track.length_m), track.point_at(0.0))) < 1.0
    twice = tmp_path / "ring2.yaml"
    argv = ["track", "import", str(tmp_path / "ring.npy"), str(twice), "--closed", "--laps", "2"]
    assert run_cli(argv) == 0
    two = load_track_file(twice)
    assert two.laps == 2 and two.length_m == pytest.approx(2 * track.length_m, rel=1e-3)


def test_summary_line_has_the_reference_lap_and_the_episode_cap(
    tmp_path: Path, line_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine.yaml"
    assert run_cli(["track", "import", str(line_file), str(out)]) == 0
    imported = capsys.readouterr().out.strip()
    assert run_cli(["track", "info", str(out)]) == 0
    info = capsys.readouterr().out.strip()
    assert imported == f"wrote {out}: {info}"
    track = load_track_file(out)
    reference = reference_lap_time_s(track, car_params(default_car()))
    cap = math.ceil(2.5 * reference * 1000.0 / 50.0)
    assert f"reference lap {reference:.2f} s (car {default_car()})" in info
    assert f"episode cap {cap} steps" in info
    assert f"length {track.length_m:.1f} m" in info
    assert f"{len(track.checkpoints_m)} checkpoints" in info and "walls" in info
    assert re.search(r"surfaces road \d+ m", info)
    for spec in ("default", "gen:3", str(line_file)):
        assert run_cli(["track", "info", spec]) == 0
        (line,) = capsys.readouterr().out.strip().splitlines()
        assert "reference lap" in line and "episode cap" in line
    png = tmp_path / "map.png"
    assert run_cli(["track", "info", str(out), "--png", str(png)]) == 0
    assert capsys.readouterr().out.strip() == info
    assert png.read_bytes().startswith(b"\x89PNG")
    assert run_cli(["track", "info", "stadium", "--car", "classic"]) == 0
    stadium = capsys.readouterr().out
    assert "over 2 laps" in stadium and "dirt" in stadium and "(car classic)" in stadium
    expected = reference_lap_time_s(load_track("stadium"), car_params("classic"))
    assert f"reference lap {expected:.2f} s" in stadium


def write_array(path: Path, array: np.ndarray | bytes) -> None:
    if isinstance(array, bytes):  # not an .npy file at all
        path.write_bytes(array)
    else:
        np.save(path, array, allow_pickle=array.dtype == object)


def _nan_line() -> np.ndarray:
    line = wavy_line(300.0)
    line[40, 2] = np.nan
    return line


BAD_LINES = [
    (None, "does not exist"),
    (np.zeros((50, 2)), r"shape \(50, 2\)"),
    (np.zeros((4, 50, 3)), r"shape \(4, 50, 3\)"),
    (_nan_line(), "NaN"),
    (np.repeat([[1.0, 2.0, 3.0]], 40, axis=0), "at least 3 distinct positions"),
    (np.array([{"x": 1}], dtype=object), "Python objects, refused"),
    (b"x,y,z\n0,0,0\n1,0,0\n", "not a numpy .npy file .*numpy.save"),
]


@pytest.mark.parametrize(("array", "why"), BAD_LINES)
def test_bad_recorded_lines_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: np.ndarray | bytes | None, why: str
) -> None:
    line = tmp_path / "bad.npy"
    if array is not None:
        write_array(line, array)
    out = tmp_path / "out.yaml"
    assert run_cli(["track", "import", str(line), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tmrl2: track import")
    assert str(line) in err and re.search(why, err), err
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--surface", "100-300:dirt"], "--surface '100-300:dirt': expected START:END:SURFACE"),
        (["--surface", "a:300:dirt"], "expected START:END:SURFACE"),
        (["--surface", "100:300:ice"], "unknown surface 'ice'; known: road, dirt, grass"),
        (["--surface", "300:100:dirt"], "0 <= START < END"),
        (["--surface", "1400:2000:dirt"], "1400-2000 m \\(dirt\\) is outside the track"),
        (["--width", "0"], "--width must be a positive number"),
        (["--smooth", "-1"], "--smooth must be 0 or more"),
        (["--car", "nosuch"], "unknown car 'nosuch'"),
        (["--laps", "2"], "--laps 2: 1, or more with --closed"),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path,
    line_file: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    why: str,
) -> None:
    out = tmp_path / "out.yaml"
    assert run_cli(["track", "import", str(line_file), str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(why, err), err
    assert not out.exists()


def test_bad_output_names_and_tmrl_pickles_are_one_line_errors(
    tmp_path: Path, line_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["track", "import", str(line_file), str(tmp_path / "out.txt")]) == 2
    assert "must end in .yaml, .yml, .json" in capsys.readouterr().err
    pickled = tmp_path / "reward.pkl"
    pickled.write_bytes(b"\x80\x04")
    assert run_cli(["track", "import", str(pickled), str(tmp_path / "o.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "np.save" in err and str(pickled) in err
    assert run_cli(["track", "info", str(tmp_path / "nosuch.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuch.yaml" in err and "does not exist" in err


CENTER = "format: tmrl2-track/1\ncenterline: [[0, 0, 0], [100, 0, 0], [200, 0, 50]]\n"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "holds one mapping .* got nothing"),
        ("- 1\n- 2\n", "holds one mapping .* got a list"),
        ("format: [unclosed\n", "not valid YAML .* at line 2"),
        (CENTER + "widht_m: 3\n", r"widht_m \(did you mean width_m\?\)"),
        ("format: tmrl2-track/1\ncenterline: [[0, 0], [1, 0], [2, 0]]\n", r"got shape \(3, 2\)"),
        ("format: tmrl2-track/1\ncenterline: [[0, 0, 0], [1, 0], [2, 0, 0]]\n", "triples"),
        ("format: tmrl2-track/1\ncenterline: [[0, 0, .nan], [9, 0, 0], [20, 0, 0]]\n", "NaN"),
        (CENTER + "width_m: [3, 4]\n", r"one per centerline point \(3\)"),
        (CENTER + "surfaces: dirt\n", "'surfaces' must be a list"),
        (CENTER + "surfaces: [{from_m: 0, to: 5, surface: dirt}]\n", r"surfaces\[0\] must be"),
        (CENTER + "surfaces: [{from_m: 0, to_m: x, surface: dirt}]\n", r"surfaces\[0\]\.to_m"),
        (CENTER + "surfaces: [{from_m: 0, to_m: 5, surface: ice}]\n", "surface 'ice'"),
        (CENTER + "surfaces: [{from_m: 0, to_m: 900, surface: dirt}]\n", "outside the track"),
        (CENTER + "walls: maybe\n", "'walls' must be true or false"),
        (CENTER + "laps: 0\n", "'laps' must be a whole number"),
    ],
)
def test_bad_track_files_are_one_line_errors_naming_the_path(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_track_file(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and re.search(why, message)


def test_unreadable_track_files_are_one_line_errors(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"format": ', encoding="utf-8")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    for path, why in [
        (tmp_path / "missing.yaml", "no such track file"),
        (bad_json, "not valid JSON"),
        (binary, "not a text file"),
        (tmp_path, "cannot read the track file"),
    ]:
        with pytest.raises(ValueError) as err:
            load_track_file(path)
        assert str(err.value).startswith(f"{path}: {why}") and "\n" not in str(err.value)


def test_a_line_recorded_in_the_simulator_imports_back_at_its_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = record_sim_reference(tmp_path / "default")  # .npy added, as np.save does
    assert recorded.path == tmp_path / "default.npy" and recorded.path.is_file()
    original, params = load_track("default"), car_params(default_car())
    reference = reference_lap_time_s(original, params)
    assert recorded.reference_lap_s == pytest.approx(reference)
    assert 0.9 * reference < recorded.lap_time_s < 1.15 * reference
    assert recorded.points == len(np.load(recorded.path)) > 100
    assert f"autopilot lap {recorded.lap_time_s:.2f} s" in recorded.describe()
    out = tmp_path / "default_again.yaml"
    assert run_cli(["track", "import", str(recorded.path), str(out)]) == 0
    again = load_track_file(out)
    assert again.length_m == pytest.approx(original.length_m, rel=0.03)
    # the same road: a lap on it takes about as long
    assert reference_lap_time_s(again, params) == pytest.approx(reference, rel=0.1)
    assert "reference lap" in capsys.readouterr().out


def test_the_track_command_through_tmrl2_main(
    tmp_path: Path, line_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tmrl2 import cli

    if "track" not in cli._COMMANDS and "tmrl2.track_cli" not in cli._EXTRA_COMMANDS:
        pytest.skip("tmrl2.cli does not register the track command yet")
    out = tmp_path / "mine.yaml"
    assert cli.main(["track", "import", str(line_file), str(out), "--no-walls"]) == 0
    assert "open borders" in capsys.readouterr().out
    assert cli.main(["track", "import", str(line_file), str(out), "--surface", "1:2:ice"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown surface 'ice'" in err


def test_a_figure_eight_imports_as_a_flat_junction_the_autopilot_drives(tmp_path: Path) -> None:
    """A line crossing itself (docs/tracks.md, Limitations): each pass keeps its own walls."""
    from tmrl2.envs.sim.autopilot import drive_lap

    t = np.linspace(0.0, 2.0 * np.pi, 3000)
    eight = np.stack([300.0 * np.sin(t), np.zeros_like(t), 150.0 * np.sin(2.0 * t)], 1)
    np.save(tmp_path / "eight.npy", eight, allow_pickle=False)
    out = tmp_path / "eight.yaml"
    argv = ["track", "import", str(tmp_path / "eight.npy"), str(out), "--closed", "--width", "16"]
    assert run_cli(argv) == 0
    track = load_track_file(out)
    lap = drive_lap(track)
    assert lap is not None and lap <= 1.05 * reference_lap_time_s(track)

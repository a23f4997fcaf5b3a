"""``tmrl2 track``: import a recorded TrackMania line as a simulator track, describe a track.

``tmrl2 track import LINE.npy OUT.yaml`` reads the positions of a driven lap (``N x 3``,
``x y z``, Y up: what ``tmrl2 record-reference`` and tmrl's reward recorder save), builds the
track with :func:`~tmrl2.envs.sim.trackfile.import_reference_line` (road width, surface
sections by arc length, walls or open borders, smoothing, spacing) and writes a track file.
``tmrl2 track info TRACK`` prints the same one-line summary for any track spec (a bundled
name, ``gen:<seed>``, a track file or a recorded ``.npy`` line): length, finish, checkpoints,
surfaces, the reference lap time and the episode cap that ``env.max_episode_steps: 0``
derives from it.

A problem a user can fix (missing file, wrong shape, NaN, a bad ``--surface``) raises
:class:`~tmrl2.config.load.ConfigError` with one line naming the path or option and why;
``tmrl2``'s ``main`` prints it and exits with code 2. Imports stay light at parse time.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tmrl2.config.load import ConfigError

if TYPE_CHECKING:
    from tmrl2.envs.sim.car import CarParams
    from tmrl2.envs.sim.track import Track

TIME_STEP_MS = 50
"""Env step the summary's episode cap is counted in (the default ``env.time_step_ms``)."""
TRACK_SUFFIXES = (".yaml", ".yml", ".json")
"""Suffixes of the track files ``track import`` writes."""


def add_track_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``track`` with its ``import`` and ``info`` sub-commands to ``tmrl2``'s parser."""
    track = subparsers.add_parser(
        "track", help="import a recorded line as a track file; describe a track"
    )
    sub = track.add_subparsers(dest="track_command", required=True)
    imp = sub.add_parser(
        "import",
        help="build a track file from a recorded line (.npy, N x 3, x y z, Y up)",
        description="Build a simulator track from the positions of a driven lap and write it "
        "as a track file, then print its summary (length, reference lap, episode cap).",
    )
    imp.add_argument(
        "line", type=Path, metavar="LINE.npy", help="recorded line: N x 3 positions x y z, Y up"
    )
    imp.add_argument(
        "out", type=Path, metavar="OUT.yaml", help="track file to write (.yaml, .yml or .json)"
    )
    imp.add_argument("--width", type=float, default=14.0, metavar="M", help="road width (14)")
    imp.add_argument(
        "--surface",
        action="append",
        default=[],
        metavar="START:END:SURFACE",
        help="a section of dirt or grass (or road) by arc length in metres, e.g. 300:420:dirt "
        "(repeatable; the rest is road)",
    )
    imp.add_argument(
        "--no-walls", action="store_true", help="open borders: grass beyond the road, no walls"
    )
    imp.add_argument("--name", help="track name (default: OUT's file name without suffix)")
    imp.add_argument(
        "--closed", action="store_true", help="the line is a loop: its end joins its start"
    )
    imp.add_argument(
        "--laps",
        type=int,
        default=1,
        metavar="N",
        help="laps of a --closed loop to the finish (1)",
    )
    imp.add_argument(
        "--smooth",
        type=float,
        default=6.0,
        metavar="M",
        help="Gaussian smoothing scale (6): removes the recording's jitter and weaving",
    )
    imp.add_argument(
        "--spacing", type=float, default=2.0, metavar="M", help="centerline point spacing (2)"
    )
    imp.add_argument(
        "--checkpoint-spacing",
        type=float,
        default=100.0,
        metavar="M",
        help="checkpoints every M metres of arc length (100)",
    )
    _car_option(imp)
    info = sub.add_parser(
        "info",
        help="one-line summary of a track: length, checkpoints, surfaces, reference lap",
    )
    info.add_argument(
        "track", help="bundled name, gen:<seed>, a track file or a recorded .npy line"
    )
    _car_option(info)


def _car_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--car", help="car preset for the reference lap (env.car; default: env.car's default)"
    )
    parser.add_argument(
        "--png",
        type=Path,
        metavar="MAP.png",
        help="also draw the track seen from above (road, dirt, borders, finish) to this file",
    )


def add_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Hook for ``tmrl2.cli``'s ``_EXTRA_COMMANDS``: adds ``track``, returns its handler."""
    add_track_parser(subparsers)
    return {"track": run_track}


def run_track(args: argparse.Namespace) -> int:
    """Run ``tmrl2 track import|info``; exit code 0. A user's mistake raises a one-line
    :class:`ConfigError`."""
    car = args.car or default_car()
    params = _car(car)
    if args.track_command == "import":
        track, out = import_line(args)
        line = f"wrote {out}: {track_summary(track, params, car)}"
    else:
        track = _load(args.track)
        line = track_summary(track, params, car)
    if args.png is not None:
        _draw(track, args.png)
    print(line)
    return 0


def _draw(track: Track, path: Path) -> None:
    """The map of ``track`` seen from above as a PNG (:func:`~tmrl2.envs.sim.render.top_view`)."""
    from tmrl2.envs.sim.render import top_view, write_png

    try:
        write_png(str(path), top_view(track, size=768))
    except OSError as exc:
        raise ConfigError(f"track --png: cannot write {path} ({exc.strerror or exc})") from None


def import_line(args: argparse.Namespace) -> tuple[Track, Path]:
    """Build the track of ``track import``'s arguments and write it; returns it and the
    file written."""
    from tmrl2.envs.sim.trackfile import import_reference_line, save_track_file
    from tmrl2.envs.sim.tracklist import load_line

    out: Path = args.out
    if out.suffix not in TRACK_SUFFIXES:
        raise ConfigError(
            f"track import: {out}: the track file must end in {', '.join(TRACK_SUFFIXES)}"
        )
    for option, value, least in (
        ("--width", args.width, 0.0),
        ("--spacing", args.spacing, 0.0),
        ("--checkpoint-spacing", args.checkpoint_spacing, 0.0),
    ):
        if not (math.isfinite(value) and value > least):
            raise ConfigError(f"track import: {option} must be a positive number, got {value}")
    if not (math.isfinite(args.smooth) and args.smooth >= 0.0):
        raise ConfigError(f"track import: --smooth must be 0 or more metres, got {args.smooth}")
    if args.line.suffix == ".pkl":
        raise ConfigError(
            f"track import {args.line}: a pickle (tmrl's reward.pkl) is not read, as loading "
            'one can run code; if you trust it, convert it once: python -c "import pickle, '
            f"numpy as np; np.save('line.npy', np.asarray(pickle.load(open('{args.line}', "
            "'rb')), float))\" and import line.npy"
        )
    if args.laps < 1 or (args.laps > 1 and not args.closed):
        raise ConfigError(f"track import: --laps {args.laps}: 1, or more with --closed")
    sections = [parse_surface(text) for text in args.surface]
    try:
        points = load_line(args.line)
        track = import_reference_line(
            points,
            args.width,
            name=args.name or out.stem,
            spacing_m=args.spacing,
            smooth_m=args.smooth,
            checkpoint_spacing_m=args.checkpoint_spacing,
            closed=args.closed,
            laps=args.laps,
            surface_sections=sections,
            walls=not args.no_walls,
        )
    except ValueError as exc:
        raise ConfigError(f"track import {args.line}: {_one_line(exc)}") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_track_file(track, out)
    except OSError as exc:
        raise ConfigError(f"track import: cannot write {out} ({exc.strerror or exc})") from None
    return track, out


def parse_surface(text: str) -> tuple[float, float, int]:
    """``START:END:SURFACE`` (metres of arc length, a surface name) as ``(from_m, to_m,
    code)``; a one-line :class:`ConfigError` for anything else."""
    from tmrl2.envs.sim.track import SURFACES

    parts = text.split(":")
    usage = "expected START:END:SURFACE in metres of arc length, e.g. 300:420:dirt"
    if len(parts) != 3:
        raise ConfigError(f"track import: --surface {text!r}: {usage}")
    try:
        start, end = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(f"track import: --surface {text!r}: {usage}") from None
    name = parts[2].strip().lower()
    if name not in SURFACES:
        raise ConfigError(
            f"track import: --surface {text!r}: unknown surface {parts[2]!r}; "
            f"known: {', '.join(SURFACES)}"
        )
    if not (math.isfinite(start) and math.isfinite(end) and 0.0 <= start < end):
        raise ConfigError(
            f"track import: --surface {text!r}: START and END must satisfy 0 <= START < END"
        )
    return start, end, SURFACES.index(name)


def default_car() -> str:
    """The car a run drives unless ``env.car`` says otherwise."""
    from tmrl2.envs.sim.env import SimEnvConfig

    return str(SimEnvConfig.model_fields["car"].default)


def _car(name: str) -> CarParams:
    from tmrl2.envs.sim.car import car_params

    try:
        return car_params(name)
    except ValueError as exc:
        raise ConfigError(f"track --car: {_one_line(exc)}") from None


def _load(spec: str) -> Track:
    """The track a spec names, as a run's ``env.tracks`` loads it; one-line errors."""
    from tmrl2.envs.sim.tracklist import check_track_spec, load_track_spec

    try:
        check_track_spec(spec)
        return load_track_spec(spec)
    except ValueError as exc:
        raise ConfigError(f"track info {spec}: {_one_line(exc)}") from None


def track_summary(track: Track, params: CarParams | None = None, car: str | None = None) -> str:
    """One line: name, road and finish, laps, checkpoints, walls, surfaces by length, the
    reference lap time and the derived episode cap (2.5 x the reference lap, in steps of
    :data:`TIME_STEP_MS`)."""
    import numpy as np

    from tmrl2.envs.sim.reference import reference_lap_time_s
    from tmrl2.envs.sim.track import SURFACES
    from tmrl2.envs.sim.tracklist import CAP_FACTOR, episode_cap_steps

    # length of each surface up to the finish line (segments cut at the finish)
    covered = np.clip(track.length_m - track.s_m[:-1], 0.0, track.segment_m)
    metres = np.bincount(track.surfaces, weights=covered, minlength=len(SURFACES))
    surfaces = " + ".join(
        f"{name} {metres[code]:.0f} m" for code, name in enumerate(SURFACES) if metres[code] > 0.5
    )
    reference = reference_lap_time_s(track, params)
    cap = episode_cap_steps(0, reference, TIME_STEP_MS)
    laps = f" over {track.laps} laps" if track.laps > 1 else ""
    width = (
        f"{track.width_m[0]:.1f} m wide"
        if np.all(track.width_m == track.width_m[0])
        else f"{track.width_m.min():.1f}-{track.width_m.max():.1f} m wide"
    )
    return (
        f"track {track.name}: length {track.length_m:.1f} m to the finish line{laps}, "
        f"{track.total_m:.1f} m of road with the run-off, {width}, "
        f"{len(track.checkpoints_m)} checkpoints, {'walls' if track.walls else 'open borders'}, "
        f"surfaces {surfaces or 'none'}, reference lap {reference:.2f} s"
        f"{f' (car {car})' if car else ''}, episode cap {cap} steps "
        f"({CAP_FACTOR:g} x reference at {TIME_STEP_MS} ms per step)"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

"""``tmrl2 report RUN`` and ``tmrl2 watch RUN``: the parsers and their handlers.

A hook of ``tmrl2.cli``'s ``_EXTRA_COMMANDS``: imports stay light at parse time (matplotlib,
imageio and torch load when a command runs). A mistake a user can fix (not a run folder, a
run that did not drive the simulator for ``watch``, an MP4 without ffmpeg, a bad option)
raises a one-line :class:`~tmrl2.config.load.ConfigError`: exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tmrl2.config.load import ConfigError


def _trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-config",
        action="store_true",
        help="import the components the checkpoint's config names by import path (runs "
        "their code; only for runs you trust), as tmrl2 eval --trust-config",
    )


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 384x240") from None


def add_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``report`` and ``watch``; returns their handlers."""
    rep = subparsers.add_parser(
        "report",
        help="an HTML page of a run's figures (learning curves, laps, racing line...)",
        description="Write RUN/report/index.html with PNG figures beside it: learning curves, "
        "lap times, reward terms, throughput and lag, losses, and the racing line of one "
        "deterministic lap of the run's policy over the track map.",
    )
    rep.add_argument("run", type=Path, metavar="RUN", help="run folder (runs/<name>-<time>)")
    rep.add_argument("--out", type=Path, metavar="DIR", help="output folder (RUN/report)")
    rep.add_argument(
        "--no-lap", action="store_true", help="do not drive a lap (no racing line figure)"
    )
    rep.add_argument(
        "--embed", action="store_true", help="embed the PNGs in index.html (one file to share)"
    )
    _trust(rep)
    watch = subparsers.add_parser(
        "watch",
        help="a video of one deterministic lap of a run's policy on the simulator",
        description="Drive one deterministic lap with the run's policy and write a video: the "
        "simulator's camera view with a map inset (track, trail, car).",
    )
    watch.add_argument("run", type=Path, metavar="RUN", help="run folder or checkpoint.pt")
    watch.add_argument("--track", help="track spec to drive (the run's first track)")
    watch.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="lap.mp4 or lap.gif (RUN/lap.mp4; lap.gif without imageio-ffmpeg)",
    )
    watch.add_argument("--fps", type=float, default=20.0, help="frames per second (20)")
    watch.add_argument("--max-steps", type=int, metavar="N", help="stop after N env steps")
    watch.add_argument(
        "--size", type=_size, default=(384, 240), metavar="WxH", help="frame size (384x240)"
    )
    _trust(watch)
    return {"report": run_report, "watch": run_watch}


def run_report(args: argparse.Namespace) -> int:
    """``tmrl2 report``: write the page, print where it is."""
    from tmrl2.report.page import write_report

    page = write_report(
        args.run, args.out, lap=not args.no_lap, trust_config=args.trust_config, embed=args.embed
    )
    print(f"wrote {page}")
    return 0


def run_watch(args: argparse.Namespace) -> int:
    """``tmrl2 watch``: drive the lap, write the video, print the lap."""
    from tmrl2.report.video import write_video

    if not args.run.exists():
        raise ConfigError(f"watch {args.run}: no such run folder or checkpoint")
    path, lap, frames = write_video(
        args.run,
        args.out,
        track=args.track,
        fps=args.fps,
        max_steps=args.max_steps,
        size=args.size,
        trust_config=args.trust_config,
    )
    print(f"wrote {path}: {frames} frames; {lap.describe()}")
    return 0

"""``tmrl2 sim serve``: the simulator as TrackMania + the OpenPlanet plugin (protocol v1)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        msg = f"expected WIDTHxHEIGHT like 64x64, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not (8 <= w <= 1024 and 8 <= h <= 1024):
        raise argparse.ArgumentTypeError("image sides must be 8..1024 pixels")
    return w, h


def add_commands(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``sim serve``."""
    from tmrl2.envs.sim.serve import DEFAULT_PORT

    sim = sub.add_parser("sim", help="the built-in simulator's tools")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_sub.add_parser(
        "serve", help="serve the simulator over the game bridge protocol (as TrackMania would)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    serve.add_argument("--track", default="default", help="bundled track, gen:<seed> or a file")
    serve.add_argument("--fps", type=float, default=50.0, help="game frames per second")
    serve.add_argument(
        "--lockstep", action="store_true", help="advance physics only on STEP commands"
    )
    serve.add_argument(
        "--image", type=_size, default=(64, 64), metavar="WxH", help="FRAME size (64x64)"
    )
    serve.add_argument("--color", action="store_true", help="RGB frames instead of grey")
    serve.add_argument("--seed", type=int, default=0, help="start-position noise seed")
    return {"sim": _cmd_sim}


def _cmd_sim(args: argparse.Namespace) -> int:
    from tmrl2.envs.sim.serve import ServeOptions, SimServer

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving the simulator on %s: anyone who reaches it can drive", args.host)
    options = ServeOptions(
        host=args.host,
        port=args.port,
        track=args.track,
        fps=args.fps,
        lockstep=args.lockstep,
        image_size=args.image,
        color=args.color,
        seed=args.seed,
    )
    try:
        server = SimServer(options)
    except ValueError as exc:  # bad options or a track that cannot be loaded: one line
        print(f"tmrl2 sim serve: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"tmrl2 sim serve: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): "
            "is another simulator running there? Pick another --port, or --port 0 for a free one",
            file=sys.stderr,
        )
        return 2
    print(f"simulator serving protocol v1 on {args.host}:{server.port} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0

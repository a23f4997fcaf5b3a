"""``tmrl2 plugin install``: put the OpenPlanet plugin where the game loads it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``plugin install``."""
    plugin = sub.add_parser("plugin", help="the OpenPlanet plugin of the TrackMania bridge")
    plugin_sub = plugin.add_subparsers(dest="plugin_command", required=True)
    inst = plugin_sub.add_parser("install", help="copy the plugin into OpenplanetNext/Plugins")
    inst.add_argument(
        "--path",
        type=Path,
        default=None,
        help="OpenPlanet's Plugins (or OpenplanetNext) folder; default: search Windows, Proton "
        "and Wine locations",
    )
    inst.add_argument("--dry-run", action="store_true", help="say where, copy nothing")
    return {"plugin": _cmd_plugin}


def _cmd_plugin(args: argparse.Namespace) -> int:
    from tmrl2.envs.trackmania.install import MANUAL_STEP, install

    done = install(args.path, dry_run=args.dry_run)
    for item in done:
        verb = "would install" if args.dry_run else ("replaced" if item.replaced else "installed")
        print(f"{verb}: {item.target}")
    print(MANUAL_STEP)
    return 0

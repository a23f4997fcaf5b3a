"""``tmrl2 check-environment``: test each link between a worker and the game, one verdict each.

Links: the plugin (reachable, protocol version), its STATE stream (rate), the controls backend,
the screen capture (FPS). Every failure says what to do; the exit code is 0 only when every
link is OK.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmrl2.bridge.errors import BridgeError


@dataclass(frozen=True)
class Verdict:
    link: str
    ok: bool
    detail: str


def add_commands(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``check-environment``."""
    check = sub.add_parser(
        "check-environment", help="check the links to TrackMania: plugin, states, controls, capture"
    )
    check.add_argument("--config", "-c", type=Path, default=None, help="YAML config")
    check.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    check.add_argument("--seconds", type=float, default=2.0, help="how long to measure rates")
    return {"check-environment": _cmd_check}


def _cmd_check(args: argparse.Namespace) -> int:
    from tmrl2.config.load import load_config

    config = load_config(args.config, ["env.kind=trackmania", *args.overrides])
    verdicts = check_environment(config.env, args.seconds)  # type: ignore[arg-type]
    width = max(len(v.link) for v in verdicts)
    for v in verdicts:
        print(f"{v.link:<{width}}  {'OK  ' if v.ok else 'FAIL'}  {v.detail}")
    ok = all(v.ok for v in verdicts)
    print("all links OK" if ok else "some links failed: fix them in the order listed")
    return 0 if ok else 1


def check_environment(cfg: Any, seconds: float = 2.0) -> list[Verdict]:
    """Verdicts for ``cfg`` (a :class:`TrackManiaConfig`), in the order links depend on."""
    from tmrl2.bridge import protocol as p
    from tmrl2.envs.trackmania.capture import FpsMeter, make_capture
    from tmrl2.envs.trackmania.client import BridgeClient
    from tmrl2.envs.trackmania.controls import make_controls

    out: list[Verdict] = []
    client = BridgeClient(cfg.host, cfg.port, cfg.connect_timeout_s, cfg.step_timeout_s)
    try:
        hello = client.connect()
    except BridgeError as exc:
        out.append(Verdict("plugin", False, str(exc)))
        return out
    try:
        out.append(
            Verdict(
                "plugin",
                True,
                f"{cfg.host}:{cfg.port} {hello.server_version}, "
                f"game {hello.game_version}, protocol v{hello.major}.{hello.minor}",
            )
        )
        out.append(_state_rate(client, seconds))
        try:
            controls = make_controls(
                cfg.control, client, sim_available=bool(client.caps & p.Caps.SET_INPUT)
            )
            controls.release()
            controls.close()
            out.append(Verdict("controls", True, f"backend {controls.name}"))
        except BridgeError as exc:
            out.append(Verdict("controls", False, str(exc)))
        try:
            grabber = make_capture(
                cfg.capture,
                client,
                frames_available=bool(client.caps & p.Caps.IMAGE),
                window=cfg.capture_window,
            )
            meter, shape = FpsMeter(), None
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if client.caps & p.Caps.STEP and cfg.clock == "lockstep":
                    client.step(1)
                shape = grabber.grab().shape
                meter.tick()
            grabber.close()
            out.append(
                Verdict(
                    "capture", True, f"backend {grabber.name}, {meter.fps:.0f} FPS, image {shape}"
                )
            )
        except BridgeError as exc:
            out.append(Verdict("capture", False, str(exc)))
    finally:
        client.close()
    return out


def _state_rate(client: Any, seconds: float) -> Verdict:
    from tmrl2.bridge import protocol as p

    try:
        first = client.wait_state()
        if client.caps & p.Caps.STEP and first is not None:
            try:
                client.step(1)
                return Verdict("states", True, "lockstep simulator: STEP answered with a STATE")
            except BridgeError:
                pass  # a real-time simulator refuses STEP: measure its stream like the game's
        time.sleep(seconds)
        last = client.wait_state(after_seq=first.seq)
    except BridgeError as exc:
        return Verdict("states", False, str(exc))
    rate = (last.seq - first.seq) / max((last.wall_ms - first.wall_ms) / 1000, 1e-3)
    if not last.has(p.StateFlag.SPAWNED):
        return Verdict("states", False, f"{rate:.0f} STATE/s but no car is spawned: open a map")
    if rate < 20:
        return Verdict(
            "states",
            False,
            f"only {rate:.0f} STATE/s (20 needed for a 50 ms step): "
            "raise the game's frame rate or lower the plugin's stream divider",
        )
    return Verdict("states", True, f"{rate:.0f} STATE/s, episode {last.episode}")

"""Command line: ``tmrl2 train|server|trainer|worker|eval|config|keys``. Parsing only; the roles
are built from the config by :mod:`tmrl2.roles`.

Errors a user can fix (a bad config or override, a busy port, an unreadable checkpoint, an
untrusted import path, an unknown track) end the command with exit code 2 and one line on
stderr, ``tmrl2: <what is wrong and what to do>``, never a traceback: :func:`main` catches the
specific error types that carry such a message. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tmrl2.bridge.errors import BridgeError
from tmrl2.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from tmrl2.config.load import ConfigError, config_hash, dump_config, load_config
from tmrl2.config.schema import Config
from tmrl2.net.errors import NetError

log = logging.getLogger("tmrl2")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="YAML config (default: the built-in simulator LIDAR job)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tmrl2", description="EVO RL: real-time distributed RL")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="server + trainer + worker(s) on this machine")
    _common(train)
    train.add_argument("--steps", type=int, help="stop after this many env steps")
    train.add_argument("--minutes", type=float, help="stop after this many minutes")
    train.add_argument("--run-dir", type=Path, help="run folder (default runs/<name>-<time>)")
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its checkpoint (your own run folder: its config "
        "is trusted, import paths included)",
    )
    for role in ("server", "trainer", "worker"):
        p = sub.add_parser(role, help=f"run the {role} role alone")
        _common(p)
        if role != "server":
            p.add_argument(
                "--connect",
                metavar="HOST:PORT",
                help="server address (default: <role>.server and server.port)",
            )
        if role == "trainer":
            p.add_argument("--run-dir", type=Path, help="run folder for checkpoints and metrics")
            p.add_argument("--resume", action="store_true", help="resume from --run-dir")
        if role == "worker":
            p.add_argument("--index", type=int, default=0, help="worker rank (seed and name)")
    ev = sub.add_parser("eval", help="drive a saved policy deterministically")
    ev.add_argument("checkpoint", type=Path, help="checkpoint.pt or a run folder")
    ev.add_argument("--episodes", type=int, default=1, help="episodes (per track on the simulator)")
    ev.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write every episode and the summary to FILE (a run folder's evaluations "
        "are appended to its evals.jsonl in any case)",
    )
    ev.add_argument(
        "--tracks",
        nargs="+",
        metavar="TRACK",
        help="simulator tracks to drive: bundled names, gen:N, generated:A-B ranges, track "
        "files, .npy lines (default: the run's env.tracks and env.eval_tracks)",
    )
    ev.add_argument(
        "--randomize",
        action="store_true",
        help="keep the run's domain randomization (evaluation runs without it by default)",
    )
    ev.add_argument(
        "--trust-config",
        action="store_true",
        help="import the components the checkpoint's config names by import path "
        "(package.module:Name); that runs their code, so only for checkpoints you trust",
    )
    ev.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a value of the saved config",
    )
    rec = sub.add_parser("record-reference", help="drive a lap and save its reference line")
    rec.add_argument("out", type=Path, help="output .npy file (N x 3 positions, Y up)")
    rec.add_argument("--track", default="default", help="simulator track to drive")
    rec.add_argument(
        "--game",
        metavar="HOST:PORT",
        help="record a lap you drive in TrackMania through the plugin (e.g. 127.0.0.1:9400)",
    )
    show = sub.add_parser("config", help="print the resolved config as YAML")
    _common(show)
    keys = sub.add_parser("keys", help="make CurveZMQ key pairs: NAME.key, NAME.key_secret")
    keys.add_argument("names", nargs="+", help="one pair per name, e.g. server worker trainer")
    keys.add_argument("--dir", type=Path, default=Path("keys"), help="output folder")
    keys.add_argument("--force", action="store_true", help="overwrite existing key files")
    for module in _EXTRA_COMMANDS:
        _COMMANDS.update(importlib.import_module(module).add_commands(sub))
    return parser


def _config(args: argparse.Namespace, extra: Sequence[str] = ()) -> Config:
    return load_config(args.config, [*args.overrides, *extra])


def _address(config: Config, host: str, connect: str | None) -> str:
    return f"tcp://{connect}" if connect else f"tcp://{host}:{config.server.port}"


def _cmd_train(args: argparse.Namespace) -> int:
    from tmrl2.roles.launcher import LocalRun, run_local_training
    from tmrl2.telemetry.display import header_lines

    extra = []
    if args.steps is not None:
        extra.append(f"run.steps={args.steps}")
    if args.minutes is not None:
        extra.append(f"run.minutes={args.minutes}")
    run_dir = args.resume or args.run_dir
    if args.resume is not None:
        # the user's own run folder: its config is trusted like a file they wrote
        if not (args.resume / "config.yaml").is_file():
            raise ConfigError(f"--resume {args.resume}: no config.yaml there; is it a run folder?")
        if args.config is None:
            args.config = args.resume / "config.yaml"
        if (args.resume / CHECKPOINT_NAME).is_file():
            load_checkpoint(args.resume)  # a torn checkpoint: one line here, not in a child
    config = _config(args, extra)

    def header(run: LocalRun) -> None:  # once the server has its port, before the roles
        print("\n".join(header_lines(run.config, run.run_dir, run.address, args.config)))
        sys.stdout.flush()

    summary = run_local_training(config, run_dir, resume=args.resume is not None, on_bound=header)
    _print_summary(summary)
    failure = _run_failure(summary)
    if failure:
        print(f"tmrl2: {failure}", file=sys.stderr)
        return 1
    return 0


def _run_failure(summary: dict[str, Any]) -> str | None:
    """Why a finished ``tmrl2 train`` run counts as failed (exit code 1), or None."""
    if summary.get("failure"):  # stopped early: by the launcher (a stall), the trainer (NaN)
        return str(summary["failure"])
    codes = summary.get("exit_codes") or {}
    failed = {name: code for name, code in codes.items() if code != 0}
    if failed:
        roles = ", ".join(f"{name} (exit code {code})" for name, code in sorted(failed.items()))
        return f"the run failed: {roles}; see the log above"
    if not summary.get("samples"):
        return (
            "no sample reached the trainer: the workers never delivered experience; see the "
            "log above (server address, run token, worker errors)"
        )
    return None


def _print_summary(summary: dict[str, Any]) -> None:
    racing = "best_lap_s" in summary
    keys = ["samples", "updates", "updates_per_step", "episodes"]
    keys += ["finishes", "best_lap_s"] if racing else ["return_recent_mean"]
    print("\n== summary ==")
    for key in [*keys, "elapsed_s"]:
        value = summary.get(key)
        shown = f"{value:.3f}" if isinstance(value, float) and key != "elapsed_s" else value
        label = "return (100)" if key == "return_recent_mean" else key
        print(f"{label:>12}: {shown}")
    for i, line in enumerate(summary.get("eval") or []):
        print(f"{'eval ' + str(i):>12}: {line}")
    tracks = summary.get("tracks") or {}
    if len(tracks) > 1:
        print(f"{'training':>12}: track, episodes, finish rate (last 20), best lap / reference")
        for name, row in tracks.items():
            ratio = row.get("lap_ratio")
            best = "-" if ratio is None else f"{row['best_lap_s']:.2f} s ({ratio:.3f}x)"
            print(
                f"{'':>12}  {name}: {row['episodes']}, {row['finish_rate']:.0%} "
                f"({row['recent_finish_rate']:.0%}), {best}"
            )
    if summary.get("eval_results") and (len(summary["eval_results"]) > 1 or not racing):
        from tmrl2.roles.evaluate import EpisodeResult, summary_line

        results = [EpisodeResult(**r) for r in summary["eval_results"]]
        print(f"{'eval':>12}: {summary_line(results)}")
    print(f"{'run folder':>12}: {summary.get('run_dir')}")


def _cmd_server(args: argparse.Namespace) -> int:
    from tmrl2.roles.common import NeverStop
    from tmrl2.roles.server import Server
    from tmrl2.roles.server_live import run_with_status

    config = _config(args)
    try:
        server = Server(
            config.server, config_hash=config_hash(config), run_config=dump_config(config)
        )
    except OSError as exc:
        where = f"{config.server.host}:{config.server.port}"
        raise ConfigError(
            f"cannot listen on {where} ({_reason(exc)}): is another server running there? Pick "
            "another port with --set server.port=N, or server.port=0 for a free one"
        ) from None
    log.info("server listening on %s:%d", server.config.host, server.port)
    try:
        run_with_status(server, NeverStop())  # counters on a live line (a log line if no TTY)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def _cmd_trainer(args: argparse.Namespace) -> int:
    from tmrl2.roles.trainer import run_trainer

    config = _config(args)
    run_dir = args.run_dir or Path(config.run.dir) / config.run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        summary = run_trainer(
            config,
            _address(config, config.trainer.server, args.connect),
            run_dir,
            resume=args.resume,
        )
    except KeyboardInterrupt:
        return 0
    print(json.dumps(summary, indent=2))
    return 1 if summary.get("failure") else 0  # it stopped on NaN (the log says so)


def _cmd_worker(args: argparse.Namespace) -> int:
    from tmrl2.roles.worker import run_worker

    config = _config(args)
    with contextlib.suppress(KeyboardInterrupt):
        run_worker(config, _address(config, config.worker.server, args.connect), index=args.index)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from tmrl2.roles.evaluate import (
        default_tracks,
        evaluate,
        load_policy,
        passed,
        save_results,
        summary_line,
        track_table,
    )

    config, actor = load_policy(args.checkpoint, args.overrides, trust_config=args.trust_config)
    tracks = default_tracks(config)
    if args.tracks:
        if not hasattr(config.env, "eval_track_names"):
            raise ConfigError(f"--tracks: env.kind {config.env.kind!r} has no tracks to choose")
        from tmrl2.envs.sim.tracklist import expand_tracks

        try:
            tracks = expand_tracks(args.tracks)
        except ValueError as exc:
            raise ConfigError(f"--tracks: {_reason(exc)}") from None
    results = evaluate(config, actor, args.episodes, tracks=tracks, randomize=args.randomize)
    if tracks is None:
        for i, result in enumerate(results):
            extra = f" return {result.episode_return:.1f}" if result.racing else ""
            print(f"episode {i}: {result.describe()}{extra}")
    else:
        print("\n".join(track_table(results)))
    print(summary_line(results))
    if args.checkpoint.is_dir():
        save_results(args.checkpoint / "evals.jsonl", results, append=True)
    if args.json is not None:
        save_results(args.json, results)
    return 0 if passed(results) else 3


def _cmd_record_reference(args: argparse.Namespace) -> int:
    if args.game:
        from tmrl2.envs.trackmania.client import BridgeClient
        from tmrl2.envs.trackmania.record import record_game_reference

        host, _, port = args.game.rpartition(":")
        print("recording: restart the map and drive one lap to the finish")
        with BridgeClient(host or "127.0.0.1", int(port)) as client:
            count = record_game_reference(client, args.out)
    else:
        from tmrl2.envs.sim.record import record_sim_reference

        try:
            lap = record_sim_reference(args.out, args.track)
        except (ValueError, RuntimeError) as exc:  # unknown track, driver never finished
            raise ConfigError(f"record-reference --track {args.track!r}: {_reason(exc)}") from None
        print(f"{lap.describe()}; use it with --set reward.terms.progress.reference={lap.path}")
        return 0
    print(
        f"saved {count} points to {args.out}; use it with "
        f"--set reward.terms.progress.reference={args.out}"
    )
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    print(yaml.safe_dump(dump_config(_config(args)), sort_keys=False), end="")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from tmrl2.net.keys import generate_keys

    for name in args.names:
        try:
            public, secret = generate_keys(args.dir, name, overwrite=args.force)
        except (FileExistsError, ValueError) as exc:
            print(f"tmrl2: {exc}", file=sys.stderr)
            return 2
        print(f"{name}: public {public} (share), secret {secret} (keep on its machine)")
    return 0


_COMMANDS = {
    "train": _cmd_train,
    "server": _cmd_server,
    "trainer": _cmd_trainer,
    "worker": _cmd_worker,
    "eval": _cmd_eval,
    "record-reference": _cmd_record_reference,
    "config": _cmd_config,
    "keys": _cmd_keys,
}


_EXTRA_COMMANDS = (
    "tmrl2.track_cli",
    "tmrl2.envs.sim.serve_cli",
    "tmrl2.envs.trackmania.commands",
    "tmrl2.envs.trackmania.plugin_cli",
    "tmrl2.report.commands",
)
"""Modules whose ``add_commands(subparsers)`` adds sub-commands and returns their handlers
(``name -> handler(args) -> exit code``). Keep their imports light: no torch at parse time."""


def _reason(exc: BaseException) -> str:
    """An exception's message on one line (pydantic: just the messages of its errors)."""
    if isinstance(exc, ValidationError):
        text = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """``tmrl2`` entry point."""
    from tmrl2.roles.launcher import dump_stacks_on_sigusr1, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    dump_stacks_on_sigusr1()
    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, NetError, CheckpointError, BridgeError) as exc:
        # errors that say what to fix: one clear line, no traceback (a ConfigError listing
        # several problems keeps one line per problem)
        print(f"tmrl2: {exc}", file=sys.stderr)
        return 2


def _role_main(role: str) -> int:
    return main([role, *sys.argv[1:]])


def server_main() -> int:
    """``tmrl2-server``."""
    return _role_main("server")


def trainer_main() -> int:
    """``tmrl2-trainer``."""
    return _role_main("trainer")


def worker_main() -> int:
    """``tmrl2-worker``."""
    return _role_main("worker")


if __name__ == "__main__":  # ``python -m tmrl2.cli``
    raise SystemExit(main())

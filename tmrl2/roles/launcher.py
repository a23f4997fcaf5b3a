"""Local launcher: server, trainer and workers as processes on this machine.

The one wiring place of ``tmrl2 train``. Processes are started with ``spawn`` (as on Windows)
and receive the resolved config as plain data. They ignore SIGINT: Ctrl-C reaches the
launcher, which sets the shared stop event so that every role finishes its step, the trainer
writes its checkpoint, and sockets close; stragglers are terminated after a grace period, so
no process outlives the run and the port is freed.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tmrl2.config.load import config_hash, dump_config, load_config, save_config
from tmrl2.config.schema import Config

log = logging.getLogger(__name__)

GRACE_S = 15.0
"""How long roles get to stop by themselves before they are terminated."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP server could listen on ``host:port`` now (SO_REUSEADDR, as ZeroMQ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def new_run_dir(config: Config) -> Path:
    """``<run.dir>/<run.name>-<timestamp>``, created."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(config.run.dir) / f"{config.run.name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(config.run.dir) / f"{config.run.name}-{stamp}-{suffix}"
    path.mkdir(parents=True)
    return path


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (it may be swapped after set-up, as
    test runners and notebooks do; a handler bound to the old stream would fail)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(level: int = logging.INFO, role: str = "") -> None:
    """Plain log lines on stderr, tagged with the role."""
    tag = f"[{role}] " if role else ""
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {tag}%(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
        handlers=[_CurrentStderr()],
    )


def _child_setup(role: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher owns Ctrl-C
    setup_logging(logging.WARNING, role)


def _server_main(data: dict[str, Any], stop: Any) -> None:
    _child_setup("server")
    from tmrl2.roles.server import Server

    config = load_config(data=data)
    server = Server(config.server, config_hash=config_hash(config), run_config=data)
    try:
        server.run(stop)
    finally:
        server.close()


def _trainer_main(
    data: dict[str, Any], address: str, run_dir: str, stop: Any, resume: bool
) -> None:
    _child_setup("trainer")
    from tmrl2.roles.trainer import run_trainer

    run_trainer(load_config(data=data), address, Path(run_dir), stop, resume)


def _worker_main(data: dict[str, Any], address: str, stop: Any, index: int) -> None:
    _child_setup(f"worker-{index}")
    from tmrl2.roles.worker import run_worker

    run_worker(load_config(data=data), address, stop, index)


class LocalRun:
    """A running local training: its processes, run folder and stop event."""

    def __init__(self, config: Config, run_dir: Path | None = None, resume: bool = False) -> None:
        if config.server.port == 0 or not port_is_free(config.server.host, config.server.port):
            port = free_port(config.server.host)
            if config.server.port:
                log.warning("port %d is busy; this run uses port %d", config.server.port, port)
            server = config.server.model_copy(update={"port": port})
            config = config.model_copy(update={"server": server})
        self.config = config
        self.run_dir = run_dir or new_run_dir(config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume = resume
        self.address = f"tcp://{config.server.host}:{config.server.port}"
        self._ctx = mp.get_context("spawn")
        self.stop_event = self._ctx.Event()
        self.processes: dict[str, mp.process.BaseProcess] = {}

    def start(self) -> LocalRun:
        save_config(self.config, self.run_dir / "config.yaml")
        data = dump_config(self.config)
        ctx, stop = self._ctx, self.stop_event
        self.processes["server"] = ctx.Process(
            target=_server_main, args=(data, stop), name="tmrl2-server"
        )
        self.processes["trainer"] = ctx.Process(
            target=_trainer_main,
            args=(data, self.address, str(self.run_dir), stop, self.resume),
            name="tmrl2-trainer",
        )
        for i in range(self.config.worker.count):
            self.processes[f"worker-{i}"] = ctx.Process(
                target=_worker_main, args=(data, self.address, stop, i), name=f"tmrl2-worker-{i}"
            )
        for proc in self.processes.values():
            proc.start()
        return self

    def wait(self, poll_s: float = 0.5) -> None:
        """Block until the trainer ends (steps/minutes reached) or a role dies."""
        while True:
            trainer = self.processes["trainer"]
            if not trainer.is_alive():
                break
            dead = [n for n, p in self.processes.items() if not p.is_alive() and p.exitcode]
            if dead:
                log.error("role(s) %s exited with an error; stopping the run", ", ".join(dead))
                break
            time.sleep(poll_s)
        self.stop()

    def stop(self) -> None:
        """Ask every role to stop, then terminate what has not stopped within the grace period."""
        self.stop_event.set()
        deadline = time.monotonic() + GRACE_S
        for proc in self.processes.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for name, proc in self.processes.items():
            if proc.is_alive():
                log.warning("%s did not stop in %.0f s; terminating it", name, GRACE_S)
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def exit_codes(self) -> dict[str, int | None]:
        return {name: proc.exitcode for name, proc in self.processes.items()}


def launch_all(config: Config, run_dir: Path | None = None, resume: bool = False) -> LocalRun:
    """Start server, trainer and workers on this machine; returns the running handle."""
    return LocalRun(config, run_dir, resume).start()


def run_local_training(
    config: Config, run_dir: Path | None = None, resume: bool = False
) -> dict[str, Any]:
    """Train on this machine until ``run.steps``/``run.minutes`` or Ctrl-C, then evaluate.

    Returns the trainer's summary plus ``eval`` (one description per evaluation episode),
    ``eval_results`` (their fields), ``eval_finished`` and ``run_dir``.
    """
    import json

    run = launch_all(config, run_dir, resume)
    try:
        run.wait()
    except KeyboardInterrupt:
        log.warning("interrupted: stopping the roles (the trainer writes its checkpoint)")
        run.stop()
    summary_path = run.run_dir / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["run_dir"] = str(run.run_dir)
    summary["exit_codes"] = run.exit_codes()
    summary["eval"] = []
    checkpoint = run.run_dir / "checkpoint.pt"
    if config.run.eval_episodes and checkpoint.is_file():
        from tmrl2.roles.evaluate import evaluate, load_policy

        eval_config, actor = load_policy(checkpoint)
        results = evaluate(eval_config, actor, config.run.eval_episodes)
        summary["eval"] = [r.describe() for r in results]
        summary["eval_results"] = [dataclasses.asdict(r) for r in results]
        summary["eval_finished"] = sum(r.finished for r in results)
    return summary

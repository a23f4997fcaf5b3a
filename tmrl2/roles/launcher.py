"""Local launcher: server, trainer and workers as processes on this machine.

The one wiring place of ``tmrl2 train``. Processes are started with ``spawn`` (as on Windows)
and receive the resolved config as plain data. They ignore SIGINT: Ctrl-C reaches the
launcher, which sets the shared stop event so that every role finishes its step, the trainer
writes its checkpoint, and sockets close; stragglers are terminated after a grace period, so
no process outlives the run and the port is freed.

With evaluation during training on (``run.eval_every_updates``/``run.eval_every_min``), an
evaluator process (:mod:`tmrl2.roles.evaluator`) evaluates the trainer's checkpoints beside
it; for a minutes-only schedule it is started shortly before its first evaluation is due. It
is not a role the run depends on: its failure is logged, never stops training, and its exit
code is apart from the roles' (``evaluator_exit_code``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import logging
import multiprocessing as mp
import os
import secrets
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmrl2.config.load import config_hash, dump_config, load_config, save_config
from tmrl2.config.schema import Config, ServerConfig
from tmrl2.net.errors import NetError

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

GRACE_S = 15.0
"""How long roles get to stop by themselves before they are terminated."""
SERVER_START_S = 60.0
"""How long the server child gets to bind and report its port."""
EVALUATOR_LEAD_S = 30.0
"""A minutes-only evaluator is started this long before its first evaluation is due (it
needs a few seconds to import torch); an updates schedule starts it with the run."""
EVALUATOR = "evaluator"
"""The evaluator's key in :attr:`LocalRun.processes`."""
DEFAULT_PORT: int = ServerConfig.model_fields["port"].default
"""``server.port``'s default: ``tmrl2 train`` binds any free port instead."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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


def _child_setup(role: str, stop: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher owns Ctrl-C
    setup_logging(logging.WARNING, role)
    dump_stacks_on_sigusr1()
    watch_parent(stop)


ORPHAN_GRACE_S = 60.0
"""How long a role whose launcher died may take to stop by itself before it exits anyway."""


def watch_parent(stop: Any, grace_s: float = ORPHAN_GRACE_S) -> threading.Thread | None:
    """Stop this role process when its launcher dies without stopping the run (killed with
    SIGKILL, crashed, its terminal closed): a daemon thread waits on the parent's sentinel,
    then sets ``stop`` (the role shuts down as after Ctrl-C: the trainer writes its last
    checkpoint) and exits the process if it still runs ``grace_s`` later. Without it, the roles
    of a killed launcher would go on forever, holding the port and the CPU. None (no thread)
    in a process that multiprocessing did not start."""
    parent = mp.parent_process()
    if parent is None:
        return None

    def watch() -> None:
        wait_for([parent.sentinel])
        logging.getLogger(__name__).warning(
            "the launcher (pid %s) is gone without stopping the run: stopping", parent.pid
        )
        stop.set()
        time.sleep(grace_s)
        os._exit(3)

    thread = threading.Thread(target=watch, name="watch-launcher", daemon=True)
    thread.start()
    return thread


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints the Python stack of every thread of this process to
    stderr (POSIX): how to see where a role that does not stop is waiting."""
    if not hasattr(signal, "SIGUSR1") or sys.__stderr__ is None:
        return
    # the process's own stderr (fd 2), whatever replaced sys.stderr (a test's capture); no
    # usable stderr: no stacks, and nothing else changes
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)


def _server_main(
    data: dict[str, Any], stop: Any, report: Connection, port: int, token: str
) -> None:
    """Bind first, then tell the parent the port (or why not): nobody can take it between."""
    _child_setup("server", stop)
    from tmrl2.roles.server import Server

    try:
        config = load_config(data=data)
        server_config = config.server.model_copy(update={"port": port})
        server = Server(
            server_config, config_hash=config_hash(config), run_config=data, run_token=token
        )
    except Exception as exc:  # reported to the parent, which says it in one line
        report.send(("error", str(exc)))
        report.close()
        return
    report.send(("port", server.port))
    report.close()
    try:
        server.run(stop)
    finally:
        server.close()


def _trainer_main(
    data: dict[str, Any],
    address: str,
    run_dir: str,
    stop: Any,
    resume: bool,
    token: str,
    samples: Any,
) -> None:
    _child_setup("trainer", stop)
    from tmrl2.roles.trainer import run_trainer

    def on_report(metrics: dict[str, Any]) -> None:
        samples.value = int(metrics["samples"])

    config = load_config(data=data)
    run_trainer(config, address, Path(run_dir), stop, resume, run_token=token, on_report=on_report)


def _evaluator_main(data: dict[str, Any], run_dir: str, stop: Any, started: float) -> None:
    _child_setup(EVALUATOR, stop)
    from tmrl2.roles.evaluator import lower_priority, run_evaluator

    lower_priority()
    run_evaluator(Path(run_dir), load_config(data=data), stop, started=started)


def _worker_main(data: dict[str, Any], address: str, stop: Any, index: int, token: str) -> None:
    _child_setup(f"worker-{index}", stop)
    from tmrl2.roles.worker import run_worker

    run_worker(load_config(data=data), address, stop, index, run_token=token)


class LaunchError(NetError):
    """The local run could not start (its server could not bind): one line, exit code 2."""


def bind_port(config: Config) -> int:
    """The port ``tmrl2 train``'s server binds: ``server.port`` when the user chose one (any
    value but 0 and the default :data:`DEFAULT_PORT`, which configs/sim_lidar.yaml ships),
    else 0 (any free port: two runs started together never collide)."""
    port = config.server.port
    return 0 if port == DEFAULT_PORT else port


class LocalRun:
    """A running local training: its processes, run folder and stop event."""

    def __init__(
        self,
        config: Config,
        run_dir: Path | None = None,
        resume: bool = False,
        on_bound: Callable[[LocalRun], None] | None = None,
    ) -> None:
        self.config = config
        self.on_bound = on_bound
        """Called once the server is bound (``address`` holds its port), before the trainer
        and the workers start: ``tmrl2 train`` prints its header there."""
        self.run_dir = run_dir or new_run_dir(config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume = resume
        self.run_token = secrets.token_hex(16)
        """Given to every role of this run; the server refuses hellos without it."""
        self.address = ""
        self.failure: str | None = None
        """Why :meth:`wait` stopped the run early (a stall), or None."""
        self._ctx = mp.get_context("spawn")
        self.stop_event = self._ctx.Event()
        self.samples = self._ctx.Value("q", -1)
        """The trainer's sample count at its latest report (-1: none yet)."""
        self.processes: dict[str, mp.process.BaseProcess] = {}
        self.started: float | None = None
        """Wall time (``time.time()``) the roles were started (None: not yet)."""
        self._evaluator_due: float | None = None
        """Wall time the evaluator is to be started (None: not, or already started)."""
        self._evaluator_dead_logged = False

    def start(self) -> LocalRun:
        """Start the server, wait until it is bound, then the trainer and the workers."""
        save_config(self.config, self.run_dir / "config.yaml")
        ctx, stop = self._ctx, self.stop_event
        port = self._start_server(dump_config(self.config))
        server = self.config.server.model_copy(update={"port": port})
        self.config = self.config.model_copy(update={"server": server})
        self.address = f"tcp://{server.host}:{port}"
        if self.on_bound is not None:
            self.on_bound(self)
        data = dump_config(self.config)
        self.processes["trainer"] = ctx.Process(
            target=_trainer_main,
            args=(
                data,
                self.address,
                str(self.run_dir),
                stop,
                self.resume,
                self.run_token,
                self.samples,
            ),
            name="tmrl2-trainer",
        )
        for i in range(self.config.worker.count):
            self.processes[f"worker-{i}"] = ctx.Process(
                target=_worker_main,
                args=(data, self.address, stop, i, self.run_token),
                name=f"tmrl2-worker-{i}",
            )
        for name, proc in self.processes.items():
            if name != "server":
                proc.start()
        self.started = time.time()
        self._plan_evaluator()
        self._maybe_start_evaluator()
        return self

    def _plan_evaluator(self) -> None:
        """When to start the evaluator (module docstring), if at all."""
        from tmrl2.roles.evaluator import enabled, refusal

        if not enabled(self.config) or self.started is None:
            return
        why = refusal(self.config)
        if why is not None:
            log.warning("%s", why)
            return
        run = self.config.run
        lead = 0.0 if run.eval_every_updates else run.eval_every_min * 60 - EVALUATOR_LEAD_S
        self._evaluator_due = self.started + max(0.0, lead)

    def _maybe_start_evaluator(self) -> None:
        if self._evaluator_due is None or time.time() < self._evaluator_due:
            return
        self._evaluator_due = None
        proc = self._ctx.Process(
            target=_evaluator_main,
            args=(dump_config(self.config), str(self.run_dir), self.stop_event, self.started),
            name="tmrl2-evaluator",
        )
        self.processes[EVALUATOR] = proc
        proc.start()

    def _start_server(self, data: dict[str, Any]) -> int:
        asked = bind_port(self.config)
        receive, report = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_server_main,
            args=(data, self.stop_event, report, asked, self.run_token),
            name="tmrl2-server",
        )
        self.processes["server"] = proc
        proc.start()
        report.close()  # the child holds the sending end: EOF when it dies
        deadline = time.monotonic() + SERVER_START_S
        answer: tuple[str, Any] | None = None
        while answer is None and time.monotonic() < deadline:
            try:
                if receive.poll(0.2):
                    answer = receive.recv()
            except EOFError:
                break
        receive.close()
        if answer is not None and answer[0] == "port":
            return int(answer[1])
        self.stop()
        host = self.config.server.host
        if answer is None:
            raise LaunchError(
                f"the server did not start within {SERVER_START_S:.0f} s (exit code "
                f"{proc.exitcode}); see the log above"
            )
        if asked:
            raise LaunchError(
                f"cannot start the server on {host}:{asked} ({answer[1]}): set server.port "
                "to a free port, or to 0 for any free one"
            )
        raise LaunchError(f"cannot start the server on {host}: {answer[1]}")

    def wait(self, poll_s: float = 0.5) -> None:
        """Block until the trainer ends (steps/minutes reached), a role dies, or no new
        sample reached the trainer for ``run.stall_timeout_s``."""
        stall_s = self.config.run.stall_timeout_s
        last_samples, last_change = self.samples.value, time.monotonic()
        while True:
            trainer = self.processes["trainer"]
            if not trainer.is_alive():
                break
            self._maybe_start_evaluator()
            dead = [n for n, p in self.roles().items() if not p.is_alive() and p.exitcode]
            self._check_evaluator()
            if dead:
                log.error("role(s) %s exited with an error; stopping the run", ", ".join(dead))
                break
            samples = self.samples.value
            settling = bool(self.config.run.steps and samples >= self.config.run.steps)
            if samples != last_samples or settling:  # settling: owed updates, no new samples
                last_samples, last_change = samples, time.monotonic()
            elif stall_s and time.monotonic() - last_change >= stall_s:
                self.failure = (
                    f"no new sample reached the trainer for {stall_s:g} s "
                    f"(run.stall_timeout_s; samples: {max(samples, 0)}): the workers are "
                    "stuck or cannot reach the server; stopping the run"
                )
                log.error("%s", self.failure)
                break
            time.sleep(poll_s)
        self.stop()

    def stop(self) -> None:
        """Ask every role to stop, then terminate what has not stopped within the grace period."""
        self.stop_event.set()
        deadline = time.monotonic() + GRACE_S
        for proc in self.processes.values():
            if proc.pid is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
        for name, proc in self.processes.items():
            if proc.pid is None:
                continue  # never started (the server failed first)
            if proc.is_alive():
                log.warning("%s did not stop in %.0f s; terminating it", name, GRACE_S)
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def _check_evaluator(self) -> None:
        proc = self.processes.get(EVALUATOR)
        if proc is None or self._evaluator_dead_logged or proc.is_alive() or not proc.exitcode:
            return
        self._evaluator_dead_logged = True
        log.warning(
            "the evaluator exited with code %s: no more evaluations during training; "
            "training goes on",
            proc.exitcode,
        )

    def roles(self) -> dict[str, mp.process.BaseProcess]:
        """The processes the run depends on: server, trainer, workers (not the evaluator)."""
        return {name: proc for name, proc in self.processes.items() if name != EVALUATOR}

    def exit_codes(self) -> dict[str, int | None]:
        """Exit code of every role (None: still running); not the evaluator's."""
        return {name: proc.exitcode for name, proc in self.roles().items()}

    def evaluator_exit_code(self) -> int | None:
        """The evaluator's exit code (None: not started, or still running)."""
        proc = self.processes.get(EVALUATOR)
        return None if proc is None else proc.exitcode


def launch_all(
    config: Config,
    run_dir: Path | None = None,
    resume: bool = False,
    on_bound: Callable[[LocalRun], None] | None = None,
) -> LocalRun:
    """Start server, trainer and workers on this machine; returns the running handle.
    ``on_bound``: :attr:`LocalRun.on_bound`."""
    return LocalRun(config, run_dir, resume, on_bound).start()


def run_local_training(
    config: Config,
    run_dir: Path | None = None,
    resume: bool = False,
    on_bound: Callable[[LocalRun], None] | None = None,
) -> dict[str, Any]:
    """Train on this machine until ``run.steps``/``run.minutes`` or Ctrl-C, then evaluate.

    Returns the trainer's summary plus ``eval`` (one description per evaluation episode),
    ``eval_results`` (their fields), ``eval_finished``, ``eval_summary``, ``run_dir``,
    ``exit_codes`` (of every role), with evaluation during training ``eval_best`` (the row of
    ``best.pt``: :mod:`tmrl2.roles.evaluator`, which also records the final checkpoint) and
    ``evaluator_exit_code``, and, when the launcher stopped the run early
    (``run.stall_timeout_s``), ``failure`` (one line). The same is written back into
    ``<run>/summary.json`` (the trainer's, when it wrote one). ``tmrl2 train`` exits 1 when a
    role failed, no sample arrived, or there is a ``failure``.

    Raises:
        LaunchError: the server could not bind (a busy ``server.port``).
    """
    import json

    run = LocalRun(config, run_dir, resume, on_bound)
    try:  # Ctrl-C while the roles are still starting must stop those already started too
        run.start()
        run.wait()
    except KeyboardInterrupt:
        log.warning("interrupted: stopping the roles (the trainer writes its checkpoint)")
        run.stop()
    summary_path = run.run_dir / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary["run_dir"] = str(run.run_dir)
    summary["exit_codes"] = run.exit_codes()
    if run.failure is not None:
        summary["failure"] = run.failure
    summary["eval"] = []
    checkpoint = run.run_dir / "checkpoint.pt"
    results = None
    eval_s = 0.0
    if config.run.eval_episodes and checkpoint.is_file():
        from tmrl2.roles.evaluate import default_tracks, evaluate, load_policy, summarize

        start = time.monotonic()
        eval_config, actor = load_policy(checkpoint, trust_config=True)  # our own run
        tracks = default_tracks(eval_config)  # every training and held-out track
        results = evaluate(eval_config, actor, config.run.eval_episodes, tracks=tracks)
        eval_s = time.monotonic() - start
        summary["eval"] = [r.describe() for r in results]
        summary["eval_results"] = [dataclasses.asdict(r) for r in results]
        summary["eval_finished"] = sum(r.finished for r in results)
        summary["eval_summary"] = summarize(results)
    _during_training(run, config, results, eval_s, summary)
    if summary_path.is_file():  # the trainer's, with the evaluations added
        tmp = summary_path.with_name(summary_path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        os.replace(tmp, summary_path)
    return summary


def _during_training(
    run: LocalRun,
    config: Config,
    results: list[Any] | None,
    eval_s: float,
    summary: dict[str, Any],
) -> None:
    """Evaluation during training, after the run: the final checkpoint recorded as one more
    evaluation (:func:`~tmrl2.roles.evaluator.record_final`), ``eval_best`` and the
    evaluator's exit code added to ``summary``."""
    from tmrl2.roles.evaluator import enabled, read_best, record_final, refusal

    if not enabled(config) or refusal(config) is not None:
        return
    if EVALUATOR in run.processes:
        summary["evaluator_exit_code"] = run.evaluator_exit_code()
    try:
        record_final(run.run_dir, config, results, config.run.eval_episodes, eval_s)
    except Exception as exc:  # an evaluation that fails does not fail the run
        log.warning("the final checkpoint was not recorded as an evaluation: %r", exc)
    best = read_best(run.run_dir)
    if best is not None:
        summary["eval_best"] = best

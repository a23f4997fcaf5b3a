"""End to end: the real roles as processes on 127.0.0.1, data and weights flowing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tmrl2.config.load import load_config
from tmrl2.roles.launcher import launch_all

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[2]

SMALL = [
    "run.eval_episodes=0",
    "trainer.start_samples=500",
    "worker.random_steps=500",
    "trainer.publish_every_updates=50",
    "trainer.checkpoint_every_s=5",
    "memory.capacity=20000",
    "algorithm.batch_size=64",
    "model.hidden_sizes=[64, 64]",
]


def test_roles_exchange_samples_and_weights(tmp_path: Path) -> None:
    config = load_config(None, [*SMALL, "run.steps=4000", "run.minutes=1.5", f"run.dir={tmp_path}"])
    start = time.monotonic()
    run = launch_all(config, tmp_path / "run")
    run.wait()
    assert time.monotonic() - start < 120
    assert all(code == 0 for code in run.exit_codes().values()), run.exit_codes()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["samples"] >= 4000
    assert summary["updates"] > 0
    # chunks carry the version of the weights the worker acted with: >= 1 means that the
    # worker received and swapped in at least one weights update from the trainer
    assert summary["worker_policy_version"] >= 1
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert "kind: sim" in (tmp_path / "run" / "config.yaml").read_text()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tmrl2", *args]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=150)


def test_cli_train_eval_and_resume(tmp_path: Path) -> None:
    sets = [a for s in SMALL if s != "run.eval_episodes=0" for a in ("--set", s)]
    run_dir = tmp_path / "run"
    proc = _run(
        "train",
        "--steps",
        "2000",
        "--run-dir",
        str(run_dir),
        *sets,
        "--set",
        "run.eval_episodes=1",
        "--set",
        "env.max_episode_steps=200",
        "--set",
        "trainer.save_memory=true",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "== summary ==" in proc.stdout and "eval 0" in proc.stdout
    ev = _run("eval", str(run_dir))
    assert ev.returncode in (0, 3), ev.stderr[-3000:]  # 3: the policy did not finish
    assert "episode 0:" in ev.stdout
    first = json.loads((run_dir / "summary.json").read_text())
    # TensorBoard's own reader finds the trainer's reports in <run>/tb, one per metrics row
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = _read_tb(run_dir / "tb")
    assert {"perf/samples_per_s", "perf/updates_per_s", "train/episodes", "loss/alpha"} <= set(
        events
    )
    assert [step for step, _ in events["perf/samples_per_s"]] == [r["samples"] for r in rows]
    assert [v for _, v in events["perf/updates_per_s"]] == pytest.approx(
        [r["updates_per_s"] for r in rows], rel=1e-5
    )

    resumed = _run(
        "train",
        "--resume",
        str(run_dir),
        "--steps",
        str(first["samples"] + 1000),
        "--set",
        "run.eval_episodes=0",
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    second = json.loads((run_dir / "summary.json").read_text())
    # counters continue from the checkpoint instead of starting again at zero
    assert second["samples"] >= first["samples"] + 1000
    assert second["updates"] > first["updates"]
    # the replay memory saved with the checkpoint came back too
    assert second["memory_size"] >= first["memory_size"] + 1000
    assert second["weights_version"] > first["weights_version"]


def _read_tb(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``logdir``, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _port_free(port: int) -> bool:
    """Whether a new server can listen on ``port`` (SO_REUSEADDR, as ZeroMQ binds: old
    connections in TIME_WAIT do not count, a socket still listening does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_ctrl_c_stops_every_role_and_frees_the_port(tmp_path: Path) -> None:
    from tmrl2.roles.launcher import free_port

    port = free_port()
    proc = _start_running(tmp_path / "run", port, subprocess.PIPE)
    try:
        children = _children(proc.pid)
        assert len(children) >= 3
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            proc.wait(timeout=90)  # roles stop in seconds; a loaded CI machine may take longer
        except subprocess.TimeoutExpired:  # say where each process waits (their stacks)
            os.killpg(proc.pid, signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):  # the stacks' time to print
                proc.wait(timeout=2)
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"tmrl2 train did not stop within 90 s of SIGINT; stderr:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert _all_gone(children, 10.0)
    assert _port_free(port)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_roles_stop_when_the_launcher_is_killed(tmp_path: Path) -> None:
    """SIGKILL of ``tmrl2 train`` itself (no Ctrl-C, no cleanup of its own): each role sees
    its launcher gone, stops as after Ctrl-C (the trainer's last checkpoint) and exits."""
    proc = _start_running(tmp_path / "run", 0, subprocess.DEVNULL)
    try:
        children = _children(proc.pid)
        assert len(children) >= 3
        checkpoint = tmp_path / "run" / "checkpoint.pt"
        before = checkpoint.stat().st_mtime_ns if checkpoint.is_file() else 0
        proc.kill()  # the launcher only: its roles are left to themselves
        proc.wait(timeout=30)
        # they stop in seconds; a loaded machine is slower
        assert _all_gone(children, 90.0), "roles still running 90 s after the launcher died"
        assert checkpoint.is_file() and checkpoint.stat().st_mtime_ns > before
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _start_running(run_dir: Path, port: int, stdout: int) -> subprocess.Popen[str]:
    """``tmrl2 train`` (the small job) in a session of its own, returned once its first
    report is written: every role runs. Killed if it dies or takes over 60 s."""
    proc = subprocess.Popen(
        _cli(
            "train",
            "--run-dir",
            str(run_dir),
            "--set",
            f"server.port={port}",
            *[a for s in SMALL for a in ("--set", s)],
        ),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    metrics = run_dir / "metrics.jsonl"
    try:
        while not (metrics.is_file() and metrics.read_text().strip()):  # a report: running
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.5)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc


def _all_gone(pids: list[int], timeout_s: float) -> bool:
    """Whether every process of ``pids`` has exited within ``timeout_s`` (polled)."""
    deadline = time.monotonic() + timeout_s
    while [pid for pid in pids if _alive(pid)]:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_image_job_runs_through_the_roles_with_compact_frames(tmp_path: Path) -> None:
    """configs/sim_image.yaml end to end: CNN + DrQ, frames sent once, expanded by the
    trainer into a memory that stores each frame once."""
    config = load_config(
        ROOT / "configs" / "sim_image.yaml",
        [
            "run.eval_episodes=0",
            "run.steps=700",
            "run.minutes=2",
            "trainer.start_samples=300",
            "worker.random_steps=300",
            "memory.capacity=5000",
            "algorithm.batch_size=16",
            f"run.dir={tmp_path}",
        ],
    )
    assert config.worker.compact_frames
    run = launch_all(config, tmp_path / "run")
    run.wait()
    assert all(code == 0 for code in run.exit_codes().values()), run.exit_codes()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["samples"] >= 700 and summary["updates"] > 0


def test_train_on_a_busy_port_it_was_told_to_use_is_one_line_and_exit_code_2(
    tmp_path: Path,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = _run("train", "--run-dir", str(tmp_path / "run"), "--set", f"server.port={port}")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"tmrl2: cannot start the server on 127.0.0.1:{port}")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_two_runs_started_together_do_not_collide(tmp_path: Path) -> None:
    """The server binds any free port first and reports it: no race, no fixed 55555."""
    sets = [a for s in [*SMALL, "run.steps=600", "run.minutes=1.5"] for a in ("--set", s)]
    procs = [
        subprocess.Popen(
            _cli("train", "--run-dir", str(tmp_path / f"run{i}"), *sets),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err[-3000:]
    for i in range(2):
        summary = json.loads((tmp_path / f"run{i}" / "summary.json").read_text())
        assert summary["samples"] >= 600

"""Run a script in tmrl 0.7.1's own virtual environment and read back its figures.

tmrl is installed apart from the project (``/work/shared/tools/install_tmrl_baseline.sh``);
benchmarks call it in a subprocess with a prepared home folder (tmrl reads its config from
``~/TmrlData`` at import time and would otherwise try to download its resources).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

BASELINE = Path(os.environ.get("TMRL_BASELINE_DIR", Path.home() / ".cache/tmrl-baseline"))


def tmrl_python(explicit: str | None = None) -> Path | None:
    """tmrl's interpreter, or ``None`` (then say how to install it)."""
    candidate = Path(explicit) if explicit else BASELINE / "venv/bin/python"
    return candidate if candidate.is_file() else None


def tmrl_command(
    script: str, payload: dict[str, Any], home: str, python: str | None
) -> tuple[list[str], dict[str, str]] | None:
    """The command line and environment that run ``script`` with tmrl, or ``None`` (with the
    reason printed) where tmrl is not installed."""
    exe = tmrl_python(python)
    if exe is None:
        print(
            f"tmrl 0.7.1 not found ({python or BASELINE / 'venv/bin/python'}): skipping its "
            "figures; install it with /work/shared/tools/install_tmrl_baseline.sh"
        )
        return None
    return [str(exe), "-c", script, json.dumps(payload)], tmrl_environ(home)


def tmrl_environ(home: str) -> dict[str, str]:
    """The environment of a tmrl process: ``HOME`` is the baseline's data folder ``home``
    (``home_lidar``, ``home_lidar_redq`` or ``home_full``: the config tmrl reads at import)."""
    return {**os.environ, "HOME": str(BASELINE / home), "OMP_NUM_THREADS": "1"}


def run_tmrl(
    script: str,
    payload: dict[str, Any],
    home: str = "home_lidar",
    timeout_s: float = 900,
    python: str | None = None,
) -> dict[str, float] | None:
    """The ``RESULT {json}`` line the script prints, or ``None`` with the reason printed."""
    command = tmrl_command(script, payload, home, python)
    if command is None:
        return None
    cmd, env = command
    try:
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        print(f"tmrl took longer than {timeout_s:g} s: skipping its figures")
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    print(f"tmrl failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return None


class TmrlProcess:
    """tmrl's interpreter kept running between rounds, so that its rounds and ours can alternate
    (the machine's speed drifts; paired rounds cancel the drift out of the ratios).

    The script sets up, prints ``READY {json}``, then answers each JSON request line on stdin
    with one ``RESULT {json}`` line on stdout.
    """

    def __init__(self, proc: subprocess.Popen[str], ready: dict[str, Any]) -> None:
        self._proc = proc
        self.ready = ready
        """What the script reported when it was ready (e.g. its parameter count)."""

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, wait for its ``RESULT``."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            if line.startswith("RESULT "):
                return dict(json.loads(line[len("RESULT ") :]))
        raise RuntimeError(f"tmrl exited (code {self._proc.wait()}) before answering {request}")

    def close(self) -> None:
        """Stop the interpreter."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def start_tmrl(
    script: str, payload: dict[str, Any], home: str = "home_lidar", python: str | None = None
) -> TmrlProcess | None:
    """Start ``script`` in tmrl's environment and wait for ``READY``; ``None`` (with the reason
    printed) where tmrl is not installed or the script fails."""
    command = tmrl_command(script, payload, home, python)
    if command is None:
        return None
    cmd, env = command
    # a file, not a pipe: a full stderr pipe would block tmrl; it lives as long as the process
    errors = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("READY"):
            return TmrlProcess(proc, dict(json.loads(line[len("READY") :] or "{}")))
    errors.seek(0)
    print(f"tmrl failed (exit {proc.wait()}):\n{errors.read()[-2000:]}")
    return None

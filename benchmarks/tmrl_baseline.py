"""Run a script in tmrl 0.7.1's own virtual environment and read back its figures.

tmrl is installed apart from the project (``/work/shared/tools/install_tmrl_baseline.sh``);
benchmarks call it in a subprocess with a prepared home folder (tmrl reads its config from
``~/TmrlData`` at import time and would otherwise try to download its resources).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

BASELINE = Path(os.environ.get("TMRL_BASELINE_DIR", Path.home() / ".cache/tmrl-baseline"))


def tmrl_python(explicit: str | None = None) -> Path | None:
    """tmrl's interpreter, or ``None`` (then say how to install it)."""
    candidate = Path(explicit) if explicit else BASELINE / "venv/bin/python"
    return candidate if candidate.is_file() else None


def run_tmrl(
    script: str,
    payload: dict[str, Any],
    home: str = "home_lidar",
    timeout_s: float = 900,
    python: str | None = None,
) -> dict[str, float] | None:
    """The ``RESULT {json}`` line the script prints, or ``None`` with the reason printed."""
    exe = tmrl_python(python)
    if exe is None:
        print(
            f"tmrl 0.7.1 not found ({python or BASELINE / 'venv/bin/python'}): skipping its "
            "figures; install it with /work/shared/tools/install_tmrl_baseline.sh"
        )
        return None
    env = {**os.environ, "HOME": str(BASELINE / home), "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [str(exe), "-c", script, json.dumps(payload)],
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

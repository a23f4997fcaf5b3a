"""The prepared GPU check (benchmarks/bench_learner_device.py) runs end to end: a session that
is lent a GPU has minutes for it, so a crash there would waste them. Here it runs on the CPU
with tiny networks and the AMP paths forced on (its timings mean nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_learner_device.py"


def test_device_benchmark_prints_every_figure() -> None:
    args = "--device cpu --rounds 1 --updates 2 --hidden 16 --batch 16 --image-batch 4"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args.split(), "--amp-on-cpu", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SCRIPT.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for amp in ("off", "bf16", "fp16"):
        assert any(line.startswith("SAC updates/s") and f"amp {amp}" in line for line in lines)
        assert any("batched ensemble" in line and f"amp {amp}" in line for line in lines)
        assert any(line.startswith("image CNN") and f"amp {amp}" in line for line in lines)
    assert sum("Python loop over 10 critics" in line for line in lines) == 3

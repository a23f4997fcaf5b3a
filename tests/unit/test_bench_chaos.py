"""Smoke run of the chaos benchmark: 2 workers, one kill of each role, the hostile peer at a
low rate; the report exists, the trainer kept training after each kill, no negative term."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_chaos.py"
TERMS = (
    "sent_by_workers",
    "received_by_trainer",
    "counted_by_server",
    "lost_worker",
    "lost_server",
    "lost_trainer",
    "lost_final_stop",
)


def test_chaos_smoke(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    command = [
        sys.executable,
        str(BENCH),
        "--workers=2",
        "--minutes=0.9",
        "--kill-every-s",
        "7",
        "9",
        "--max-down-s=1",
        "--schedule=trainer,server,worker",
        "--quiet-s=18",
        "--hostile-rate=2",
        "--checkpoint-every-s=5",
        "--eval-episodes=1",
        f"--json={out}",
        "--set=memory.capacity=100000",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=560)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    kills = report["kills"]["by_role"]
    assert kills == {"server": 1, "trainer": 1, "worker": 1}, report["kills"]["events"]
    growth = report["trainer"]["growth_after_last_restart"]
    assert growth["samples"] > 0 and growth["updates"] > 0, report["trainer"]
    for rec in report["kills"]["recoveries"]:  # the trainer saw new samples after each kill
        if rec["signal"] != "exit":
            assert rec["recover_s"] is not None, report["kills"]["recoveries"]
    accounting = report["accounting"]
    for term in TERMS:
        value = accounting[term]
        assert not isinstance(value, int) or value >= 0, (term, accounting)
    assert accounting["sent_by_workers"] > 0 and accounting["received_by_trainer"] > 0
    assert sum(report["hostile"].values()) > 0
    assert report["cpu"]["model"]
    assert "sample accounting" in done.stdout

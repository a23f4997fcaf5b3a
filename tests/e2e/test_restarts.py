"""Restarts with real processes: the server killed and restarted under a running trainer and
worker, down for longer than the trainer's send timeout; training goes on (issue 14)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tmrl2.config.load import load_config
from tmrl2.roles.launcher import free_port
from tmrl2.roles.trainer import Trainer, build_trainer

pytestmark = pytest.mark.e2e

SMALL = [
    "run.eval_episodes=0",
    "trainer.start_samples=300",
    "worker.random_steps=300",
    "trainer.publish_every_updates=2",  # many weights: the send queue fills in an outage
    "algorithm.batch_size=32",
    "model.hidden_sizes=[32,32]",
    "memory.capacity=20000",
    "trainer.updates_per_step=1",
]
SEND_TIMEOUT_MS = 1000
"""The trainer's send timeout here (10 s by default): the outage lasts longer."""


def _tmrl2(role: str, *sets: str) -> subprocess.Popen[str]:
    args = [a for item in sets for a in ("--set", item)]
    return subprocess.Popen(
        [sys.executable, "-m", "tmrl2", role, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_server_killed_and_restarted_training_goes_on(tmp_path: Path) -> None:
    port = free_port()
    sets = [*SMALL, f"server.port={port}"]
    config = load_config(None, [*sets, f"run.dir={tmp_path}"])
    (tmp_path / "run").mkdir()
    stop = threading.Event()
    trainer: Trainer = build_trainer(
        config,
        f"tcp://127.0.0.1:{port}",
        tmp_path / "run",
        stop,
        live=False,
        send_timeout_ms=SEND_TIMEOUT_MS,
    )
    result: dict[str, Any] = {}

    def train() -> None:
        try:
            result["summary"] = trainer.run()
        except BaseException as exc:  # reported by the test
            result["error"] = exc

    server = _tmrl2("server", *sets)
    worker = _tmrl2("worker", *sets)
    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    procs = [server, worker]
    try:
        c = trainer.counters
        _until(lambda: c["updates"] > 50 and c["weights_version"] >= 2, 90, "training")
        server.kill()
        server.wait(timeout=10)
        down_at, samples, updates = time.monotonic(), c["samples"], c["updates"]
        version = c["weights_version"]
        # down for more than the send timeout, while the trainer keeps publishing into a
        # full send queue (its weights wait, coalesced, instead of blocking or raising)
        _until(lambda: trainer.outbox.weights is not None, 60, "a full send queue")
        _until(
            lambda: (
                time.monotonic() - down_at > 3 * SEND_TIMEOUT_MS / 1000
                and c["weights_version"] > version + 2
            ),
            60,
            "publishes during the outage",
        )
        assert thread.is_alive(), result
        server = _tmrl2("server", *sets)
        procs.append(server)
        _until(lambda: c["samples"] > samples + 1000, 90, "samples after the restart")
        _until(lambda: c["updates"] > updates + 200, 60, "updates after the restart")
        assert thread.is_alive() and worker.poll() is None
    finally:
        stop.set()
        thread.join(timeout=30)
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
    assert "error" not in result, result
    summary = result["summary"]
    assert summary["samples"] > samples + 1000 and summary["rejected_chunks"] == 0
    # what was lost on the way during the outage is counted, not silently missing
    assert summary["samples_lost"] >= 0

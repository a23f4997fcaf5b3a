"""The roles started apart, as on separate machines: `tmrl2 server|trainer|worker` with
CurveZMQ keys on 127.0.0.1; and a worker with someone else's key gets nothing through."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tmrl2.roles.launcher import free_port

pytestmark = pytest.mark.e2e

SMALL = [
    "run.eval_episodes=0",
    "trainer.start_samples=300",
    "worker.random_steps=300",
    "trainer.publish_every_updates=50",
    "algorithm.batch_size=32",
    "model.hidden_sizes=[32,32]",
    "memory.capacity=10000",
    # a worker started before the trainer sends chunks of its first policy up to its credit,
    # and gets credit back as the trainer drains them: with the default 8 chunks in flight a
    # fast machine made all 1500 steps before the first weights reached the worker
    "server.worker_credit=2",
]


def _tmrl2(*args: str) -> list[str]:
    return [sys.executable, "-m", "tmrl2", *args]


def _sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def test_roles_apart_with_curve_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    subprocess.run(
        _tmrl2("keys", "server", "trainer", "pc1", "stranger", "--dir", str(keys)),
        check=True,
        capture_output=True,
        timeout=60,
    )
    authorized = keys / "authorized"
    authorized.mkdir()
    for name in ("trainer", "pc1"):
        (authorized / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    port = free_port()
    common = [*SMALL, f"server.port={port}"]
    server = subprocess.Popen(
        _tmrl2(
            "server",
            *_sets(
                *common,
                f"server.secret_key={keys / 'server.key_secret'}",
                f"server.authorized_keys={authorized}",
                f"server.trainer_keys={keys / 'trainer.key'}",
            ),
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = subprocess.Popen(
        _tmrl2(
            "worker",
            *_sets(
                *common,
                f"worker.server_key={keys / 'server.key'}",
                f"worker.secret_key={keys / 'pc1.key_secret'}",
            ),
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        trainer = subprocess.run(
            _tmrl2(
                "trainer",
                "--run-dir",
                str(tmp_path / "run"),
                *_sets(
                    *common,
                    "run.steps=1500",
                    f"trainer.server_key={keys / 'server.key'}",
                    f"trainer.secret_key={keys / 'trainer.key_secret'}",
                ),
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trainer.returncode == 0, trainer.stderr[-3000:]
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["samples"] >= 1500 and summary["worker_policy_version"] >= 1
        # a key the server does not know: one line saying which key to authorize, exit 2
        stranger = subprocess.run(
            _tmrl2(
                "worker",
                *_sets(
                    *common,
                    "worker.name=stranger",
                    "worker.connect_timeout_s=20",
                    f"worker.server_key={keys / 'server.key'}",
                    f"worker.secret_key={keys / 'stranger.key_secret'}",
                ),
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stranger.returncode == 2, stranger.stderr[-2000:]
        last = stranger.stderr.strip().splitlines()[-1]
        assert last.startswith("tmrl2: ") and "stranger.key" in last, stranger.stderr[-2000:]
        assert "Traceback" not in stranger.stderr
    finally:
        for proc in (worker, server):
            proc.send_signal(signal.SIGINT)
        for proc in (worker, server):
            try:
                proc.wait(timeout=60)  # seconds normally; slack for a loaded machine
            except subprocess.TimeoutExpired:
                proc.kill()
    assert worker.returncode == 0 and server.returncode == 0


def test_non_loopback_bind_without_keys_is_refused() -> None:
    proc = subprocess.run(
        _tmrl2("server", *_sets("server.host=0.0.0.0", "server.port=0")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("tmrl2: refusing to bind 0.0.0.0") and "Traceback" not in proc.stderr
    )
    assert "allow_insecure" in proc.stderr

"""Alarms (issue 17): each fires on an injected fault, once when it starts and once when it
clears, and none on a healthy run; NaN losses or weights stop the trainer and keep the last
good checkpoint; alarms reach ``alarms.jsonl``, the progress line and a webhook, and a broken
webhook never blocks or stops the trainer."""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from rolekit import (
    FakeClock,
    FakeHub,
    FakeLearner,
    box_chunk,
    make_trainer,
    make_worker,
    tiny_config,
)

from tmrl2.checkpoint import CHECKPOINT_NAME, load_checkpoint
from tmrl2.cli import _run_failure
from tmrl2.config.load import ConfigError, load_config
from tmrl2.memory.batch import Batch
from tmrl2.net.codec import Message
from tmrl2.roles.trainer import Trainer
from tmrl2.roles.worker import Worker
from tmrl2.telemetry import alarms as alarms_module
from tmrl2.telemetry.alarms import ALARMS_NAME, Alarms, nonfinite_losses
from tmrl2.telemetry.progress import format_line

REPORTING = ("run.log_every_s=1",)
"""A report every second of the fake clock (the tiny config reports every 1000 s)."""


def _records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / ALARMS_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _changes(run_dir: Path) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["state"], r["subject"]) for r in _records(run_dir)]


def _drive(
    trainer: Trainer,
    workers: list[Worker],
    clock: FakeClock,
    seconds: float,
    step_s: float = 0.25,
    steps: int = 20,
) -> None:
    """Workers and trainer in turns for ``seconds`` of the fake clock (``steps`` steps of
    each worker per trainer pass); stops early when the trainer is done."""
    end = clock.t + seconds
    while clock.t < end and not trainer.done():
        for _ in range(steps):
            for worker in workers:
                worker.step(wait_ms=0)
        trainer.step()
        clock.advance(step_s)


def _team(
    tmp_path: Path, *sets: str, workers: int = 1, hub: FakeHub | None = None, real: bool = False
) -> tuple[Trainer, list[Worker], FakeClock, FakeHub]:
    config = tiny_config(*REPORTING, *sets)
    clock, hub = FakeClock(), hub or FakeHub()
    trainer = make_trainer(config, hub, clock=clock, run_dir=tmp_path, real_learner=real)
    team = [make_worker(config, hub, f"w{i}", clock=clock) for i in range(workers)]
    trainer.start()
    for worker in team:
        worker.start()
    return trainer, team, clock, hub


def _feed(trainer: Trainer, clock: FakeClock, seconds: float, **meta: Any) -> None:
    """One well-formed chunk (with ``meta``) per trainer pass, for ``seconds``, acted with
    the newest weights (no policy lag)."""
    end = clock.t + seconds
    while clock.t < end:
        version = {"policy_version": trainer.counters["weights_version"]}
        chunk = box_chunk(**{**version, **meta})
        trainer.client.inbox.append(chunk)  # type: ignore[union-attr]
        trainer.step()
        clock.advance(0.25)


# ---------------------------------------------------------------------- NaN stops
class NanLearner(FakeLearner):
    """Finite losses for ``after`` updates, then NaN."""

    def __init__(self, model: Any, after: int) -> None:
        super().__init__(model)
        self.after = after

    def update(self, batch: Batch) -> dict[str, float]:
        losses = super().update(batch)
        return {"critic": math.nan, "q_mean": 1.0} if self.updates > self.after else losses


def test_nan_losses_stop_the_trainer_and_keep_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer, team, clock, hub = _team(tmp_path, "trainer.checkpoint_every_s=1")
    trainer.algo = NanLearner(trainer.model, after=60)
    _drive(trainer, team, clock, seconds=60)
    assert trainer.done() and trainer.failure is not None
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["updates"]
    assert trainer.counters["updates"] == 60 and 0 < saved < 60
    line = trainer.failure
    assert line == (
        "losses became NaN (critic=nan) at update 61; stopping; the last good checkpoint "
        f"(update {saved}) is kept in {tmp_path}"
    )
    version = hub.weights_version
    trainer.finish()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["updates"] == saved
    assert hub.weights_version == version  # no weights went out after the NaN
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failure"] == line and _run_failure(summary) == line
    [record] = _records(tmp_path)
    assert (record["kind"], record["state"], record["severity"]) == (
        "nan_loss",
        "raised",
        "critical",
    )
    assert record["message"] == line and record["updates"] == 60 and record["elapsed_s"] > 0


def test_nan_weights_are_never_saved(tmp_path: Path) -> None:
    trainer, team, clock, _ = _team(tmp_path, "trainer.checkpoint_every_s=1")
    _drive(trainer, team, clock, seconds=5)
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["updates"]
    assert saved > 0 and trainer.failure is None
    with torch.no_grad():
        next(trainer.model.critic.parameters()).view(-1)[0] = math.inf
    _drive(trainer, team, clock, seconds=5)
    assert trainer.done() and trainer.failure is not None
    assert trainer.failure.startswith("weights became NaN or infinite by update ")
    assert trainer.failure.endswith(
        f"the last good checkpoint (update {saved}) is kept in {tmp_path}"
    )
    trainer.finish()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["counters"]["updates"] == saved
    assert _changes(tmp_path) == [("nan_weights", "raised", "")]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert _run_failure(summary) == trainer.failure


def test_a_nan_before_any_checkpoint_says_there_is_none(tmp_path: Path) -> None:
    trainer, team, clock, _ = _team(tmp_path)
    trainer.algo = NanLearner(trainer.model, after=0)
    _drive(trainer, team, clock, seconds=10)
    assert trainer.failure is not None
    assert trainer.failure.endswith(f"no checkpoint was written yet in {tmp_path}")
    trainer.finish()
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_nonfinite_losses() -> None:
    assert nonfinite_losses({"a": 1.0, "b": -3.0}) is None
    assert nonfinite_losses({"a": math.inf, "b": 0.0}) == "infinite (a=inf)"
    assert nonfinite_losses({"a": -math.inf, "b": math.nan}) == "NaN (a=-inf, b=nan)"


# ---------------------------------------------------------------------- each alarm
class QLearner(FakeLearner):
    q = 5.0

    def update(self, batch: Batch) -> dict[str, float]:
        super().update(batch)
        return {"critic": 0.0, "q_mean": self.q}


def test_exploding_q_fires_once_and_clears_once(tmp_path: Path) -> None:
    trainer, team, clock, _ = _team(tmp_path)
    learner = trainer.algo = QLearner(trainer.model)
    _drive(trainer, team, clock, seconds=5)
    assert _changes(tmp_path) == []
    learner.q = -3e5
    _drive(trainer, team, clock, seconds=5)  # five reports: one alarm
    assert _changes(tmp_path) == [("exploding_q", "raised", "")]
    assert "|Q| = 3e+05 above logging.alarms.q_abs_max = 10000" in _records(tmp_path)[0]["message"]
    learner.q = 50.0
    _drive(trainer, team, clock, seconds=5)
    assert _changes(tmp_path)[1:] == [("exploding_q", "cleared", "")]
    assert trainer.failure is None  # an alarm, not a stop


def test_no_samples_fires_after_the_quiet_time_and_clears(tmp_path: Path) -> None:
    trainer, team, clock, _ = _team(tmp_path, "logging.alarms.no_samples_s=20")
    _drive(trainer, team, clock, seconds=5)
    _drive(trainer, [], clock, seconds=15)  # the workers are silent
    assert _changes(tmp_path) == []
    _drive(trainer, [], clock, seconds=10)
    assert _changes(tmp_path) == [("no_samples", "raised", "")]
    assert "no new sample for 2" in _records(tmp_path)[0]["message"]
    _drive(trainer, team, clock, seconds=5)
    assert _changes(tmp_path)[1:] == [("no_samples", "cleared", "")]


def test_a_lost_worker_fires_by_name_and_clears_when_it_is_back(tmp_path: Path) -> None:
    trainer, (w0, w1), clock, _ = _team(tmp_path, "logging.alarms.worker_lost_s=30", workers=2)
    _drive(trainer, [w0, w1], clock, seconds=10)
    _drive(trainer, [w0], clock, seconds=20)  # w1 silent; w0 still delivers
    assert _changes(tmp_path) == []
    _drive(trainer, [w0], clock, seconds=20)
    assert _changes(tmp_path) == [("worker_lost", "raised", "w1")]
    assert format_line({**trainer.metrics(), **trainer.alarms.shown()}).endswith(
        " | ALARM: worker_lost"
    )
    _drive(trainer, [w0, w1], clock, seconds=5)
    assert _changes(tmp_path)[1:] == [("worker_lost", "cleared", "w1")]
    assert trainer.alarms.shown() == {}


class DeafHub(FakeHub):
    """A server that never forwards the weights to the workers."""

    def route(self, sender: Any, msg: Message) -> None:
        if msg.kind == "weights":
            self.weights_version = max(self.weights_version, int(msg.meta["version"]))
            return
        super().route(sender, msg)


def test_policy_lag_fires_when_workers_never_get_new_weights(tmp_path: Path) -> None:
    trainer, team, clock, _ = _team(tmp_path, "logging.alarms.policy_lag_max=10", hub=DeafHub())
    assert isinstance(trainer.algo, FakeLearner)
    _drive(trainer, team, clock, seconds=20)
    assert (
        trainer.counters["weights_version"] > 10 and trainer.counters["worker_policy_version"] == 0
    )
    assert _changes(tmp_path) == [("policy_lag", "raised", "")]
    assert "workers do not get or apply new weights" in _records(tmp_path)[0]["message"]


def test_dropped_chunks_fire_per_drop_window(tmp_path: Path) -> None:
    trainer, _, clock, _ = _team(tmp_path)
    _feed(trainer, clock, seconds=5)
    malformed = box_chunk()
    malformed.meta["n"] = 7
    trainer.client.inbox.append(malformed)  # type: ignore[union-attr]
    _feed(trainer, clock, seconds=5)
    assert _changes(tmp_path) == [("dropped_chunks", "raised", "")]
    assert "+1 rejected_chunks" in _records(tmp_path)[0]["message"]
    _feed(trainer, clock, seconds=alarms_module.DROPPED_QUIET_S + 2)
    assert _changes(tmp_path)[1:] == [("dropped_chunks", "cleared", "")]
    # samples lost on the way (seq 2 never came): a new window
    _feed(trainer, clock, seconds=1, worker="lossy", session="s", seq=1, sent=10)
    _feed(trainer, clock, seconds=0.25, worker="lossy", session="s", seq=3, sent=30)
    _feed(trainer, clock, seconds=2)
    assert _changes(tmp_path)[2:] == [("dropped_chunks", "raised", "")]
    assert "+10 samples_lost" in _records(tmp_path)[2]["message"]


def test_return_stall_fires_when_the_mean_return_stops_improving(tmp_path: Path) -> None:
    trainer, _, clock, _ = _team(tmp_path, "logging.alarms.return_stall_min=1")
    for i in range(30):  # a better return every 4 s for 2 minutes: learning
        _feed(trainer, clock, seconds=4, episodes=[{"return": float(i), "steps": 10}])
    assert _changes(tmp_path) == []
    _feed(trainer, clock, seconds=70, episodes=[{"return": 0.0, "steps": 10}])
    assert _changes(tmp_path) == [("return_stall", "raised", "")]
    _feed(trainer, clock, seconds=2, episodes=[{"return": 1e4, "steps": 10}])
    assert _changes(tmp_path)[1:] == [("return_stall", "cleared", "")]


def test_a_healthy_run_raises_no_alarm(tmp_path: Path) -> None:
    trainer, team, clock, _ = _team(
        tmp_path,
        "logging.alarms.no_samples_s=5",
        "logging.alarms.worker_lost_s=5",
        "logging.alarms.policy_lag_max=10",
        "logging.alarms.return_stall_min=5",
        "trainer.checkpoint_every_s=5",
        "trainer.updates_per_step=0.2",  # fewer SAC updates: a shorter test
        workers=2,
        real=True,  # SAC: its real losses and Q values are checked
    )
    _drive(trainer, team, clock, seconds=20, step_s=0.1, steps=5)
    trainer.finish()
    assert trainer.counters["updates"] > 200 and trainer.counters["episodes"] > 50
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(rows) > 15 and all("alarms" not in json.loads(row) for row in rows)
    assert trainer.failure is None and _records(tmp_path) == []
    assert "failure" not in json.loads((tmp_path / "summary.json").read_text())


def test_alarms_check_is_state_changes_only() -> None:
    config = load_config(None, ["logging.alarms.no_samples_s=10"]).logging.alarms
    alarms = Alarms(config)
    metrics = {"samples": 100, "loss/q_mean": 2e4}
    first = alarms.check(metrics, now=0.0)
    assert [(a.kind, a.active) for a in first] == [("exploding_q", True)]
    assert alarms.check(metrics, now=5.0) == []
    later = alarms.check({**metrics, "loss/q_mean": 1.0}, now=12.0)
    assert [(a.kind, a.active) for a in later] == [("exploding_q", False), ("no_samples", True)]
    assert later[1].time == 12.0 and "no new sample for 12 s" in later[1].message
    assert alarms.shown() == {"alarms": ["no_samples"]}


def test_the_progress_line_shows_the_active_alarms() -> None:
    metrics = {"samples": 10, "samples_per_s": 1.0, "updates": 2, "updates_per_s": 1.0}
    metrics |= {"elapsed_s": 3.0, "updates_per_step": 0.5}
    line = format_line(metrics)
    assert "ALARM" not in line
    alarmed = format_line({**metrics, "alarms": ["no_samples", "worker_lost"]})
    assert alarmed == f"{line} | ALARM: no_samples, worker_lost"


def test_the_webhook_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="webhook_url"):
        load_config(None, ["logging.alarms.webhook_url=file:///etc/passwd"])


# ---------------------------------------------------------------------- webhook
class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []
    got = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()
        self.got.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_webhook_receives_each_alarm_as_json(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        trainer, _, clock, _ = _team(
            tmp_path, f"logging.alarms.webhook_url={url}", "logging.alarms.no_samples_s=5"
        )
        clock.advance(1)
        trainer.step()  # the first report: the clock of no_samples starts
        clock.advance(6)
        trainer.step()
        assert _Hook.got.wait(timeout=30), "the webhook got no POST"
        trainer.finish()
    finally:
        server.shutdown()
        server.server_close()
    content_type, record = _Hook.received[0]
    assert content_type == "application/json"
    assert (record["kind"], record["state"], record["severity"]) == (
        "no_samples",
        "raised",
        "warning",
    )
    assert record == _records(tmp_path)[0]
    assert record["text"].startswith(f"tmrl2 {tmp_path.name}: ALARM no_samples raised: no new")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_webhook_that_refuses_never_blocks_or_stops_the_trainer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook"  # nothing listens there
    trainer, team, clock, _ = _team(
        tmp_path, f"logging.alarms.webhook_url={url}", "logging.alarms.no_samples_s=3"
    )
    with caplog.at_level(logging.WARNING, logger="tmrl2.telemetry.alarms"):
        for _ in range(3):  # raised, cleared, raised, ...: every one posted and refused
            _drive(trainer, [], clock, seconds=5)
            _drive(trainer, team, clock, seconds=2)
        started = time.monotonic()
        trainer.finish()
        assert time.monotonic() - started < alarms_module.WEBHOOK_CLOSE_S + 5
    assert [k for k, _, _ in _changes(tmp_path)] == ["no_samples"] * 6
    assert trainer.failure is None and trainer.counters["updates"] > 0
    hook = trainer.alarms._hook
    assert hook is not None and hook.sent == 0
    failures = [r for r in caplog.records if "alarm webhook" in r.getMessage()]
    assert len(failures) == 1 and "failed" in failures[0].getMessage()


def test_a_webhook_that_hangs_never_blocks_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alarms_module, "WEBHOOK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(alarms_module, "WEBHOOK_CLOSE_S", 0.5)
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        trainer, _, clock, _ = _team(
            tmp_path, f"logging.alarms.webhook_url={url}", "logging.alarms.no_samples_s=1"
        )
        slowest = 0.0
        for _ in range(10):  # alarms raised and cleared while the hook hangs
            clock.advance(2)
            started = time.monotonic()
            trainer.report()
            slowest = max(slowest, time.monotonic() - started)
            trainer.client.inbox.append(box_chunk())  # type: ignore[union-attr]
            trainer.step()
            trainer.report()
        trainer.finish()
    assert len(_records(tmp_path)) >= 10
    assert slowest < 0.5, f"a report waited {slowest:.2f} s for the webhook"

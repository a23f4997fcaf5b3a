"""Every wait says what it waits for (after 30 s, then every 60 s); a full disk does not stop
the trainer (issue 14)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest
from rolekit import FakeClock, FakeHub, make_trainer, make_worker, tiny_config

from tmrl2.checkpoint import DiskFullError
from tmrl2.roles import runfolder as runfolder_module


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_worker_waiting_for_credit_says_so_after_30_s_then_every_60_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tiny_config()
    hub, clock = FakeHub(worker_credit=1), FakeClock()
    worker = make_worker(config, hub, clock=clock)
    worker.start()
    hub.route = lambda sender, msg: None  # type: ignore[method-assign]  # credit never returns
    caplog.set_level(logging.WARNING)
    for _ in range(3 * config.worker.chunk_steps):
        worker.step(wait_ms=0)
    assert worker.steps == 2 * config.worker.chunk_steps  # one chunk sent, one waiting
    clock.advance(29)
    worker.step(wait_ms=0)
    assert not _warnings(caplog, "waiting for chunk credit")
    clock.advance(2)
    worker.step(wait_ms=0)
    (line,) = _warnings(caplog, "waiting for chunk credit")
    assert "31 s" in line and "no chunk credit" in line
    clock.advance(30)
    worker.step(wait_ms=0)
    assert len(_warnings(caplog, "waiting for chunk credit")) == 1
    clock.advance(31)
    worker.step(wait_ms=0)
    assert len(_warnings(caplog, "waiting for chunk credit")) == 2


def test_worker_waiting_for_the_trainer_and_trainer_waiting_for_samples_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tiny_config()
    hub, clock = FakeHub(), FakeClock()
    trainer = make_trainer(config, hub, clock=clock)
    trainer.start()
    caplog.set_level(logging.WARNING)
    trainer.step()
    clock.advance(31)
    trainer.step()
    (line,) = _warnings(caplog, "trainer waiting for samples")
    assert "are workers running" in line and "memory 0/40" in line
    worker = make_worker(config, hub, clock=clock)
    worker.start()
    for _ in range(20):  # fill the memory: the trainer becomes ready, then stands still
        for _ in range(10):
            worker.step(wait_ms=0)
        trainer.step()
    assert worker.pacer.ready
    for _ in range(200):
        worker.step(wait_ms=0)
    assert worker.pacer.must_wait(worker.steps)
    clock.advance(31)
    worker.step(wait_ms=0)
    (line,) = _warnings(caplog, "waiting for the trainer")
    assert "updates_per_step=0.5" in line


@pytest.mark.parametrize(
    "error",
    [
        DiskFullError(Path("run/checkpoint.pt"), 0),
        OSError(errno.ENOSPC, "No space left on device", "run/memory"),
    ],
)
def test_disk_full_is_logged_once_a_minute_and_training_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    clock = FakeClock()
    trainer = make_trainer(tiny_config(), FakeHub(), clock=clock, run_dir=tmp_path)

    def full(path: Path, payload: dict) -> None:
        raise error

    monkeypatch.setattr(runfolder_module, "save_checkpoint", full)
    caplog.set_level(logging.ERROR)
    trainer.save()
    clock.advance(30)
    trainer.save()
    assert len(_warnings(caplog, "disk full: checkpoint not written")) == 1
    clock.advance(31)
    trainer.save()
    lines = _warnings(caplog, "disk full: checkpoint not written")
    assert len(lines) == 2 and "training continues" in lines[0]
    monkeypatch.setattr(
        runfolder_module,
        "save_checkpoint",
        lambda p, d: (_ for _ in ()).throw(OSError(errno.EIO, "io")),
    )
    with pytest.raises(OSError):  # other errors are not hidden
        trainer.save()

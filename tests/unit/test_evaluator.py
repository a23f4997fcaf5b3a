"""Evaluation during training (issue 17): the evaluator picks up due checkpoints, writes
``eval.jsonl``, TensorBoard ``eval/`` scalars and ``best.pt`` (only on improvement); the run
folder keeps the last K checkpoints. Checkpoints of an untrained 8x8 actor, written by hand:
seconds, no training."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tmrl2.checkpoint import load_checkpoint, save_checkpoint
from tmrl2.config.load import dump_config, load_config
from tmrl2.config.schema import Config
from tmrl2.roles import evaluator as evaluator_module
from tmrl2.roles.evaluate import EpisodeResult
from tmrl2.roles.evaluator import (
    BEST_INFO_NAME,
    BEST_NAME,
    EVAL_NAME,
    Evaluator,
    rank,
    record_final,
    refusal,
    run_evaluator,
)
from tmrl2.roles.launcher import EVALUATOR_LEAD_S, LocalRun
from tmrl2.roles.runfolder import HISTORY_DIR, RunFolder, history

SETS = [
    "model.hidden_sizes=[8, 8]",
    "env.max_episode_steps=30",
    "env.tracks=[default, ring]",
    "run.eval_every_updates=100",
    "run.eval_every_min=0",
]
WAIT_S = 60.0
"""Longest a test waits for the evaluator thread (it needs well under a second)."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tiny() -> tuple[Config, dict[str, Any]]:
    """A two-track config and the weights of an untrained 8x8 actor for it."""
    from tmrl2.envs.factory import build_env
    from tmrl2.roles.components import build_model

    config = load_config(None, SETS)
    env = build_env(config)
    model = build_model(config, env.observation_space, env.action_space)
    env.close()
    return config, model.actor.state_dict()


def _payload(config: Config, actor: dict[str, Any], updates: int) -> dict[str, Any]:
    return {
        "actor": actor,
        "config": dump_config(config),
        "counters": {"samples": 2 * updates + 500, "updates": updates},
        "elapsed_s": updates / 10,
    }


def _save(run_dir: Path, config: Config, actor: dict[str, Any], updates: int) -> None:
    save_checkpoint(run_dir / "checkpoint.pt", _payload(config, actor, updates))


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / EVAL_NAME).read_text().splitlines()]


def _result(ret: float, finished: bool = False, lap: float | None = None) -> EpisodeResult:
    return EpisodeResult(
        finished=finished,
        lap_time_s=lap,
        progress_frac=1.0 if finished else 0.3,
        episode_return=ret,
        steps=30,
        track="default",
        reference_lap_s=20.0,
    )


def _fake_drive(returns: list[float]) -> Any:
    """A ``drive`` that returns one episode of each next return in turn."""

    def drive(config: Config, actor: Any, episodes: int, stop: Any) -> list[EpisodeResult]:
        return [_result(returns.pop(0))]

    return drive


def test_a_due_checkpoint_is_evaluated_on_every_track_with_tensorboard_scalars(
    tmp_path: Path, tiny: tuple[Config, dict[str, Any]]
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config, actor = tiny
    clock = FakeClock()
    ev = Evaluator(tmp_path, config, clock=clock)
    assert ev.poll() is None  # no checkpoint yet
    _save(tmp_path, config, actor, 60)
    assert ev.poll() is None and not (tmp_path / EVAL_NAME).exists()  # 60 < 100 updates
    _save(tmp_path, config, actor, 120)
    row = ev.poll()
    ev.close()
    assert row is not None and row["best"]
    assert (row["samples"], row["updates"], row["elapsed_s"]) == (740, 120, 12.0)
    assert row["episodes"] == 2 and row["racing"] and set(row["tracks"]) == {"default", "ring"}
    assert row["eval_s"] > 0 and row["started_at"] <= time.time()
    assert _rows(tmp_path) == [row]
    assert load_checkpoint(tmp_path / BEST_NAME)["counters"]["updates"] == 120
    best = json.loads((tmp_path / BEST_INFO_NAME).read_text())
    assert best["updates"] == 120 and best["checkpoint"] == BEST_NAME
    assert not (tmp_path / ".eval-candidate.pt").exists()
    acc = EventAccumulator(str(tmp_path / "tb" / "eval"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/return_mean", "eval/finish_rate", "eval/mean_progress"} <= tags
    assert {"eval/default/return_mean", "eval/ring/finish_rate"} <= tags
    assert "eval/median_ratio" not in tags  # no finished lap: None is skipped
    assert [e.step for e in acc.Scalars("eval/return_mean")] == [740]
    # the same episodes as one call of evaluate() on the same tracks: the final evaluation's
    from tmrl2.roles.evaluate import evaluate, load_policy

    cfg, policy = load_policy(tmp_path / BEST_NAME)
    once = evaluate(cfg, policy, 1, tracks=["default", "ring"])
    per_track = [row["tracks"][t]["return_mean"] for t in ("default", "ring")]
    assert [r.episode_return for r in once] == per_track


def test_best_pt_changes_only_on_improvement(
    tmp_path: Path, tiny: tuple[Config, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, actor = tiny
    monkeypatch.setattr(evaluator_module, "drive", _fake_drive([5.0, 3.0, 5.0, 8.0]))
    ev = Evaluator(tmp_path, config, clock=FakeClock())
    bests = []
    for updates in (100, 200, 300, 400):
        _save(tmp_path, config, actor, updates)
        row = ev.poll()
        assert row is not None
        bests.append((row["best"], load_checkpoint(tmp_path / BEST_NAME)["counters"]["updates"]))
    ev.close()
    # worse (3) and equal (5) keep the first best; 8 replaces it
    assert bests == [(True, 100), (False, 100), (False, 100), (True, 400)]
    assert [r["return_mean"] for r in _rows(tmp_path)] == [5.0, 3.0, 5.0, 8.0]
    assert json.loads((tmp_path / BEST_INFO_NAME).read_text())["updates"] == 400
    # a new evaluator (a resumed run) continues after the last row and knows the best
    again = Evaluator(tmp_path, config, clock=FakeClock())
    assert again.last_updates == 400 and again.best is not None
    assert again.best["return_mean"] == 8.0


def test_minutes_trigger_and_stale_checkpoints(
    tmp_path: Path, tiny: tuple[Config, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tiny[0].run.model_copy(update={"eval_every_updates": 0, "eval_every_min": 2})
    config = tiny[0].model_copy(update={"run": run})
    monkeypatch.setattr(evaluator_module, "drive", _fake_drive([1.0, 2.0]))
    clock = FakeClock()
    ev = Evaluator(tmp_path, config, clock=clock)
    _save(tmp_path, config, tiny[1], 0)
    clock.now += 200
    assert ev.poll() is None  # due by time, but no update yet: nothing to evaluate
    _save(tmp_path, config, tiny[1], 10)
    assert ev.poll() is not None
    _save(tmp_path, config, tiny[1], 20)
    clock.now += 119
    assert ev.poll() is None  # 119 s < 2 min since the last evaluation
    clock.now += 1
    row = ev.poll()
    assert row is not None and row["updates"] == 20
    clock.now += 500
    assert ev.poll() is None  # the same checkpoint is never evaluated twice
    ev.close()


def test_rank_orders_racing_by_finish_rate_then_ratio_then_return() -> None:
    def racing(finish: float, ratio: float | None, ret: float) -> dict[str, Any]:
        return {"racing": True, "finish_rate": finish, "median_ratio": ratio, "return_mean": ret}

    assert rank(racing(0.5, 1.4, 10.0)) > rank(racing(0.25, 1.1, 99.0))
    assert rank(racing(0.5, 1.1, 10.0)) > rank(racing(0.5, 1.4, 99.0))
    assert rank(racing(0.0, None, 12.0)) > rank(racing(0.0, None, 11.0))
    assert rank({"racing": False, "return_mean": -100.0}) > rank({"return_mean": None})


def test_the_loop_stops_with_its_flag_and_an_evaluation_stops_between_episodes(
    tmp_path: Path, tiny: tuple[Config, dict[str, Any]]
) -> None:
    config, actor = tiny
    stop = threading.Event()
    done: list[int] = []
    thread = threading.Thread(
        target=lambda: done.append(run_evaluator(tmp_path, config, stop, poll_s=0.02))
    )
    thread.start()
    try:
        _save(tmp_path, config, actor, 150)
        deadline = time.monotonic() + WAIT_S
        while not (tmp_path / BEST_NAME).exists() and time.monotonic() < deadline:
            stop.wait(0.02)
        assert (tmp_path / BEST_NAME).exists()
    finally:
        stop.set()
        thread.join(WAIT_S)
    assert not thread.is_alive() and done == [1]
    assert [r["updates"] for r in _rows(tmp_path)] == [150]
    # a stop set before an evaluation: nothing driven, nothing written
    _save(tmp_path, config, actor, 300)
    assert Evaluator(tmp_path, config, stop=stop).poll() is None
    assert len(_rows(tmp_path)) == 1


def test_a_failing_evaluation_is_logged_and_not_retried(
    tmp_path: Path,
    tiny: tuple[Config, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, actor = tiny
    calls: list[int] = []

    def broken(*args: Any) -> None:
        calls.append(1)
        raise RuntimeError("env exploded")

    monkeypatch.setattr(evaluator_module, "drive", broken)
    ev = Evaluator(tmp_path, config)
    _save(tmp_path, config, actor, 100)
    assert ev.poll() is None and ev.poll() is None
    assert calls == [1] and "env exploded" in caplog.text
    assert not (tmp_path / EVAL_NAME).exists() and not (tmp_path / BEST_NAME).exists()


def test_record_final_reuses_the_final_evaluation_when_it_drove_the_same_episodes(
    tmp_path: Path, tiny: tuple[Config, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, actor = tiny
    monkeypatch.setattr(evaluator_module, "drive", _fake_drive([4.0]))
    _save(tmp_path, config, actor, 100)
    assert not record_final(tmp_path, config, None, 0)  # run.eval_episodes: 0: none
    final = [_result(2.0), _result(3.0)]
    assert record_final(tmp_path, config, final, 1, eval_s=1.5)
    assert [(r["return_mean"], r["eval_s"]) for r in _rows(tmp_path)] == [(2.5, 1.5)]
    assert not record_final(tmp_path, config, final, 1)  # that checkpoint has its row
    _save(tmp_path, config, actor, 200)
    assert record_final(tmp_path, config, final, 3)  # other episodes: driven anew (fake: 4.0)
    assert [r["return_mean"] for r in _rows(tmp_path)] == [2.5, 4.0]
    assert load_checkpoint(tmp_path / BEST_NAME)["counters"]["updates"] == 200


def _history(run_dir: Path) -> list[int]:
    return [updates for updates, _ in history(run_dir / HISTORY_DIR)]


class _NoMemory:
    def save(self, path: Path) -> None:
        raise AssertionError("save_memory is off")


def test_checkpoint_history_keeps_the_last_k_and_never_best(
    tmp_path: Path, tiny: tuple[Config, dict[str, Any]]
) -> None:
    config, actor = tiny
    folder = RunFolder(tmp_path, save_memory=False)
    memory: Any = _NoMemory()
    (tmp_path / BEST_NAME).write_bytes(b"the evaluator's")
    for updates in (0, 100, 250, 1000, 1000):
        assert folder.save(_payload(config, actor, updates), memory)
    assert _history(tmp_path) == [100, 250, 1000]  # run.keep_checkpoints: 3 (the default)
    for updates in (100, 250, 1000):
        path = tmp_path / HISTORY_DIR / f"ckpt-{updates}.pt"
        assert load_checkpoint(path)["counters"]["updates"] == updates
    assert load_checkpoint(tmp_path)["counters"]["updates"] == 1000  # resume reads this
    assert (tmp_path / BEST_NAME).read_bytes() == b"the evaluator's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST_NAME, "checkpoint.pt", HISTORY_DIR]
    two = config.model_copy(update={"run": config.run.model_copy(update={"keep_checkpoints": 2})})
    assert folder.save(_payload(two, actor, 1200), memory)  # K from the payload's config
    assert _history(tmp_path) == [1000, 1200]
    RunFolder(tmp_path, save_memory=False, keep_checkpoints=0).save(
        _payload(config, actor, 1300), memory
    )
    assert _history(tmp_path) == []


def test_a_history_that_cannot_be_written_does_not_fail_the_checkpoint(
    tmp_path: Path,
    tiny: tuple[Config, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tmrl2.roles import runfolder

    def refuse(src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfolder, "publish_copy", refuse)
    folder = RunFolder(tmp_path, save_memory=False)
    assert folder.save(_payload(tiny[0], tiny[1], 100), _NoMemory())  # type: ignore[arg-type]
    assert load_checkpoint(tmp_path)["counters"]["updates"] == 100
    assert "checkpoint history not written" in caplog.text


def _config(sets: Sequence[str]) -> Config:
    return load_config(None, list(sets))


def test_the_launcher_starts_the_evaluator_when_its_first_evaluation_nears(
    tmp_path: Path,
) -> None:
    run = LocalRun(_config(["run.eval_every_min=10"]), tmp_path / "a")
    run.started = 100.0
    run._plan_evaluator()
    assert run._evaluator_due == 100.0 + 600 - EVALUATOR_LEAD_S  # the default: 10 minutes
    run = LocalRun(_config(["run.eval_every_updates=500"]), tmp_path / "b")
    run.started = 100.0
    run._plan_evaluator()
    assert run._evaluator_due == 100.0  # an updates schedule: with the run
    run = LocalRun(_config(["run.eval_every_min=0"]), tmp_path / "c")
    run.started = 100.0
    run._plan_evaluator()
    assert run._evaluator_due is None
    tm = _config(["env.kind=trackmania"])
    assert refusal(tm) is not None and "trackmania" in str(refusal(tm))
    assert refusal(_config([])) is None

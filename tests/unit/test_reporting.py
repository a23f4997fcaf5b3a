"""Reporting for any env, not only a race track (issue 16): every episode's return reaches
``metrics.jsonl``, racing fields appear only where there is a track, evaluation prints and
saves returns, and its exit code makes sense for a task without laps."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rolekit import FakeClock, FakeHub, box_chunk, make_trainer, tiny_config

from tmrl2.roles.evaluate import EpisodeResult, passed, save_results, summarize, summary_line
from tmrl2.telemetry.episodes import ReturnStats, episode_record
from tmrl2.telemetry.progress import format_line


def test_a_task_without_telemetry_reports_its_return_and_length_only() -> None:
    record = episode_record(-150.5, 200, {"TimeLimit.truncated": True}, {})
    assert record == {"terms": {}, "return": -150.5, "steps": 200}
    racing = episode_record(3.0, 10, {"progress_frac": 0.4, "finished": False}, {})
    assert racing["progress_frac"] == 0.4 and racing["finished"] is False


def test_return_stats_keep_every_episode_of_a_window() -> None:
    stats = ReturnStats()
    for value in (1.0, -2.0, "bad", float("nan"), 4.0):
        stats.add(value)
    window = stats.take_window()
    assert window["episodes_window"] == 3 and window["returns"] == [1.0, -2.0, 4.0]
    assert (window["return_min"], window["return_max"]) == (-2.0, 4.0)
    assert window["return_mean"] == 1.0
    assert stats.take_window()["episodes_window"] == 0  # a new window
    assert stats.recent()["return_recent_mean"] == 1.0


def _gym_episodes(n: int, start: int) -> list[dict[str, object]]:
    return [{"return": float(-(start + i)), "steps": 200, "terms": {}} for i in range(n)]


def test_metrics_rows_hold_every_episode_and_no_racing_fields(tmp_path: Path) -> None:
    clock = FakeClock()
    trainer = make_trainer(tiny_config(), FakeHub(), clock=clock, run_dir=tmp_path)
    trainer.start()
    delivered = 0
    for tick in range(5):  # several chunks, each with several episodes, per log tick
        for _ in range(3):
            episodes = _gym_episodes(tick + 1, delivered)
            delivered += len(episodes)
            trainer.client.inbox.append(box_chunk(episodes=episodes))  # type: ignore[union-attr]
        trainer._drain(timeout_ms=0)
        trainer.report()
    trainer.reporter.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    returns = [r for row in rows for r in row["returns"]]
    assert sum(row["episodes_window"] for row in rows) == delivered == 45
    assert sorted(returns) == sorted(float(-i) for i in range(45))
    assert all("best_lap_s" not in row and "tracks" not in row for row in rows)
    line = format_line(rows[-1])
    assert "return" in line and "ep)" in line and "progress" not in line and "lap" not in line


def test_racing_rows_keep_laps_and_tracks(tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(), FakeHub(), run_dir=tmp_path)
    trainer.start()
    lap = {"return": 3.0, "steps": 15, "finished": True, "lap_time_s": 31.5, "progress_frac": 1.0}
    trainer.client.inbox.append(box_chunk(episodes=[{**lap, "track": "default"}]))  # type: ignore[union-attr]
    trainer._drain(timeout_ms=0)
    metrics = {**trainer.metrics(), **trainer.returns.take_window()}
    assert metrics["best_lap_s"] == 31.5 and "default" in metrics["tracks"]
    assert "best lap 31.50 s" in format_line(metrics)


def _result(ret: float, racing: bool, finished: bool = False) -> EpisodeResult:
    return EpisodeResult(
        finished=finished,
        lap_time_s=30.0 if finished else None,
        progress_frac=1.0 if finished else 0.0,
        episode_return=ret,
        steps=200,
        racing=racing,
    )


def test_evaluation_of_a_task_without_laps(tmp_path: Path) -> None:
    results = [_result(-150.0, False), _result(-250.0, False)]
    line = summary_line(results)
    assert line.startswith("mean return -200.0 +- 50.0 over 2 episodes")
    assert "finished" not in line and "reached" not in results[0].describe()
    assert passed(results)  # no lap to finish: exit code 0
    assert not passed([_result(float("nan"), False)]) and not passed([])
    racing = [_result(10.0, True, finished=True), _result(5.0, True)]
    assert not passed(racing) and "finished 1/2" in summary_line(racing)
    assert summarize(racing)["return_mean"] == 7.5
    out = tmp_path / "evals.jsonl"
    save_results(out, results, append=True)
    save_results(out, results, append=True)
    saved = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(saved) == 2 and saved[0]["summary"]["return_mean"] == -200.0
    assert [e["episode_return"] for e in saved[1]["episodes"]] == [-150.0, -250.0]
    assert math.isclose(saved[0]["summary"]["return_std"], 50.0)


def test_the_last_row_holds_the_episodes_since_the_last_tick(tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(), FakeHub(), run_dir=tmp_path)
    trainer.start()
    trainer.client.inbox.append(box_chunk(episodes=_gym_episodes(2, 0)))  # type: ignore[union-attr]
    trainer._drain(timeout_ms=0)
    trainer.report()
    trainer.client.inbox.append(box_chunk(episodes=_gym_episodes(3, 2)))  # type: ignore[union-attr]
    trainer._drain(timeout_ms=0)
    trainer.finish()  # stops between two ticks: its last row carries those 3 episodes
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["episodes_window"] for row in rows] == [2, 3]

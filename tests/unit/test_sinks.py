"""Logging sinks (issue 17): ``metrics.jsonl`` as before, TensorBoard event files read back with
TensorBoard's own reader, W&B offline runs with the right names and ids, the ``logging``
config section, and a failing sink never stopping the trainer."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from rolekit import FakeClock, FakeHub, box_chunk, make_trainer, tiny_config

from tmrl2.config.load import ConfigError, dump_config, load_config
from tmrl2.telemetry.progress import ProgressReporter
from tmrl2.telemetry.sinks import (
    WANDB_ID_FILE,
    EvalRows,
    JsonlSink,
    Sink,
    TensorBoardSink,
    build_sinks,
    scalars,
)

HAVE_WANDB = importlib.util.find_spec("wandb") is not None


def _read_tb(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``logdir``, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


GYM_ROW: dict[str, Any] = {
    "samples": 1200,
    "updates": 500,
    "chunks": 12,
    "episodes": 6,
    "finishes": 0,
    "weights_version": 7,
    "worker_policy_version": 5,
    "rejected_chunks": 1,
    "rejected_episodes": 0,
    "samples_lost": 30,
    "elapsed_s": 12.5,
    "samples_per_s": 100.0,
    "updates_per_s": 40.0,
    "updates_per_step": 0.5,
    "updates_per_step_set": 0.5,
    "last_return": -150.0,
    "return_recent_mean": -160.0,
    "memory_size": 1200,
    "loss/loss_critic": 0.25,
    "loss/alpha": 0.1,
    "loss/q_mean": -3.0,
    "loss/entropy": 1.5,
    "reward/progress": 2.0,
    "episodes_window": 2,
    "returns": [-150.0, -170.0],
    "return_mean": -160.0,
    "return_min": -170.0,
    "return_max": -150.0,
}


def test_scalars_of_a_task_without_laps() -> None:
    tags = scalars({**GYM_ROW, "note": "text", "flag": True, "missing": None})
    assert tags["train/return_mean"] == -160.0 and tags["train/episodes"] == 2
    assert (tags["train/return_min"], tags["train/return_max"]) == (-170.0, -150.0)
    assert tags["perf/samples_per_s"] == 100.0 and tags["perf/updates_per_step"] == 0.5
    assert tags["perf/policy_lag"] == 2.0 and tags["perf/memory_size"] == 1200
    assert tags["loss/alpha"] == 0.1 and tags["loss/q_mean"] == -3.0
    assert tags["reward/progress"] == 2.0
    assert tags["net/rejected_chunks"] == 1 and tags["net/samples_lost"] == 30
    assert not any(tag.startswith("race/") for tag in tags)
    assert "samples" not in tags and "elapsed_s" not in str(tags)  # the step; wall time
    assert not any("note" in tag or "flag" in tag or "missing" in tag for tag in tags)
    assert scalars({**GYM_ROW, "return_mean": None}).get("train/return_mean") is None


def _track(best: float | None, finish_rate: float, ratio: float | None) -> dict[str, Any]:
    return {"episodes": 4, "best_lap_s": best, "finish_rate": finish_rate, "lap_ratio": ratio}


def test_racing_scalars_and_per_track_rows_only_with_several_tracks() -> None:
    race = {**GYM_ROW, "best_lap_s": 31.5, "last_progress": 0.75, "finishes": 3}
    one = scalars({**race, "tracks": {"default": _track(31.5, 0.75, 1.05)}})
    assert one["race/best_lap_s"] == 31.5 and one["race/progress"] == 0.75
    assert one["race/finishes"] == 3
    assert not any(tag.count("/") > 1 for tag in one)  # one track: no per-track rows
    tracks = {"alpine": _track(40.0, 0.5, 1.1), "gen/3 x": _track(None, 0.0, None)}
    several = scalars({**race, "tracks": tracks})
    assert several["race/alpine/best_lap_s"] == 40.0
    assert several["race/alpine/finish_rate"] == 0.5 and several["race/alpine/lap_ratio"] == 1.1
    assert several["race/gen_3_x/finish_rate"] == 0.0  # a tag-safe name; None skipped
    assert "race/gen_3_x/best_lap_s" not in several


def test_jsonl_sink_keeps_the_exact_file_format(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reporter = ProgressReporter(path, stream=io.StringIO(), live=False)
    reporter.report(GYM_ROW)
    reporter.report({**GYM_ROW, "samples": 1300})
    reporter.close()
    expected = json.dumps(GYM_ROW) + "\n" + json.dumps({**GYM_ROW, "samples": 1300}) + "\n"
    assert path.read_text(encoding="utf-8") == expected
    assert isinstance(JsonlSink(tmp_path / "x.jsonl"), Sink)


def _gym_episodes(n: int, start: int) -> list[dict[str, object]]:
    return [{"return": float(-(start + i)), "steps": 200, "terms": {}} for i in range(n)]


def test_tensorboard_events_of_a_trainer_read_back(tmp_path: Path) -> None:
    """The trainer's reports reach ``<run>/tb`` under the grouped tags, at the env step of
    each row of ``metrics.jsonl``, with the same values."""
    clock = FakeClock()
    trainer = make_trainer(tiny_config(), FakeHub(), clock=clock, run_dir=tmp_path)
    trainer.start()
    delivered = 0
    for tick in range(4):
        episodes = _gym_episodes(tick + 1, delivered)
        delivered += len(episodes)
        trainer.client.inbox.append(box_chunk(episodes=episodes, policy_version=tick))  # type: ignore[union-attr]
        trainer._drain(timeout_ms=0)
        trainer.last_losses = {"loss_critic": 1.0 / (tick + 1), "alpha": 0.2}
        clock.advance(1.0)
        trainer.report()
    trainer.reporter.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    events = _read_tb(tmp_path / "tb")
    assert {
        "train/return_mean",
        "train/return_min",
        "train/return_max",
        "train/episodes",
        "perf/samples_per_s",
        "perf/updates_per_s",
        "perf/policy_lag",
        "perf/memory_size",
        "loss/loss_critic",
        "loss/alpha",
        "net/samples_lost",
    } <= set(events)
    assert not any(tag.startswith("race/") for tag in events)
    assert [step for step, _ in events["train/return_mean"]] == [row["samples"] for row in rows]
    for row, (_, value) in zip(rows, events["train/return_mean"], strict=True):
        assert value == pytest.approx(row["return_mean"])
    assert [v for _, v in events["loss/loss_critic"]] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    assert [v for _, v in events["train/episodes"]] == [1, 2, 3, 4]


def test_tensorboard_events_of_a_racing_trainer(tmp_path: Path) -> None:
    trainer = make_trainer(tiny_config(), FakeHub(), run_dir=tmp_path)
    trainer.start()
    lap = {"return": 3.0, "steps": 15, "finished": True, "lap_time_s": 31.5, "progress_frac": 1.0}
    episodes = [{**lap, "track": "default"}, {**lap, "lap_time_s": 40.0, "track": "alpine"}]
    trainer.client.inbox.append(box_chunk(episodes=episodes))  # type: ignore[union-attr]
    trainer._drain(timeout_ms=0)
    trainer.report()
    trainer.reporter.close()
    events = _read_tb(tmp_path / "tb")
    assert events["race/best_lap_s"] == [(10, 31.5)]
    assert events["race/progress"] == [(10, 1.0)]
    assert events["race/alpine/best_lap_s"] == [(10, 40.0)]
    assert events["race/default/finish_rate"] == [(10, 1.0)]


def test_logging_section_defaults_flags_and_no_api_key(tmp_path: Path) -> None:
    config = load_config()
    logging = dump_config(config)["logging"]
    assert {k: logging[k] for k in ("jsonl", "tensorboard", "wandb")} == {
        "jsonl": True,
        "tensorboard": True,
        "wandb": None,
    }
    on = load_config(None, ["logging.wandb.mode=offline", "logging.wandb.project=evo"])
    assert on.logging.wandb is not None and on.logging.wandb.project == "evo"
    with pytest.raises(ConfigError, match="api_key"):
        load_config(None, ["logging.wandb.api_key=secret"])
    with pytest.raises(ConfigError, match="logging.wandb.mode"):
        load_config(None, ["logging.wandb.mode=cloud"])
    off = load_config(None, ["logging.jsonl=false", "logging.tensorboard=false"])
    assert build_sinks(off, tmp_path) == [] and build_sinks(config, None) == []
    assert not any(tmp_path.iterdir())
    sinks = build_sinks(config, tmp_path)
    assert [type(s) for s in sinks] == [JsonlSink, TensorBoardSink]
    for sink in sinks:
        sink.close()
    disabled = load_config(None, ["logging.wandb.mode=disabled", "logging.tensorboard=false"])
    assert [type(s) for s in build_sinks(disabled, tmp_path)] == [JsonlSink]


class _Broken:
    def write(self, metrics: dict[str, Any], step: int) -> None:
        raise OSError("No space left on device")

    def close(self) -> None:
        raise OSError("still full")


def test_a_failing_sink_is_logged_once_and_training_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reporter = ProgressReporter(tmp_path / "m.jsonl", stream=io.StringIO(), sinks=[_Broken()])
    with caplog.at_level(logging.WARNING):
        reporter.report(GYM_ROW)
        reporter.report(GYM_ROW)
        reporter.close()
    assert sum("failed" in r.getMessage() for r in caplog.records) == 2  # once, then close
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2  # the others still write


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B kept offline and inside ``tmp_path``: no key, no stats probe, no error reports."""
    if not HAVE_WANDB:
        pytest.skip("wandb is not installed (pip install 'tmrl2[wandb]' or the test extra)")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_X_DISABLE_STATS": "true",
        "WANDB_SILENT": "true",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def _wandb_sink(run_dir: Path, resume: bool = False) -> Any:
    config = load_config(None, ["logging.wandb.mode=offline", "logging.wandb.group=seeds"])
    sinks = build_sinks(config, run_dir, resume=resume)
    assert [type(s).__name__ for s in sinks] == ["JsonlSink", "TensorBoardSink", "WandbSink"]
    return sinks


def _offline_runs(run_dir: Path, run_id: str) -> list[Path]:
    return sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))


@pytest.mark.timeout(60)
def test_wandb_offline_runs_are_named_after_the_run_folder(wandb_env: Path) -> None:
    first, second = wandb_env / "sim_lidar-20261201-000000", wandb_env / "sim_lidar-20261201-000100"
    ids = []
    for run_dir in (first, second):
        run_dir.mkdir()
        sinks = _wandb_sink(run_dir)
        wandb_sink = sinks[-1]
        for step in (100, 200):
            # the evaluator process appends its rows; the W&B run takes them at the next report
            with (run_dir / "eval.jsonl").open("a") as f:
                f.write(json.dumps({"samples": step - 50, "return_mean": -1.5 * step}) + "\n")
            for sink in sinks:
                sink.write({**GYM_ROW, "samples": step}, step)
        for sink in sinks:
            sink.close()
        run_id = wandb_sink.run_id
        assert run_id.startswith(run_dir.name + "-")
        assert (run_dir / WANDB_ID_FILE).read_text().strip() == run_id
        (folder,) = _offline_runs(run_dir, run_id)
        data = (folder / f"run-{run_id}.wandb").read_bytes()
        for text in (
            run_dir.name,
            "seeds",
            "train/return_mean",
            "perf/policy_lag",
            "env_steps",
            "eval/return_mean",
        ):
            assert text.encode() in data, text
        ids.append(run_id)
    assert ids[0] != ids[1]
    # resumed: the same W&B run continues; a new run in the same folder gets a new id
    resumed = _wandb_sink(first, resume=True)
    assert resumed[-1].run_id == ids[0]
    for sink in resumed:
        sink.close()
    assert _offline_runs(first, ids[0])  # (same second: the same folder, else a new one)
    fresh = _wandb_sink(first, resume=False)
    assert fresh[-1].run_id != ids[0]
    for sink in fresh:
        sink.close()


def test_eval_rows_are_followed_whole_and_once(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    rows = EvalRows(tmp_path)
    assert rows.new_rows() == []  # no file yet
    path.write_text('{"samples": 10, "return_mean": 1.0}\n{"samples": 20, "ret')
    assert rows.new_rows() == [{"samples": 10, "return_mean": 1.0}]  # the half row waits
    with path.open("a") as f:
        f.write('urn_mean": 2.0}\nnot json\n')
    assert rows.new_rows() == [{"samples": 20, "return_mean": 2.0}]  # a bad line is skipped
    assert rows.new_rows() == []
    assert EvalRows(tmp_path, from_start=False).new_rows() == []  # resumed: only new rows


def test_wandb_online_needs_the_key_from_the_environment(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(None, ["logging.wandb.mode=online"])
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        build_sinks(config, wandb_env)

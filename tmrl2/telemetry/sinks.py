"""Where the trainer's metrics go: ``metrics.jsonl``, TensorBoard event files, Weights & Biases.

Every report of the trainer (one metrics dict per ``run.log_every_s``) goes to each sink of
:func:`build_sinks`, chosen by the config's ``logging`` section:

* :class:`JsonlSink`: the dict as one JSON line of ``<run>/metrics.jsonl`` (every key, as is;
  ``tmrl2 report`` reads it);
* :class:`TensorBoardSink`: the numeric scalars under grouped tags (:func:`scalars`) in
  ``<run>/tb/`` (``tensorboard --logdir runs``), written with TensorBoard's own event writer;
* :class:`WandbSink`: the same tags to a W&B run (opt-in, ``offline`` by default).

The step of every scalar is the env steps that reached the trainer (``samples``). Tags:
``train/`` (returns, episodes), ``race/`` (lap times, progress; per track where there are
several), ``reward/<term>``, ``loss/<name>`` (losses, temperature, Q statistics, entropy),
``perf/`` (rates, updates per step, policy lag, memory size), ``net/`` (ingest counters:
rejected, lost, dropped) and ``misc/`` (any other numeric key). docs/logging.md lists them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tmrl2.config.schema import Config, WandbConfig

log = logging.getLogger(__name__)

JSONL_NAME = "metrics.jsonl"
"""The trainer's metrics file in the run folder."""
TB_DIR = "tb"
"""Folder of the TensorBoard event files in the run folder."""
WANDB_ID_FILE = "wandb_id"
"""File of the run folder holding its W&B run id (a resumed run continues that W&B run)."""
STEP_KEY = "samples"
"""The metric every scalar is plotted against: env steps that reached the trainer."""

TAGS: dict[str, str] = {
    "return_mean": "train/return_mean",
    "return_min": "train/return_min",
    "return_max": "train/return_max",
    "episodes_window": "train/episodes",
    "return_recent_mean": "train/return_recent_mean",
    "last_return": "train/last_return",
    "episodes": "train/episodes_total",
    "samples_per_s": "perf/samples_per_s",
    "updates_per_s": "perf/updates_per_s",
    "updates_per_step": "perf/updates_per_step",
    "memory_size": "perf/memory_size",
    "updates": "perf/updates",
    "chunks": "perf/chunks",
    "weights_version": "perf/weights_version",
}
"""Tag of each top-level metric that has a fixed one."""
RACE_TAGS: dict[str, str] = {
    "best_lap_s": "race/best_lap_s",
    "last_progress": "race/progress",
    "finishes": "race/finishes",
}
"""Tags of a racing env's metrics (written only where the metrics have ``best_lap_s``)."""
TRACK_FIELDS = ("best_lap_s", "finish_rate", "lap_ratio")
"""Per-track fields written as ``race/<track>/<field>`` (only with several tracks)."""
SKIPPED = frozenset({STEP_KEY, "elapsed_s", "updates_per_step_set", "worker_policy_version"})
"""Top-level keys not written as scalars: the step itself, wall time (each event has its own),
a constant setting, and a version that only matters as ``perf/policy_lag``."""
NET_WORDS = ("rejected", "lost", "drop", "queue", "credit", "malformed")
"""A numeric key without a fixed tag goes to ``net/`` when it holds one of these words."""


def _number(value: Any) -> float | None:
    """The value as a float, or None for anything not a plain number (bools, None, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _track_tag(name: str) -> str:
    """A track name usable inside a tag (a ``/`` would open a group of its own)."""
    return re.sub(r"[/\s]+", "_", name)[:64] or "-"


def _extra_tag(key: str) -> str:
    if "/" in key:  # already grouped (loss/..., reward/...)
        return key
    return f"net/{key}" if any(word in key for word in NET_WORDS) else f"misc/{key}"


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric scalars of one metrics dict, by tag (the module docstring lists the
    groups); None, bools, lists and text are skipped; racing tags only for a racing env."""
    racing = "best_lap_s" in metrics
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in SKIPPED or key == "tracks":
            continue
        number = _number(value)
        if number is None:
            continue
        if key in RACE_TAGS:
            if racing:
                out[RACE_TAGS[key]] = number
            continue
        out[TAGS.get(key) or _extra_tag(key)] = number
    version = _number(metrics.get("weights_version"))
    worker = _number(metrics.get("worker_policy_version"))
    if version is not None and worker is not None:
        out["perf/policy_lag"] = version - worker
    tracks = metrics.get("tracks")
    if isinstance(tracks, Mapping) and len(tracks) > 1:
        for name, row in tracks.items():
            if not isinstance(row, Mapping):
                continue
            for field in TRACK_FIELDS:
                number = _number(row.get(field))
                if number is not None:
                    out[f"race/{_track_tag(str(name))}/{field}"] = number
    return out


def _step(metrics: Mapping[str, Any]) -> int:
    value = metrics.get(STEP_KEY, 0)
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else 0


@runtime_checkable
class Sink(Protocol):
    """A destination of the trainer's metrics."""

    def write(self, metrics: dict[str, Any], step: int) -> None:
        """One report: the trainer's metrics dict, at ``step`` env steps."""

    def close(self) -> None:
        """Flush and release the destination (no write after it)."""


class JsonlSink:
    """Appends each report as one JSON line (every key, exactly as given) and flushes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, metrics: dict[str, Any], step: int) -> None:
        self._file.write(json.dumps(metrics) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    """Scalars (:func:`scalars`) as TensorBoard events in ``logdir``: one event per report,
    written by TensorBoard's own :class:`EventFileWriter` (a background thread flushes it
    every ``flush_secs``; :meth:`close` flushes the rest)."""

    def __init__(self, logdir: Path, flush_secs: float = 10.0) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        logdir.mkdir(parents=True, exist_ok=True)
        self.logdir = logdir
        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(logdir), flush_secs=flush_secs)

    def write(self, metrics: dict[str, Any], step: int) -> None:
        values = [
            self._summary.Value(tag=tag, simple_value=value)
            for tag, value in scalars(metrics).items()
        ]
        if values:
            event = self._event(
                wall_time=time.time(), step=step, summary=self._summary(value=values)
            )
            self._writer.add_event(event)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def wandb_run_id(run_dir: Path, resume: bool) -> str:
    """The W&B run id of a run folder: its name (made id-safe) and a random suffix, saved in
    :data:`WANDB_ID_FILE` so that a resumed run continues the same W&B run; a new run in a
    folder used before gets a new id."""
    path = run_dir / WANDB_ID_FILE
    if resume and path.is_file():
        saved = path.read_text(encoding="utf-8").strip()
        if saved:
            return saved
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", run_dir.name).strip("-")[:48] or "run"
    run_id = f"{stem}-{secrets.token_hex(4)}"
    path.write_text(run_id + "\n", encoding="utf-8")
    return run_id


class WandbSink:
    """The scalars (same tags as TensorBoard) of each report to one W&B run, plotted against
    ``env_steps``.

    ``wandb`` is imported here only (an optional extra). The run is named after the run
    folder, its id is :func:`wandb_run_id`, its files go under ``<run>/wandb/``, and its
    config is the resolved config. The API key comes from the environment only
    (``WANDB_API_KEY``): the config has no field for it (``logging.wandb.api_key`` fails
    validation), and ``mode: online`` refuses to start without it rather than prompt.
    """

    def __init__(
        self,
        cfg: WandbConfig,
        run_dir: Path,
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        from tmrl2.config.load import ConfigError

        if cfg.mode == "online" and not os.environ.get("WANDB_API_KEY"):
            raise ConfigError(
                "logging.wandb.mode: online needs the W&B API key in the environment "
                "(export WANDB_API_KEY=...; never in a config file), or use mode: offline "
                "and `wandb sync` the run later"
            )
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "logging.wandb is set but the wandb package is not installed: "
                "pip install 'tmrl2[wandb]' (or remove logging.wandb)"
            ) from None
        self.run_id = wandb_run_id(run_dir, resume)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            mode=cfg.mode,
            name=run_dir.name,
            id=self.run_id,
            resume="allow",
            dir=str(run_dir),
            config=dict(config or {}),
            settings=wandb.Settings(console="off", silent=True),
        )
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")

        self.evals = EvalRows(run_dir, from_start=not resume)

    def write(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log({**scalars(metrics), "env_steps": step})
        self._log_evals()

    def _log_evals(self) -> None:
        """The ``eval/`` scalars of the rows the evaluator process appended to
        ``<run>/eval.jsonl`` since the last report, each at its checkpoint's env steps."""
        from tmrl2.roles.evaluator import scalar_tags

        for row in self.evals.new_rows():
            samples = _number(row.get("samples"))
            if samples is not None:
                self.run.log({**scalar_tags(row), "env_steps": int(samples)})

    def close(self) -> None:
        self._log_evals()
        self.run.finish()


class EvalRows:
    """Follows ``<run>/eval.jsonl``, written by the evaluator process (it has no W&B run of
    its own: one process per W&B run): :meth:`new_rows` returns the complete rows appended
    since the last call. ``from_start=False`` (a resumed run) skips the rows already there."""

    def __init__(self, run_dir: Path, from_start: bool = True) -> None:
        from tmrl2.roles.evaluator import EVAL_NAME

        self.path = run_dir / EVAL_NAME
        self.offset = 0 if from_start or not self.path.is_file() else self.path.stat().st_size

    def new_rows(self) -> list[dict[str, Any]]:
        try:
            if self.path.stat().st_size <= self.offset:
                return []
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a row being written is read next time, whole
        self.offset += end
        rows = []
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows


def build_sinks(config: Config, run_dir: Path | None, resume: bool = False) -> list[Sink]:
    """The sinks the config's ``logging`` section asks for, writing into ``run_dir`` (None:
    no sink, console only). ``resume``: a W&B run continues the run folder's one."""
    if run_dir is None:
        return []
    cfg = config.logging
    sinks: list[Sink] = []
    if cfg.jsonl:
        sinks.append(JsonlSink(run_dir / JSONL_NAME))
    if cfg.tensorboard:
        sinks.append(TensorBoardSink(run_dir / TB_DIR))
    if cfg.wandb is not None and cfg.wandb.mode != "disabled":
        from tmrl2.config.load import dump_config

        try:
            sinks.append(WandbSink(cfg.wandb, run_dir, dump_config(config), resume=resume))
        except BaseException:
            close_all(sinks)
            raise
    return sinks


def write_all(sinks: list[Sink], metrics: dict[str, Any], failed: set[int]) -> None:
    """One report to every sink; a sink that raises is logged (once) and skipped: telemetry
    never stops training. ``failed`` holds the ids of the sinks already reported failing."""
    step = _step(metrics)
    for sink in sinks:
        try:
            sink.write(metrics, step)
        except Exception as exc:  # a full disk, a broken W&B service: stats, not data
            if id(sink) not in failed:
                failed.add(id(sink))
                log.warning(
                    "metrics sink %s failed (%r); training goes on", type(sink).__name__, exc
                )


def close_all(sinks: list[Sink]) -> None:
    """Close every sink (a failure is logged, the others still close)."""
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:
            log.warning("closing metrics sink %s failed: %r", type(sink).__name__, exc)

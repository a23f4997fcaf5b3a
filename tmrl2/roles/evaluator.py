"""Evaluation during training: a process that evaluates new checkpoints while training goes on.

``tmrl2 train`` starts it (:mod:`tmrl2.roles.launcher`) when ``run.eval_every_updates`` or
``run.eval_every_min`` is set. It never talks to the trainer: it watches ``<run>/checkpoint.pt``
(which the trainer replaces atomically every ``trainer.checkpoint_every_s``), and when the
newest checkpoint is due (that many updates past the last one evaluated, or that many minutes
since the last evaluation) it

1. takes a snapshot of it (a hard link, or a copy: the trainer renames a new file over the old
   one and never writes in place, so the snapshot is one whole checkpoint);
2. drives the policy deterministically with :func:`tmrl2.roles.evaluate.evaluate` on the run's
   evaluation tracks (:func:`~tmrl2.roles.evaluate.default_tracks`: the training and held-out
   tracks, or the env's own choice), ``run.eval_during_episodes`` per track, with the same seeds
   every time, one episode per call so that a stop is honoured between episodes;
3. appends a row to ``<run>/eval.jsonl`` (``samples``, ``updates``, ``elapsed_s`` of the
   checkpoint, :func:`~tmrl2.roles.evaluate.summarize`'s fields, per track with several) and
   writes ``eval/...`` scalars to TensorBoard (``<run>/tb/eval/``, at step ``samples``);
4. when the evaluation beats the best so far (:func:`rank`: the mean return; for a racing env
   the finish rate, then the median lap / reference ratio, then the mean return), makes
   ``<run>/best.pt`` that checkpoint (atomically) and records the row in
   ``<run>/eval_best.json``.

The process runs at the lowest CPU priority with one torch thread, so that on a busy machine it
takes what training leaves; the trainer never waits for it. After the run,
:func:`record_final` adds the final checkpoint the same way (in the launcher's process), so
that ``best.pt`` considers the last policy too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tmrl2.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from tmrl2.roles.common import NeverStop, StopFlag, set_torch_threads
from tmrl2.roles.runfolder import publish_copy

if TYPE_CHECKING:
    import torch

    from tmrl2.config.schema import Config
    from tmrl2.roles.evaluate import EpisodeResult
    from tmrl2.telemetry.sinks import TensorBoardSink

log = logging.getLogger(__name__)

EVAL_NAME = "eval.jsonl"
"""One row per evaluation during training, in the run folder."""
BEST_NAME = "best.pt"
"""The best checkpoint evaluated so far, beside ``checkpoint.pt``."""
BEST_INFO_NAME = "eval_best.json"
"""The evaluation row of ``best.pt``."""
CANDIDATE_NAME = ".eval-candidate.pt"
"""The evaluator's snapshot of the checkpoint it looks at (deleted once evaluated)."""
TB_SUBDIR = "eval"
"""The evaluator's TensorBoard folder inside ``<run>/tb/``: a folder of its own, because
TensorBoard follows only the newest event file of a folder, and the trainer's would stop
being followed."""
EVAL_SEED = 12345
"""Seed of the first episode (:func:`~tmrl2.roles.evaluate.evaluate`'s default): the final
evaluation and these drive the same episodes."""
POLL_S = 1.0
"""How often the evaluator looks at ``checkpoint.pt``."""
EXCLUSIVE_ENVS = frozenset({"trackmania"})
"""Env kinds that exist once (the game): no second instance can evaluate during training."""
SUMMARY_TAGS = ("return_mean", "return_std", "return_min", "return_max")
"""Fields of an evaluation written as ``eval/<field>`` for any env..."""
RACING_TAGS = ("finish_rate", "median_ratio", "mean_progress")
"""...and for a racing env (also per track, with several: ``eval/<track>/<field>``)."""


def enabled(config: Config) -> bool:
    """Whether the run asks for evaluations during training."""
    return bool(config.run.eval_every_updates or config.run.eval_every_min)


def refusal(config: Config) -> str | None:
    """Why evaluation during training cannot run for this config (None: it can)."""
    if config.env.kind in EXCLUSIVE_ENVS:
        return (
            f"env.kind {config.env.kind} drives the one game the worker uses: no evaluation "
            "during training (the final evaluation still runs)"
        )
    return None


def rank(summary: Mapping[str, Any]) -> tuple[float, ...]:
    """How good an evaluation is (larger is better): the mean return; for a racing env the
    finish rate, then the median lap / reference ratio (smaller is better), then the mean
    return. A missing value ranks lowest."""
    ret = _number(summary.get("return_mean"))
    mean = -math.inf if ret is None else ret
    if not summary.get("racing"):
        return (mean,)
    finish = _number(summary.get("finish_rate")) or 0.0
    ratio = _number(summary.get("median_ratio"))
    return (finish, -math.inf if ratio is None else -ratio, mean)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def track_summaries(results: Sequence[EpisodeResult]) -> dict[str, dict[str, Any]]:
    """:func:`~tmrl2.roles.evaluate.summarize` per track, in the order driven."""
    from tmrl2.roles.evaluate import summarize

    groups: dict[str, list[EpisodeResult]] = {}
    for result in results:
        if result.track is not None:
            groups.setdefault(result.track, []).append(result)
    return {name: summarize(group) for name, group in groups.items()}


def make_row(
    counters: Mapping[str, Any],
    results: Sequence[EpisodeResult],
    eval_s: float | None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """The ``eval.jsonl`` row of one evaluation: the checkpoint's ``samples``, ``updates`` and
    ``elapsed_s`` (the trainer's), when the evaluation started (``started_at``, Unix time) and
    how long it took (``eval_s``), the summary, and per track with several (``tracks``)."""
    from tmrl2.roles.evaluate import summarize

    row: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "samples": int(counters.get("samples", 0)),
        "updates": int(counters.get("updates", 0)),
        "elapsed_s": round(float(counters.get("elapsed_s", 0.0)), 2),
        "started_at": None if started_at is None else round(started_at, 3),
        "eval_s": None if eval_s is None else round(eval_s, 3),
        **summarize(results),
    }
    tracks = track_summaries(results)
    if len(tracks) > 1:
        row["tracks"] = tracks
    return row


def scalar_tags(row: Mapping[str, Any]) -> dict[str, float]:
    """The ``eval/`` TensorBoard scalars of a row (None values skipped)."""
    from tmrl2.telemetry.sinks import _track_tag

    fields = SUMMARY_TAGS + (RACING_TAGS if row.get("racing") else ())
    out = {f"eval/{k}": v for k in fields if (v := _number(row.get(k))) is not None}
    for name, summary in (row.get("tracks") or {}).items():
        for k in ("return_mean", *(RACING_TAGS if summary.get("racing") else ())):
            value = _number(summary.get(k))
            if value is not None:
                out[f"eval/{_track_tag(str(name))}/{k}"] = value
    return out


def drive(
    config: Config, actor: torch.nn.Module, episodes: int, stop: StopFlag
) -> list[EpisodeResult] | None:
    """:func:`~tmrl2.roles.evaluate.evaluate` on the run's evaluation tracks, ``episodes`` per
    track, one episode per call with the seed the one-call plan gives it (the same episodes as
    ``evaluate(config, actor, episodes, tracks=default_tracks(config))``), so that ``stop`` is
    looked at between episodes; None when it was set. One torch thread."""
    from tmrl2.roles.evaluate import default_tracks, evaluate

    worker = config.worker.model_copy(update={"torch_threads": 1})
    config = config.model_copy(update={"worker": worker})
    tracks = default_tracks(config)
    plan: list[str | None] = (
        [None] * episodes if tracks is None else [t for t in tracks for _ in range(episodes)]
    )
    results: list[EpisodeResult] = []
    for i, track in enumerate(plan):
        if stop.is_set():
            return None
        results += evaluate(
            config,
            actor,
            1,
            seed=EVAL_SEED + i,
            tracks=None if track is None else [track],
            stop=stop.is_set,
        )
    return None if stop.is_set() else results


def last_row(path: Path) -> dict[str, Any] | None:
    """The last complete row of a JSON-lines file (a torn last line is skipped)."""
    if not path.is_file():
        return None
    for line in reversed(path.read_text(encoding="utf-8").splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            return row
    return None


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """The row of ``best.pt`` (``eval_best.json``), or None when there is none."""
    path = run_dir / BEST_INFO_NAME
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return best if isinstance(best, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """``path`` replaced whole (temp file and rename): a reader never sees half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _append_line(path: Path, row: Mapping[str, Any]) -> None:
    """One JSON line appended (after a newline if a killed writer left a torn line)."""
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(("\n" if torn else "") + json.dumps(row) + "\n")


class Evaluator:
    """Evaluates a run folder's due checkpoints (module docstring); :meth:`poll` is one look.

    Args:
        run_dir: the run folder the trainer writes ``checkpoint.pt`` into.
        config: the run's config (``run.eval_*`` and ``logging.tensorboard`` are read here;
            the env and the policy come from each checkpoint's own config).
        stop: checked between evaluation episodes.
        started: wall time (``time.time()``) the minutes are counted from until the first
            evaluation (None: now).
        clock: ``time.time`` or a test's fake.
    """

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        *,
        stop: StopFlag | None = None,
        started: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_dir = run_dir
        self.config = config
        self.stop = stop or NeverStop()
        self.clock = clock
        self.every_updates = config.run.eval_every_updates
        self.every_s = config.run.eval_every_min * 60.0
        self.episodes = config.run.eval_during_episodes
        self.last_t = clock() if started is None else started
        last = last_row(run_dir / EVAL_NAME)  # a resumed run continues after its last row
        self.last_updates = int(last.get("updates", 0)) if last else 0
        self.best = read_best(run_dir)
        self.evaluations = 0
        self._seen: tuple[int, int, int] | None = None
        self._candidate: dict[str, Any] | None = None
        self._tb: TensorBoardSink | None = None

    @property
    def candidate_path(self) -> Path:
        return self.run_dir / CANDIDATE_NAME

    def poll(self) -> dict[str, Any] | None:
        """Evaluate the newest checkpoint if it is due; the row written, or None (nothing due,
        stopped, or the evaluation failed: logged, and that checkpoint is not tried again)."""
        if not self.every_updates and not self._time_due():
            return None  # minutes only: no need to read checkpoints before the time comes
        candidate = self._look()
        if candidate is None or not self._due(candidate):
            return None
        updates = candidate["updates"]
        self.last_t = self.clock()
        try:
            row = self.evaluate_candidate(candidate)
        except Exception as exc:  # a broken env or checkpoint: say so, training goes on
            log.warning("evaluation of the checkpoint at %d updates failed: %r", updates, exc)
            self.last_updates = updates
            return None
        if row is not None:
            self.last_updates = updates
        return row

    def _due(self, candidate: Mapping[str, Any]) -> bool:
        new = candidate["updates"] - self.last_updates
        if new <= 0:
            return False
        if self.every_updates and new >= self.every_updates:
            return True
        return self._time_due()

    def _time_due(self) -> bool:
        return bool(self.every_s and self.clock() - self.last_t >= self.every_s)

    def _look(self) -> dict[str, Any] | None:
        """The newest checkpoint's counters, snapshotted as :data:`CANDIDATE_NAME` when it
        changed (None: there is none, or it cannot be read)."""
        path = self.run_dir / CHECKPOINT_NAME
        try:
            st = path.stat()
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._seen:
            return self._candidate
        self._seen, self._candidate = key, None
        try:
            publish_copy(path, self.candidate_path)
            payload = load_checkpoint(self.candidate_path)
        except (OSError, CheckpointError) as exc:
            log.warning("cannot read %s for an evaluation: %s", path, exc)
            return None
        counters = payload.get("counters")
        counters = counters if isinstance(counters, dict) else {}
        self._candidate = {
            "samples": int(counters.get("samples", 0)),
            "updates": int(counters.get("updates", 0)),
            "elapsed_s": float(payload.get("elapsed_s", 0.0)),
        }
        return self._candidate

    def evaluate_candidate(self, candidate: Mapping[str, Any]) -> dict[str, Any] | None:
        """Drive the snapshot and record it (None: stopped before the end)."""
        from tmrl2.roles.evaluate import load_policy

        started_at, start = time.time(), time.monotonic()
        config, actor = load_policy(self.candidate_path, trust_config=True)  # our own run
        results = drive(config, actor, self.episodes, self.stop)
        if results is None:
            return None
        return self.record(candidate, results, time.monotonic() - start, started_at)

    def record(
        self,
        counters: Mapping[str, Any],
        results: Sequence[EpisodeResult],
        eval_s: float | None,
        started_at: float | None = None,
    ) -> dict[str, Any]:
        """Write one evaluation of the snapshot: ``best.pt`` and ``eval_best.json`` when it
        beats the best so far, then its ``eval.jsonl`` row and TensorBoard scalars."""
        row = make_row(counters, results, eval_s, started_at)
        row["best"] = self.best is None or rank(row) > rank(self.best)
        if row["best"]:
            publish_copy(self.candidate_path, self.run_dir / BEST_NAME)
            self.best = {**row, "checkpoint": BEST_NAME}
            _write_json(self.run_dir / BEST_INFO_NAME, self.best)
        _append_line(self.run_dir / EVAL_NAME, row)
        self._tensorboard(row)
        self.candidate_path.unlink(missing_ok=True)
        self._seen = None  # a later look snapshots again
        self.evaluations += 1
        log.info(
            "evaluation at %d updates: mean return %s%s",
            row["updates"],
            row["return_mean"],
            " (best so far: best.pt)" if row["best"] else "",
        )
        return row

    def _tensorboard(self, row: Mapping[str, Any]) -> None:
        if not self.config.logging.tensorboard:
            return
        from tmrl2.telemetry.sinks import TB_DIR, TensorBoardSink

        try:
            if self._tb is None:
                self._tb = TensorBoardSink(self.run_dir / TB_DIR / TB_SUBDIR)
            self._tb.write(scalar_tags(row), int(row["samples"]))
            self._tb.flush()
        except Exception as exc:  # stats, not data: the row is in eval.jsonl
            log.warning("TensorBoard eval scalars not written: %r", exc)

    def final(self, results: Sequence[EpisodeResult] | None, eval_s: float | None) -> bool:
        """After the run: record the last checkpoint when it is newer than the last one
        evaluated. ``results``: the final evaluation's episodes when they were driven the same
        way (same episodes per track); None: drive them here. True when a row was written."""
        candidate = self._look()
        if candidate is None or candidate["updates"] <= self.last_updates:
            return False
        if results is None:
            return self.evaluate_candidate(candidate) is not None
        self.record(candidate, results, eval_s)
        return True

    def close(self) -> None:
        self.candidate_path.unlink(missing_ok=True)
        if self._tb is not None:
            with contextlib.suppress(Exception):
                self._tb.close()
            self._tb = None


def lower_priority() -> None:
    """This process at the lowest CPU priority (POSIX ``nice 19``) with one torch thread."""
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(19)
    set_torch_threads(1)


def run_evaluator(
    run_dir: Path,
    config: Config,
    stop: StopFlag,
    started: float | None = None,
    poll_s: float = POLL_S,
) -> int:
    """Look at the run folder every ``poll_s`` and evaluate what is due, until ``stop``;
    returns how many evaluations were written. Nothing here raises for a bad checkpoint or
    env: it is logged and the loop goes on."""
    evaluator = Evaluator(run_dir, config, stop=stop, started=started)
    wait = getattr(stop, "wait", None)
    try:
        while not stop.is_set():
            try:
                if evaluator.poll() is not None:
                    continue  # look again at once: training went on meanwhile
            except Exception as exc:  # the loop itself must outlive any failure
                log.warning("evaluator: %r", exc)
            if callable(wait):
                wait(poll_s)
            else:
                time.sleep(poll_s)
    finally:
        evaluator.close()
    return evaluator.evaluations


def record_final(
    run_dir: Path,
    config: Config,
    results: Sequence[EpisodeResult] | None,
    episodes: int,
    eval_s: float | None = None,
) -> bool:
    """After the run (the evaluator has stopped): the final checkpoint as one more evaluation,
    when it is newer than the last one evaluated. The final evaluation's ``results`` (driven
    with ``episodes`` per track) are reused when ``episodes`` is ``run.eval_during_episodes``
    (the same episodes); else the checkpoint is driven anew, unless there was no final
    evaluation (``results`` None: ``run.eval_episodes: 0`` asked for none). True when a row
    was written."""
    same = results is not None and episodes == config.run.eval_during_episodes
    if results is None:
        return False
    evaluator = Evaluator(run_dir, config)
    try:
        return evaluator.final(results if same else None, eval_s if same else None)
    finally:
        evaluator.close()

"""Episode records (what workers report) and per-track statistics (what the trainer keeps).

A worker puts one :func:`episode_record` per finished episode in its chunk's meta. The trainer
keeps every return in :class:`ReturnStats` (per log window, none dropped) and folds the
racing ones into :class:`TrackStats`: episodes, finishes, finish rate, best lap and the ratio
of that lap to the track's reference lap, per track; they go to ``metrics.jsonl`` (key
``tracks``), to the summary and to the end-of-run table.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

RECENT = 20
"""Episodes per track behind the recent finish rate."""
RECENT_RETURNS = 100
"""Episodes behind the run's recent mean return."""
MAX_TRACKS = 10_000
"""Most tracks kept (a peer sending made-up names cannot grow the trainer's memory)."""


def episode_record(
    ep_return: float, steps: int, info: dict[str, Any], terms: dict[str, float]
) -> dict[str, Any]:
    """The record of an episode that ended with ``info`` (see the module docstring). The
    racing fields (``finished``, ``lap_time_s``, ``progress_frac``, ``track``,
    ``reference_lap_s``) are there only for an env that reports telemetry (``info`` has
    ``progress_frac``): a Gymnasium task's record is its return and length."""
    record: dict[str, Any] = {
        "terms": {name: float(value) for name, value in terms.items()},
        "return": float(ep_return),
        "steps": int(steps),
    }
    if "progress_frac" not in info:
        return record
    lap = info.get("lap_time_s")
    record["finished"] = bool(info.get("finished", False))
    record["lap_time_s"] = float(lap) if lap is not None else None
    record["progress_frac"] = float(info.get("progress_frac", 0.0))
    track = info.get("track")
    if isinstance(track, str):
        record["track"] = track[:256]
    reference = info.get("reference_lap_s")
    if isinstance(reference, int | float) and math.isfinite(reference) and reference > 0:
        record["reference_lap_s"] = float(reference)
    return record


class ReturnStats:
    """Episode returns: every one of a log window (:meth:`take_window`) and the last
    :data:`RECENT_RETURNS` (:meth:`recent`)."""

    def __init__(self) -> None:
        self.window: list[float] = []
        self.last: deque[float] = deque(maxlen=RECENT_RETURNS)

    def add(self, value: Any) -> None:
        """One episode's return (a malformed one is skipped: stats, not data)."""
        try:
            ret = float(value)
        except (TypeError, ValueError):
            return
        if math.isfinite(ret):
            self.window.append(ret)
            self.last.append(ret)

    def take_window(self) -> dict[str, Any]:
        """The window's ``episodes_window`` (count), ``returns`` (each, in arrival order) and
        ``return_mean``/``min``/``max`` (None without an episode); starts a new window."""
        window, self.window = self.window, []
        return {
            "episodes_window": len(window),
            "returns": [round(r, 4) for r in window],
            "return_mean": sum(window) / len(window) if window else None,
            "return_min": min(window) if window else None,
            "return_max": max(window) if window else None,
        }

    def recent(self) -> dict[str, Any]:
        """Mean return over the last :data:`RECENT_RETURNS` episodes (None before one)."""
        last = list(self.last)
        return {"return_recent_mean": sum(last) / len(last) if last else None}


@dataclass
class TrackRow:
    """What the episodes of one track achieved."""

    episodes: int = 0
    finishes: int = 0
    best_lap_s: float | None = None
    reference_lap_s: float | None = None
    progress_sum: float = 0.0
    recent: tuple[bool, ...] = ()
    """Finished or not, for the last :data:`RECENT` episodes."""

    def as_dict(self) -> dict[str, Any]:
        ratio = (
            self.best_lap_s / self.reference_lap_s
            if self.best_lap_s is not None and self.reference_lap_s
            else None
        )
        return {
            "episodes": self.episodes,
            "finishes": self.finishes,
            "finish_rate": self.finishes / self.episodes if self.episodes else 0.0,
            "recent_finish_rate": sum(self.recent) / len(self.recent) if self.recent else 0.0,
            "best_lap_s": self.best_lap_s,
            "reference_lap_s": self.reference_lap_s,
            "lap_ratio": ratio,
            "mean_progress": self.progress_sum / self.episodes if self.episodes else 0.0,
        }


class TrackStats:
    """Per-track rows, filled from episode records (records without a track: ``-``)."""

    def __init__(self) -> None:
        self.rows: dict[str, TrackRow] = {}

    def add(self, record: dict[str, Any]) -> None:
        name = str(record.get("track", "-"))[:256]
        if name not in self.rows and len(self.rows) >= MAX_TRACKS:
            name = "(other)"
        row = self.rows.setdefault(name, TrackRow())
        row.episodes += 1
        finished = bool(record.get("finished"))
        lap = record.get("lap_time_s")
        if finished and lap is not None:
            row.finishes += 1
            if row.best_lap_s is None or lap < row.best_lap_s:
                row.best_lap_s = float(lap)
        reference = record.get("reference_lap_s")
        if reference is not None:
            row.reference_lap_s = float(reference)
        row.progress_sum += float(record.get("progress_frac", 0.0))
        row.recent = (*row.recent, finished)[-RECENT:]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: row.as_dict() for name, row in sorted(self.rows.items())}

    def state(self) -> dict[str, dict[str, Any]]:
        """The raw rows, for a checkpoint (:meth:`restore` reads them back)."""
        return {
            name: {**asdict(row), "recent": list(row.recent)} for name, row in self.rows.items()
        }

    def restore(self, state: Any) -> None:
        """Rows saved by :meth:`state` (anything malformed is ignored: stats, not data)."""
        if not isinstance(state, dict):
            return
        for name, raw in list(state.items())[:MAX_TRACKS]:
            try:
                row = TrackRow(**{**raw, "recent": tuple(bool(x) for x in raw["recent"])})
            except (TypeError, KeyError):
                continue
            self.rows[str(name)] = row


MAX_STATS = 16
"""Most worker-side exploration values taken from one episode record."""


def episode_stats(record: Mapping[str, Any], prefix: str = "explore/") -> dict[str, float]:
    """The worker-side exploration values of an episode record (its ``exploration`` map),
    as ``<prefix><name>`` metrics; anything but a finite number under a short name is left
    out (records and states come from peers: stats, not data)."""
    values = record.get("exploration")
    if not isinstance(values, Mapping):
        return {}
    out: dict[str, float] = {}
    for name, value in list(values.items())[:MAX_STATS]:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(name, str) and len(name) <= 64 and math.isfinite(value):
            out[f"{prefix}{name}"] = float(value)
    return out

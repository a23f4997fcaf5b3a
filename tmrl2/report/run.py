"""A run folder read back: metrics rows, summary, evaluations, config, as plain series.

``tmrl2 train`` writes ``runs/<name>-<time>/`` with ``config.yaml``, ``checkpoint.pt``,
``metrics.jsonl`` (one row per log window, see :meth:`tmrl2.roles.trainer.Trainer.metrics`),
``summary.json``; ``tmrl2 eval`` appends to ``evals.jsonl``. Every file is optional here and
read leniently (a run still training has a torn last line; an old run lacks newer keys): a
report shows what there is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tmrl2.config.load import ConfigError

RACING_KINDS = ("sim", "trackmania", "tmrl2.envs.sim.env:SimEnv")
"""``env.kind`` values of the envs with tracks and laps."""


@dataclass
class RunData:
    """What a run folder holds."""

    folder: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    """``metrics.jsonl`` rows, in order (unreadable lines skipped)."""
    summary: dict[str, Any] = field(default_factory=dict)
    """``summary.json`` (empty when absent)."""
    evals: list[dict[str, Any]] = field(default_factory=list)
    """``evals.jsonl`` records (``time``, ``summary``, ``episodes``), oldest first."""
    config: dict[str, Any] = field(default_factory=dict)
    """``config.yaml`` as plain data (empty when absent)."""

    @property
    def name(self) -> str:
        return self.folder.resolve().name

    @property
    def env_kind(self) -> str:
        env = self.config.get("env") or {}
        return str(env.get("kind", "sim")) if isinstance(env, dict) else "sim"

    @property
    def racing(self) -> bool:
        """Laps and tracks: a simulator or game run, or rows (or a summary) with racing
        fields."""
        if self.env_kind in RACING_KINDS:
            return True
        return any("best_lap_s" in r or "tracks" in r for r in [*self.rows, self.summary])

    def last(self) -> dict[str, Any]:
        """The summary, else the last row (the final counters)."""
        return self.summary or (self.rows[-1] if self.rows else {})

    def series(self, key: str, x: str = "samples") -> tuple[list[float], list[float]]:
        """``(x, y)`` of the rows where both are finite numbers."""
        xs, ys = [], []
        for row in self.rows:
            a, b = number(row.get(x)), number(row.get(key))
            if a is not None and b is not None:
                xs.append(a)
                ys.append(b)
        return xs, ys

    def keys(self, prefix: str) -> list[str]:
        """Row keys starting with ``prefix`` (e.g. ``loss/``), in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            for key in row:
                if key.startswith(prefix):
                    seen.setdefault(key, None)
        return list(seen)

    def track_series(self) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        """Per track, ``(elapsed_s, row)`` of every ``tracks`` entry (rows carry them when
        they changed)."""
        out: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for row in self.rows:
            tracks, t = row.get("tracks"), number(row.get("elapsed_s"))
            if not isinstance(tracks, dict) or t is None:
                continue
            for name, stats in tracks.items():
                if isinstance(stats, dict):
                    out.setdefault(str(name), []).append((t, stats))
        return out


def number(value: Any) -> float | None:
    """``value`` as a finite float (None for anything else, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a run still writing
        if isinstance(row, dict):
            out.append(row)
    return out


def load_run(folder: Path) -> RunData:
    """Read a run folder; a one-line :class:`ConfigError` when it is not one."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder; give a run folder (runs/<name>-<time>)")
    names = ("metrics.jsonl", "summary.json", "checkpoint.pt", "config.yaml")
    if not any((folder / n).is_file() for n in names):
        raise ConfigError(f"{folder}: no {', '.join(names)} there; is it a run folder?")
    data = RunData(
        folder, rows=_jsonl(folder / "metrics.jsonl"), evals=_jsonl(folder / "evals.jsonl")
    )
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        data.summary = summary if isinstance(summary, dict) else {}
    except (OSError, json.JSONDecodeError):
        pass
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        data.config = config if isinstance(config, dict) else {}
    except (OSError, yaml.YAMLError):
        pass
    return data

"""Training progress: rolling rates, the live console line, and the metrics sinks
(``metrics.jsonl``, TensorBoard, W&B: :mod:`tmrl2.telemetry.sinks`)."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tmrl2.telemetry.sinks import JsonlSink, Sink, close_all, write_all


class RateMeter:
    """Events per second over a sliding window of recent readings."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, float]] = deque()

    def rate(self, total: float, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._points.append((now, total))
        while len(self._points) > 2 and now - self._points[0][0] > self.window_s:
            self._points.popleft()
        t0, v0 = self._points[0]
        return (total - v0) / (now - t0) if now > t0 else 0.0


def format_line(m: dict[str, Any]) -> str:
    """One-line summary: env steps and steps/s, updates, updates/s and updates per step,
    then the episodes: for a racing env the last return, progress and best lap; for any
    other the window's mean return (min..max, count) or the recent mean; last, while any is
    active, ``ALARM: <kinds>``."""
    ratio = m.get("updates_per_step")
    head = (
        f"steps {m['samples']:>8,d} | {m['samples_per_s']:6.0f} steps/s | "
        f"updates {m['updates']:>8,d} | {m['updates_per_s']:5.0f} upd/s | "
        f"upd/step {'   -' if ratio is None else f'{ratio:4.2f}'} | "
    )
    if "best_lap_s" in m:  # a racing env
        best = m.get("best_lap_s")
        last = m.get("last_return")
        episodes = (
            f"return {'      -' if last is None else f'{last:7.1f}'} | "
            f"progress {m.get('last_progress', 0.0):4.0%} | "
            f"best lap {'-' if best is None else f'{best:.2f} s'}"
        )
    elif m.get("return_mean") is not None:
        episodes = (
            f"return {m['return_mean']:8.1f} ({m['return_min']:.1f}..{m['return_max']:.1f}, "
            f"{m['episodes_window']} ep)"
        )
    else:
        recent = m.get("return_recent_mean")
        episodes = f"return {'       -' if recent is None else f'{recent:8.1f}'} (last 100)"
    alarms = m.get("alarms")  # the active alarms' kinds (tmrl2.telemetry.alarms)
    tail = f" | ALARM: {', '.join(alarms)}" if alarms else ""
    return f"{head}{episodes} | {m['elapsed_s']:5.0f} s{tail}"


class ProgressReporter:
    """Writes each report to the metrics sinks and shows a live line on the console."""

    def __init__(
        self,
        jsonl: Path | None = None,
        stream: TextIO | None = None,
        live: bool = True,
        plain_every_s: float = 10.0,
        sinks: Sequence[Sink] = (),
    ) -> None:
        """Args:
        jsonl: file the metrics are appended to, one JSON line per report (None: none; a
            shorthand for a :class:`~tmrl2.telemetry.sinks.JsonlSink` in ``sinks``).
        stream: console stream (stderr by default).
        live: redraw one line in place when the stream is a terminal.
        plain_every_s: on a non-terminal stream, print a line at most this often.
        sinks: more destinations of every report
            (:func:`~tmrl2.telemetry.sinks.build_sinks`); a failing one is logged and
            skipped, never fatal.
        """
        self.stream = stream or sys.stderr
        self.live = live and self.stream.isatty()
        self.plain_every_s = plain_every_s
        self.sinks: list[Sink] = [JsonlSink(jsonl)] if jsonl else []
        self.sinks.extend(sinks)
        self._failed: set[int] = set()
        self._last_len = 0
        self._last_plain = -float("inf")

    def report(self, metrics: dict[str, Any]) -> None:
        write_all(self.sinks, metrics, self._failed)
        line = format_line(metrics)
        if self.live:
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        elif time.monotonic() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.monotonic()
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self._last_len:
            self.stream.write("\n")
        close_all(self.sinks)

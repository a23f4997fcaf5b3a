"""Training progress: rolling rates, the live console line, and the metrics sinks
(``metrics.jsonl``, TensorBoard, W&B: :mod:`tmrl2.telemetry.sinks`)."""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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


FIT_DROP_ORDER: tuple[str, ...] = (
    "upd/s",
    "upd/step",
    "updates",
    "steps/s",
    "return detail",
    "padding",
    "progress",
)
"""How :func:`format_line` fits a width, first step first, until the line fits: drop the
updates per second, the updates per step, the update count, the steps per second; shorten
the return to its value (no min..max and episode count); drop the fixed-width padding;
drop a racing env's progress. Env steps, the return, the best lap, the elapsed time and the
alarms stay; what still does not fit is cut, ending with ``...``."""


@dataclass
class _Field:
    name: str
    text: str
    tight: str  # the same without the fixed-width padding
    short: str | None = None  # the shortened form ("return detail")


def _fields(m: dict[str, Any]) -> list[_Field]:
    alarms: list[str] = list(m.get("alarms") or [])  # active kinds (tmrl2.telemetry.alarms)
    alarm = f"ALARM: {', '.join(alarms)}"
    tail = [_Field("alarm", alarm, alarm)] if alarms else []
    elapsed = float(m.get("elapsed_s") or 0.0)
    if not m.get("samples"):  # nothing arrived yet: say so, not a zero-filled line
        wait = f"waiting for the first samples ({elapsed:.0f} s)"
        return [_Field("waiting", wait, wait), *tail]
    ratio = m.get("updates_per_step")
    samples, sps, updates, ups = m["samples"], m["samples_per_s"], m["updates"], m["updates_per_s"]
    fields = [
        _Field("steps", f"steps {samples:>8,d}", f"steps {samples:,d}"),
        _Field("steps/s", f"{sps:6.0f} steps/s", f"{sps:.0f} steps/s"),
        _Field("updates", f"updates {updates:>8,d}", f"updates {updates:,d}"),
        _Field("upd/s", f"{ups:5.0f} upd/s", f"{ups:.0f} upd/s"),
        _Field(
            "upd/step",
            f"upd/step {'   -' if ratio is None else f'{ratio:4.2f}'}",
            f"upd/step {'-' if ratio is None else f'{ratio:.2f}'}",
        ),
    ]
    if "best_lap_s" in m:  # a racing env
        best, last = m.get("best_lap_s"), m.get("last_return")
        progress = m.get("last_progress", 0.0)
        lap = f"best lap {'-' if best is None else f'{best:.2f} s'}"
        fields += [
            _Field(
                "return",
                f"return {'      -' if last is None else f'{last:7.1f}'}",
                f"return {'-' if last is None else f'{last:.1f}'}",
            ),
            _Field("progress", f"progress {progress:4.0%}", f"progress {progress:.0%}"),
            _Field("best lap", lap, lap),
        ]
    elif m.get("return_mean") is not None:
        mean = m["return_mean"]
        detail = f"({m['return_min']:.1f}..{m['return_max']:.1f}, {m['episodes_window']} ep)"
        fields.append(
            _Field(
                "return",
                f"return {mean:8.1f} {detail}",
                f"return {mean:.1f}",
                short=f"return {mean:8.1f}",
            )
        )
    else:
        recent = m.get("return_recent_mean")
        fields.append(
            _Field(
                "return",
                f"return {'       -' if recent is None else f'{recent:8.1f}'} (last 100)",
                f"return {'-' if recent is None else f'{recent:.1f}'}",
                short=f"return {'       -' if recent is None else f'{recent:8.1f}'}",
            )
        )
    fields.append(_Field("elapsed", f"{elapsed:5.0f} s", f"{elapsed:.0f} s"))
    return fields + tail


def format_line(m: dict[str, Any], width: int | None = None) -> str:
    """One-line summary: env steps and steps/s, updates, updates/s and updates per step,
    then the episodes: for a racing env the last return, progress and best lap; for any
    other the window's mean return (min..max, count) or the recent mean; then the elapsed
    seconds; last, while any is active, ``ALARM: <kinds>``. While no sample has arrived
    (``samples`` 0): ``waiting for the first samples (N s)`` instead.

    Args:
        m: a trainer report (:meth:`tmrl2.roles.trainer.Trainer.metrics`).
        width: the most characters the line may have: fields are dropped in
            :data:`FIT_DROP_ORDER` until it fits, and what still does not is cut (None: the
            whole line, as in the plain log lines; :func:`terminal_width` gives a console's).
    """
    fields = _fields(m)
    tight = False

    def render() -> str:
        return " | ".join(f.tight if tight else f.text for f in fields)

    line = render()
    if width is None:
        return line
    for step in FIT_DROP_ORDER:
        if len(line) <= width:
            return line
        if step == "padding":
            tight = True
        elif step == "return detail":
            for f in fields:
                if f.short is not None:
                    f.text = f.short
        else:
            fields = [f for f in fields if f.name != step]
        line = render()
    if len(line) <= width:
        return line
    return line[: max(0, width - 3)] + "..." if width >= 3 else line[:width]


def terminal_width(fallback: int = 80) -> int:
    """The console's columns less one (a line as wide as the terminal wraps on some)."""
    return max(20, shutil.get_terminal_size((fallback, 24)).columns - 1)


def run_fraction(
    elapsed_s: float, samples: int, minutes: float = 0.0, steps: int = 0
) -> float | None:
    """How far a bounded run is, 0..1: the larger of ``elapsed_s`` over ``run.minutes`` and
    ``samples`` over ``run.steps`` (the run stops at the first bound reached); None when
    neither bounds it (0: no bound)."""
    parts = []
    if minutes > 0:
        parts.append(elapsed_s / (minutes * 60.0))
    if steps > 0:
        parts.append(samples / steps)
    if not parts:
        return None
    return min(1.0, max(0.0, *parts))


class ProgressReporter:
    """Writes each report to the metrics sinks and shows the progress on the console.

    On a terminal: a line redrawn in place and fitted to its width (:func:`format_line`),
    under a progress bar when ``run.minutes`` or ``run.steps`` bounds the run (rich,
    :mod:`tmrl2.telemetry.display`). Elsewhere (CI, a pipe, a file): the whole line, plain
    text without escape codes, every ``plain_every_s``."""

    def __init__(
        self,
        jsonl: Path | None = None,
        stream: TextIO | None = None,
        live: bool = True,
        plain_every_s: float = 10.0,
        sinks: Sequence[Sink] = (),
        minutes: float = 0.0,
        steps: int = 0,
        width: int | None = None,
        rich: bool = True,
    ) -> None:
        """Args:
        jsonl: file the metrics are appended to, one JSON line per report (None: none; a
            shorthand for a :class:`~tmrl2.telemetry.sinks.JsonlSink` in ``sinks``).
        stream: console stream (stderr by default).
        live: redraw the progress in place when the stream is a terminal.
        plain_every_s: on a non-terminal stream, print a line at most this often.
        sinks: more destinations of every report
            (:func:`~tmrl2.telemetry.sinks.build_sinks`); a failing one is logged and
            skipped, never fatal.
        minutes: ``run.minutes`` (0: no time bound): with ``steps``, what the bar measures.
        steps: ``run.steps`` (0: no step bound).
        width: the live line's width (None: the terminal's, read at every report).
        rich: draw with rich on a terminal (False, or rich missing: a ``\\r`` line).
        """
        self.stream = stream or sys.stderr
        self.live = live and self.stream.isatty()
        self.plain_every_s = plain_every_s
        self.sinks: list[Sink] = [JsonlSink(jsonl)] if jsonl else []
        self.sinks.extend(sinks)
        self.minutes, self.steps, self.width = minutes, steps, width
        self._failed: set[int] = set()
        self._last_len = 0
        self._last_plain = -float("inf")
        self._t0 = time.monotonic()
        self._display: Any = None
        if self.live and rich:
            try:
                from tmrl2.telemetry.display import LiveDisplay
            except ImportError:  # rich not installed: the plain redrawn line
                pass
            else:
                bounded = run_fraction(0.0, 0, minutes, steps) is not None
                self._display = LiveDisplay(self.stream, bar=bounded)

    def fraction(self, metrics: dict[str, Any]) -> float | None:
        """The bar's fill for this report (None: the run has no bound): the time since
        this reporter started (this session, as ``run.minutes`` counts) and the samples."""
        elapsed = time.monotonic() - self._t0
        return run_fraction(elapsed, int(metrics.get("samples") or 0), self.minutes, self.steps)

    def report(self, metrics: dict[str, Any]) -> None:
        write_all(self.sinks, metrics, self._failed)
        if self._display is not None:
            width = self.width or self._display.width
            self._display.show(format_line(metrics, width), self.fraction(metrics))
            return
        if self.live:
            line = format_line(metrics, self.width or terminal_width())
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        elif time.monotonic() - self._last_plain >= self.plain_every_s:
            self._last_plain = time.monotonic()
            self.stream.write(format_line(metrics) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._display is not None:
            self._display.close()
            self._display = None
        elif self.live and self._last_len:
            self.stream.write("\n")
            self._last_len = 0
        close_all(self.sinks)

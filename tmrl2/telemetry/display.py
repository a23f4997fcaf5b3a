"""What ``tmrl2 train`` shows on a terminal: the header printed once before the roles
start (:func:`header_lines`), and the live display (:class:`LiveDisplay`, with rich): a
progress bar when ``run.minutes`` or ``run.steps`` bounds the run, and the progress line
(:func:`tmrl2.telemetry.progress.format_line`) fitted to the terminal's width.

Off a terminal :class:`~tmrl2.telemetry.progress.ProgressReporter` prints plain lines
instead and never imports rich (imported here only by :class:`LiveDisplay`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tmrl2.telemetry.sinks import JSONL_NAME, TB_DIR

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.text import Text

    from tmrl2.config.schema import Config

_TOTAL = 1000
"""The bar's task total: the fraction in thousandths."""


def _bar_and_line(columns: Iterable[Any], console: Any) -> Progress:
    """A rich progress display: the bar (when it has a task), then the line under it (its
    ``line`` attribute). rich is imported here: the header needs no rich."""
    from rich.console import RenderableType
    from rich.progress import Progress
    from rich.text import Text

    class BarAndLine(Progress):
        line: Text = Text()

        def get_renderables(self) -> Iterable[RenderableType]:
            if self.tasks:
                yield self.make_tasks_table(self.tasks)
            yield self.line

    return BarAndLine(*columns, console=console, auto_refresh=False, expand=True)


class LiveDisplay:
    """The live console display of the trainer: redrawn in place on ``stream`` (a terminal)
    by each :meth:`show`; log lines written meanwhile to stdout or stderr go above it."""

    def __init__(self, stream: TextIO, bar: bool) -> None:
        """Args:
        stream: the terminal (the trainer's stderr).
        bar: draw a progress bar (the run has a bound: ``run.minutes``, ``run.steps``).
        """
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream, highlight=False)
        columns = (
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left"),
        )
        self._progress: Any = _bar_and_line(columns, self.console)
        self._task = self._progress.add_task("run", total=_TOTAL) if bar else None
        self._started = False
        self._fresh = True

    @property
    def width(self) -> int:
        """The line's width: the terminal's columns less one."""
        return max(20, self.console.width - 1)

    def show(self, line: str, fraction: float | None) -> None:
        """Redraw with this line and, when the run is bounded, the bar at ``fraction``."""
        if not self._started:
            self._progress.start()
            self._started = True
        from rich.text import Text

        style = "bold red" if "ALARM:" in line else ""
        self._progress.line = Text(line, style=style, no_wrap=True, overflow="ellipsis")
        if self._task is not None and fraction is not None:
            done = round(fraction * _TOTAL)
            if self._fresh:  # a resumed run starts part way: its speed counts from here
                self._progress.reset(self._task, completed=done)
                self._fresh = False
            self._progress.update(self._task, completed=done)
        self._progress.refresh()

    def close(self) -> None:
        """Leave the last frame on the screen and the cursor under it."""
        if self._started:
            self._progress.stop()
            self._started = False


def sinks_on(config: Config, run_dir: Path) -> list[str]:
    """Where the metrics go, as the header says it: ``metrics.jsonl``, the TensorBoard
    folder, W&B (its project)."""
    cfg = config.logging
    out = []
    if cfg.jsonl:
        out.append(str(run_dir / JSONL_NAME))
    if cfg.tensorboard:
        out.append(f"TensorBoard {run_dir / TB_DIR}")
    if cfg.wandb is not None and cfg.wandb.mode != "disabled":
        out.append(f"W&B project {cfg.wandb.project} ({cfg.wandb.mode})")
    return out


def header_lines(
    config: Config, run_dir: Path, address: str, config_path: Path | str | None
) -> list[str]:
    """The lines ``tmrl2 train`` prints once, before the trainer and the workers start:
    the run folder, the server's address (with the port it bound), the trainer's device,
    the config file (``defaults`` when none), where the metrics go, and the run's bound."""
    bounds = []
    if config.run.steps:
        bounds.append(f"{config.run.steps:,d} steps")
    if config.run.minutes:
        bounds.append(f"{config.run.minutes:g} min")
    sinks = sinks_on(config, run_dir)
    rows = [
        ("run folder", str(run_dir)),
        ("server", address),
        ("device", str(config.trainer.device)),
        ("config", str(config_path) if config_path is not None else "defaults"),
        ("metrics", ", ".join(sinks) if sinks else "console only"),
        ("stops at", " or ".join(bounds) if bounds else "Ctrl-C (no run.steps, run.minutes)"),
    ]
    return ["== tmrl2 train ==", *(f"{label:>12}: {value}" for label, value in rows)]

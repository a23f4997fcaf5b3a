"""matplotlib without a display: figures on an Agg canvas, written as PNG.

No pyplot and no global backend: each figure gets its own Agg canvas when it is made, so
nothing is set at import and a report can be drawn on a machine without a screen, in a thread,
or next to an interactive session. matplotlib is imported only here, only when a figure is
made (a missing install is a one-line error).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tmrl2.config.load import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
"""Pixels per inch of the PNGs."""


def figure(width_in: float, height_in: float, cols: int = 1, rows: int = 1) -> Figure:
    """A new figure on its own Agg canvas, with a ``rows x cols`` grid of axes (none for
    ``rows=0``: the caller lays them out)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("tmrl2 report needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if rows:
        fig.subplots(rows, cols, squeeze=False)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG."""
    fig.savefig(path, dpi=DPI, format="png")
    return path


def steps_axis(ax: Axes, label: str = "env steps") -> None:
    """An x axis of counts with engineering labels (``200k``, ``1.5M``)."""
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(label)


def style(ax: Axes, title: str, ylabel: str = "") -> None:
    """Title, y label and a light grid."""
    ax.set_title(title, fontsize=10)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def marker(count: int) -> str:
    """Dots on sparse series (a run of a few rows still shows its points)."""
    return "o" if count < 25 else ""


SMOOTH_ABOVE = 60
"""Series longer than this are drawn faint with a rolling mean over them."""


def rolling_mean(values: Sequence[float], width: int) -> np.ndarray:
    """Centred rolling mean over ``width`` points (shorter windows at both ends)."""
    y = np.asarray(values, np.float64)
    kernel = np.ones(max(width, 1))
    return np.convolve(y, kernel, mode="same") / np.convolve(np.ones_like(y), kernel, mode="same")


def line(
    ax: Axes, x: Sequence[float], y: Sequence[float], color: str, label: str | None = None
) -> None:
    """``y`` against ``x``: dots on a short series; a long one faint, with its rolling mean
    (over a fortieth of the points) drawn over it."""
    if len(y) <= SMOOTH_ABOVE:
        ax.plot(x, y, color=color, marker=marker(len(y)), markersize=3, label=label)
        return
    ax.plot(x, y, color=color, alpha=0.25, linewidth=0.7)
    ax.plot(x, rolling_mean(y, len(y) // 40), color=color, linewidth=1.6, label=label)

"""Figures of the machinery: throughput, update ratio, policy lag and the learner's losses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tmrl2.report import plot
from tmrl2.report.figures import Section
from tmrl2.report.run import RunData, number

MAX_LOSSES = 8
"""Loss panels at most (the first ones logged)."""


def _per_row(
    run: RunData, fn: Callable[[dict[str, Any]], float | None]
) -> tuple[list[float], list[float]]:
    """``(minutes, fn(row))`` of the rows where both are numbers."""
    xs, ys = [], []
    for row in run.rows:
        t, value = number(row.get("elapsed_s")), fn(row)
        if t is not None and value is not None:
            xs.append(t / 60.0)
            ys.append(value)
    return xs, ys


def _ratio(row: dict[str, Any]) -> float | None:
    """Updates per env step as logged, else from the counters (an older run)."""
    measured = number(row.get("updates_per_step"))
    if measured is not None:
        return measured
    updates, samples = number(row.get("updates")), number(row.get("samples"))
    return updates / samples if updates is not None and samples else None


def _lag(row: dict[str, Any]) -> float | None:
    version, used = number(row.get("weights_version")), number(row.get("worker_policy_version"))
    return None if version is None or used is None else version - used


def throughput(run: RunData, path: Path) -> Section:
    """Samples/s and updates/s, updates per env step, and policy lag, over wall clock."""
    title = "Throughput and lag"
    if not any(number(r.get("elapsed_s")) is not None for r in run.rows):
        return Section(title, None, "No metrics rows yet.")
    fig = plot.figure(11, 3.4, cols=3)
    rate_ax, ratio_ax, lag_ax = fig.axes
    for key, colour in (("samples_per_s", "tab:blue"), ("updates_per_s", "tab:red")):
        x, y = run.series(key, x="elapsed_s")
        plot.line(rate_ax, [t / 60.0 for t in x], y, colour, key.replace("_per_s", "/s"))
    rate_ax.legend(fontsize=8)
    plot.style(rate_ax, "env steps and updates per second", "per second")
    plot.line(ratio_ax, *_per_row(run, _ratio), "tab:purple", "measured")
    targets = [number(r.get("updates_per_step_set")) for r in run.rows]
    target = next((t for t in reversed(targets) if t is not None), None)
    if target is not None:
        ratio_ax.axhline(target, color="black", linestyle="--", linewidth=1, label="set")
    ratio_ax.legend(fontsize=8)
    plot.style(ratio_ax, "updates per env step", "ratio")
    plot.line(lag_ax, *_per_row(run, _lag), "tab:brown")
    plot.style(lag_ax, "policy lag (weights published - used)", "versions")
    for ax in fig.axes:
        ax.set_xlabel("minutes of training")
    plot.save(fig, path)
    return Section(
        title,
        path,
        "Left, environment steps (samples) and learner updates per second. Middle, updates per "
        "env step as measured against the configured ratio (dashed): well below it, the "
        "trainer cannot keep up with the workers. Right, the policy lag: how "
        "many weight versions the trainer has published beyond the newest one a worker's "
        "experience was collected with (0-2 is healthy; a growing lag means stale data).",
    )


def losses(run: RunData, path: Path) -> Section:
    """Every ``loss/<name>`` of the learner against updates, one panel each."""
    title = "Losses"
    keys = run.keys("loss/")[:MAX_LOSSES]
    if not keys:
        return Section(title, None, "No losses in the metrics yet (no update has run).")
    cols = min(len(keys), 4)
    rows = -(-len(keys) // cols)
    fig = plot.figure(11, 2.6 * rows, cols=cols, rows=rows)
    for ax, key in zip(fig.axes, keys, strict=False):
        x, y = run.series(key, x="updates")
        plot.line(ax, x, y, "tab:blue")
        plot.steps_axis(ax, "updates")
        plot.style(ax, key.removeprefix("loss/"))
    for ax in fig.axes[len(keys) :]:
        ax.set_visible(False)
    plot.save(fig, path)
    return Section(
        title,
        path,
        "The learner's last losses and statistics at each log window against updates: the "
        "critic loss (TD error), the actor loss, the entropy coefficient alpha and its loss, "
        "the mean Q value and the policy entropy (SAC). Q values that keep climbing while "
        "returns do not suggest overestimation.",
    )

"""The training figures of a report, from ``metrics.jsonl`` rows (:class:`RunData`).

Each function draws one PNG and returns a :class:`Section` (title, image, how to read it), or
a section without an image that says why there is nothing to draw (no episode yet, a task
without reward terms, a run that is not a race): any run folder renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tmrl2.report import plot
from tmrl2.report.run import RunData, number

RECENT_EPISODES = 20
"""Episodes behind each point of the finish rate (the trainer's recent finish rate)."""
MAX_LAP_TRACKS = 8
"""Beyond this many tracks the lap figure shows lap / reference ratios, not seconds."""


@dataclass(frozen=True)
class Section:
    """One block of the page."""

    title: str
    image: Path | None
    """The PNG (None: nothing to draw, ``text`` says why)."""
    text: str


def _minutes(row: dict[str, Any]) -> float | None:
    t = number(row.get("elapsed_s"))
    return None if t is None else t / 60.0


def _value(row: dict[str, Any], key: str) -> float:
    """A row's number, NaN when missing (a gap in a line)."""
    value = number(row.get(key))
    return math.nan if value is None else value


def learning_curves(run: RunData, path: Path) -> Section:
    """Return per log window (mean line, min..max band, every episode as a dot) against env
    steps and against wall clock."""
    title = "Learning curves"
    windows = [r for r in run.rows if number(r.get("return_mean")) is not None]
    key, what = "return_mean", "mean return of the episodes of each log window"
    if not windows:  # an older run: the recent mean only
        windows = [r for r in run.rows if number(r.get("return_recent_mean")) is not None]
        key, what = "return_recent_mean", "mean return of the last 100 episodes"
    if not windows:  # older still: the last episode's return at each row
        windows = [r for r in run.rows if number(r.get("last_return")) is not None]
        key, what = "last_return", "return of the last episode before each row"
    if not windows:
        return Section(title, None, "No episode has ended yet: no return to draw.")
    fig = plot.figure(11, 3.6, cols=2)
    for ax, xkey in zip(fig.axes, ("samples", "minutes"), strict=True):
        xs = [number(r.get("samples")) if xkey == "samples" else _minutes(r) for r in windows]
        keep = [(x, r) for x, r in zip(xs, windows, strict=True) if x is not None]
        x = [p[0] for p in keep]
        mean = [_value(r, key) for _, r in keep]
        dot_x = [xv for xv, r in keep for v in r.get("returns") or [] if number(v) is not None]
        dot_y = [float(v) for _, r in keep for v in r.get("returns") or [] if number(v) is not None]
        if dot_x:
            ax.scatter(dot_x, dot_y, s=4, alpha=0.25, color="tab:gray", label="episode")
        if key == "return_mean":
            lo = [_value(r, "return_min") for _, r in keep]
            hi = [_value(r, "return_max") for _, r in keep]
            ax.fill_between(x, lo, hi, alpha=0.2, color="tab:blue", label="min..max")
        plot.line(ax, x, mean, "tab:blue", "mean" if key == "return_mean" else "return")
        plot.style(ax, f"return against {'env steps' if xkey == 'samples' else 'wall clock'}")
        if xkey == "samples":
            plot.steps_axis(ax)
        else:
            ax.set_xlabel("minutes of training")
        ax.set_ylabel("episode return")
        ax.legend(fontsize=8, loc="lower right")
    plot.save(fig, path)
    return Section(
        title,
        path,
        f"The line is the {what}"
        + (
            "; the band spans the lowest to the highest return of the window and each grey "
            "dot is one episode"
            if key == "return_mean"
            else ""
        )
        + ". Left against environment steps (sample efficiency), right against wall-clock "
        "minutes (what the machine achieved).",
    )


def lap_progress(run: RunData, path: Path) -> Section:
    """Best lap per track over time with its reference lap; finish rate per log window."""
    title = "Lap times"
    if not run.racing:
        return Section(title, None, "Not a racing run (no tracks, no laps): no lap figure.")
    if not run.rows:
        return Section(title, None, "No metrics rows yet.")
    per_track = run.track_series()
    if not per_track:  # an older run: the overall best lap only
        per_track = {"all tracks": [(t * 60.0, {"best_lap_s": b}) for t, b in _overall(run)]}
    ratios = len(per_track) > MAX_LAP_TRACKS
    fig = plot.figure(11, 3.6, cols=2)
    ax, rate_ax = fig.axes
    laps = 0
    end = _minutes(run.rows[-1]) if run.rows else None
    for i, (name, points) in enumerate(per_track.items()):
        colour = f"C{i % 10}"
        key = "lap_ratio" if ratios else "best_lap_s"
        xy = [(t / 60.0, v) for t, s in points if (v := number(s.get(key))) is not None]
        if xy:
            laps += 1
            label = None if ratios else name
            if end is not None and end > xy[-1][0]:  # the best lap holds to the end
                xy.append((end, xy[-1][1]))
            ax.step(
                [t for t, _ in xy],
                [v for _, v in xy],
                where="post",
                color=colour,
                label=label,
                marker=plot.marker(len(xy)),
            )
        reference = next((number(s.get("reference_lap_s")) for _, s in reversed(points)), None)
        if reference is not None and not ratios:
            ax.axhline(reference, color=colour, linestyle="--", linewidth=1)
    if ratios:
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="reference")
    if not laps:
        ax.text(0.5, 0.75, "no lap finished yet", ha="center", va="center", transform=ax.transAxes)
    if end:
        ax.set_xlim(0.0, end * 1.02)
    plot.style(
        ax, "best lap per track (dashed: reference lap)", "lap / reference" if ratios else "seconds"
    )
    ax.set_xlabel("minutes of training")
    if laps and not ratios:
        ax.legend(fontsize=8)
    _finish_rate(run, rate_ax)
    plot.save(fig, path)
    unit = (
        f"{len(per_track)} tracks: each line is a track's best lap divided by its reference lap "
        "(below 1: faster than the reference)"
        if ratios
        else "each line is a track's best lap so far in seconds, its dashed line the track's "
        "reference lap (the car's quasi-steady-state speed profile along the centerline)"
    )
    return Section(
        title,
        path,
        f"Left, {unit}; it steps down when a faster lap comes in. Right, the share of the "
        f"last {RECENT_EPISODES} or so episodes that reached the finish (all tracks), and as "
        "dots how far along its track the last episode before each row got (1: the finish).",
    )


def _overall(run: RunData) -> list[tuple[float, float]]:
    xs, ys = run.series("best_lap_s", x="elapsed_s")
    return [(x / 60.0, y) for x, y in zip(xs, ys, strict=True)]


def _finish_rate(run: RunData, ax: Any) -> None:
    """The finish rate over the last :data:`RECENT_EPISODES` episodes at each row (from the
    ``episodes`` and ``finishes`` counters), and each row's last progress as a dot."""
    counts: list[tuple[float, float, float]] = []  # minutes, episodes, finishes
    x, rate, dots_x, dots = [], [], [], []
    for row in run.rows:
        t, eps, fin = _minutes(row), number(row.get("episodes")), number(row.get("finishes"))
        progress = number(row.get("last_progress"))
        if t is not None and progress is not None and eps:
            dots_x.append(t)
            dots.append(progress)
        if t is None or eps is None or fin is None or eps < 1:
            continue
        counts.append((t, eps, fin))
        # the latest earlier row at least RECENT_EPISODES episodes back (else the start)
        back = next((c for c in reversed(counts) if c[1] <= eps - RECENT_EPISODES), (t, 0.0, 0.0))
        x.append(t)
        rate.append((fin - back[2]) / (eps - back[1]))
    if dots:
        ax.scatter(dots_x, dots, s=4, alpha=0.35, color="tab:orange", label="last progress")
    if x:
        ax.plot(
            x,
            rate,
            color="tab:green",
            marker=plot.marker(len(x)),
            markersize=3,
            label=f"finish rate (last ~{RECENT_EPISODES} episodes)",
        )
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no episode yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(-0.05, 1.05)
    plot.style(ax, "finish rate and progress", "fraction")
    ax.set_xlabel("minutes of training")


def reward_terms(run: RunData, path: Path) -> Section:
    """Each reward term's share of the last episode's return, per log window."""
    title = "Reward terms"
    keys = run.keys("reward/")
    if not keys:
        text = (
            "No reward terms in the metrics: the env brings its own reward (a Gymnasium task)."
            if run.env_kind == "gym"
            else "No reward terms in the metrics yet (no episode has ended)."
        )
        return Section(title, None, text)
    fig = plot.figure(11, 3.4)
    ax = fig.axes[0]
    for i, key in enumerate(keys):
        x, y = run.series(key)
        plot.line(ax, x, y, f"C{i % 10}", key.removeprefix("reward/"))
    plot.steps_axis(ax)
    plot.style(ax, "reward terms of the last episode of each log window", "episode sum")
    ax.legend(fontsize=8)
    plot.save(fig, path)
    return Section(
        title,
        path,
        "Each line is one weighted term of the configured reward summed over the last episode "
        "that ended before the row was logged (their sum is that episode's return). A term "
        "that dominates or goes the wrong way shows what the driver is really optimising.",
    )

"""The racing line: a driven lap over the track map, coloured by speed, beside the reference.

Left, the policy's lap (:class:`~tmrl2.report.lap.Lap`) drawn over the track's borders; right,
the reference: the centerline coloured by the quasi-steady-state speed profile that the
track's reference lap time integrates (:func:`~tmrl2.envs.sim.reference.speed_profile`), on
the same colour scale. Below, both speeds against the distance along the track. The map is
seen from above as the simulator's top view draws it (x to the right, z down): a right turn
looks like one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmrl2.report import plot
from tmrl2.report.figures import Section
from tmrl2.report.lap import Lap

if TYPE_CHECKING:
    from tmrl2.envs.sim.track import Track

KMH = 3.6


def arc_length(track: Track, positions: np.ndarray) -> np.ndarray:
    """Arc length along the centerline of each position (projected, following the lap)."""
    out, hint = [], 0
    for x, z in positions[:, [0, 2]]:
        hint, s, _ = track.project(float(x), float(z), hint)
        out.append(s)
    return np.asarray(out)


def _map(ax: Any, track: Track) -> None:
    """Borders, the start line and the finish line, x right and z down."""
    for wall in (track.left_wall, track.right_wall):
        ax.plot(wall[:, 0], wall[:, 1], color="0.55", linewidth=0.8)
    for s, colour in ((0.0, "tab:green"), (track.length_m, "black")):
        i = track.segment_at(s)
        x, z = track.point_at(s)
        half = 0.5 * float(track.width_m[i])
        nx, nz = track.normals[i]
        ax.plot(
            [x - nx * half, x + nx * half],
            [z - nz * half, z + nz * half],
            color=colour,
            linewidth=2.5,
        )
    ax.set_aspect("equal", adjustable="datalim")
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])


def _coloured(ax: Any, xz: np.ndarray, speed_kmh: np.ndarray, norm: Any) -> Any:
    from matplotlib.collections import LineCollection

    segments = np.stack([xz[:-1], xz[1:]], axis=1)
    lines = LineCollection(list(segments), cmap="turbo", norm=norm, linewidths=2.2)
    lines.set_array(0.5 * (speed_kmh[:-1] + speed_kmh[1:]))
    ax.add_collection(lines)
    return lines


def racing_line(lap: Lap, track: Track, reference_kmh: np.ndarray, path: Path) -> Section:
    """Draw ``lap`` on ``track`` beside the reference speed profile (km/h per centerline
    point) and write the PNG."""
    from matplotlib.colors import Normalize

    title = "Racing line"
    if len(lap.positions) < 2:
        return Section(title, None, "The lap has no step to draw.")
    speed = lap.speeds_ms * KMH
    norm = Normalize(0.0, float(max(speed.max(), reference_kmh.max(), 1.0)))
    fig = plot.figure(11, 8.2, rows=0)
    axes = fig.subplot_mosaic([["run", "ref"], ["speed", "speed"]], height_ratios=[2.3, 1])
    for key, label in (("run", lap.describe()), ("ref", _reference_title(lap))):
        _map(axes[key], track)
        axes[key].set_title(label, fontsize=10)
    lines = _coloured(axes["run"], lap.positions[:, [0, 2]], speed, norm)
    axes["run"].plot(*lap.positions[-1, [0, 2]], marker="o", color="black", markersize=5)
    centre = track.points[:, [0, 2]]
    finish = int(np.searchsorted(track.s_m, track.length_m)) + 1
    _coloured(axes["ref"], centre[:finish], reference_kmh[:finish], norm)
    fig.colorbar(lines, ax=[axes["run"], axes["ref"]], label="speed (km/h)", shrink=0.8)
    ax = axes["speed"]
    ax.plot(arc_length(track, lap.positions), speed, color="tab:red", label="this run's lap")
    ax.plot(
        track.s_m[:finish],
        reference_kmh[:finish],
        color="0.3",
        linestyle="--",
        label="reference profile",
    )
    ax.axvline(track.length_m, color="black", linewidth=1)
    ax.set_xlim(0.0, track.length_m * 1.02)
    plot.style(ax, "speed along the track", "km/h")
    ax.set_xlabel("distance along the centerline (m)")
    ax.legend(fontsize=8)
    plot.save(fig, path)
    return Section(
        title,
        path,
        f"One deterministic evaluation lap of the run's policy on {lap.track} (the first "
        "episode `tmrl2 eval` drives), coloured by speed, the black dot where it ended; green "
        "bar: start, black bar: finish. Right, the reference: the centerline at the speeds of "
        "the profile behind the reference lap time (grip-limited in the bends, engine- and "
        "brake-limited between them), same colours. Below, both speeds against the distance "
        "along the track: where the red line runs under the dashed one, the driver is slower "
        "than the reference; a line cut short is a lap that did not finish.",
    )


def _reference_title(lap: Lap) -> str:
    if lap.reference_lap_s is None:
        return "reference"
    return f"reference lap {lap.reference_lap_s:.2f} s (centerline speed profile)"

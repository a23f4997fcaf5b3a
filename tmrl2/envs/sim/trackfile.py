"""Track files (YAML or JSON) and import of a recorded reference line.

A track file is one mapping; the same keys in YAML (``.yaml``/``.yml``) or JSON (``.json``)::

    format: tmrl2-track/1      # required, this exact string
    name: my-track             # optional, default: the file's stem
    centerline:                # required: [x, y, z] points in metres, Y up, in driving order
      - [0.0, 0.0, 0.0]
      - [2.0, 0.0, 0.0]
    width_m: 14.0              # a number, or one number per centerline point
    resample_m: 2.0            # optional: smooth + resample the points at this spacing;
                               #   null/absent: the points are used as given
    smooth_m: 0.0              # optional: Gaussian smoothing scale (m) when resampling
    closed: false              # the centerline is a loop (the last point joins the first)
    laps: 1                    # laps of a closed loop to the finish
    finish_m: null             # arc length of the finish; default: the end of the line
                               #   (point-to-point) or laps x loop length (closed)
    runoff_m: 40.0             # straight road added past the finish (point-to-point)
    checkpoint_spacing_m: 100  # checkpoints at regular arc length...
    checkpoints_m: null        # ...or an explicit increasing list of arc lengths
    walls: true                # false: open borders, grass beyond the road
    surfaces:                  # optional sections; the rest is road
      - {from_m: 300.0, to_m: 420.0, surface: dirt}   # road | dirt | grass

:func:`save_track_file` writes a :class:`Track` so that :func:`load_track_file` gives back
the same geometry, checkpoints and surfaces (points as given, no run-off added).
:func:`import_reference_line` turns an ``(N, 3)`` array of positions recorded along a driven
lap (tmrl's reward recordings have this shape) into a track of the real map's geometry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tmrl2.envs.sim.track import SURFACES, Track, add_runoff, resample, surface_codes

FORMAT = "tmrl2-track/1"
"""Value of the ``format`` key of every track file."""
_KEYS = {
    "format",
    "name",
    "centerline",
    "width_m",
    "resample_m",
    "smooth_m",
    "closed",
    "laps",
    "finish_m",
    "runoff_m",
    "checkpoint_spacing_m",
    "checkpoints_m",
    "walls",
    "surfaces",
}


def smooth(points: np.ndarray, sigma_samples: float, closed: bool) -> np.ndarray:
    """Gaussian smoothing of each column of ``points`` (edges padded with the end points, or
    wrapped around for a closed loop)."""
    if sigma_samples <= 0.0:
        return points
    half = int(np.ceil(3.0 * sigma_samples))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_samples) ** 2)
    kernel /= kernel.sum()
    if closed:
        padded = np.pad(points, ((half, half), (0, 0)), mode="wrap")
    else:
        padded = np.pad(points, ((half, half), (0, 0)), mode="edge")
    return np.stack(
        [np.convolve(padded[:, k], kernel, mode="valid") for k in range(points.shape[1])], 1
    )


def track_from_line(
    name: str,
    points: np.ndarray,
    width_m: float | np.ndarray,
    *,
    resample_m: float | None = 2.0,
    smooth_m: float = 0.0,
    closed: bool = False,
    laps: int = 1,
    finish_m: float | None = None,
    runoff_m: float = 40.0,
    checkpoint_spacing_m: float = 100.0,
    checkpoints_m: list[float] | None = None,
    surface_sections: list[tuple[float, float, int]] | None = None,
    walls: bool = True,
) -> Track:
    """A track along a polyline of ``(x, y, z)`` points (see the module docstring's keys).

    With ``resample_m`` the line is resampled, smoothed over ``smooth_m`` and resampled again
    at uniform spacing; a per-point width follows the points. A closed loop is unrolled into
    ``laps`` copies followed by ``runoff_m`` of the next lap, so the car simply drives on.
    """
    line = np.asarray(points, np.float64)
    if line.ndim != 2 or line.shape[1] != 3 or len(line) < 3:
        raise ValueError(f"centerline must have shape (N >= 3, 3), got {line.shape}")
    widths = np.broadcast_to(np.asarray(width_m, np.float64), (len(line),))
    line = np.column_stack([line, widths])
    if closed and np.linalg.norm(line[0, [0, 2]] - line[-1, [0, 2]]) > 1e-6:
        line = np.vstack([line, line[:1]])
    if resample_m is not None:
        line = resample(line, resample_m / 4.0)
        line = smooth(line, smooth_m / (resample_m / 4.0), closed)
        line = resample(line, resample_m)
    spacing = float(np.mean(np.linalg.norm(np.diff(line[:, [0, 2]], axis=0), axis=1)))
    loop_m = float(np.sum(np.linalg.norm(np.diff(line[:, [0, 2]], axis=0), axis=1)))
    if closed:
        loop = line[:-1]
        extra = int(np.ceil(runoff_m / spacing)) + 1
        line = np.vstack([np.tile(loop, (laps, 1)), loop[: min(extra, len(loop))]])
        finish = loop_m * laps if finish_m is None else finish_m
    else:
        finish = loop_m if finish_m is None else finish_m
        if runoff_m > 0.0:
            line = add_runoff(line, runoff_m, spacing)
    centerline = line[:, :3]
    # a single width stays exactly that number (smoothing a constant is exact only up to
    # rounding, and files written back say `width_m: 12.0`, not one value per point)
    width = np.full(len(line), float(width_m)) if np.ndim(width_m) == 0 else line[:, 3]
    return Track(
        name,
        centerline,
        width,
        finish,
        checkpoint_spacing_m,
        checkpoints_m=checkpoints_m,
        surfaces=surface_codes(centerline, surface_sections or []),
        walls=walls,
        laps=laps,
    )


def import_reference_line(
    points: np.ndarray,
    width_m: float = 14.0,
    *,
    name: str = "imported",
    spacing_m: float = 2.0,
    smooth_m: float = 6.0,
    checkpoint_spacing_m: float = 100.0,
    runoff_m: float = 40.0,
    closed: bool = False,
) -> Track:
    """A track from positions recorded along a driven lap: ``(N, 3)``, ``(x, y, z)``, Y up.

    Points closer than 1 cm to the previous one (a car waiting at the start) are dropped; the
    rest is resampled every ``spacing_m / 4``, smoothed with a Gaussian of ``smooth_m`` (the
    recording's jitter and the driver's weaving), resampled every ``spacing_m``, given
    ``width_m`` and checkpoints every ``checkpoint_spacing_m`` of arc length.
    """
    line = np.asarray(points, np.float64)
    if line.ndim != 2 or line.shape[1] != 3:
        raise ValueError(f"a reference line has shape (N, 3), got {line.shape}")
    step = np.linalg.norm(np.diff(line[:, [0, 2]], axis=0), axis=1)
    line = line[np.r_[True, step > 0.01]]
    if len(line) < 3:
        raise ValueError("a reference line needs at least 3 distinct positions")
    return track_from_line(
        name,
        line,
        width_m,
        resample_m=spacing_m,
        smooth_m=smooth_m,
        closed=closed,
        runoff_m=runoff_m,
        checkpoint_spacing_m=checkpoint_spacing_m,
    )


def _sections(raw: Any) -> list[tuple[float, float, int]]:
    out = []
    for item in raw or []:
        surface = item.get("surface")
        if surface not in SURFACES:
            raise ValueError(f"surface {surface!r} is not one of {', '.join(SURFACES)}")
        out.append((float(item["from_m"]), float(item["to_m"]), SURFACES.index(surface)))
    return out


def track_from_dict(data: dict[str, Any], default_name: str = "track") -> Track:
    """A track from the mapping of a track file (see the module docstring)."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a track file: 'format' must be {FORMAT!r}")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"unknown track file keys: {', '.join(sorted(unknown))}")
    if "centerline" not in data:
        raise ValueError("a track file needs 'centerline': a list of [x, y, z] points")
    resample_m = data.get("resample_m")
    return track_from_line(
        str(data.get("name", default_name)),
        np.asarray(data["centerline"], np.float64),
        np.asarray(data.get("width_m", 14.0), np.float64),
        resample_m=None if resample_m is None else float(resample_m),
        smooth_m=float(data.get("smooth_m", 0.0)),
        closed=bool(data.get("closed", False)),
        laps=int(data.get("laps", 1)),
        finish_m=None if data.get("finish_m") is None else float(data["finish_m"]),
        runoff_m=float(data.get("runoff_m", 40.0)),
        checkpoint_spacing_m=float(data.get("checkpoint_spacing_m", 100.0)),
        checkpoints_m=data.get("checkpoints_m"),
        surface_sections=_sections(data.get("surfaces")),
        walls=bool(data.get("walls", True)),
    )


def load_track_file(path: str | Path) -> Track:
    """The track in a ``.yaml``/``.yml``/``.json`` track file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a track file holds one mapping")
    try:
        return track_from_dict(data, default_name=path.stem)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def track_to_dict(track: Track) -> dict[str, Any]:
    """The mapping :func:`save_track_file` writes (points as they are, no run-off added)."""
    codes = track.surfaces
    sections = []
    start = 0
    for k in range(1, len(codes) + 1):
        if k == len(codes) or codes[k] != codes[start]:
            if codes[start] != 0:
                sections.append(
                    {
                        "from_m": float(track.s_m[start]),
                        "to_m": float(track.s_m[k]),
                        "surface": SURFACES[int(codes[start])],
                    }
                )
            start = k
    width = track.width_m
    return {
        "format": FORMAT,
        "name": track.name,
        "centerline": track.points.tolist(),
        "width_m": float(width[0]) if np.all(width == width[0]) else width.tolist(),
        "resample_m": None,
        "laps": track.laps,
        "finish_m": track.length_m,
        "runoff_m": 0.0,
        "checkpoints_m": list(track.checkpoints_m),
        "walls": track.walls,
        "surfaces": sections,
    }


def save_track_file(track: Track, path: str | Path) -> None:
    """Write ``track`` as YAML or JSON (by the file's suffix)."""
    path = Path(path)
    data = track_to_dict(track)
    if path.suffix == ".json":
        path.write_text(json.dumps(data), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

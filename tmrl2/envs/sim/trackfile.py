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

import difflib
import json
import math
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
    # math.exp, not np.exp: numpy's float64 exp differs in the last bits on AVX-512 CPUs (SVML),
    # and an imported track must have the same geometry on every machine
    kernel = np.array([math.exp(-0.5 * (k / sigma_samples) ** 2) for k in range(-half, half + 1)])
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
    road_m = float(np.sum(np.linalg.norm(np.diff(centerline[:, [0, 2]], axis=0), axis=1)))
    check_sections(surface_sections or [], road_m, finish)
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
    laps: int = 1,
    surface_sections: list[tuple[float, float, int]] | None = None,
    walls: bool = True,
) -> Track:
    """A track from positions recorded along a driven lap: ``(N, 3)``, ``(x, y, z)``, Y up.

    Points closer than 1 cm to the previous one (a car waiting at the start) are dropped; the
    rest is resampled every ``spacing_m / 4``, smoothed with a Gaussian of ``smooth_m`` (the
    recording's jitter and the driver's weaving), resampled every ``spacing_m``, given
    ``width_m`` and checkpoints every ``checkpoint_spacing_m`` of arc length.
    A ``closed`` line (a circuit) is a loop, driven ``laps`` times to the finish.
    ``surface_sections`` lists ``(from_m, to_m, surface code)`` by arc length of the imported
    road (the rest is road); ``walls=False`` leaves the borders open (grass beyond the road).
    Raises a one-line :class:`ValueError` for a line of the wrong shape, with NaN or infinite
    values, fewer than 3 distinct positions, or a surface section outside the track.
    """
    line = np.asarray(points)
    if line.ndim != 2 or line.shape[1] != 3:
        raise ValueError(f"a reference line has shape (N, 3): x, y, z, Y up; got {line.shape}")
    if not np.issubdtype(line.dtype, np.number) or np.issubdtype(line.dtype, np.complexfloating):
        raise ValueError(f"a reference line holds real numbers, got dtype {line.dtype}")
    line = line.astype(np.float64)
    bad = ~np.all(np.isfinite(line), axis=1)
    if bad.any():
        raise ValueError(
            f"a reference line has {int(bad.sum())} positions with NaN or infinite values "
            f"(first at row {int(np.argmax(bad))})"
        )
    step = np.linalg.norm(np.diff(line[:, [0, 2]], axis=0), axis=1)
    line = line[np.r_[True, step > 0.01]]
    if len(line) < 3:
        raise ValueError(
            f"a reference line needs at least 3 distinct positions (1 cm apart), got {len(line)}"
        )
    if not width_m > 0.0 or not np.isfinite(width_m):
        raise ValueError(f"the road width must be a positive number of metres, got {width_m}")
    if laps < 1 or (laps > 1 and not closed):
        raise ValueError(f"laps must be 1, or more on a closed loop; got {laps} (closed={closed})")
    if not spacing_m > 0.0 or not smooth_m >= 0.0:
        raise ValueError(f"spacing_m must be > 0 and smooth_m >= 0, got {spacing_m}, {smooth_m}")
    return track_from_line(
        name,
        line,
        width_m,
        resample_m=spacing_m,
        smooth_m=smooth_m,
        closed=closed,
        laps=laps,
        runoff_m=runoff_m,
        checkpoint_spacing_m=checkpoint_spacing_m,
        surface_sections=surface_sections,
        walls=walls,
    )


_SECTION_KEYS = ("from_m", "to_m", "surface")


def _sections(raw: Any) -> list[tuple[float, float, int]]:
    """``surfaces`` of a track file as ``(from_m, to_m, code)``; one-line errors naming the
    entry at fault."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("'surfaces' must be a list of {from_m, to_m, surface} mappings")
    out = []
    for k, item in enumerate(raw):
        where = f"surfaces[{k}]"
        if not isinstance(item, dict) or set(item) != set(_SECTION_KEYS):
            raise ValueError(
                f"{where} must be a mapping with exactly from_m, to_m and surface, got {item!r}"
            )
        surface = item["surface"]
        if surface not in SURFACES:
            raise ValueError(f"{where}: surface {surface!r} is not one of {', '.join(SURFACES)}")
        start, end = (
            _number(item["from_m"], f"{where}.from_m"),
            _number(item["to_m"], f"{where}.to_m"),
        )
        out.append((start, end, SURFACES.index(surface)))
    return out


def check_sections(
    sections: list[tuple[float, float, int]], road_m: float, finish_m: float
) -> None:
    """Raise a one-line :class:`ValueError` unless every ``(from_m, to_m, code)`` section
    lies on the road (``0 <= from_m < to_m <= road_m``) with a known surface code."""
    for start, end, code in sections:
        if not 0 <= code < len(SURFACES):
            raise ValueError(f"surface code {code} is not one of 0..{len(SURFACES) - 1}")
        label = f"surface section {start:g}-{end:g} m ({SURFACES[code]})"
        if not start < end:
            raise ValueError(f"{label}: its start must be before its end")
        if start < 0.0 or end > road_m + 1e-6 * max(road_m, 1.0):
            raise ValueError(
                f"{label} is outside the track: its road runs from 0 to {road_m:.1f} m "
                f"(finish at {finish_m:.1f} m)"
            )


def _number(value: Any, key: str) -> float:
    """A finite number, or a one-line error naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"'{key}' must be a number, got {value!r}")
    return float(value)


def _optional(data: dict[str, Any], key: str, default: float | None) -> float | None:
    value = data.get(key, default)
    return None if value is None else _number(value, key)


def _flag(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"'{key}' must be true or false, got {value!r}")
    return value


def _centerline(raw: Any) -> np.ndarray:
    try:
        points = np.asarray(raw, np.float64)
    except (ValueError, TypeError):
        raise ValueError("'centerline' must be a list of [x, y, z] number triples") from None
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise ValueError(
            f"'centerline' must be at least 3 points [x, y, z] (shape (N >= 3, 3)), "
            f"got shape {points.shape}"
        )
    if not np.all(np.isfinite(points)):
        raise ValueError("'centerline' holds NaN or infinite values")
    return points


def _width(raw: Any, count: int) -> np.ndarray:
    try:
        width = np.asarray(raw, np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"'width_m' must be a number, got {raw!r}") from None
    if width.ndim > 1 or (width.ndim == 1 and len(width) != count):
        raise ValueError(
            f"'width_m' must be one number or one per centerline point ({count}), "
            f"got shape {width.shape}"
        )
    if not np.all(np.isfinite(width)) or np.any(width <= 0.0):
        raise ValueError("'width_m' must be positive numbers of metres")
    return width


def track_from_dict(data: dict[str, Any], default_name: str = "track") -> Track:
    """A track from the mapping of a track file (see the module docstring); one-line
    :class:`ValueError` naming the key at fault."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a track file: 'format' must be {FORMAT!r}")
    unknown = set(data) - _KEYS
    if unknown:
        hints = []
        for key in sorted(unknown):
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise ValueError(
            f"unknown track file keys: {', '.join(hints)}; known: {', '.join(sorted(_KEYS))}"
        )
    if "centerline" not in data:
        raise ValueError("a track file needs 'centerline': a list of [x, y, z] points")
    centerline = _centerline(data["centerline"])
    laps = data.get("laps", 1)
    if isinstance(laps, bool) or not isinstance(laps, int) or laps < 1:
        raise ValueError(f"'laps' must be a whole number >= 1, got {laps!r}")
    checkpoints = data.get("checkpoints_m")
    if checkpoints is not None:
        if not isinstance(checkpoints, list):
            raise ValueError("'checkpoints_m' must be a list of arc lengths (m) or null")
        checkpoints = [_number(c, "checkpoints_m") for c in checkpoints]
    resample_m = _optional(data, "resample_m", None)
    spacing = _optional(data, "checkpoint_spacing_m", 100.0)
    if (resample_m is not None and resample_m <= 0.0) or spacing is None or spacing <= 0.0:
        raise ValueError("'resample_m' and 'checkpoint_spacing_m' must be positive")
    name = data.get("name", default_name)
    return track_from_line(
        str(name),
        centerline,
        _width(data.get("width_m", 14.0), len(centerline)),
        resample_m=resample_m,
        smooth_m=_optional(data, "smooth_m", 0.0) or 0.0,
        closed=_flag(data, "closed", False),
        laps=laps,
        finish_m=_optional(data, "finish_m", None),
        runoff_m=_optional(data, "runoff_m", 40.0) or 0.0,
        checkpoint_spacing_m=spacing,
        checkpoints_m=checkpoints,
        surface_sections=_sections(data.get("surfaces")),
        walls=_flag(data, "walls", True),
    )


def load_track_file(path: str | Path) -> Track:
    """The track in a ``.yaml``/``.yml``/``.json`` track file.

    Every problem is a one-line :class:`ValueError` starting with the path: a missing or
    unreadable file, invalid YAML/JSON, or a bad key (named, with what it must be).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such track file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (a track file is YAML or JSON)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the track file ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        got = "nothing" if data is None else f"a {type(data).__name__}"
        raise ValueError(
            f"{path}: a track file holds one mapping (format, centerline, ...), got {got}"
        )
    try:
        return track_from_dict(data, default_name=path.stem)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: {' '.join(str(exc).split())}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: the problem and where."""
    problem = getattr(exc, "problem", None) or "syntax error"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


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

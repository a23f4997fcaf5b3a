"""The tracks of a run: specs, their validation, lazy loading, and the per-episode draw.

A run's ``env.tracks`` is a list of specs:

- a bundled name (``default``, ``alpine``... see :func:`~tmrl2.envs.sim.track.known_tracks`);
- ``gen:<seed>``, one generated track, or ``generated:A-B`` (``generated:N``), the generated
  tracks of seeds ``A`` to ``B`` inclusive;
- the path of a track file (``.yaml``, ``.yml``, ``.json``; see ``sim/trackfile.py``);
- the path of a recorded line (``.npy``, ``N x 3`` positions ``(x, y, z)``, Y up), imported
  with :func:`~tmrl2.envs.sim.trackfile.import_reference_line`'s defaults.

:func:`expand_tracks` checks every spec when the config loads (a bad one fails there, naming
it) without building any track. :class:`TrackSet` builds them when first needed and caches
each track's reference lap; :class:`TrackSampler` draws the track of each episode:
``uniform``, or ``adaptive`` (more episodes where the driver fails or is slow, never fewer than
half a uniform share on any track).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from tmrl2.envs.sim.car import CarParams
from tmrl2.envs.sim.track import GENERATED_PREFIX, Track, check_track_name

RANGE_PREFIX = "generated:"
"""``generated:A-B`` expands to the generated tracks ``gen:A`` to ``gen:B``."""
MAX_RANGE = 100_000
"""Largest number of tracks one ``generated:`` range may name."""
TRACK_FILE_SUFFIXES = (".yaml", ".yml", ".json")
"""Track files, read and built when a config naming them loads."""
LINE_SUFFIX = ".npy"
"""A recorded line: positions along a driven lap, imported as a track."""
CAP_FACTOR = 2.5
"""Derived episode cap: this many times the track's reference lap."""
Sampling = Literal["uniform", "adaptive"]

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_tracks(specs: Sequence[str]) -> list[str]:
    """The specs with every ``generated:`` range expanded to ``gen:<seed>`` names, each
    checked (:func:`check_track_spec`); duplicates are kept once, in order."""
    out: list[str] = []
    for spec in specs:
        if spec.startswith(RANGE_PREFIX):
            match = _RANGE.match(spec[len(RANGE_PREFIX) :])
            if match is None:
                raise ValueError(
                    f"track {spec!r}: a generated range is 'generated:A-B' (seeds A to B, "
                    "e.g. generated:0-19) or 'generated:N'"
                )
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
            if last < first or last - first >= MAX_RANGE:
                raise ValueError(
                    f"track {spec!r}: the range must go up (A <= B) and name at most "
                    f"{MAX_RANGE} tracks"
                )
            names = [f"{GENERATED_PREFIX}{seed}" for seed in range(first, last + 1)]
        else:
            check_track_spec(spec)
            names = [spec]
        out.extend(name for name in names if name not in out)
    return out


def check_track_spec(spec: str) -> None:
    """Raise a one-line :class:`ValueError` unless ``spec`` names a loadable track: a recorded
    ``.npy`` line is opened and its shape checked, a track file is read and built (its path
    and what is wrong in it), a name must be known."""
    if spec.endswith(LINE_SUFFIX):
        load_line(spec)
        return
    check_track_name(spec)
    if spec.endswith(TRACK_FILE_SUFFIXES):
        path = Path(spec)
        _check_track_file(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _check_track_file(path: str, mtime_ns: int) -> None:
    """Read and build a track file once per version of it (configs load in every process)."""
    from tmrl2.envs.sim.trackfile import load_track_file

    load_track_file(path)


def load_line(path: str | Path) -> np.ndarray:
    """The ``(N, 3)`` float array of a recorded line; one-line errors naming the path."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recorded line {str(path)!r} does not exist")
    with path.open("rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY":
        raise ValueError(
            f"recorded line {str(path)!r} is not a numpy .npy file (it does not start with "
            "numpy's magic bytes); save the (N, 3) positions with numpy.save"
        )
    try:
        line = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        why = "it holds Python objects, refused" if "pickle" in str(exc) else str(exc)
        raise ValueError(f"recorded line {str(path)!r} is not a numpy .npy array ({why})") from None
    if line.ndim != 2 or line.shape[1] != 3 or len(line) < 3:
        raise ValueError(
            f"recorded line {str(path)!r} has shape {line.shape}; expected (N >= 3, 3): "
            "x, y, z positions, Y up"
        )
    if not np.all(np.isfinite(line)):
        raise ValueError(f"recorded line {str(path)!r} holds NaN or infinite positions")
    return np.asarray(line, np.float64)


def load_track_spec(spec: str) -> Track:
    """Build the track a spec names (a ``.npy`` line is imported, named after its file)."""
    from tmrl2.envs.sim.track import load_track

    if spec.endswith(LINE_SUFFIX):
        from tmrl2.envs.sim.trackfile import import_reference_line

        return import_reference_line(load_line(spec), name=Path(spec).stem)
    return load_track(spec)


def episode_cap_steps(max_episode_steps: int, reference_s: float, time_step_ms: int) -> int:
    """``max_episode_steps`` when set (> 0), else :data:`CAP_FACTOR` times the reference
    lap, in steps."""
    if max_episode_steps > 0:
        return max_episode_steps
    return max(1, math.ceil(CAP_FACTOR * reference_s * 1000.0 / time_step_ms))


class TrackSet:
    """The run's tracks by index, built on first use, with their reference laps."""

    def __init__(self, names: Sequence[str], params: CarParams | None = None) -> None:
        if not names:
            raise ValueError("a track set needs at least one track")
        self.names = list(names)
        self.params = params or CarParams()
        self._tracks: dict[int, Track] = {}
        self._refs: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.names)

    def track(self, i: int) -> Track:
        """Track ``i`` (built once)."""
        if i not in self._tracks:
            self._tracks[i] = load_track_spec(self.names[i])
        return self._tracks[i]

    def reference_s(self, i: int) -> float:
        """Reference lap (s) of track ``i`` for this set's car (computed once)."""
        if i not in self._refs:
            from tmrl2.envs.sim.reference import reference_lap_time_s

            self._refs[i] = reference_lap_time_s(self.track(i), self.params)
        return self._refs[i]


class TrackSampler:
    """Which track the next episode drives.

    ``uniform``: every track equally often. ``adaptive``: a track's weight is its *need*,
    ``1 - finish rate`` plus how far its recent laps are above the reference, averaged over
    its last :attr:`window` episodes (a track not driven yet has need 1), floored so that every
    track keeps at least ``min_share`` of a uniform share: no track is starved.
    """

    def __init__(
        self, n: int, mode: Sampling = "uniform", min_share: float = 0.5, window: int = 20
    ) -> None:
        if n < 1:
            raise ValueError("a sampler needs at least one track")
        if not 0.0 < min_share <= 1.0:
            raise ValueError(f"min_share must be in (0, 1], got {min_share}")
        self.n, self.mode, self.min_share, self.window = n, mode, min_share, window
        self._history: list[list[float]] = [[] for _ in range(n)]

    def record(self, i: int, finished: bool, lap_ratio: float | None) -> None:
        """An episode on track ``i`` ended (``lap_ratio``: lap time / reference, finishes)."""
        need = 1.0
        if finished:
            ratio = lap_ratio if lap_ratio is not None and math.isfinite(lap_ratio) else 1.0
            need = min(max(ratio - 1.0, 0.0), 1.0)
        history = self._history[i]
        history.append(need)
        del history[: -self.window]

    def needs(self) -> np.ndarray:
        """Mean recent need per track (1 for a track never driven)."""
        return np.array([float(np.mean(h)) if h else 1.0 for h in self._history])

    def probabilities(self) -> np.ndarray:
        """The draw's probability of each track."""
        uniform = np.full(self.n, 1.0 / self.n)
        if self.mode == "uniform" or self.n == 1:
            return uniform
        needs = self.needs()
        if needs.sum() <= 0.0:
            return uniform
        adaptive = needs / needs.sum()
        # mix with the uniform share so that the least needed track keeps min_share of it
        return self.min_share * uniform + (1.0 - self.min_share) * adaptive

    def draw(self, rng: np.random.Generator) -> int:
        """The next episode's track (one uniform draw from ``rng``; none for one track)."""
        if self.n == 1:
            return 0
        return int(rng.choice(self.n, p=self.probabilities()))

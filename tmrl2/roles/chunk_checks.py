"""What a chunk of experience must look like: one set of rules for the server and the trainer.

The wire layer (:mod:`tmrl2.net.kinds`) checks only what any ``chunk`` message has (its
sender's name, ``n``, the numbering, a list of episode maps) and knows nothing of transitions.
The rules of *this* layer know the chunk layout (:mod:`tmrl2.memory.batch`'s names, the compact
image layout of :mod:`tmrl2.memory.compact`) and the run's spec (what the trainer declares in
its ``hello``: every array's dtype and per-row shape). The server applies them before it
forwards a chunk, the trainer again before its replay memory sees one: a bad chunk is dropped
and counted by both, never fatal.

- :func:`check_chunk_arrays`: a complete transition (``action``, ``reward``, ``terminated``,
  ``truncated``, matching ``obs``/``next_obs`` parts or compact image histories), ``n`` rows
  per array (a compact history's frames excepted), valid compact indices; with a spec the
  exact names, dtypes and row shapes; float arrays finite.
- :func:`chunk_cars`: how many cars' sub-chunks a chunk carries (meta ``cars``, absent: 1); the
  ``n`` rows are that many car-major runs of ``n / cars`` rows (a vectorized worker's cars,
  see docs/vectorized.md), so ``cars`` must divide ``n``.
- :func:`check_episode`: an episode record that can be true (finite return, ``steps >= 0``,
  a lap time finite and positive or none, progress in [0, 1], finite reward terms).

numpy only: the server imports this without torch or gymnasium.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from tmrl2.memory.compact import (
    FRAMES,
    NEXT_INDEX,
    OBS_INDEX,
    PREFIXES,
    check_compact,
    compact_keys,
)

Spec = dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
"""Per-row shape and dtype of every array of a chunk, by name (``frames/<key>``: per frame)."""

TRANSITION_FIELDS: frozenset[str] = frozenset({"action", "reward", "terminated", "truncated"})
"""Arrays every chunk carries besides its observations."""


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """A ``spec`` from a hello (``{name: [dtype_str, [dims...]]}``, its types already checked by
    the codec) as numpy dtypes; ``ValueError`` names an entry whose dtype numpy does not know."""
    spec: Spec = {}
    for name, (dtype, dims) in raw.items():
        try:
            parsed = np.dtype(dtype)
        except TypeError as exc:
            raise ValueError(f"spec {name!r} has an unknown dtype {dtype!r}") from exc
        if parsed.byteorder == ">":  # the wire is little-endian
            parsed = parsed.newbyteorder("<")
        spec[name] = (tuple(int(d) for d in dims), parsed)
    return spec


def spec_meta(spec: Spec) -> dict[str, list[Any]]:
    """The spec as plain data for a ``hello``: ``{name: [dtype_str, [dims...]]}``."""
    return {name: [dtype.str, list(shape)] for name, (shape, dtype) in spec.items()}


MAX_LAYOUTS = 256
"""Most chunk layouts whose structure :func:`check_chunk_arrays` remembers as sound."""

Floats = tuple[tuple[str, "np.ndarray | None"], ...]
"""The float arrays of a layout, each with the zero vector of its size for :func:`_finite`."""

_SOUND: dict[tuple[Any, ...], tuple[Spec | None, tuple[str, ...], Floats]] = {}
"""Layouts (``n``, then name, dtype and shape per array) that passed every structural check
-> (the spec they passed against, their compact keys, their float arrays). Only the values
(compact indices, finite floats) are checked again for a chunk of such a layout."""


def check_chunk_arrays(arrays: Mapping[str, Any], n: int, spec: Spec | None) -> str | None:
    """Why ``arrays`` are not a chunk of ``n`` transitions (of ``spec``, when given), or None.

    The structure (names, dtypes, shapes, ``n``, the spec) is checked once per layout: a
    run's chunks share a few, so later ones only have their values checked (compact indices
    within their frames, floats finite), in the order and with the words of the full check."""
    key = _layout_key(arrays, n)
    sound = _SOUND.get(key) if key is not None else None
    if sound is None or sound[0] is not spec:
        why = _layout_problem(arrays, n) if spec is None else _spec_problem(arrays, n, spec)
        if why is not None:
            return why
        keys = tuple(compact_keys(list(arrays)))
        floats = tuple((name, _zeros(a)) for name, a in arrays.items() if a.dtype.kind == "f")
        sound = (spec, keys, floats)
        if key is not None:
            if len(_SOUND) >= MAX_LAYOUTS:  # a peer inventing layouts must not grow it
                _SOUND.clear()
            _SOUND[key] = sound
    else:
        why = _indices_problem(arrays, sound[1])
        if why is not None:
            return why
    if sound[2]:
        with np.errstate(invalid="ignore"):  # once per chunk: it costs as much as a check
            for name, zeros in sound[2]:
                if not _finite(arrays[name], zeros):
                    return f"{name} holds NaN or infinite values"
    return None


def _layout_key(arrays: Mapping[str, Any], n: int) -> tuple[Any, ...] | None:
    """``(n, (name, dtype, shape), ...)``, or None when an array is not a numpy array."""
    layout = [(name, a.dtype, a.shape) for name, a in arrays.items() if type(a) is np.ndarray]
    return (n, *layout) if len(layout) == len(arrays) else None


def _indices_problem(arrays: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """What :func:`~tmrl2.memory.compact.check_compact` says of a well-shaped chunk whose
    compact ``keys`` are known: an index outside its frames, or None."""
    for key in keys:
        frames = len(arrays[FRAMES + key])
        for prefix in (OBS_INDEX, NEXT_INDEX):
            index = arrays[prefix + key]
            if index.size and (index.min() < 0 or index.max() >= frames):
                return f"{prefix}{key} points outside its {frames} frames"
    return None


def _spec_problem(arrays: Mapping[str, Any], n: int, spec: Spec) -> str | None:
    if arrays.keys() != spec.keys():
        missing, extra = sorted(spec.keys() - arrays.keys()), sorted(arrays.keys() - spec.keys())
        return f"its arrays differ from the run's spec (missing {missing}, unexpected {extra})"
    for name, (shape, dtype) in spec.items():
        array = arrays[name]
        if not isinstance(array, np.ndarray) or array.dtype != dtype:
            got = array.dtype.str if isinstance(array, np.ndarray) else type(array).__name__
            return f"{name} has dtype {got}, the run's spec says {dtype.str}"
        if array.shape[1:] != shape or array.ndim != len(shape) + 1:
            return f"{name} has shape {array.shape}, the run's spec says (n, *{list(shape)})"
    return _rows_problem(arrays, n)


def _layout_problem(arrays: Mapping[str, Any], n: int) -> str | None:
    """Without a spec: a complete transition with consistent rows."""
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):
        return "its arrays are not all numpy arrays"
    why = _names_problem(arrays)
    return why if why is not None else _rows_problem(arrays, n)


def _rows_problem(arrays: Mapping[str, np.ndarray], n: int) -> str | None:
    for name, array in arrays.items():
        if not name.startswith(FRAMES) and (array.ndim == 0 or array.shape[0] != n):
            return f"{name} has shape {array.shape}, the chunk says n={n} rows"
    try:
        check_compact(arrays, n)
    except ValueError as exc:
        return str(exc)
    return None


def _names_problem(names: Iterable[str]) -> str | None:
    missing = set(TRANSITION_FIELDS)
    obs: set[str] = set()
    next_obs: set[str] = set()
    for name in names:
        if name in TRANSITION_FIELDS:
            missing.discard(name)
        elif name == "obs" or name.startswith("obs/"):
            obs.add(name[3:])
        elif name == "next_obs" or name.startswith("next_obs/"):
            next_obs.add(name[8:])
        elif name.startswith(PREFIXES):  # a compact image history (memory/compact.py)
            key = "/" + name.split("/", 1)[1]
            obs.add(key)
            next_obs.add(key)
        else:
            return f"it carries an unknown array {name!r}"
    if missing:
        return f"it lacks arrays {sorted(missing)}"
    if not obs or obs != next_obs:
        return (
            "it needs matching obs[/<key>] and next_obs[/<key>] arrays, got "
            f"obs{sorted(obs)} and next_obs{sorted(next_obs)}"
        )
    return None


_ZEROS = {np.dtype(t): np.zeros(1 << 16, t) for t in ("<f4", "<f8")}
"""Zero vectors for :func:`_finite`: ``x . 0`` is 0 when every ``x`` is finite and NaN
otherwise (``inf * 0`` and ``nan * 0`` are NaN, finite products never overflow)."""


def _zeros(array: np.ndarray) -> np.ndarray | None:
    """The zero vector :func:`_finite` dots ``array`` with (None: too large, or a dtype
    without one)."""
    zeros = _ZEROS.get(array.dtype)
    return None if zeros is None or array.size > zeros.size else zeros[: array.size]


def _finite(array: np.ndarray, zeros: np.ndarray | None) -> bool:
    """Whether every value of a float ``array`` is finite: one BLAS dot with ``zeros``
    (:func:`_zeros` of an array of its size and dtype) for arrays up to 64k values (faster than
    ``np.isfinite(array).all()``, which allocates a mask, used when ``zeros`` is None). Call it
    under ``np.errstate(invalid="ignore")``: a NaN product would warn."""
    if zeros is None:
        return bool(np.isfinite(array).all())
    return math.isfinite(array.reshape(-1).dot(zeros))


MAX_CARS = 65536
"""Most cars one chunk may carry."""


def chunk_cars(meta: Mapping[str, Any], n: int) -> int:
    """The number of per-car sub-chunks of a chunk of ``n`` rows: its meta ``cars`` (absent or
    None: 1, a single car's chunk). ``ValueError`` names a ``cars`` that is not an integer in
    ``[1, MAX_CARS]`` dividing ``n``."""
    cars = meta.get("cars")
    if cars is None:
        return 1
    if not isinstance(cars, int) or isinstance(cars, bool) or not 1 <= cars <= MAX_CARS:
        raise ValueError(f"cars={cars!r} is not an integer in [1, {MAX_CARS}]")
    if n % cars:
        raise ValueError(f"cars={cars} does not divide n={n} rows into equal sub-chunks")
    return cars


def check_episode(record: Any) -> str | None:
    """Why an episode record cannot be true, or None."""
    if not isinstance(record, Mapping):
        return "not a mapping"
    try:
        ret, steps = float(record["return"]), record["steps"]
        lap, progress = record.get("lap_time_s"), float(record.get("progress_frac", 0.0))
        terms = record.get("terms", {})
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed ({exc!r})"
    if not math.isfinite(ret):
        return f"return {ret}"
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        return f"steps {steps!r}"
    if lap is not None and (not isinstance(lap, int | float) or not math.isfinite(lap) or lap <= 0):
        return f"lap_time_s {lap!r}"
    if not 0.0 <= progress <= 1.0:
        return f"progress_frac {progress}"
    if not isinstance(terms, Mapping) or not all(
        isinstance(v, int | float) and math.isfinite(v) for v in terms.values()
    ):
        return "reward terms not finite numbers"
    return None

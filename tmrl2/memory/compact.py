"""Image histories sent once per frame: the compact chunk layout.

A chunk of 100 transitions of a 4-frame image history carries 800 frames in ``obs/image`` and
``next_obs/image``, although consecutive observations share 3 of their 4 frames and
``next_obs[t]`` is ``obs[t + 1]``: about 104 of them are distinct. The compact layout sends
each distinct frame once and the histories as indices:

- ``frames/<key>``: ``(m, *frame_shape)`` the distinct frames of the chunk;
- ``obs_index/<key>`` and ``next_index/<key>``: ``(n, history)`` int32 indices into them.

Workers build it (:class:`~tmrl2.roles.chunks.ChunkBuilder` with ``compact``), the server
checks it and forwards it untouched, and the trainer calls :func:`expand_chunk` before the
replay memory (which then stores each frame once again, see ``memory.history_keys``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FRAMES = "frames/"
OBS_INDEX = "obs_index/"
NEXT_INDEX = "next_index/"
PREFIXES = (FRAMES, OBS_INDEX, NEXT_INDEX)


def compact_keys(names: Mapping[str, object] | list[str]) -> set[str]:
    """Observation keys sent in the compact layout (those with a ``frames/`` array)."""
    return {name[len(FRAMES) :] for name in names if name.startswith(FRAMES)}


def check_compact(arrays: Mapping[str, np.ndarray], n: int) -> None:
    """Raise ``ValueError`` unless every compact key has its three arrays, well shaped, with
    indices that point into its frames."""
    for key in compact_keys(list(arrays)):
        frames = arrays[FRAMES + key]
        for prefix in (OBS_INDEX, NEXT_INDEX):
            index = arrays.get(prefix + key)
            if index is None:
                raise ValueError(f"compact key {key!r} lacks its {prefix}{key} array")
            if index.ndim != 2 or index.shape[0] != n or index.dtype != np.int32:
                raise ValueError(
                    f"{prefix}{key} must be ({n}, history) int32, got {index.shape} {index.dtype}"
                )
            if index.size and (index.min() < 0 or index.max() >= len(frames)):
                raise ValueError(f"{prefix}{key} points outside its {len(frames)} frames")
    for name in arrays:
        if name.startswith((OBS_INDEX, NEXT_INDEX)):
            key = name.split("/", 1)[1]
            if FRAMES + key not in arrays:
                raise ValueError(f"{name} comes without its frames/{key} array")


def expand_chunk(chunk: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The chunk in the plain layout (``obs/<key>``, ``next_obs/<key>``); plain chunks are
    returned as they are."""
    keys = compact_keys(list(chunk))
    if not keys:
        return dict(chunk)
    out = {name: array for name, array in chunk.items() if not name.startswith(PREFIXES)}
    for key in keys:
        frames = chunk[FRAMES + key]
        out[f"obs/{key}"] = frames[chunk[OBS_INDEX + key]]
        out[f"next_obs/{key}"] = frames[chunk[NEXT_INDEX + key]]
    return out


class FrameTable:
    """Collects the distinct frames of one chunk for one image key, and the index histories.

    A history is matched against the previous transition's next history (the usual case: the
    env shifted its history by one frame) and frame by frame against the last frame stored,
    so only new frames are copied.
    """

    def __init__(self, history: int, frame_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.history = history
        self._frames: list[np.ndarray] = []
        self._last_hist: np.ndarray | None = None
        self._last_index: np.ndarray | None = None
        self.obs_index: list[np.ndarray] = []
        self.next_index: list[np.ndarray] = []
        self._shape, self._dtype = frame_shape, dtype

    def _indices(self, hist: np.ndarray, shared: np.ndarray | None, shift: bool) -> np.ndarray:
        """Indices of ``hist``'s frames: reuse ``shared`` when ``hist`` continues it."""
        prev = self._last_hist
        if prev is not None and shared is not None:
            if not shift and np.array_equal(hist, prev):
                return shared
            if shift and np.array_equal(hist[:-1], prev[1:]):
                return np.append(shared[1:], self._add(hist[-1]))
        return np.array([self._add(frame) for frame in hist], np.int32)

    def _add(self, frame: np.ndarray) -> int:
        if self._frames and np.array_equal(self._frames[-1], frame):
            return len(self._frames) - 1  # a history filled with one frame at a reset
        self._frames.append(np.array(frame, copy=True))
        return len(self._frames) - 1

    def add(self, obs_hist: np.ndarray, next_hist: np.ndarray) -> None:
        obs_idx = self._indices(obs_hist, self._last_index, shift=False)
        self._last_hist, self._last_index = obs_hist, obs_idx
        next_idx = self._indices(next_hist, obs_idx, shift=True)
        self._last_hist, self._last_index = np.array(next_hist, copy=True), next_idx
        self.obs_index.append(obs_idx)
        self.next_index.append(next_idx)

    def take(self, key: str) -> dict[str, np.ndarray]:
        """The three arrays of this chunk; the table starts empty (the next chunk re-sends
        the frames it needs)."""
        frames = (
            np.stack(self._frames) if self._frames else np.zeros((0, *self._shape), self._dtype)
        )
        out = {
            FRAMES + key: frames,
            OBS_INDEX + key: np.asarray(self.obs_index, np.int32).reshape(-1, self.history),
            NEXT_INDEX + key: np.asarray(self.next_index, np.int32).reshape(-1, self.history),
        }
        self._frames, self.obs_index, self.next_index = [], [], []
        self._last_hist = self._last_index = None
        return out

"""De-duplicated storage of observation histories (image or LIDAR frame stacks).

An observation part with a history, shape ``(H, *frame)``, repeats ``H - 1`` frames of the
previous step, and ``next_obs`` repeats ``H - 1`` frames of ``obs``: stored naively, every
frame is kept ``2H`` times. :class:`FrameStore` keeps each frame once, in a ring of frame
slots numbered by a global sequence number ``seq``; each frame records the ``seq`` of the frame
before it in its episode (``prev``), and a transition keeps only the ``seq`` of the newest
frame of ``obs`` and of ``next_obs``. Histories are rebuilt at sampling time by following
``prev`` ``H - 1`` times (one vectorized gather per step).

Linking is decided by content, never by assumption, so the rebuilt history always equals what
the env produced, whatever the order of chunks from several workers:

- ``next_obs`` links to ``obs`` (one new frame) when ``next_obs[:-1] == obs[1:]``;
- ``obs`` of row ``i`` reuses ``next_obs`` of row ``i - 1`` when the episode did not end there
  and the two are equal; the first row of a chunk reuses the last ``next_obs`` of an earlier,
  unfinished chunk with the same bytes (a 128-bit BLAKE2 hash of them);
- anything else (episode starts, the env's own padding, a lost chunk) stores its ``H`` frames
  as a fresh chain. No frame of another episode can leak in: a chain never links across a
  ``terminated`` or ``truncated`` row.

The frame ring has ``frame_capacity`` slots; a transition whose oldest frame has been
overwritten is *stale*: :meth:`FrameStore.valid` tells, and the memory redraws such rows.
With the default slack (5 % more slots than transitions) stale rows are only met at the very
oldest end of the ring.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from gymnasium import spaces

from tmrl2.memory.persist import adopt

MAX_OPEN_TAILS = 4096
"""Unfinished chunk ends remembered for linking the next chunk of the same episode."""


class FrameStore:
    """Ring of frames shared by the history parts of an observation space."""

    def __init__(
        self, parts: Mapping[str, spaces.Box], keys: Mapping[str, tuple[str, str]], capacity: int
    ) -> None:
        """Args:
        parts: history parts by name, each a ``Box`` of shape ``(H, *frame)`` with ``H >= 1``.
        keys: chunk keys ``(obs_key, next_obs_key)`` of each part.
        capacity: frame slots (at least the longest history).
        """
        if not parts:
            raise ValueError("a frame store needs at least one history part")
        self.keys = dict(keys)
        self.history = {name: int(box.shape[0]) for name, box in parts.items()}
        self.depth = max(self.history.values())
        if capacity < self.depth:
            raise ValueError(f"frame capacity {capacity} is less than the history {self.depth}")
        self.capacity = capacity
        self._parts = dict(parts)
        # allocated on first use, so that the memory can check the RAM before: np.zeros maps
        # pages lazily, but an allocation past RAM + swap fails at once without naming a key
        self.frames: dict[str, np.ndarray] = {}
        self.prev = np.zeros(0, dtype=np.int64)
        self.written = 0
        """Frames written since creation: the ``seq`` of the next frame."""
        self._tails: OrderedDict[bytes, int] = OrderedDict()

    def allocate(self) -> None:
        """Reserve the frame ring (idempotent)."""
        if self.frames:
            return
        self.frames = {
            name: np.zeros((self.capacity, *box.shape[1:]), dtype=box.dtype)
            for name, box in self._parts.items()
        }
        self.prev = np.zeros(self.capacity, dtype=np.int64)

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one frame slot (every part plus its link)."""
        parts = self._parts.values()
        return sum(int(np.prod(box.shape[1:])) * box.dtype.itemsize for box in parts) + 8

    @property
    def nbytes(self) -> int:
        """Bytes reserved by the frame ring."""
        return self.capacity * self.bytes_per_frame

    # ------------------------------------------------------------------ writing
    def write(self, chunk: Mapping[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Store the frames of a (validated) chunk of ``n`` rows; return the ``seq`` of the
        newest frame of each row's ``obs`` and ``next_obs`` (two int64 arrays)."""
        obs = {name: np.asarray(chunk[k]) for name, (k, _) in self.keys.items()}
        nxt = {name: np.asarray(chunk[k]) for name, (_, k) in self.keys.items()}
        done = np.asarray(chunk["terminated"]) | np.asarray(chunk["truncated"])
        shifted = np.ones(n, dtype=bool)  # next_obs = obs shifted by one new frame
        linked = np.zeros(n, dtype=bool)  # obs = next_obs of the row before
        linked[1:] = ~done[:-1]
        for name in obs:
            o, x = obs[name], nxt[name]
            if self.history[name] > 1:
                shifted &= _rows_equal(x[:, :-1], o[:, 1:])
            linked[1:] &= _rows_equal(o[1:], x[:-1])
        tail = self._find_tail(obs) if n else None
        linked[0] = tail is not None

        depth = self.depth
        obs_new = np.where(linked, 0, depth)
        next_new = np.where(shifted, 1, depth)
        ends = np.cumsum(obs_new + next_new)
        start = self.written + ends - obs_new - next_new
        next_seq = start + obs_new + next_new - 1
        obs_seq = start + depth - 1
        obs_seq[1:] = np.where(linked[1:], next_seq[:-1], obs_seq[1:])
        if tail is not None:
            obs_seq[0] = tail
        total = int(ends[-1]) if n else 0
        self._store_chains(obs, np.flatnonzero(~linked), start, total)
        self._store_chains(nxt, np.flatnonzero(~shifted), start + obs_new, total)
        self._store_steps(nxt, np.flatnonzero(shifted), start + obs_new, obs_seq, total)
        self.written += total
        if n and not done[-1]:
            self._remember_tail(nxt, n - 1, int(next_seq[-1]))
        return obs_seq, next_seq

    def _live(self, seqs: np.ndarray, total: int) -> np.ndarray:
        """Which of the new ``seqs`` survive this write (the rest are overwritten by it)."""
        return seqs >= self.written + total - self.capacity

    def _store_chains(
        self, data: Mapping[str, np.ndarray], rows: np.ndarray, first: np.ndarray, total: int
    ) -> None:
        """Store the whole history of ``data[rows]`` as chains starting at ``first[rows]``."""
        if not len(rows):
            return
        seqs = first[rows, None] + np.arange(self.depth)  # (r, depth), oldest first
        prev = seqs - 1
        prev[:, 0] = seqs[:, 0]  # a chain's first frame is never followed further
        keep = self._live(seqs, total)
        slots = seqs[keep] % self.capacity
        self.prev[slots] = prev[keep]
        for name, arr in data.items():
            h = self.history[name]
            # a part with a shorter history repeats its oldest frame in the unused positions
            pos = np.maximum(np.arange(self.depth) - (self.depth - h), 0)
            self.frames[name][slots] = arr[rows][:, pos][keep]

    def _store_steps(
        self,
        data: Mapping[str, np.ndarray],
        rows: np.ndarray,
        seqs: np.ndarray,
        prev: np.ndarray,
        total: int,
    ) -> None:
        """Store only the newest frame of ``data[rows]`` at ``seqs[rows]``, after ``prev``."""
        seqs, prev = seqs[rows], prev[rows]
        keep = self._live(seqs, total)
        rows, slots = rows[keep], seqs[keep] % self.capacity
        self.prev[slots] = prev[keep]
        for name, arr in data.items():
            self.frames[name][slots] = arr[rows, -1]

    # ------------------------------------------------------------------ chunk ends
    @staticmethod
    def _digest(data: Mapping[str, np.ndarray], row: int) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(data):
            h.update(np.ascontiguousarray(data[name][row]).data)
        return h.digest()

    def _remember_tail(self, nxt: Mapping[str, np.ndarray], row: int, seq: int) -> None:
        self._tails[self._digest(nxt, row)] = seq
        while len(self._tails) > MAX_OPEN_TAILS:
            self._tails.popitem(last=False)

    def _find_tail(self, obs: Mapping[str, np.ndarray]) -> int | None:
        """``seq`` of a stored ``next_obs`` equal to ``obs`` of row 0, if one is open.

        The 128-bit hash stands for equality (a collision is a 2^-64 event at a billion
        chunks); a tail whose frames were overwritten since makes the linked rows stale, which
        sampling detects.
        """
        return self._tails.pop(self._digest(obs, 0), None)

    # ------------------------------------------------------------------ reading
    def _chains(self, seqs: np.ndarray) -> np.ndarray:
        """``(B, depth)`` sequence numbers of the histories ending at ``seqs``, oldest first."""
        chain = np.empty((len(seqs), self.depth), dtype=np.int64)
        chain[:, -1] = seqs
        for j in range(self.depth - 1, 0, -1):
            chain[:, j - 1] = self.prev[chain[:, j] % self.capacity]
        return chain

    def valid(self, seqs: np.ndarray) -> np.ndarray:
        """Whether every frame of the histories ending at ``seqs`` is still stored."""
        oldest_kept = self.written - self.capacity
        ok = np.asarray(seqs) >= oldest_kept
        if self.depth > 1 and ok.any():
            chain = self._chains(np.where(ok, seqs, self.written - 1))
            ok &= chain.min(axis=1) >= oldest_kept
        return ok

    def gather(self, seqs: np.ndarray) -> dict[str, np.ndarray]:
        """The histories ending at ``seqs``: ``(B, H, *frame)`` per part (check :meth:`valid`)."""
        slots = self._chains(np.asarray(seqs, dtype=np.int64)) % self.capacity
        return {
            name: frames[slots[:, self.depth - self.history[name] :]]
            for name, frames in self.frames.items()
        }

    def _extended(self, next_seq: np.ndarray) -> np.ndarray:
        """``(B, H + 1)`` frames ending at ``next_seq``: the ``obs`` history of a one-step
        transition is the first ``H`` of them, the ``next_obs`` history the last ``H``."""
        extended = np.empty((len(next_seq), self.depth + 1), dtype=np.int64)
        extended[:, 1:] = self._chains(next_seq)
        extended[:, 0] = self.prev[extended[:, 1] % self.capacity]
        return extended

    def valid_pairs(self, obs_seq: np.ndarray, next_seq: np.ndarray) -> np.ndarray:
        """Whether every frame of both histories of each transition is still stored."""
        extended = self._extended(next_seq)
        if np.array_equal(extended[:, -2], obs_seq):
            return extended.min(axis=1) >= self.written - self.capacity
        return self.valid(obs_seq) & self.valid(next_seq)

    def histories(
        self, obs_seq: np.ndarray, next_seq: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(valid, obs, next_obs)`` histories of a batch of transitions in one pass.

        Where every ``next_obs`` is its ``obs`` shifted by one frame (one-step transitions),
        the ``H + 1`` frames are gathered once and ``obs``/``next_obs`` are two overlapping
        views of them: half the bytes of two gathers.
        """
        extended = self._extended(next_seq)
        if np.array_equal(extended[:, -2], obs_seq):
            valid = extended.min(axis=1) >= self.written - self.capacity
            slots = extended % self.capacity
            obs: dict[str, np.ndarray] = {}
            nxt: dict[str, np.ndarray] = {}
            for name, frames in self.frames.items():
                h = self.history[name]
                both = frames[slots[:, self.depth - h :]]  # (B, h + 1, *frame)
                obs[name], nxt[name] = both[:, :-1], both[:, 1:]
            return valid, obs, nxt
        return (
            self.valid(obs_seq) & self.valid(next_seq),
            self.gather(obs_seq),
            self.gather(next_seq),
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, np.ndarray | int]:
        """Raw frame arrays, links and counter (no copies: save before the next write)."""
        state: dict[str, np.ndarray | int] = {f"frames/{k}": v for k, v in self.frames.items()}
        state["prev"] = self.prev
        state["written"] = self.written
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray | int]) -> None:
        """Restore a :meth:`state_dict` of a store with the same parts and capacity.

        Raises:
            ValueError: when an array's shape or dtype differs from this store's.
        """
        for name, dst in {
            **{f"frames/{k}": v for k, v in self.frames.items()},
            "prev": self.prev,
        }.items():
            src = np.asarray(state[name])
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(
                    f"saved frame array {name!r} is {src.dtype}{list(src.shape)}, this memory "
                    f"needs {dst.dtype}{list(dst.shape)} (same history_keys and capacity)"
                )
            saved = state[name]
            # the ring is always full-size: keep a mapped file as storage (see persist.adopt)
            kept = adopt(dst, saved if isinstance(saved, np.ndarray) else src)
            if name == "prev":
                self.prev = kept
            else:
                self.frames[name.removeprefix("frames/")] = kept
        self.written = int(state["written"])
        self._tails.clear()


def _rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise equality of two arrays of the same shape (first axis: rows)."""
    if a.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return (a == b).reshape(a.shape[0], -1).all(axis=1)

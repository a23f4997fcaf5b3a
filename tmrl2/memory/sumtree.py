"""Vectorized two-level segment trees (sum and min) over a fixed number of leaves, in numpy.

The leaves are cut into blocks of ``BLOCK`` (64) and one array holds each block's combination
(its sum, or its minimum). For 1e6 leaves that is 15,625 block values: small enough that a
search recomputes their running sum on the fly (one ``cumsum``, ~15 us) and a batch of
queries finds its blocks with one ``searchsorted``, then its leaves with one ``(batch, 64)``
gather. A batch update rewrites its leaves and recombines their blocks. Every operation is a
handful of numpy calls whatever the batch, which is what keeps prioritized sampling of 1e6
rows in the tens of microseconds (a deep tree pays numpy's per-call cost at every level).
"""

from __future__ import annotations

import numpy as np

BLOCK = 64
"""Leaves per block."""
FANOUT = BLOCK
"""Children of the top level's nodes (kept for the memory accounting's formula)."""


class SegmentTree:
    """``size`` leaves in blocks of :data:`BLOCK`, and the combination of each block."""

    def __init__(self, size: int, combine: np.ufunc, neutral: float) -> None:
        """Args:
        size: number of leaves (rows of the storage); positive.
        combine: associative numpy ufunc of children (``np.add``, ``np.minimum``).
        neutral: the operation's neutral element, the value of empty leaves.
        """
        if size <= 0:
            raise ValueError(f"a segment tree needs at least one leaf, got size={size}")
        self.size = size
        self.neutral = neutral
        self._combine = combine
        blocks = -(-size // BLOCK)
        self.leaves = np.full(blocks * BLOCK, neutral, dtype=np.float64)
        self.blocks = np.full(blocks, neutral, dtype=np.float64)
        self._grid = self.leaves.reshape(blocks, BLOCK)  # a view: (block, leaf in block)

    @property
    def nbytes(self) -> int:
        """Bytes of the leaves and the block values."""
        return self.leaves.nbytes + self.blocks.nbytes

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values at ``indices``."""
        return self.leaves[np.asarray(indices)]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (the last one wins on duplicates)."""
        nodes = np.asarray(indices, dtype=np.int64)
        self.leaves[nodes] = values
        touched = nodes // BLOCK  # duplicates recompute the same block: harmless
        self.blocks[touched] = self._combine.reduce(self._grid[touched], axis=1)

    def set_all(self, values: np.ndarray) -> None:
        """Replace every leaf (``values`` has ``size`` entries) and rebuild in O(size)."""
        self.leaves[: self.size] = values
        self.leaves[self.size :] = self.neutral
        self.blocks[:] = self._combine.reduce(self._grid, axis=1)

    def values(self) -> np.ndarray:
        """A view of the ``size`` leaf values."""
        return self.leaves[: self.size]

    @property
    def root(self) -> float:
        """The combination of every leaf (the total, or the minimum)."""
        return float(self._combine.reduce(self.blocks))


class SumTree(SegmentTree):
    """Sum tree: leaves are non-negative weights; :meth:`find` inverts their prefix sums."""

    def __init__(self, size: int) -> None:
        super().__init__(size, np.add, 0.0)

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """Leaf indices ``i`` with ``sum(w[:i]) <= prefix < sum(w[:i + 1])`` (int64).

        ``prefix`` values should lie in ``[0, root)``; values at or past the total land on the
        last non-empty leaf, never on an empty one.
        """
        running = np.cumsum(self.blocks)
        value = np.minimum(np.asarray(prefix, dtype=np.float64), np.nextafter(running[-1], 0.0))
        block = np.minimum(np.searchsorted(running, value, side="right"), len(running) - 1)
        value = value - np.where(block > 0, running[block - 1], 0.0)
        bounds = np.cumsum(self._grid[block], axis=1)
        # below the block's total (rounding may push past it): never an empty last leaf
        np.minimum(value, np.nextafter(bounds[:, -1], 0.0), out=value)
        child = (value[:, None] >= bounds).sum(axis=1)
        return block * BLOCK + child


class MinTree(SegmentTree):
    """Min tree: the root is the smallest leaf (``inf`` where none is set)."""

    def __init__(self, size: int) -> None:
        super().__init__(size, np.minimum, float("inf"))

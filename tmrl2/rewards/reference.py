"""Reference lines: a driven lap as an N x 3 polyline (Y up) that progress is measured along.

For a game map there is no centerline to read, so the progress reward follows a recorded lap
(``tmrl2 record-reference``), as tmrl does. Unlike tmrl's linear search over the whole
recording, projection here searches a window of segments around the last position (amortized
O(1) per step), takes the furthest arc length reached (going backwards earns nothing until the
car is back where it was) and lets the car skip at most ``max_skip_m`` ahead per step (a small
cut counts, teleporting to a far part of the line does not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_POINTS = 10
"""Fewer points than this is not a lap (tmrl issues #31 and #91: a 2-point recording made
the car reset forever); such a line is refused."""


class ReferenceLineError(ValueError):
    """A reference line that cannot be used."""


class ReferenceLine:
    """A polyline with cumulative arc length and windowed projection."""

    def __init__(self, points: np.ndarray, max_skip_m: float = 30.0) -> None:
        """Args:
        points: N x 3 positions (x, y, z; Y up) along a lap, in driving order.
        max_skip_m: furthest the projection may jump ahead in one step.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ReferenceLineError(f"reference line must be N x 3 positions, got {pts.shape}")
        if len(pts) < MIN_POINTS:
            raise ReferenceLineError(
                f"reference line has {len(pts)} points; at least {MIN_POINTS} are needed: "
                "record a whole lap with `tmrl2 record-reference`"
            )
        seg = np.diff(pts, axis=0)
        lengths = np.linalg.norm(seg, axis=1)
        keep = np.concatenate([[True], lengths > 1e-6])  # drop repeated samples (car standing)
        self.points = pts[keep]
        self.seg = np.diff(self.points, axis=0)
        self.seg_len = np.linalg.norm(self.seg, axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.length_m = float(self.s[-1])
        self.max_skip_m = max_skip_m
        spacing = self.length_m / max(len(self.seg_len), 1)
        self._ahead = max(2, int(np.ceil(max_skip_m / max(spacing, 1e-6))) + 1)
        self._index = 0
        self.progress_m = 0.0

    @classmethod
    def load(cls, path: str | Path, max_skip_m: float = 30.0) -> ReferenceLine:
        """Read a ``.npy`` N x 3 array (no pickle)."""
        path = Path(path)
        if not path.is_file():
            raise ReferenceLineError(
                f"reference line {str(path)!r} not found: record one with `tmrl2 record-reference`"
            )
        return cls(np.load(path, allow_pickle=False), max_skip_m)

    def reset(self, position: np.ndarray | tuple[float, float, float] | None = None) -> None:
        """Start an episode: at the line's start, or where ``position`` projects on the
        whole line (a spawn point need not be the recording's first sample)."""
        self._index = 0
        self.progress_m = 0.0
        if position is not None:
            self.progress_m, _ = self.project(position, window=False)
            self._index = int(np.searchsorted(self.s, self.progress_m, side="right") - 1)

    def project(
        self, position: np.ndarray | tuple[float, float, float], window: bool = True
    ) -> tuple[float, float]:
        """Arc length of the closest point (within the search window around the last
        position, or on the whole line) and the distance to it."""
        pos = np.asarray(position, dtype=np.float64)
        lo = max(self._index - 2, 0) if window else 0
        hi = min(self._index + self._ahead, len(self.seg_len)) if window else len(self.seg_len)
        seg, start = self.seg[lo:hi], self.points[lo:hi]
        t = np.einsum("ij,ij->i", pos - start, seg) / np.maximum(self.seg_len[lo:hi] ** 2, 1e-12)
        t = np.clip(t, 0.0, 1.0)
        closest = start + seg * t[:, None]
        dist = np.linalg.norm(closest - pos, axis=1)
        best = int(np.argmin(dist))
        s = float(self.s[lo + best] + t[best] * self.seg_len[lo + best])
        return s, float(dist[best])

    def update(self, position: np.ndarray | tuple[float, float, float]) -> tuple[float, float]:
        """Advance along the line from a new position: (progress gained, distance to line)."""
        s, dist = self.project(position)
        s = min(s, self.progress_m + self.max_skip_m)
        gained = max(0.0, s - self.progress_m)
        if gained > 0:
            self.progress_m = s
            self._index = int(np.searchsorted(self.s, s, side="right") - 1)
        return gained, dist

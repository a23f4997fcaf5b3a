"""LIDAR from a screenshot, like tmrl's: distances to the road's edge along fixed rays.

The rays start at a point low in the image, centred (just ahead of the car in a third-person
or cockpit view), and fan out from straight left through straight ahead (up in the image) to
straight right. A ray stops at the first pixel that is not road: a grey level outside
``road_gray`` (the game's asphalt is mid-grey; borders, grass and the sky are not). Ray pixel
coordinates are computed once per image size, so a frame costs one gather and one argmax.
"""

from __future__ import annotations

import numpy as np


class ImageLidar:
    """``beams`` rays over the front half-plane of a ``height x width`` grey image."""

    def __init__(
        self,
        width: int,
        height: int,
        beams: int = 19,
        road_gray: tuple[int, int] = (100, 170),
        origin_row: float = 0.95,
    ) -> None:
        if not 0.0 <= origin_row <= 1.0:
            raise ValueError(f"origin_row must be a fraction of the height, got {origin_row}")
        lo, hi = road_gray
        if not 0 <= lo <= hi <= 255:
            raise ValueError(f"road_gray must be (low, high) grey levels in 0..255: {road_gray}")
        self.width, self.height, self.beams = width, height, beams
        self.road_gray = (lo, hi)
        row0 = origin_row * (height - 1)
        col0 = (width - 1) / 2.0
        self.max_len = float(np.hypot(max(col0, width - 1 - col0), row0)) + 1.0
        steps = np.arange(1, int(np.ceil(self.max_len)) + 1, dtype=np.float64)
        angles = np.linspace(-np.pi / 2, np.pi / 2, beams)
        cols = np.rint(col0 + np.sin(angles)[:, None] * steps[None, :]).astype(np.int64)
        rows = np.rint(row0 - np.cos(angles)[:, None] * steps[None, :]).astype(np.int64)
        inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
        self._cols, self._rows = np.clip(cols, 0, width - 1), np.clip(rows, 0, height - 1)
        self._inside = inside
        self._steps = steps

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Distances in [0, 1] (fraction of the longest ray), float32, one per beam."""
        if image.shape[:2] != (self.height, self.width) or image.ndim != 2:
            raise ValueError(
                f"expected a {self.height}x{self.width} grey image, got shape {image.shape}"
            )
        pixels = image[self._rows, self._cols]
        lo, hi = self.road_gray
        stop = (pixels < lo) | (pixels > hi) | ~self._inside
        first = np.argmax(stop, axis=1)  # every ray leaves the image, so each has a stop
        return (self._steps[first] / self.max_len).astype(np.float32)

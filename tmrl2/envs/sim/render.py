"""Images of the simulator: a perspective view from behind and above the car, numpy only.

The track is painted once into a top-down texture of surface classes (grass, road, dirt,
border lines, a chequered finish line) at ``texel_m`` resolution. A frame casts the ray of
every pixel of a pinhole camera (behind and above the car, looking ahead and down) onto the
ground plane at the car's height, looks the hit point up in the texture, and maps classes to
grey levels or colours; rays that miss the ground within ``view_m`` show the sky. The rays in
the car's frame depend only on the camera, so they are computed once: a frame costs a few
numpy operations on ``width x height`` pixels, whatever the track's length.

Bridges: where the road passes over itself (an imported map that crosses over, at least
:data:`CLEARANCE_M` higher), the texture keeps two levels, and a frame shows at each pixel the
level nearer the car's height: the car on the bridge sees the bridge's road and borders, the
car below sees its own road run under it, never a flat junction of both.

Simplifications: the ground is flat at the car's height (hills are not drawn), walls are drawn
as bright border lines on the ground, and the car itself is not drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tmrl2.envs.sim.track import GRASS, Track

GRASS_C, ROAD_C, DIRT_C, BORDER_C, FINISH_DARK_C, FINISH_LIGHT_C, SKY_C = range(7)
"""Texture classes; a road section of surface code ``k`` (road 0, dirt 1) is ``ROAD_C + k``."""
GRAY = np.array([70, 120, 150, 250, 15, 235, 190], np.uint8)
"""Grey level of each class."""
COLOR = np.array(
    [[60, 120, 50], [110, 110, 115], [150, 115, 70], [245, 245, 245], [15, 15, 15],
     [235, 235, 235], [150, 190, 230]],
    np.uint8,
)  # fmt: skip
"""RGB colour of each class."""
MAX_TEXELS = 16_000_000
"""Largest texture; the texel grows on very large tracks to stay under it."""
CLEARANCE_M = 3.0
"""Two road pieces over the same ground whose heights differ by more are two levels (a
bridge), not one junction."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera behind and above the car, looking along the car's heading."""

    height_m: float = 2.5
    """Height above the road."""
    back_m: float = 4.0
    """Distance behind the car's centre."""
    pitch_deg: float = 12.0
    """Downward tilt of the view."""
    fov_deg: float = 90.0
    """Horizontal field of view."""
    view_m: float = 150.0
    """Ground further than this is not drawn (sky)."""


class TrackTexture:
    """A top-down raster of a track's surface classes."""

    def __init__(self, track: Track, texel_m: float = 0.25, margin_m: float = 160.0) -> None:
        """Args:
        track: the track to paint.
        texel_m: texel size (grows on very large tracks, see :data:`MAX_TEXELS`).
        margin_m: grass around the track's bounding box; at least the camera's view
            distance, so that every visible ground point falls inside the texture.
        """
        xz = track.points[:, [0, 2]]
        lo = xz.min(axis=0) - margin_m
        hi = xz.max(axis=0) + margin_m
        area = float(np.prod(hi - lo))
        self.texel_m = max(texel_m, math.sqrt(area / MAX_TEXELS))
        self.origin = lo
        shape = np.ceil((hi - lo) / self.texel_m).astype(int) + 1
        self.classes = np.full((shape[1], shape[0]), GRASS_C, np.uint8)
        """``(rows along z, columns along x)`` class of each texel (the lower level where
        the road passes over itself)."""
        self.upper: np.ndarray | None = None
        """Classes of the upper level (None: the track never passes over itself)."""
        self.split_y: np.ndarray | None = None
        """Per texel, the height between the two levels (cars above it see ``upper``)."""
        self._paint(track)
        self.flat = self.classes.ravel()
        """The texture as one row (texel ``(row, col)`` is ``row * columns + col``)."""

    def _paint(self, track: Track) -> None:
        step = self.texel_m / 2.0
        s = np.arange(0.0, track.total_m, step)
        seg = np.clip(np.searchsorted(track.s_m, s, side="right") - 1, 0, track.segments - 1)
        along = (s - track.s_m[seg])[:, None]
        center = track.points[seg][:, [0, 2]] + along * track.tangents[seg]
        half = 0.5 * track.width_m[seg]
        stripe = 0.6
        lateral = np.arange(-half.max() - stripe, half.max() + stripe + step, step)
        pts = center[:, None, :] + track.normals[seg][:, None, :] * lateral[None, :, None]
        dist = np.abs(lateral)[None, :] - half[:, None]
        cls = np.where(dist <= -stripe, ROAD_C + track.surfaces[seg][:, None], BORDER_C)
        cls = np.where(track.surfaces[seg][:, None] == GRASS, GRASS_C, cls)
        finish = (s >= track.length_m) & (s < track.length_m + 2.0)
        checker = (np.floor(lateral / 1.0)[None, :] + np.floor(s / 1.0)[:, None]) % 2
        finish_cls = np.where(checker == 0, FINISH_DARK_C, FINISH_LIGHT_C)
        cls = np.where(finish[:, None] & (dist <= 0.0), finish_cls, cls)
        keep = dist <= 0.0
        ix, iz = self.index(pts[keep][:, 0], pts[keep][:, 1])
        painted = cls[keep].astype(np.uint8)
        y = np.broadcast_to(track.points[seg][:, 1][:, None], keep.shape)[keep]
        texel = iz * self.classes.shape[1] + ix
        low = np.full(self.classes.size, np.inf)
        high = np.full(self.classes.size, -np.inf)
        np.minimum.at(low, texel, y)
        np.maximum.at(high, texel, y)
        if not np.any(high - low > CLEARANCE_M):
            self.classes[iz, ix] = painted
            return
        # Two levels: each painted sample goes to the level it is nearer to.
        with np.errstate(invalid="ignore"):  # unpainted texels: inf - inf
            split = 0.5 * (low + high)
        on_top = (high[texel] - low[texel] > CLEARANCE_M) & (y > split[texel])
        self.classes[iz[~on_top], ix[~on_top]] = painted[~on_top]
        self.upper = self.classes.copy()
        self.upper[iz[on_top], ix[on_top]] = painted[on_top]
        two = high - low > CLEARANCE_M
        self.split_y = np.where(two, split, np.inf).astype(np.float32)

    def index(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Texel column and row of world positions (clipped to the texture)."""
        rows, cols = self.classes.shape
        ix = np.clip(((x - self.origin[0]) / self.texel_m).astype(np.int64), 0, cols - 1)
        iz = np.clip(((z - self.origin[1]) / self.texel_m).astype(np.int64), 0, rows - 1)
        return ix, iz


class Renderer:
    """Renders the view from a car on a track as ``(height, width)`` grey or
    ``(height, width, 3)`` colour ``uint8`` images."""

    def __init__(
        self,
        track: Track,
        width: int = 64,
        height: int = 64,
        color: bool = False,
        camera: Camera | None = None,
        texture: TrackTexture | None = None,
    ) -> None:
        self.texture = texture or TrackTexture(track)
        self.width, self.height, self.color = width, height, color
        self.palette = COLOR if color else GRAY
        self.set_camera(camera or Camera())

    def set_camera(self, camera: Camera) -> None:
        """Place the camera (recomputes the pixels' ground hits in the car's frame)."""
        self.camera = camera
        focal = 0.5 * self.width / math.tan(math.radians(camera.fov_deg) / 2.0)
        cols = np.arange(self.width) + 0.5 - self.width / 2.0
        rows = np.arange(self.height) + 0.5 - self.height / 2.0
        right, down = np.meshgrid(cols / focal, rows / focal)
        pitch = math.radians(camera.pitch_deg)
        # Ray (forward, right, down) in the car's frame, tilted down by the pitch.
        fwd = math.cos(pitch) - down * math.sin(pitch)
        dwn = math.sin(pitch) + down * math.cos(pitch)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(dwn > 1e-6, camera.height_m / dwn, np.inf)
        forward = t * fwd - camera.back_m
        lateral = t * right
        ground = np.isfinite(t) & (np.hypot(t * fwd, lateral) < camera.view_m)
        self._ground = ground.ravel()
        # Ground hits in texels, so that a frame is a rotation, a shift and a lookup.
        texel = self.texture.texel_m
        self._forward = forward.ravel()[self._ground] / texel
        self._lateral = lateral.ravel()[self._ground] / texel
        self._classes = np.full(self.width * self.height, SKY_C, np.uint8)

    def render(self, x: float, z: float, heading: float, y: float = 0.0) -> np.ndarray:
        """The image seen from a car at ``(x, z)`` (height ``y``) facing ``heading``."""
        tex = self.texture
        c, sn = math.cos(heading), math.sin(heading)
        col = (x - tex.origin[0]) / tex.texel_m
        row = (z - tex.origin[1]) / tex.texel_m
        # Right of the heading is (-sin, cos) in (x, z); the texture's margin covers the view.
        ix = (col + self._forward * c - self._lateral * sn).astype(np.int64)
        iz = (row + self._forward * sn + self._lateral * c).astype(np.int64)
        iz *= tex.classes.shape[1]
        iz += ix
        if tex.upper is None or tex.split_y is None:
            self._classes[self._ground] = tex.flat.take(iz, mode="clip")
        else:  # a bridge in the texture: the level nearer the car's height
            above = y > tex.split_y.ravel().take(iz, mode="clip")
            lower = tex.flat.take(iz, mode="clip")
            self._classes[self._ground] = np.where(
                above, tex.upper.ravel().take(iz, mode="clip"), lower
            )
        shape = (self.height, self.width, 3) if self.color else (self.height, self.width)
        return self.palette.take(self._classes, axis=0).reshape(shape)


def top_view(track: Track, size: int = 256, color: bool = True) -> np.ndarray:
    """A map of the track seen from above, ``size`` pixels on its longer side (north = -z)."""
    texture = TrackTexture(track, texel_m=0.5, margin_m=20.0)
    rows, cols = texture.classes.shape
    step = max(rows, cols) / size
    r = np.minimum((np.arange(int(rows / step)) * step).astype(np.int64), rows - 1)
    c = np.minimum((np.arange(int(cols / step)) * step).astype(np.int64), cols - 1)
    # Each output pixel shows the brightest class of its block's corner samples: thin
    # borders stay visible after the reduction.
    classes = texture.classes[r[:, None], c[None, :]]
    palette = COLOR if color else GRAY
    return palette[classes]


def write_png(path: str, image: np.ndarray) -> None:
    """Write a ``uint8`` grey ``(h, w)`` or RGB ``(h, w, 3)`` image as a PNG (no dependency)."""
    import struct
    import zlib

    img = np.asarray(image, np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[k].tobytes() for k in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
    with open(path, "wb") as out:
        out.write(png + chunk(b"IEND", b""))

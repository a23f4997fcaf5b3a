"""``tmrl2 watch RUN``: a video of one deterministic lap of the run's policy.

Each frame is the simulator's camera view (:class:`~tmrl2.envs.sim.render.Renderer`, the one
behind ``image: true`` observations, in colour at ``size``) with a map inset in the top right
corner (the track from above, the trail so far, the car) and a line of text (race time, speed,
progress). One frame at the start and one per env step: ``steps + 1`` frames, played at
``fps`` (20 by default: real time at the default 50 ms step). Written with imageio: a GIF needs
only Pillow, an MP4 needs the ffmpeg binary of ``imageio-ffmpeg``.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tmrl2.config.load import ConfigError
from tmrl2.report.lap import Lap, drive_lap, load_sim_policy

if TYPE_CHECKING:
    from tmrl2.envs.sim.track import Track

SUFFIXES = (".gif", ".mp4")
INSET = (112, 84)
"""Largest map inset (width, height) in pixels; smaller on small frames."""
TRAIL = np.array([255, 200, 0], np.uint8)
CAR = np.array([230, 20, 20], np.uint8)


def video_target(run: Path, out: Path | None) -> Path:
    """The file to write: ``out``, or ``RUN/lap.mp4`` (``lap.gif`` without imageio-ffmpeg);
    a one-line :class:`ConfigError` for an unknown suffix or a missing writer."""
    if importlib.util.find_spec("imageio") is None:
        raise ConfigError("tmrl2 watch needs imageio: pip install imageio")
    has_ffmpeg = importlib.util.find_spec("imageio_ffmpeg") is not None
    if out is None:
        folder = run.parent if run.is_file() else run
        return folder / ("lap.mp4" if has_ffmpeg else "lap.gif")
    if out.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"watch --out {out}: the video must end in .gif or .mp4")
    if out.suffix.lower() == ".mp4" and not has_ffmpeg:
        raise ConfigError(
            f"watch --out {out}: an MP4 needs ffmpeg: pip install imageio-ffmpeg, or write a "
            ".gif instead"
        )
    return out


class MapInset:
    """The track from above, scaled into a small image, with a trail and the car."""

    def __init__(self, track: Track, max_w: int, max_h: int) -> None:
        from tmrl2.envs.sim.render import COLOR, TrackTexture

        texture = TrackTexture(track, texel_m=0.5, margin_m=15.0)
        rows, cols = texture.classes.shape
        self.step = max(cols / max_w, rows / max_h)  # texels per inset pixel
        r = np.minimum((np.arange(max(int(rows / self.step), 1)) * self.step).astype(int), rows - 1)
        c = np.minimum((np.arange(max(int(cols / self.step), 1)) * self.step).astype(int), cols - 1)
        self.base = COLOR[texture.classes[r[:, None], c[None, :]]]
        self.origin, self.texel_m = texture.origin, texture.texel_m
        self.trail: list[tuple[int, int]] = []

    def pixel(self, x: float, z: float) -> tuple[int, int]:
        """Row and column of a world position (clipped to the inset)."""
        h, w = self.base.shape[:2]
        col = int((x - self.origin[0]) / self.texel_m / self.step)
        row = int((z - self.origin[1]) / self.texel_m / self.step)
        return min(max(row, 0), h - 1), min(max(col, 0), w - 1)

    def draw(self, x: float, z: float) -> np.ndarray:
        """The inset with the trail up to ``(x, z)`` and the car there."""
        self.trail.append(self.pixel(x, z))
        image = self.base.copy()
        rows, cols = zip(*self.trail, strict=True)
        image[list(rows), list(cols)] = TRAIL
        row, col = self.trail[-1]
        image[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = 0
        image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = CAR
        return image


def _text(frame: np.ndarray, line: str) -> np.ndarray:
    """``line`` in white on a dark band at the bottom of ``frame`` (Pillow's default font)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    height = 12
    draw.rectangle((0, frame.shape[0] - height - 2, frame.shape[1], frame.shape[0]), fill=(0, 0, 0))
    draw.text((3, frame.shape[0] - height - 1), line, fill=(255, 255, 255))
    return np.asarray(image)


class Filmer:
    """Makes one frame per call from the simulator's state (``drive_lap``'s ``on_step``)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frames: list[np.ndarray] = []
        self._renderer: Any = None
        self._inset: MapInset | None = None

    def __call__(self, sim: Any, info: dict[str, Any]) -> None:
        from tmrl2.envs.sim.render import Camera, Renderer

        if self._renderer is None:
            cfg = sim.config
            camera = Camera(height_m=cfg.camera_height_m, pitch_deg=cfg.camera_pitch_deg)
            self._renderer = Renderer(sim.track, self.width, self.height, True, camera)
            scale = min(1.0, self.width / 384)
            self._inset = MapInset(sim.track, int(INSET[0] * scale), int(INSET[1] * scale))
        assert self._inset is not None
        st = sim.car.state
        frame = self._renderer.render(st.x, st.z, st.heading, st.y).copy()
        inset = self._inset.draw(st.x, st.z)
        h, w = inset.shape[:2]
        top, left = 2, self.width - w - 2
        frame[top - 1 : top + h + 1, left - 1 : left + w + 1] = 0  # a dark frame around it
        frame[top : top + h, left : left + w] = inset
        line = (
            f"{info['race_time_ms'] / 1000:6.2f} s  {info['speed_ms'] * 3.6:4.0f} km/h  "
            f"{info['progress_frac']:4.0%}"
        )
        self.frames.append(_text(frame, line))


def write_frames(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """Write ``frames`` as a GIF (looping) or an MP4 (H.264)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        writer = imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)
    else:
        writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=2)
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def write_video(
    run: Path,
    out: Path | None = None,
    track: str | None = None,
    fps: float = 20.0,
    max_steps: int | None = None,
    size: tuple[int, int] = (384, 240),
    trust_config: bool = False,
) -> tuple[Path, Lap, int]:
    """Drive one lap of ``run``'s policy and write its video; returns the file, the lap and
    the frame count. A user's mistake raises a one-line :class:`ConfigError`."""
    if not (math.isfinite(fps) and fps > 0):
        raise ConfigError(f"watch --fps {fps}: frames per second must be positive")
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"watch --max-steps {max_steps}: at least 1")
    width, height = size
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ConfigError(f"watch --size {width}x{height}: even numbers, at least 32x32")
    path = video_target(run, out)
    config, actor = load_sim_policy(run, trust_config=trust_config, command="watch")
    filmer = Filmer(width, height)
    lap = drive_lap(config, actor, track=track, max_steps=max_steps, on_step=filmer)
    try:
        write_frames(path, filmer.frames, fps)
    except OSError as exc:
        raise ConfigError(f"watch: cannot write {path} ({exc.strerror or exc})") from None
    return path, lap, len(filmer.frames)

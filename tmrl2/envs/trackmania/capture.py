"""Screen capture: the game window's pixels as a small observation image.

Backends: ``frame`` (the simulator's FRAME messages), ``dxcam`` (Windows, Desktop
Duplication), ``bitblt`` (Windows, pywin32: slower, works everywhere), ``mss`` (Linux/X11 and
Windows). Windows scales windows on high-DPI screens: the process declares itself DPI aware
before it measures the window, so the rectangle is in physical pixels (tmrl issue #76, where
scaling shifted the capture). Each backend imports its library lazily and a missing one is a
:class:`CaptureUnavailable` that says what to install.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from tmrl2.bridge.errors import BridgeError

Importer = Callable[[str], ModuleType]
WINDOW_TITLE = "Trackmania"


class CaptureUnavailable(BridgeError):
    """The chosen capture backend cannot run here; the message says how to fix it."""


@dataclass(frozen=True)
class Region:
    """A screen rectangle in physical pixels."""

    left: int
    top: int
    width: int
    height: int


class Capture(Protocol):
    name: str

    def grab(self) -> np.ndarray:
        """The latest image, ``(H, W)`` grey or ``(H, W, 3)`` RGB, uint8."""
        ...

    def close(self) -> None: ...


def to_observation(
    image: np.ndarray,
    width: int,
    height: int,
    gray: bool,
    crop: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
) -> np.ndarray:
    """Crop (fractions left, top, right, bottom), convert and area-resize to ``height x width``.

    Area averaging over source blocks (no OpenCV needed); a source smaller than the target in
    a dimension is repeated (nearest)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # BGRA/RGBA captures: drop alpha
    h, w = img.shape[:2]
    x0, y0, x1, y1 = crop
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"crop must be fractions left < right, top < bottom in [0, 1]: {crop}")
    img = img[
        int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1),
        int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1),
    ]
    if gray and img.ndim == 3:
        img = img @ np.array([0.299, 0.587, 0.114], np.float32)
    elif not gray and img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = img.astype(np.float32, copy=False)
    if img.shape[0] < height:  # upscaling: nearest rows first, then blocks of one
        img = img[(np.arange(height) * img.shape[0]) // height]
    if img.shape[1] < width:
        img = img[:, (np.arange(width) * img.shape[1]) // width]
    rows = (np.arange(height + 1) * img.shape[0]) // height
    cols = (np.arange(width + 1) * img.shape[1]) // width
    # the mean of each block from a summed-area table
    pad = [(1, 0), (1, 0)] + [(0, 0)] * (img.ndim - 2)
    table = np.cumsum(np.cumsum(np.pad(img, pad), 0, dtype=np.float64), 1)
    r0, r1, q0, q1 = rows[:-1], rows[1:], cols[:-1], cols[1:]
    total = table[r1][:, q1] - table[r0][:, q1] - table[r1][:, q0] + table[r0][:, q0]
    area = np.outer(r1 - r0, q1 - q0).astype(np.float64)
    if img.ndim == 3:
        area = area[:, :, None]
    return np.clip(np.rint(total / area), 0, 255).astype(np.uint8)


class FrameCapture:
    """The simulator's FRAME messages (``tmrl2 sim serve``, caps IMAGE)."""

    name = "frame"

    def __init__(self, client: Any, timeout_s: float = 2.0) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._last_seq = 0
        client.set_config(frame_every=1)

    def grab(self) -> np.ndarray:
        """The newest frame not returned before (the server sends one with each STATE)."""
        state = self.client.latest
        if state is not None and state.seq < self._last_seq:
            self._last_seq = 0  # a restarted server counts from 1 again
        frame = self.client.wait_frame(after_seq=self._last_seq, timeout=self.timeout_s)
        self._last_seq = frame.seq
        shape = (frame.height, frame.width) + ((frame.channels,) if frame.channels > 1 else ())
        return np.frombuffer(frame.pixels, np.uint8).reshape(shape)

    def close(self) -> None:
        pass


def set_dpi_aware(import_module: Importer = importlib.import_module) -> bool:
    """Windows: make window rectangles physical pixels (per-monitor DPI aware)."""
    if sys.platform != "win32":
        return False
    ctypes = import_module("ctypes")
    try:
        ctypes.windll.shcore.SetProcessDpiAwareness(2)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        ctypes.windll.user32.SetProcessDPIAware()  # type: ignore[attr-defined]
    return True


def find_window(
    title: str = WINDOW_TITLE, import_module: Importer = importlib.import_module
) -> Region:
    """The client area (no borders, no title bar) of the game window, in physical pixels."""
    try:
        win32gui = import_module("win32gui")
    except ImportError:
        raise CaptureUnavailable(
            "finding the game window needs pywin32: `pip install tmrl2[windows]`"
        ) from None
    set_dpi_aware(import_module)
    hwnd = win32gui.FindWindow(None, title)
    if not hwnd:
        raise CaptureUnavailable(
            f"no window titled {title!r}: start TrackMania in windowed mode (or set "
            "env.capture_window to the exact title)"
        )
    left, top, right, bottom = win32gui.GetClientRect(hwnd)
    x, y = win32gui.ClientToScreen(hwnd, (left, top))
    if right - left < 16 or bottom - top < 16:
        raise CaptureUnavailable(f"the {title!r} window is minimised: restore it")
    return Region(int(x), int(y), int(right - left), int(bottom - top))


class MssCapture:
    """mss: X11 on Linux (the game under Proton), also Windows and macOS."""

    name = "mss"

    def __init__(self, region: Region, import_module: Importer = importlib.import_module) -> None:
        try:
            mss = import_module("mss")
        except ImportError:
            raise CaptureUnavailable("the mss backend needs mss: `pip install mss`") from None
        try:
            self.sct = mss.mss()
        except Exception as exc:  # mss raises ScreenShotError without a display
            raise CaptureUnavailable(
                f"mss cannot open the screen ({exc}): run on the desktop session that shows "
                "the game (DISPLAY must be set on Linux)"
            ) from None
        self.monitor = {
            "left": region.left,
            "top": region.top,
            "width": region.width,
            "height": region.height,
        }

    def grab(self) -> np.ndarray:
        shot = self.sct.grab(self.monitor)
        bgra = np.asarray(shot, np.uint8).reshape(shot.height, shot.width, 4)
        return bgra[:, :, 2::-1]  # BGRA -> RGB

    def close(self) -> None:
        self.sct.close()


class DxcamCapture:
    """dxcam (Windows Desktop Duplication): the fastest Windows backend."""

    name = "dxcam"

    def __init__(self, region: Region, import_module: Importer = importlib.import_module) -> None:
        try:
            dxcam = import_module("dxcam")
        except ImportError:
            raise CaptureUnavailable(
                "the dxcam backend needs dxcam: `pip install tmrl2[windows]`; or use "
                "capture 'bitblt'"
            ) from None
        self.camera = dxcam.create(output_color="RGB")
        self.box = (region.left, region.top, region.left + region.width, region.top + region.height)
        self._last: np.ndarray | None = None

    def grab(self) -> np.ndarray:
        frame = self.camera.grab(region=self.box)
        if frame is None:  # dxcam returns None when the screen did not change
            if self._last is None:
                raise CaptureUnavailable("dxcam returned no frame: is the game window visible?")
            return self._last
        self._last = np.asarray(frame)
        return self._last

    def close(self) -> None:
        release = getattr(self.camera, "release", None)
        if release is not None:
            release()


class BitBltCapture:
    """win32 BitBlt through pywin32: slower than dxcam, works with any GPU driver."""

    name = "bitblt"

    def __init__(
        self,
        region: Region,
        title: str = WINDOW_TITLE,
        import_module: Importer = importlib.import_module,
    ) -> None:
        try:
            self.gui = import_module("win32gui")
            self.ui = import_module("win32ui")
            self.con = import_module("win32con")
        except ImportError:
            raise CaptureUnavailable(
                "the bitblt backend needs pywin32: `pip install tmrl2[windows]`"
            ) from None
        self.region = region
        self.hwnd = self.gui.FindWindow(None, title)

    def grab(self) -> np.ndarray:
        w, h = self.region.width, self.region.height
        hdc = self.gui.GetWindowDC(self.hwnd)
        src = self.ui.CreateDCFromHandle(hdc)
        mem = src.CreateCompatibleDC()
        bmp = self.ui.CreateBitmap()
        bmp.CreateCompatibleBitmap(src, w, h)
        mem.SelectObject(bmp)
        try:
            mem.BitBlt((0, 0), (w, h), src, (0, 0), self.con.SRCCOPY)
            bgra = np.frombuffer(bmp.GetBitmapBits(True), np.uint8).reshape(h, w, 4)
            return bgra[:, :, 2::-1].copy()
        finally:
            src.DeleteDC()
            mem.DeleteDC()
            self.gui.ReleaseDC(self.hwnd, hdc)
            self.gui.DeleteObject(bmp.GetHandle())

    def close(self) -> None:
        pass


CAPTURES = ("auto", "frame", "dxcam", "bitblt", "mss", "none")


def make_capture(
    kind: str,
    client: Any = None,
    *,
    frames_available: bool = False,
    window: str = WINDOW_TITLE,
    region: Region | None = None,
    import_module: Importer = importlib.import_module,
) -> Capture:
    """The backend ``kind``; ``auto``: FRAME from the simulator, else dxcam (Windows) or mss."""
    if kind == "auto":
        kind = "frame" if frames_available else ("dxcam" if sys.platform == "win32" else "mss")
    if kind == "frame":
        if client is None or not frames_available:
            raise CaptureUnavailable("capture 'frame' needs `tmrl2 sim serve` (caps IMAGE)")
        return FrameCapture(client)
    if kind not in ("dxcam", "bitblt", "mss"):
        raise CaptureUnavailable(f"unknown capture backend {kind!r}; choose one of {CAPTURES}")
    if region is None:
        region = find_window(window, import_module)
    if kind == "dxcam":
        return DxcamCapture(region, import_module)
    if kind == "bitblt":
        return BitBltCapture(region, window, import_module)
    return MssCapture(region, import_module)


class FpsMeter:
    """Frames per second over the last ``window`` grabs."""

    def __init__(self, window: int = 60) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self) -> None:
        self._times.append(time.perf_counter())

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

"""Control and capture backends with fake driver modules; LIDAR from images by hand."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from tmrl2.envs.trackmania import capture as cap
from tmrl2.envs.trackmania.controls import ControlsUnavailable, make_controls
from tmrl2.envs.trackmania.lidar import ImageLidar


def _importer(modules: dict[str, Any]) -> Any:
    def import_module(name: str) -> Any:
        if name not in modules:
            raise ImportError(f"No module named {name!r}")
        return modules[name]

    return import_module


class FakePad:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.updates = 0

    def left_joystick_float(self, x_value_float: float, y_value_float: float) -> None:
        self.calls.append(("steer", x_value_float))

    def right_trigger_float(self, value_float: float) -> None:
        self.calls.append(("gas", value_float))

    def left_trigger_float(self, value_float: float) -> None:
        self.calls.append(("brake", value_float))

    def update(self) -> None:
        self.updates += 1

    def reset(self) -> None:
        self.calls.append(("reset", 0.0))

    def press_button(self, button: int) -> None:
        self.calls.append(("press", button))

    def release_button(self, button: int) -> None:
        self.calls.append(("release", button))


BUTTONS = types.SimpleNamespace(XUSB_GAMEPAD_B=0x2000, XUSB_GAMEPAD_BACK=0x0020)


def test_gamepad_maps_actions_to_stick_and_triggers() -> None:
    pad = FakePad()
    vg = types.SimpleNamespace(VX360Gamepad=lambda: pad, XUSB_BUTTON=BUTTONS)
    controls = make_controls("gamepad", import_module=_importer({"vgamepad": vg}))
    controls.apply(gas=0.7, brake=2.0, steer=-1.5)
    assert pad.calls == [("steer", -1.0), ("gas", 0.7), ("brake", 1.0)]
    assert pad.updates == 1
    controls.release()
    assert pad.calls[-1] == ("reset", 0.0) and pad.updates == 2
    controls.press("respawn")
    assert pad.calls[-2:] == [("press", 0x2000), ("release", 0x2000)]
    controls.press("restart")
    assert pad.calls[-2:] == [("press", 0x0020), ("release", 0x0020)]


def test_missing_drivers_give_instructions_not_tracebacks() -> None:
    none = _importer({})
    with pytest.raises(ControlsUnavailable, match="ViGEmBus"):
        make_controls("gamepad", import_module=none)
    with pytest.raises(ControlsUnavailable, match="pip install tmrl2\\[linux\\]"):
        make_controls("uinput", import_module=none)
    with pytest.raises(ControlsUnavailable, match="pynput"):
        make_controls("keyboard", import_module=none)
    with pytest.raises(ControlsUnavailable, match="sim serve"):
        make_controls("sim", client=object(), sim_available=False)
    with pytest.raises(ControlsUnavailable, match="unknown control backend"):
        make_controls("joystick")


def test_vgamepad_without_vigembus_says_to_install_it() -> None:
    def broken() -> None:
        raise RuntimeError("VIGEM_ERROR_BUS_NOT_FOUND")

    vg = types.SimpleNamespace(VX360Gamepad=broken, XUSB_BUTTON=BUTTONS)
    with pytest.raises(ControlsUnavailable, match="ViGEmBus"):
        make_controls("gamepad", import_module=_importer({"vgamepad": vg}))


class FakeUInput:
    def __init__(self, caps: dict[int, Any], **kwargs: Any) -> None:
        self.caps, self.kwargs = caps, kwargs
        self.events: list[tuple[int, int, int]] = []
        self.syns = 0
        self.closed = False

    def write(self, etype: int, code: int, value: int) -> None:
        self.events.append((etype, code, value))

    def syn(self) -> None:
        self.syns += 1

    def close(self) -> None:
        self.closed = True


def _fake_evdev(fail: bool = False) -> Any:
    ecodes = types.SimpleNamespace(
        EV_ABS=3, EV_KEY=1, ABS_X=0, ABS_Y=1, ABS_Z=2, ABS_RZ=5, BTN_A=304, BTN_B=305,
        BTN_X=307, BTN_Y=308, BTN_START=315, BTN_SELECT=314,
    )  # fmt: skip

    def uinput(caps: dict[int, Any], **kwargs: Any) -> FakeUInput:
        if fail:
            raise PermissionError("[Errno 13] Permission denied: '/dev/uinput'")
        return FakeUInput(caps, **kwargs)

    return types.SimpleNamespace(ecodes=ecodes, AbsInfo=lambda *a: a, UInput=uinput)


def test_uinput_writes_axes_and_syncs() -> None:
    controls = make_controls("uinput", import_module=_importer({"evdev": _fake_evdev()}))
    controls.apply(gas=1.0, brake=0.0, steer=0.5)
    dev = controls.device  # type: ignore[attr-defined]
    assert dev.events == [(3, 0, 16384), (3, 5, 255), (3, 2, 0)] and dev.syns == 1
    assert dev.kwargs["vendor"] == 0x045E  # looks like an Xbox 360 pad to the game
    controls.press("respawn")  # type: ignore[attr-defined]
    assert dev.events[-2:] == [(1, 305, 1), (1, 305, 0)]
    controls.close()
    assert dev.closed and dev.events[-3:] == [(3, 0, 0), (3, 5, 0), (3, 2, 0)]


def test_uinput_permission_error_explains_the_udev_rule() -> None:
    with pytest.raises(ControlsUnavailable, match="modprobe uinput"):
        make_controls("uinput", import_module=_importer({"evdev": _fake_evdev(fail=True)}))


def test_keyboard_presses_and_releases_on_threshold() -> None:
    log: list[tuple[str, str]] = []
    keyboard = types.SimpleNamespace(
        Controller=lambda: types.SimpleNamespace(
            press=lambda k: log.append(("press", k)), release=lambda k: log.append(("up", k))
        ),
        Key=types.SimpleNamespace(
            up="UP", down="DOWN", left="LEFT", right="RIGHT", enter="ENTER", delete="DEL"
        ),
    )
    controls = make_controls("keyboard", import_module=_importer({"pynput.keyboard": keyboard}))
    controls.apply(gas=0.9, brake=0.1, steer=-0.8)
    controls.apply(gas=0.9, brake=0.1, steer=0.0)  # gas held: no repeat press
    controls.release()
    assert log == [("press", "UP"), ("press", "LEFT"), ("up", "LEFT"), ("up", "UP")]
    controls.press("restart")
    assert log[-2:] == [("press", "DEL"), ("up", "DEL")]


def test_auto_picks_set_input_on_the_simulator() -> None:
    sent: list[tuple[float, float, float]] = []
    client = types.SimpleNamespace(set_input=lambda *a: sent.append(a))
    controls = make_controls("auto", client, sim_available=True)
    controls.apply(gas=0.5, brake=0.0, steer=0.25)
    assert controls.name == "sim" and sent == [(0.25, 0.5, 0.0)]


def test_to_observation_area_resizes_crops_and_converts() -> None:
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert cap.to_observation(img, 2, 2, gray=True).tolist() == [[2, 4], [10, 12]]
    assert cap.to_observation(img, 2, 2, gray=True, crop=(0.5, 0.5, 1, 1)).tolist() == [
        [10, 11], [14, 15]
    ]  # fmt: skip
    up = cap.to_observation(img, 8, 8, gray=True)
    assert up.shape == (8, 8) and up[0, :4].tolist() == [0, 0, 1, 1]
    bgra = np.zeros((10, 20, 4), np.uint8)
    bgra[..., 1] = 200
    rgb = cap.to_observation(bgra, 4, 2, gray=False)
    assert rgb.shape == (2, 4, 3) and (rgb[..., 1] == 200).all()
    assert (cap.to_observation(bgra, 4, 2, gray=True) == round(0.587 * 200)).all()
    with pytest.raises(ValueError, match="crop"):
        cap.to_observation(img, 2, 2, True, crop=(0.5, 0, 0.4, 1))


def test_mss_backend_converts_bgra_and_reports_missing_library() -> None:
    class Shot:
        width, height = 3, 2

        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            pixels = np.zeros((2, 3, 4), np.uint8)
            pixels[..., 0], pixels[..., 2] = 10, 200  # B, R
            return pixels

    grabbed: list[dict[str, int]] = []
    sct = types.SimpleNamespace(grab=lambda m: grabbed.append(m) or Shot(), close=lambda: None)
    mss = types.SimpleNamespace(mss=lambda: sct)
    region = cap.Region(5, 6, 3, 2)
    backend = cap.make_capture("mss", region=region, import_module=_importer({"mss": mss}))
    image = backend.grab()
    assert image.shape == (2, 3, 3) and image[0, 0].tolist() == [200, 0, 10]
    assert grabbed == [{"left": 5, "top": 6, "width": 3, "height": 2}]
    with pytest.raises(cap.CaptureUnavailable, match="pip install mss"):
        cap.make_capture("mss", region=region, import_module=_importer({}))


def test_find_window_uses_the_client_area_and_explains_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gui = types.SimpleNamespace(
        FindWindow=lambda cls, title: 42 if title == "Trackmania" else 0,
        GetClientRect=lambda hwnd: (0, 0, 1280, 720),
        ClientToScreen=lambda hwnd, point: (100 + point[0], 50 + point[1]),
    )
    monkeypatch.setattr(sys, "platform", "linux")  # no DPI call off Windows
    importer = _importer({"win32gui": gui})
    assert cap.find_window("Trackmania", importer) == cap.Region(100, 50, 1280, 720)
    with pytest.raises(cap.CaptureUnavailable, match="windowed mode"):
        cap.find_window("Other", importer)
    with pytest.raises(cap.CaptureUnavailable, match="pywin32"):
        cap.find_window("Trackmania", _importer({}))


def test_dpi_awareness_is_declared_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    shcore = types.SimpleNamespace(SetProcessDpiAwareness=calls.append)
    ctypes = types.SimpleNamespace(windll=types.SimpleNamespace(shcore=shcore))
    monkeypatch.setattr(sys, "platform", "win32")
    assert cap.set_dpi_aware(_importer({"ctypes": ctypes}))
    assert calls == [2]  # per-monitor aware: window rectangles in physical pixels


def test_image_lidar_matches_a_hand_drawn_corridor() -> None:
    # a road 21 px wide (columns 10..30) running straight up a 41 x 41 image
    img = np.full((41, 41), 70, np.uint8)
    img[:, 10:31] = 120
    lidar = ImageLidar(41, 41, beams=3, road_gray=(100, 170), origin_row=1.0)
    left, ahead, right = lidar(img) * lidar.max_len
    assert left == pytest.approx(11, abs=0.5)  # from column 20 to the first grass column 9
    assert right == pytest.approx(11, abs=0.5)  # to column 31
    assert ahead == pytest.approx(41, abs=0.5)  # leaves the image at the top
    img[20, :] = 250  # a wall across the road, 20 rows ahead
    assert lidar(img)[1] * lidar.max_len == pytest.approx(20, abs=0.5)
    with pytest.raises(ValueError, match="grey image"):
        lidar(np.zeros((41, 41, 3), np.uint8))


def test_env_falls_back_to_the_restart_input_when_the_plugin_cannot() -> None:
    from tmrl2.bridge import protocol as p
    from tmrl2.bridge.errors import CommandFailed
    from tmrl2.envs.trackmania.env import TrackManiaConfig, TrackManiaWorld

    world = TrackManiaWorld(TrackManiaConfig())  # no connection is made here
    pressed: list[str] = []
    waited: list[int | None] = []

    def unsupported() -> None:
        raise CommandFailed("RESTART", p.Status.UNSUPPORTED, "no rules script")

    def failed() -> None:
        raise CommandFailed("RESPAWN", p.Status.FAILED, "timed out")

    world.client = types.SimpleNamespace(  # type: ignore[assignment]
        latest=types.SimpleNamespace(episode=4), restart=unsupported, respawn=failed,
        wait_state=lambda episode, timeout: waited.append(episode),
    )  # fmt: skip
    world.controls = types.SimpleNamespace(press=pressed.append)  # type: ignore[assignment]
    world._command("restart")
    assert pressed == ["restart"] and waited == [5]
    with pytest.raises(CommandFailed, match="timed out"):  # only "unsupported" falls back
        world._command("respawn")

"""Car controls: a virtual Xbox 360 pad (Windows), uinput (Linux), keyboard, or SET_INPUT.

No plugin API sets the car's inputs in TrackMania, so the worker drives through an input
device the game reads. Each backend imports its driver library lazily and turns a missing
driver into :class:`ControlsUnavailable` with the steps to install it (tmrl issues #4, #52,
#70: "the car does not move"). ``import_module`` is injectable so that tests use fakes.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

from tmrl2.bridge.errors import BridgeError

Importer = Callable[[str], ModuleType]


class ControlsUnavailable(BridgeError):
    """The chosen control backend cannot run here; the message says how to fix it."""


class Controls(Protocol):
    name: str

    def apply(self, gas: float, brake: float, steer: float) -> None:
        """Gas and brake in [0, 1], steer in [-1, 1] (right positive)."""

    def release(self) -> None:
        """All inputs to neutral."""

    def press(self, button: str) -> None:
        """Tap the game's ``respawn`` or ``restart`` input (the fallback when the plugin
        cannot respawn or restart the car itself)."""

    def close(self) -> None: ...


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if not v >= lo else hi if v > hi else float(v)


class SimInputControls:
    """The simulator's SET_INPUT message (``tmrl2 sim serve``), fire and forget."""

    name = "sim"

    def __init__(self, client: Any) -> None:
        self.client = client

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self.client.set_input(_clip(steer, -1, 1), _clip(gas, 0, 1), _clip(brake, 0, 1))

    def release(self) -> None:
        self.apply(0.0, 0.0, 0.0)

    def press(self, button: str) -> None:
        raise ControlsUnavailable("the simulator respawns and restarts by command, not input")

    def close(self) -> None:
        pass


TAP_S = 0.1
"""How long a button is held when tapped."""


class GamepadControls:
    """A virtual Xbox 360 pad through vgamepad (ViGEmBus driver): steer = left stick X,
    gas = right trigger, brake = left trigger, as TrackMania's default pad bindings."""

    name = "gamepad"

    def __init__(self, import_module: Importer = importlib.import_module) -> None:
        try:
            vg = import_module("vgamepad")
        except ImportError:
            raise ControlsUnavailable(
                "the gamepad backend needs vgamepad: `pip install tmrl2[windows]` (or "
                "`pip install vgamepad`) and accept the ViGEmBus driver installer it starts; "
                "then restart the game so that it sees the pad"
            ) from None
        try:
            self.pad = vg.VX360Gamepad()
        except Exception as exc:  # vgamepad raises its own errors when ViGEmBus is absent
            raise ControlsUnavailable(
                f"could not create a virtual Xbox 360 pad ({exc}): install or repair the "
                "ViGEmBus driver (it comes with vgamepad's installer) and reboot"
            ) from None
        # TrackMania's default pad bindings: B respawns, View (Back) gives up / restarts
        buttons = vg.XUSB_BUTTON
        self._buttons = {
            "respawn": buttons.XUSB_GAMEPAD_B,
            "restart": buttons.XUSB_GAMEPAD_BACK,
        }

    def press(self, button: str) -> None:
        self.pad.press_button(button=self._buttons[button])
        self.pad.update()
        time.sleep(TAP_S)
        self.pad.release_button(button=self._buttons[button])
        self.pad.update()

    def apply(self, gas: float, brake: float, steer: float) -> None:
        self.pad.left_joystick_float(x_value_float=_clip(steer, -1, 1), y_value_float=0.0)
        self.pad.right_trigger_float(value_float=_clip(gas, 0, 1))
        self.pad.left_trigger_float(value_float=_clip(brake, 0, 1))
        self.pad.update()

    def release(self) -> None:
        self.pad.reset()
        self.pad.update()

    def close(self) -> None:
        self.release()


_AXIS_MAX = 32767
_TRIGGER_MAX = 255


class UinputControls:
    """A virtual pad on Linux through python-evdev's uinput (the game under Proton reads it
    like an Xbox pad): ABS_X steer, ABS_RZ gas, ABS_Z brake."""

    name = "uinput"

    def __init__(self, import_module: Importer = importlib.import_module) -> None:
        try:
            evdev = import_module("evdev")
        except ImportError:
            raise ControlsUnavailable(
                "the uinput backend needs python-evdev: `pip install tmrl2[linux]` (or "
                "`pip install evdev`)"
            ) from None
        ec = evdev.ecodes
        self._ec = ec
        caps = {
            ec.EV_ABS: [
                (ec.ABS_X, evdev.AbsInfo(0, -_AXIS_MAX, _AXIS_MAX, 16, 128, 0)),
                (ec.ABS_Y, evdev.AbsInfo(0, -_AXIS_MAX, _AXIS_MAX, 16, 128, 0)),
                (ec.ABS_Z, evdev.AbsInfo(0, 0, _TRIGGER_MAX, 0, 0, 0)),
                (ec.ABS_RZ, evdev.AbsInfo(0, 0, _TRIGGER_MAX, 0, 0, 0)),
            ],
            ec.EV_KEY: [ec.BTN_A, ec.BTN_B, ec.BTN_X, ec.BTN_Y, ec.BTN_START, ec.BTN_SELECT],
        }
        try:
            self.device = evdev.UInput(
                caps, name="Microsoft X-Box 360 pad", vendor=0x045E, product=0x028E
            )
        except (OSError, PermissionError) as exc:
            raise ControlsUnavailable(
                f"cannot open /dev/uinput ({exc}): load the module (`sudo modprobe uinput`) and "
                'give your user access (e.g. a udev rule `KERNEL=="uinput", MODE="0660", '
                'GROUP="input"` and `sudo usermod -aG input $USER`, then log in again)'
            ) from None

    def press(self, button: str) -> None:
        ec, dev = self._ec, self.device
        code = ec.BTN_B if button == "respawn" else ec.BTN_SELECT
        dev.write(ec.EV_KEY, code, 1)
        dev.syn()
        time.sleep(TAP_S)
        dev.write(ec.EV_KEY, code, 0)
        dev.syn()

    def apply(self, gas: float, brake: float, steer: float) -> None:
        ec, dev = self._ec, self.device
        dev.write(ec.EV_ABS, ec.ABS_X, round(_clip(steer, -1, 1) * _AXIS_MAX))
        dev.write(ec.EV_ABS, ec.ABS_RZ, round(_clip(gas, 0, 1) * _TRIGGER_MAX))
        dev.write(ec.EV_ABS, ec.ABS_Z, round(_clip(brake, 0, 1) * _TRIGGER_MAX))
        dev.syn()

    def release(self) -> None:
        self.apply(0.0, 0.0, 0.0)

    def close(self) -> None:
        self.release()
        self.device.close()


class KeyboardControls:
    """Arrow keys through pynput: binary inputs (a key is down when its input > ``threshold``),
    for setups where no virtual pad works. Learns worse than analog control."""

    name = "keyboard"

    def __init__(
        self, threshold: float = 0.5, import_module: Importer = importlib.import_module
    ) -> None:
        try:
            kb = import_module("pynput.keyboard")
        except ImportError:
            raise ControlsUnavailable(
                "the keyboard backend needs pynput: `pip install pynput` (on Linux it needs a "
                "display: X11, or uinput access under Wayland)"
            ) from None
        self.keyboard = kb.Controller()
        keys = kb.Key
        self._keys = {
            "gas": keys.up,
            "brake": keys.down,
            "left": keys.left,
            "right": keys.right,
            "respawn": keys.enter,
            "restart": keys.delete,
        }  # the game's default keys
        self._down: set[str] = set()
        self.threshold = threshold

    def _set(self, name: str, down: bool) -> None:
        if down and name not in self._down:
            self.keyboard.press(self._keys[name])
            self._down.add(name)
        elif not down and name in self._down:
            self.keyboard.release(self._keys[name])
            self._down.discard(name)

    def apply(self, gas: float, brake: float, steer: float) -> None:
        t = self.threshold
        self._set("gas", gas > t)
        self._set("brake", brake > t)
        self._set("left", steer < -t)
        self._set("right", steer > t)

    def press(self, button: str) -> None:
        self._set(button, True)
        time.sleep(TAP_S)
        self._set(button, False)

    def release(self) -> None:
        for name in list(self._down):
            self._set(name, False)

    def close(self) -> None:
        self.release()


CONTROLS = ("auto", "sim", "gamepad", "uinput", "keyboard")


def make_controls(
    kind: str,
    client: Any = None,
    *,
    sim_available: bool = False,
    import_module: Importer = importlib.import_module,
) -> Controls:
    """The backend ``kind``; ``auto``: SET_INPUT when the server is the simulator, else the
    platform's virtual pad (vgamepad on Windows, uinput elsewhere)."""
    if kind == "auto":
        kind = "sim" if sim_available else ("gamepad" if sys.platform == "win32" else "uinput")
    if kind == "sim":
        if client is None or not sim_available:
            raise ControlsUnavailable(
                "control 'sim' (SET_INPUT) works only with `tmrl2 sim serve`; the game needs "
                "'gamepad' (Windows), 'uinput' (Linux) or 'keyboard'"
            )
        return SimInputControls(client)
    if kind == "gamepad":
        return GamepadControls(import_module)
    if kind == "uinput":
        return UinputControls(import_module)
    if kind == "keyboard":
        return KeyboardControls(import_module=import_module)
    raise ControlsUnavailable(f"unknown control backend {kind!r}; choose one of {CONTROLS}")

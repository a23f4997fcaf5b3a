"""The reward library: one small class per term, each reading the step's telemetry ``info``.

Every term returns its *unweighted* value; :class:`~tmrl2.rewards.manager.RewardManager`
multiplies by the term's ``weight`` and logs each weighted term separately. Formulas, with
``Δ`` the change since the previous step:

| term | value per step | units |
| --- | --- | --- |
| ``progress`` | ``scale · Δprogress_m`` (furthest arc length; backwards earns 0) | 1/m |
| ``checkpoint`` | ``per_checkpoint · Δcheckpoint + finish · [finished]`` | per event |
| ``speed`` | ``scale · speed_ms`` | s/m |
| ``off_track`` | ``-penalty · [off the road]`` | per step |
| ``wall`` | ``-penalty · [wall contact]`` | per step |
| ``steering`` | ``-scale · |steer_t - steer_{t-1}|`` | per unit of steer |
| ``air_time`` | ``scale · seconds airborne this step`` | 1/s |
| ``time`` | ``-penalty`` | per step |
| ``finish`` | ``bonus · [finished]`` | once |
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from tmrl2.config.base import FrozenModel
from tmrl2.rewards.reference import ReferenceLine


class TermConfig(FrozenModel):
    """Parameters shared by every term."""

    weight: float = 1.0
    """Multiplies the term's value in the total reward."""


class Term:
    """Base of a reward term: ``reset`` at episode start, ``__call__`` each step."""

    Config: ClassVar[type[TermConfig]] = TermConfig
    requires: tuple[str, ...] = ()
    """Telemetry keys the term reads; checked at the first reset with a clear error."""

    def __init__(self, config: TermConfig) -> None:
        self.config: Any = config  # the subclass's own Config model

    def reset(self, info: dict[str, Any]) -> None:
        missing = [key for key in self.requires if key not in info]
        if missing:
            raise KeyError(
                f"reward term {type(self).__name__} needs telemetry {missing} that this env "
                "does not provide; remove the term or use an env that reports it"
            )

    def __call__(self, info: dict[str, Any]) -> float:
        raise NotImplementedError


class ProgressConfig(TermConfig):
    scale: float = 0.1
    """Reward per metre of progress."""
    reference: str | None = None
    """A recorded reference line (``.npy``, N x 3); None: the env's own ``progress_m``
    (the simulator's centerline). Needed for game maps."""
    max_skip_m: float = Field(default=30.0, gt=0)
    """Reference line only: the furthest progress may jump in one step (cuts beyond this do
    not pay)."""

    @field_validator("reference")
    @classmethod
    def _loadable(cls, path: str | None) -> str | None:
        # fail at start-up, before the game or the simulator starts, not at the first reset
        if path is not None:
            ReferenceLine.load(path)
        return path


class Progress(Term):
    """Distance gained along the track's reference line: the default, tmrl-like reward."""

    Config = ProgressConfig

    def __init__(self, config: ProgressConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.line = (
            ReferenceLine.load(config.reference, config.max_skip_m) if config.reference else None
        )
        self.requires = ("position",) if self.line else ("progress_m",)
        self._last = 0.0

    def reset(self, info: dict[str, Any]) -> None:
        super().reset(info)
        if self.line is not None:
            self.line.reset(info["position"])
        else:
            self._last = float(info["progress_m"])

    def __call__(self, info: dict[str, Any]) -> float:
        if self.line is not None:
            gained, _ = self.line.update(info["position"])
        else:
            progress = float(info["progress_m"])
            gained, self._last = max(0.0, progress - self._last), max(progress, self._last)
        return self.cfg.scale * gained


class CheckpointConfig(TermConfig):
    per_checkpoint: float = 1.0
    """Reward for each checkpoint passed."""
    finish: float = 1.0
    """Reward for crossing the finish line."""


class Checkpoint(Term):
    """Sparse reward for each checkpoint and the finish."""

    Config = CheckpointConfig
    requires = ("checkpoint", "finished")

    def __init__(self, config: CheckpointConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._last = 0

    def reset(self, info: dict[str, Any]) -> None:
        super().reset(info)
        self._last = int(info["checkpoint"])

    def __call__(self, info: dict[str, Any]) -> float:
        passed, self._last = int(info["checkpoint"]) - self._last, int(info["checkpoint"])
        return self.cfg.per_checkpoint * max(passed, 0) + self.cfg.finish * bool(info["finished"])


class SpeedConfig(TermConfig):
    scale: float = 0.01
    """Reward per m/s of speed, every step."""


class Speed(Term):
    """Proportional to speed. Warning: alone it pays for speed in any direction, into walls
    included; combine it with ``progress`` (e.g. 0.7 progress + 0.3 speed)."""

    Config = SpeedConfig
    requires = ("speed_ms",)

    def __call__(self, info: dict[str, Any]) -> float:
        return self.config.scale * float(info["speed_ms"])


class PenaltyConfig(TermConfig):
    penalty: float = 1.0
    """Subtracted on each step the condition holds."""


class OffTrackConfig(PenaltyConfig):
    reference: str | None = None
    """A recorded reference line (``.npy``): off track means farther than ``max_offset_m``
    from it. None: the env's ``surface`` telemetry (anything but ``road``) or ``off_track``."""
    max_offset_m: float = Field(default=8.0, gt=0)
    """Reference line only: distance from the line beyond which the car is off the track."""


class OffTrack(Term):
    """Penalty while off the road: by surface telemetry, or by distance from a reference line
    (for game maps, where the road's extent is not known to the worker)."""

    Config = OffTrackConfig

    def __init__(self, config: OffTrackConfig) -> None:
        super().__init__(config)
        self.line = ReferenceLine.load(config.reference) if config.reference else None

    def reset(self, info: dict[str, Any]) -> None:
        if self.line is not None:
            self.requires = ("position",)
            super().reset(info)
            self.line.reset(info["position"])
        elif "surface" not in info and "off_track" not in info:
            raise KeyError(
                "reward term OffTrack needs telemetry 'surface' or 'off_track' that this env "
                "does not provide; set reward.terms.off_track.reference or remove the term"
            )

    def __call__(self, info: dict[str, Any]) -> float:
        if self.line is not None:
            _, distance = self.line.update(info["position"])
            off = distance > self.config.max_offset_m
        elif "surface" in info:
            off = info["surface"] != "road"
        else:
            off = bool(info["off_track"])
        return -self.config.penalty * off


class Wall(Term):
    """Penalty on steps with wall contact."""

    Config = PenaltyConfig
    requires = ("wall_contact",)

    def __call__(self, info: dict[str, Any]) -> float:
        return -self.config.penalty * bool(info["wall_contact"])


class SteeringConfig(TermConfig):
    scale: float = 0.1
    """Penalty per unit of steering change between two steps (steer spans [-1, 1])."""
    steer_index: int = Field(default=2, ge=0)
    """Index of the steering axis in the action (tmrl's convention: gas, brake, steer)."""


class Steering(Term):
    """Penalty on abrupt steering: ``|steer_t - steer_{t-1}|``."""

    Config = SteeringConfig

    def __init__(self, config: SteeringConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._last = 0.0

    def reset(self, info: dict[str, Any]) -> None:
        self._last = 0.0

    def __call__(self, info: dict[str, Any]) -> float:
        action = info.get("action")
        if action is None:
            return 0.0
        steer = float(np.asarray(action).reshape(-1)[self.cfg.steer_index])
        change, self._last = abs(steer - self._last), steer
        return -self.cfg.scale * change


class AirTimeConfig(TermConfig):
    scale: float = 1.0
    """Reward per second airborne."""


class AirTime(Term):
    """Stunt reward: time airborne (``airborne`` telemetry, timed by ``race_time_ms``)."""

    Config = AirTimeConfig
    requires = ("airborne", "race_time_ms")

    def __init__(self, config: AirTimeConfig) -> None:
        super().__init__(config)
        self._last_ms = 0

    def reset(self, info: dict[str, Any]) -> None:
        super().reset(info)
        self._last_ms = int(info["race_time_ms"])

    def __call__(self, info: dict[str, Any]) -> float:
        now = int(info["race_time_ms"])
        dt_s, self._last_ms = (now - self._last_ms) / 1000.0, now
        return self.config.scale * dt_s * bool(info["airborne"])


class Time(Term):
    """A constant cost per step: finishing sooner pays."""

    Config = PenaltyConfig

    def __call__(self, info: dict[str, Any]) -> float:
        return -self.config.penalty


class FinishConfig(TermConfig):
    bonus: float = 10.0
    """Reward when the car crosses the finish line."""


class Finish(Term):
    """A bonus for finishing."""

    Config = FinishConfig
    requires = ("finished",)

    def __call__(self, info: dict[str, Any]) -> float:
        return self.config.bonus * bool(info["finished"])


TERMS: dict[str, type[Term]] = {
    "progress": Progress,
    "checkpoint": Checkpoint,
    "speed": Speed,
    "off_track": OffTrack,
    "wall": Wall,
    "steering": Steering,
    "air_time": AirTime,
    "time": Time,
    "finish": Finish,
}
"""Built-in terms by the name used under ``reward.terms`` in the YAML."""

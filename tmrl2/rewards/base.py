"""The reward contract shared by every environment.

An environment computes its telemetry ``info`` dict each step and asks a :class:`Reward` for
the scalar; rewards never touch the simulator or the game directly, so the same reward runs on
both. Telemetry keys every env provides: ``progress_m`` (arc length driven along the track's
centerline since the start, metres), ``speed_ms``, ``finished`` (bool), ``wall_contact`` (bool),
``checkpoint`` (index of the last checkpoint passed), ``race_time_ms``.
"""

from __future__ import annotations

from typing import Any, Protocol


class Reward(Protocol):
    """Turns a stream of telemetry dicts into scalar rewards."""

    def reset(self, info: dict[str, Any]) -> None:
        """Start a new episode from its first telemetry."""

    def __call__(self, info: dict[str, Any]) -> float:
        """Return the reward of the step that produced ``info``."""
        ...

"""Keeping workers and trainer in step, and saying so when they are not.

One setting, ``trainer.updates_per_step`` (the update-to-data ratio), is honoured by both
sides in fast mode; real time never waits for the trainer (the env sets the pace).

The trainer's rule (:class:`UpdateBudget`): once its memory first holds
``trainer.start_samples`` in this session it anchors ``(updates0, samples0)`` and then
updates while ``updates - updates0 < updates_per_step * (samples - samples0)``; ``samples0``
is where ``start_samples`` was reached (the samples that overshot it before the trainer saw
its memory ready are owed updates too), and at ``run.steps`` the trainer makes the updates
still owed before it stops: a run of N steps has ``updates_per_step * (N - start_samples)``
updates, as SB3's SAC with ``learning_starts``. Anchoring per session means that a trainer
resumed with another ratio, or with counters restored but an empty memory, starts from where
it is instead of owing (or being owed) updates from an earlier session.

The workers' rule (:class:`Pacer`): a worker paces itself against the ``state`` the trainer
publishes (session, updates, samples, ready, weights version, ``updates_per_step``, and
``ahead``: the samples it holds beyond what its ratio has consumed), never against counters
of its own past or of an earlier trainer:

- it never waits while it has no state from the current trainer session, or while that
  trainer is not ``ready`` (its memory holds fewer than ``trainer.start_samples``): a new
  trainer with an empty memory must get samples, so waiting for its updates would deadlock;
- when a ``ready`` state arrives for a new session, the worker anchors ``(steps0, updates0)``
  at its own step count and the trainer's update count;
- afterwards it waits while ``steps - steps0 >= slack + (updates - updates0) /
  updates_per_step`` (its own steps: exact for one worker, at once), ``slack = 2 *
  chunk_steps``, or while the trainer's latest ``ahead >= 2 * slack`` (the trainer already
  holds more data than its ratio will use soon: what keeps several workers together at the
  ratio, with the lag of the state's period).

Neither rule can deadlock: a worker waits only when samples it sent, or the trainer's own
``ahead``, let the trainer update, and every update moves the worker's bound.

:class:`WaitLog` is how every wait of the roles says what it waits for: a warning after
:data:`FIRST_WARNING_S`, then every :data:`REPEAT_WARNING_S`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tmrl2.telemetry.episodes import episode_stats

log = logging.getLogger(__name__)

FIRST_WARNING_S = 30.0
"""A wait logs its first warning after this long."""
REPEAT_WARNING_S = 60.0
"""... and then one every this long while it lasts."""

Clock = Callable[[], float]
"""``time.monotonic`` or a test's fake clock."""


@dataclass(frozen=True)
class TrainerState:
    """The trainer's ``state`` message (see the wire protocol in docs/architecture.md)."""

    session: str
    updates: int
    samples: int
    ready: bool
    weights_version: int
    updates_per_step: float = 0.0
    """The trainer's ratio (0: unknown, the worker does not pace)."""
    ahead: float = 0.0
    """Samples the trainer holds beyond what its ratio has consumed."""
    explore: dict[str, float] = field(default_factory=dict)
    """The workers' exploration values the trainer last saw or restored (``noise_std``):
    a new worker starts from them (``ActorNoise.stats``)."""

    @staticmethod
    def from_meta(meta: Mapping[str, Any]) -> TrainerState | None:
        """Parse a ``state`` meta; None when malformed (a state is advice: never fatal)."""
        try:
            state = TrainerState(
                session=str(meta["session"]),
                updates=int(meta["updates"]),
                samples=int(meta["samples"]),
                ready=bool(meta["ready"]),
                weights_version=int(meta.get("weights_version", 0)),
                updates_per_step=float(meta.get("updates_per_step", 0.0)),
                ahead=float(meta.get("ahead", 0.0)),
                explore=episode_stats({"exploration": meta.get("explore")}, prefix=""),
            )
        except (KeyError, TypeError, ValueError):
            return None
        numbers_ok = state.updates >= 0 and state.samples >= 0 and state.updates_per_step >= 0
        finite = math.isfinite(state.updates_per_step) and math.isfinite(state.ahead)
        return state if numbers_ok and finite else None

    def meta(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "updates": self.updates,
            "samples": self.samples,
            "ready": self.ready,
            "weights_version": self.weights_version,
            "updates_per_step": self.updates_per_step,
            "ahead": self.ahead,
            **({"explore": dict(self.explore)} if self.explore else {}),
        }


class UpdateBudget:
    """The trainer's rule (module docstring): may it update now?"""

    def __init__(self, updates_per_step: float) -> None:
        self.ratio = updates_per_step
        self.anchor: tuple[int, int] | None = None
        """``(updates0, samples0)`` when the memory was first ready in this session."""

    def allows(self, ready: bool, updates: int, samples: int) -> bool:
        if not ready:
            return False
        if self.anchor is None:
            self.anchor = (updates, samples)
        return self.ahead(updates, samples) > 0

    def ahead(self, updates: int, samples: int) -> float:
        """Samples received beyond what the updates so far consumed at the ratio (0 before
        the anchor)."""
        if self.anchor is None:
            return 0.0
        updates0, samples0 = self.anchor
        return (samples - samples0) - (updates - updates0) / self.ratio

    def owed(self, updates: int, samples: int) -> int:
        """Updates the ratio allows now for the samples received (0 before the anchor)."""
        return max(math.ceil(self.ahead(updates, samples) * self.ratio), 0)

    def measured(self, updates: int, samples: int) -> float | None:
        """Updates per step since the anchor (None before it, or without a new sample)."""
        if self.anchor is None or samples <= self.anchor[1]:
            return None
        return (updates - self.anchor[0]) / (samples - self.anchor[1])


class Pacer:
    """The workers' rule (module docstring)."""

    def __init__(self, chunk_steps: int, enabled: bool) -> None:
        """Args:
        chunk_steps: transitions per chunk (all of a vectorized worker's cars together).
        enabled: ``worker.pace`` and not real time.
        """
        self.slack = 2 * chunk_steps
        self.off = not enabled
        self.session: str | None = None
        self.ready = False
        self.updates = 0
        self.updates_per_step = 0.0
        self.ahead = 0.0
        self.anchor: tuple[int, int] | None = None
        """``(steps0, updates0)`` of the current session, once it was ready."""

    def on_state(self, state: TrainerState, steps: int) -> None:
        """Take the trainer's latest state (``steps``: this worker's step count now)."""
        if state.session != self.session:
            self.session, self.anchor, self.updates = state.session, None, state.updates
            log.info("trainer session %s (at %d updates)", state.session, state.updates)
        self.ready = state.ready
        self.updates = max(self.updates, state.updates)
        self.updates_per_step = state.updates_per_step
        self.ahead = state.ahead
        if state.ready and self.anchor is None:
            self.anchor = (steps, state.updates)

    def on_updates(self, session: str | None, updates: int) -> None:
        """An update count from elsewhere (a ``weights`` message), if of the same session."""
        if session is not None and session == self.session:
            self.updates = max(self.updates, updates)

    def must_wait(self, steps: int) -> bool:
        if self.off or not self.ready or self.anchor is None or self.updates_per_step <= 0:
            return False
        if self.ahead >= 2 * self.slack:
            return True
        steps0, updates0 = self.anchor
        return steps - steps0 >= self.slack + (self.updates - updates0) / self.updates_per_step

    def describe(self, steps: int) -> str:
        """Why :meth:`must_wait` holds, for the wait's log line."""
        steps0, updates0 = self.anchor or (steps, self.updates)
        return (
            f"{steps - steps0} steps since trainer session {self.session} became ready, "
            f"{self.updates - updates0} updates since, the trainer {self.ahead:.0f} samples "
            f"ahead: trainer.updates_per_step={self.updates_per_step:g} lets a worker run "
            f"{self.slack} steps plus {1 / self.updates_per_step:g} per update ahead (is the "
            "trainer updating?)"
        )


class WaitLog:
    """Logs one warning per long wait: after :data:`FIRST_WARNING_S`, then every
    :data:`REPEAT_WARNING_S`; :meth:`done` ends the wait (and says how long it lasted)."""

    def __init__(self, what: str, clock: Clock = time.monotonic, logger: logging.Logger = log):
        self.what = what
        self.clock = clock
        self.log = logger
        self.since: float | None = None
        self._next = 0.0
        self.warnings = 0

    def waiting(self, why: Callable[[], str]) -> None:
        """Call on every pass of a wait loop; ``why`` is only evaluated to log."""
        now = self.clock()
        if self.since is None:
            self.since, self._next = now, now + FIRST_WARNING_S
        elif now >= self._next:
            self._next = now + REPEAT_WARNING_S
            self.warnings += 1
            self.log.warning("%s for %.0f s: %s", self.what, now - self.since, why())

    def done(self) -> None:
        if self.since is not None and self.warnings:
            self.log.warning("%s: over after %.0f s", self.what, self.clock() - self.since)
        self.since, self.warnings = None, 0

"""Keeping workers and trainer in step, and saying so when they are not.

The worker pacing rule (fast mode only; real time never waits): a worker paces itself against
the ``state`` the trainer publishes (session, updates, samples, ready, weights version), never
against counters of its own past or of an earlier trainer:

- it never waits while it has no state from the current trainer session, or while that
  trainer is not ``ready`` (its memory holds fewer than ``trainer.start_samples``): a new
  trainer with an empty memory must get samples, so waiting for its updates would deadlock;
- when a ``ready`` state arrives for a new session, the worker anchors ``(steps0, updates0)``
  at its own step count and the trainer's update count;
- afterwards it waits while ``steps - steps0 >= slack + max_steps_per_update * (updates -
  updates0)``, ``slack = 2 * chunk_steps``.

So a resumed trainer (its update count restored, its worker step counts not) can neither
deadlock its workers nor let them run ahead by the restored update count.

:class:`WaitLog` is how every wait of the roles says what it waits for: a warning after
:data:`FIRST_WARNING_S`, then every :data:`REPEAT_WARNING_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
            )
        except (KeyError, TypeError, ValueError):
            return None
        return state if state.updates >= 0 and state.samples >= 0 else None

    def meta(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "updates": self.updates,
            "samples": self.samples,
            "ready": self.ready,
            "weights_version": self.weights_version,
        }


class Pacer:
    """The worker pacing rule (module docstring)."""

    def __init__(self, max_steps_per_update: float, chunk_steps: int, realtime: bool) -> None:
        self.ratio = max_steps_per_update
        self.slack = 2 * chunk_steps
        self.off = realtime or max_steps_per_update <= 0
        self.session: str | None = None
        self.ready = False
        self.updates = 0
        self.anchor: tuple[int, int] | None = None
        """``(steps0, updates0)`` of the current session, once it was ready."""

    def on_state(self, state: TrainerState, steps: int) -> None:
        """Take the trainer's latest state (``steps``: this worker's step count now)."""
        if state.session != self.session:
            self.session, self.anchor, self.updates = state.session, None, state.updates
            log.info("trainer session %s (at %d updates)", state.session, state.updates)
        self.ready = state.ready
        self.updates = max(self.updates, state.updates)
        if state.ready and self.anchor is None:
            self.anchor = (steps, state.updates)

    def on_updates(self, session: str | None, updates: int) -> None:
        """An update count from elsewhere (a ``weights`` message), if of the same session."""
        if session is not None and session == self.session:
            self.updates = max(self.updates, updates)

    def must_wait(self, steps: int) -> bool:
        if self.off or not self.ready or self.anchor is None:
            return False
        steps0, updates0 = self.anchor
        return steps - steps0 >= self.slack + self.ratio * (self.updates - updates0)

    def describe(self, steps: int) -> str:
        """Why :meth:`must_wait` holds, for the wait's log line."""
        steps0, updates0 = self.anchor or (steps, self.updates)
        return (
            f"{steps - steps0} steps since trainer session {self.session} became ready, "
            f"{self.updates - updates0} updates since: worker.max_steps_per_update="
            f"{self.ratio:g} lets it run {self.slack} steps plus {self.ratio:g} per update "
            "ahead (is the trainer updating?)"
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

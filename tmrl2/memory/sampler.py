"""Samplers: which rows of a replay storage go into the next batch.

A sampler knows nothing about the stored data, only how many rows are filled. The storage
tells it about writes (:meth:`Sampler.on_write`) and the learner feeds back priorities
(:meth:`Sampler.update_priorities`); both are no-ops for uniform sampling and are the hooks a
prioritized sampler (Schaul et al. 2016, "Prioritized Experience Replay") plugs into.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tmrl2.memory.prioritized import PrioritizedConfig


class Sampler(ABC):
    """Base of samplers: draws row indices in ``[0, size)`` of a storage."""

    wants_priorities = False
    """True when :meth:`update_priorities` matters, so the learner's TD errors are worth
    fetching."""

    @abstractmethod
    def sample(self, size: int, batch_size: int) -> np.ndarray:
        """Draw ``batch_size`` row indices (int64) among the ``size`` filled rows.

        Raises:
            ValueError: when ``size`` or ``batch_size`` is not positive.
        """

    def weights(self, indices: np.ndarray) -> np.ndarray | None:
        """Importance-sampling weights of sampled ``indices``; ``None`` means all ones."""
        return None

    def on_write(self, indices: np.ndarray) -> None:
        """Rows ``indices`` of the storage were (over)written with new transitions."""
        return None  # nothing to track for uniform sampling

    def disable(self, indices: np.ndarray) -> None:
        """Rows ``indices`` hold no valid transition any more (e.g. their frames were evicted);
        a sampler that can exclude rows does; the storage checks draws anyway."""
        return None

    def update_priorities(self, indices: np.ndarray, priorities: Any) -> None:
        """Set the priorities of rows ``indices`` (e.g. absolute TD errors) after an update."""
        return None  # uniform sampling ignores priorities

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state for a checkpoint (numpy arrays and plain Python values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`state_dict`."""
        return None  # stateless by default


def check_sizes(size: int, batch_size: int) -> None:
    if size <= 0:
        raise ValueError("cannot sample from an empty memory: append transitions first")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


class UniformSampler(Sampler):
    """Draws rows uniformly at random, with replacement."""

    def __init__(self, seed: int = 0) -> None:
        """Args:
        seed: seed of the sampler's own random generator (PCG64).
        """
        self._rng = np.random.default_rng(seed)

    def sample(self, size: int, batch_size: int) -> np.ndarray:
        """Draw ``batch_size`` row indices uniformly in ``[0, size)``, with replacement."""
        check_sizes(size, batch_size)
        return self._rng.integers(0, size, size=batch_size, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state, so that a resumed run draws the same sequence."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self._rng.bit_generator.state = state["rng"]


SamplerFactory = Callable[[int, int, "PrioritizedConfig | None"], Sampler]
"""``(capacity, seed, prioritized options) -> Sampler``."""


def _uniform(capacity: int, seed: int, options: PrioritizedConfig | None) -> Sampler:
    return UniformSampler(seed)


def _prioritized(capacity: int, seed: int, options: PrioritizedConfig | None) -> Sampler:
    from tmrl2.memory.prioritized import PrioritizedSampler  # it subclasses Sampler

    return PrioritizedSampler(capacity, options, seed)


SAMPLERS: dict[str, SamplerFactory] = {"uniform": _uniform, "prioritized": _prioritized}
"""Sampler factories by the name used in ``memory.sampler``."""


def build_sampler(
    name: str, capacity: int, seed: int = 0, options: PrioritizedConfig | None = None
) -> Sampler:
    """Build the sampler called ``name`` (a key of :data:`SAMPLERS`) for a storage of
    ``capacity`` rows (a prioritized sampler sizes its sum tree from it); ``options`` are the
    ``memory.prioritized`` settings (ignored by the uniform sampler)."""
    try:
        factory = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}") from None
    return factory(capacity, seed, options)

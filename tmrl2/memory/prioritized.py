"""Proportional prioritized sampling (``memory.sampler: prioritized``).

Schaul et al. 2016, "Prioritized Experience Replay": row ``i`` is drawn with probability
``P(i) = p_i^alpha / sum_k p_k^alpha`` where ``p_i = |TD error_i| + eps`` (clipped to
``max_priority``), and the learner weights its loss by the importance-sampling weight
``w_i = (N P(i))^-beta / max_k w_k = (p_i / p_min)^-(alpha beta)``. New rows get the largest
priority seen so far, so that every transition is replayed at least about once.

``alpha`` and ``beta`` follow linear schedules over the sampler's draws (``anneal_draws``):
beta rises to 1 so that the bias of prioritization is corrected by the end of training (the
paper's annealing). A change of ``alpha`` needs every leaf raised to the new power, an O(N)
rebuild: it is done whenever the scheduled alpha has moved by ``alpha_rebuild_step``.

Sampling is stratified (one uniform draw in each of ``batch_size`` equal slices of the total),
and the sum tree (:mod:`tmrl2.memory.sumtree`) is updated and searched with vectorized numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from tmrl2.config.base import FrozenModel
from tmrl2.memory.sampler import Sampler, check_sizes
from tmrl2.memory.sumtree import BLOCK, MinTree, SumTree


class PrioritizedConfig(FrozenModel):
    """Options of the prioritized sampler (``memory.prioritized``)."""

    alpha: float = Field(default=0.6, ge=0.0, le=1.0)
    """Priority exponent at the start: 0 is uniform sampling, 1 fully proportional."""
    alpha_final: float | None = Field(default=None, ge=0.0, le=1.0)
    """Priority exponent at the end of the schedule; ``None`` keeps ``alpha`` constant."""
    beta: float = Field(default=0.4, ge=0.0, le=1.0)
    """Importance-sampling exponent at the start (0: no correction, 1: full correction)."""
    beta_final: float = Field(default=1.0, ge=0.0, le=1.0)
    """Importance-sampling exponent at the end of the schedule."""
    anneal_draws: int = Field(default=1_000_000, ge=1)
    """Batches drawn over which alpha and beta move linearly to their final values."""
    eps: float = Field(default=1e-3, gt=0.0)
    """Added to |TD error| so that no transition gets a zero probability."""
    max_priority: float = Field(default=1e3, gt=0.0)
    """Priorities are clipped to this, so one huge TD error cannot monopolize sampling."""
    alpha_rebuild_step: float = Field(default=0.01, gt=0.0)
    """Rebuild the tree with the scheduled alpha once it has moved by this much."""


def to_numpy(values: Any) -> np.ndarray:
    """``values`` (a numpy array, a torch tensor on any device, a list) as a flat numpy array."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


class PrioritizedSampler(Sampler):
    """Proportional prioritized sampler over a storage of ``capacity`` rows."""

    wants_priorities = True

    def __init__(self, capacity: int, config: PrioritizedConfig | None = None, seed: int = 0):
        """Args:
        capacity: rows of the storage (the sum tree has one leaf per row).
        config: the ``memory.prioritized`` options; defaults when ``None``.
        seed: seed of the sampler's random generator (PCG64).
        """
        self.config = config or PrioritizedConfig()
        self.capacity = capacity
        self._rng = np.random.default_rng(seed)
        self._raw = np.zeros(capacity, dtype=np.float64)  # clipped |TD| + eps, before ^alpha
        self._sum = SumTree(capacity)
        self._min = MinTree(capacity)
        self.max_raw = 1.0
        """Largest priority seen so far: the one new rows get."""
        self.draws = 0
        """Batches drawn so far: the clock of the alpha and beta schedules."""
        self._tree_alpha = self.config.alpha

    # ------------------------------------------------------------------ schedules
    def _progress(self) -> float:
        return min(1.0, self.draws / self.config.anneal_draws)

    @property
    def alpha(self) -> float:
        """Scheduled priority exponent now."""
        cfg = self.config
        end = cfg.alpha if cfg.alpha_final is None else cfg.alpha_final
        return cfg.alpha + (end - cfg.alpha) * self._progress()

    @property
    def beta(self) -> float:
        """Scheduled importance-sampling exponent now."""
        cfg = self.config
        return cfg.beta + (cfg.beta_final - cfg.beta) * self._progress()

    def _follow_alpha(self) -> None:
        alpha = self.alpha
        if abs(alpha - self._tree_alpha) >= self.config.alpha_rebuild_step or (
            alpha != self._tree_alpha and self._progress() >= 1.0
        ):
            self._tree_alpha = alpha
            self._rebuild()

    def _rebuild(self) -> None:
        filled = self._raw > 0.0
        powered = np.where(filled, self._raw**self._tree_alpha, 0.0)
        self._sum.set_all(powered)
        self._min.set_all(np.where(filled, powered, np.inf))

    # ------------------------------------------------------------------ Sampler API
    def sample(self, size: int, batch_size: int) -> np.ndarray:
        """Draw ``batch_size`` rows among the filled ones, proportionally to priority^alpha."""
        check_sizes(size, batch_size)
        self._follow_alpha()
        total = self._sum.root
        if total <= 0.0:
            raise ValueError("every priority is zero: no row can be sampled")
        strata = (np.arange(batch_size) + self._rng.random(batch_size)) * (total / batch_size)
        self.draws += 1
        return self._sum.find(np.minimum(strata, np.nextafter(total, 0.0)))

    def probabilities(self, indices: np.ndarray) -> np.ndarray:
        """Probability that one draw picks each of ``indices``."""
        return self._sum[indices] / self._sum.root

    def weights(self, indices: np.ndarray) -> np.ndarray:
        """Importance-sampling weights ``(P(i) / P_min)^-beta``, at most 1 (float32)."""
        p_min = self._min.root
        ratio = self._sum[indices] / p_min
        return np.power(ratio, -self.beta).astype(np.float32)

    def on_write(self, indices: np.ndarray) -> None:
        """New transitions at ``indices`` get the largest priority seen so far."""
        self._set(indices, np.full(len(indices), self.max_raw))

    def update_priorities(self, indices: np.ndarray, priorities: Any) -> None:
        """Set the priorities of rows ``indices`` from the learner's |TD errors| (any array or
        tensor of the same length); ``eps`` is added and ``max_priority`` clips them."""
        values = np.abs(to_numpy(priorities))
        indices = np.asarray(indices, dtype=np.int64)
        if values.shape != indices.shape:
            raise ValueError(f"{len(indices)} indices but {values.size} priorities")
        if not np.all(np.isfinite(values)):
            raise ValueError("priorities must be finite (is the critic diverging?)")
        raw = np.minimum(values + self.config.eps, self.config.max_priority)
        self.max_raw = max(self.max_raw, float(raw.max(initial=0.0)))
        self._set(indices, raw)

    def disable(self, indices: np.ndarray) -> None:
        """Give rows ``indices`` a zero probability until they are written again."""
        indices = np.asarray(indices, dtype=np.int64)
        self._raw[indices] = 0.0
        self._sum.update(indices, np.zeros(len(indices)))
        self._min.update(indices, np.full(len(indices), np.inf))

    def _set(self, indices: np.ndarray, raw: np.ndarray) -> None:
        self._raw[indices] = raw
        powered = raw**self._tree_alpha
        self._sum.update(indices, powered)
        self._min.update(indices, powered)

    @staticmethod
    def bytes_for(capacity: int) -> int:
        """Bytes this sampler reserves for ``capacity`` rows (priorities and two trees)."""
        blocks = -(-capacity // BLOCK)
        return 8 * capacity + 2 * 8 * (blocks * BLOCK + blocks)

    @property
    def nbytes(self) -> int:
        """Bytes of the priorities and the two trees."""
        return self._raw.nbytes + self._sum.nbytes + self._min.nbytes

    def state_dict(self) -> dict[str, Any]:
        """Priorities (raw, before ^alpha), the schedule clock and the generator's state."""
        return {
            "priorities": self._raw.copy(),
            "max_priority": self.max_raw,
            "draws": self.draws,
            "tree_alpha": self._tree_alpha,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; priorities of another capacity are ignored (the rows
        then keep the priorities their writes gave them)."""
        self.draws = int(state["draws"])
        self.max_raw = float(state["max_priority"])
        self._rng.bit_generator.state = state["rng"]
        raw = np.asarray(state["priorities"], dtype=np.float64)
        if raw.shape == self._raw.shape:
            self._raw[:] = raw
        self._tree_alpha = float(state.get("tree_alpha", self.alpha))
        self._rebuild()

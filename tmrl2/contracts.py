"""The component contracts: what the trainer and the workers need from their collaborators.

A replay memory, a learner and an actor-critic meet the roles only through these Protocols,
never through ``Any`` and ``getattr`` probes. So "a new algorithm or memory is one new file"
can be checked: the type checker holds a class against its Protocol wherever it is passed,
and :func:`check_component` says at construction which members a plug-in lacks (rather than
an ``AttributeError`` an hour into a run). The roles' own seams (``Trainer``, ``Worker``)
take these objects in their constructors, so that unit tests build them with fakes in one
process (``tests/unit/rolekit.py``).

:class:`ClientTransport` (defined next to the socket, :mod:`tmrl2.net.transport`, and
re-exported here) is what a role needs from its connection to the server;
``tests/unit/rolekit.py`` fakes it in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from tmrl2.memory.batch import Batch
from tmrl2.net.transport import ClientTransport

__all__ = ["ActorCritic", "ClientTransport", "Learner", "ReplayMemory", "check_component"]


@runtime_checkable
class ReplayMemory(Protocol):
    """Stores chunks of transitions (wire naming, :mod:`tmrl2.memory.batch`) and samples
    batches of them (e.g. :class:`tmrl2.memory.ring.RingMemory`)."""

    @property
    def wants_priorities(self) -> bool:
        """Whether :meth:`update_priorities` matters (a prioritized sampler): the trainer
        feeds the learner's TD errors back only then."""
        ...

    @property
    def bytes_per_transition(self) -> int:
        """Bytes one stored transition takes (logged at start, for sizing)."""
        ...

    def __len__(self) -> int:
        """Transitions held now (updates start at ``trainer.start_samples``)."""
        ...

    def append(self, chunk: Mapping[str, np.ndarray]) -> None:
        """Store a validated chunk in the plain layout (``obs/<key>``, ``action``...)."""
        ...

    def sample(self, batch_size: int) -> Batch:
        """A batch of ``batch_size`` stored transitions on the learner's device."""
        ...

    def update_priorities(self, indices: np.ndarray, td_errors: Any) -> None:
        """Feed per-sample |TD errors| of the rows ``indices`` of the last batch back."""
        ...

    def save(self, path: str | Path) -> Path:
        """Write the contents under ``path`` (``trainer.save_memory``); return the file."""
        ...

    def load(self, path: str | Path) -> None:
        """Replace the contents with what :meth:`save` wrote."""
        ...


@runtime_checkable
class ActorCritic(Protocol):
    """A model with a policy (``actor``, the part the workers run) and a ``critic``."""

    @property
    def actor(self) -> nn.Module:
        """Called as ``actor(obs_dict, deterministic=..., with_logprob=...)`` ->
        ``(action, logp)`` (:mod:`tmrl2.algos.policy`)."""
        ...

    @property
    def critic(self) -> nn.Module:
        """The Q function(s) the learner trains alongside."""
        ...


@runtime_checkable
class Learner(Protocol):
    """Updates an :class:`ActorCritic` from batches (e.g. :class:`tmrl2.algos.sac.SAC`)."""

    @property
    def last_td_error(self) -> torch.Tensor | None:
        """``(B,)`` |TD error| of the last update's batch, or None (no update yet, or a
        learner without TD errors): the priorities of a prioritized memory."""
        ...

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step; returns the losses to log."""
        ...

    def actor_weights(self) -> dict[str, np.ndarray]:
        """The actor's weights as CPU numpy arrays: what is published to the workers."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (written into the checkpoint)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def check_component(obj: object, contract: type, where: str) -> None:
    """Raise ``TypeError`` naming the members ``obj`` lacks to satisfy ``contract`` (a
    runtime-checkable Protocol). ``where`` names the config field that chose it."""
    if isinstance(obj, contract):
        return
    members = [name for name in vars(contract) if not name.startswith("_") or name == "__len__"]
    missing = [name for name in members if not hasattr(obj, name)]
    raise TypeError(
        f"{where}: {type(obj).__module__}.{type(obj).__qualname__} is not a "
        f"{contract.__name__} (missing: {', '.join(missing) or '?'}; see tmrl2/contracts.py)"
    )

"""Worker-side policy helpers: numpy observations in, numpy actions out, weights as numpy.

Actor weights travel between the trainer and the workers as a ``dict[str, np.ndarray]``
(CPU arrays, one per entry of the actor's ``state_dict``), which the wire sends as raw
buffers; :func:`actor_weights` and :func:`load_actor_weights` round-trip that format exactly.
An actor is any module called as ``actor(obs_dict, deterministic=..., with_logprob=False)``
returning ``(action, logp)``, such as
:class:`~tmrl2.algos.networks.SquashedGaussianActor`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from tmrl2.memory.batch import BOX_KEY


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``arr``'s memory, or a copy of it when ``arr`` is read-only
    (torch cannot wrap read-only numpy buffers, e.g. ``np.frombuffer`` of a message)."""
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


def actor_act(
    actor: nn.Module, obs: Mapping[str, np.ndarray] | np.ndarray, deterministic: bool = False
) -> np.ndarray:
    """Act on one unbatched observation, on the CPU.

    Args:
        actor: the policy module (on the CPU).
        obs: one observation: a dict of its ``Box`` parts, or an array for a ``Box`` space.
        deterministic: the mode of the policy (evaluation) instead of a sample (exploration).

    Returns:
        the action, float32, of the action space's shape.
    """
    parts = {BOX_KEY: obs} if isinstance(obs, np.ndarray) else obs
    with torch.inference_mode():
        batch = {key: as_tensor(np.asarray(value)).unsqueeze(0) for key, value in parts.items()}
        action, _ = actor(batch, deterministic=deterministic, with_logprob=False)
        return action[0].numpy()


def actor_weights(actor: nn.Module) -> dict[str, np.ndarray]:
    """The actor's ``state_dict`` as fresh CPU numpy arrays (safe to send while training)."""
    return {
        name: tensor.detach().to("cpu", copy=True).numpy()
        for name, tensor in actor.state_dict().items()
    }


def load_actor_weights(actor: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy weights produced by :func:`actor_weights` into ``actor`` (arrays may be read-only).

    Raises:
        ValueError: when names or shapes differ from the actor's (a model/config mismatch).
    """
    own = actor.state_dict()
    missing = sorted(set(own) - set(arrays))
    extra = sorted(set(arrays) - set(own))
    if missing or extra:
        raise ValueError(
            f"actor weights do not match the model: missing {missing}, unexpected {extra}; "
            "do the trainer and the worker use the same model config and spaces?"
        )
    for name, tensor in own.items():
        if tuple(arrays[name].shape) != tuple(tensor.shape):
            raise ValueError(
                f"actor weight {name!r} has shape {tuple(arrays[name].shape)}, "
                f"expected {tuple(tensor.shape)}; the model configs differ"
            )
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(as_tensor(np.asarray(arrays[name])))


class Policy:
    """A CPU actor for a rollout worker: acts on numpy observations, loads numpy weights."""

    def __init__(self, actor: nn.Module) -> None:
        """Args:
        actor: the policy module; it is moved to the CPU and put in eval mode.
        """
        self.actor = actor.to("cpu").eval()

    def act(
        self, obs: Mapping[str, np.ndarray] | np.ndarray, deterministic: bool = False
    ) -> np.ndarray:
        """See :func:`actor_act`."""
        return actor_act(self.actor, obs, deterministic)

    def weights(self) -> dict[str, np.ndarray]:
        """See :func:`actor_weights`."""
        return actor_weights(self.actor)

    def load_weights(self, arrays: Mapping[str, np.ndarray]) -> None:
        """See :func:`load_actor_weights`."""
        load_actor_weights(self.actor, arrays)

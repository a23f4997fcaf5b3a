"""Dyna/MBPO rollouts: short model trajectories from real states, into a model buffer.

Janner et al. 2019 ("When to Trust Your Model: Model-Based Policy Optimization"): from real
states, the current policy acts in the learned model for ``h`` steps; each step draws one
ensemble member per state and a sample of its Gaussian (PETS' TS1 propagation). Per state, the
rollout stops

- after a step the model predicts terminal (that transition is kept, ``terminated = 1``), or
- at a step whose ensemble disagreement exceeds ``max_disagreement`` (not kept: the members
  disagree, the prediction is not trusted).

:class:`TensorRing` is the storage of the model transitions and of the real start states:
preallocated tensors on the learner's device, a write pointer that wraps around.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from tmrl2.worldmodel.ensemble import GaussianEnsemble, Prediction
from tmrl2.worldmodel.state import StateCodec

Policy = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""Observation dict -> ``(B, A)`` actions (no gradient needed)."""


class Step(NamedTuple):
    """One model step of a batch of states."""

    next_state: torch.Tensor
    """``(B, obs_dim)``."""
    reward: torch.Tensor
    """``(B,)``."""
    done: torch.Tensor
    """``(B,)`` bool: predicted terminal."""
    disagreement: torch.Tensor
    """``(B,)`` see :class:`~tmrl2.worldmodel.ensemble.Prediction`."""


class ModelStep:
    """The ensemble as an environment step over flat states (:class:`StateCodec`)."""

    def __init__(self, model: GaussianEnsemble, codec: StateCodec) -> None:
        self.model, self.codec = model, codec

    def predict(self, state: torch.Tensor, action: torch.Tensor) -> Prediction:
        return self.model.predict(torch.cat([state, action.to(state.dtype)], dim=-1))

    def _step(
        self,
        state: torch.Tensor,
        action: torch.Tensor,
        pred: Prediction,
        change: torch.Tensor,
        done: torch.Tensor,
    ) -> Step:
        nxt = self.codec.next_state(state, action, change[:, :-1])
        return Step(nxt, change[:, -1], done, pred.disagreement)

    def sample(
        self, state: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None
    ) -> Step:
        """A random member per state and a sample of its Gaussian (rollouts)."""
        pred = self.predict(state, action)
        rows = torch.arange(state.shape[0], device=state.device)
        member = torch.randint(
            pred.mean.shape[0], (state.shape[0],), generator=generator, device="cpu"
        ).to(state.device)
        mean, std = pred.mean[member, rows], pred.std[member, rows]
        noise = torch.randn(mean.shape, generator=generator, device="cpu").to(state.device)
        done = pred.done_prob[member, rows] > 0.5
        return self._step(state, action, pred, mean + std * noise, done)

    def particles(self, state: torch.Tensor, action: torch.Tensor) -> Step:
        """Row ``i`` stepped by member ``i mod K`` alone, with its mean (the planner's step:
        PETS' trajectory sampling with particles spread over the members; each row costs one
        member's forward pass, K times less than :meth:`expected`). ``disagreement`` is 0."""
        k, n = self.model.members, state.shape[0]
        x = torch.cat([state, action.to(state.dtype)], dim=-1)
        pad = (-n) % k
        if pad:
            x = torch.cat([x, x[:pad]])
        grouped = x.view(-1, k, x.shape[-1]).transpose(0, 1)  # (K, rows / K, in)
        pred = self.model.predict(grouped)
        mean = pred.mean.transpose(0, 1).reshape(-1, pred.mean.shape[-1])[:n]
        done = pred.done_prob.transpose(0, 1).reshape(-1)[:n] > 0.5
        nxt = self.codec.next_state(state, action, mean[:, :-1])
        return Step(nxt, mean[:, -1], done, torch.zeros(n, device=state.device))

    def expected(self, state: torch.Tensor, action: torch.Tensor) -> Step:
        """The members' average mean (the planner's deterministic step)."""
        pred = self.predict(state, action)
        done = pred.done_prob.mean(dim=0) > 0.5
        return self._step(state, action, pred, pred.mean.mean(dim=0), done)


class TensorRing:
    """Fixed-capacity storage of named tensor fields; the oldest rows are overwritten."""

    def __init__(
        self, fields: dict[str, tuple[int, ...]], capacity: int, device: torch.device
    ) -> None:
        """Args:
        fields: per-row shape of each field (float32).
        capacity: rows kept.
        device: where the tensors live.
        """
        self.capacity = capacity
        self.data = {
            name: torch.zeros((capacity, *shape), device=device) for name, shape in fields.items()
        }
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, rows: dict[str, torch.Tensor]) -> None:
        """Append rows (every field, same first dimension); keeps the last ``capacity``."""
        n = next(iter(rows.values())).shape[0]
        if n == 0:
            return
        skip = max(0, n - self.capacity)
        index = (self.ptr + skip + torch.arange(n - skip)) % self.capacity
        for name, dst in self.data.items():
            dst[index.to(dst.device)] = rows[name][skip:].to(dst.device, dst.dtype)
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` rows drawn uniformly with replacement (the ring must not be empty)."""
        index = torch.randint(self.size, (n,), generator=generator)
        return {name: t[index.to(t.device)] for name, t in self.data.items()}

    def state_dict(self) -> dict[str, Any]:
        """The filled rows and the pointer (tensors and ints: checkpoint-safe)."""
        return {
            "data": {name: t[: self.size].clone() for name, t in self.data.items()},
            "ptr": self.ptr,
            "size": self.size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a ring with the same fields and capacity."""
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"saved ring holds {size} rows, this one only {self.capacity}")
        for name, dst in self.data.items():
            dst[:size] = state["data"][name].to(dst.device)
        self.ptr, self.size = int(state["ptr"]) % self.capacity, size


def transition_fields(obs_dim: int, act_dim: int) -> dict[str, tuple[int, ...]]:
    """Fields of a model transition in a :class:`TensorRing`."""
    return {
        "obs": (obs_dim,),
        "action": (act_dim,),
        "reward": (),
        "next_obs": (obs_dim,),
        "terminated": (),
    }


def rollout(
    step: ModelStep,
    policy: Policy,
    starts: torch.Tensor,
    horizon: int,
    max_disagreement: float,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Roll the policy out in the model from ``starts`` ``(B, obs_dim)``.

    Returns:
        the kept transitions (fields of :func:`transition_fields`) and statistics:
        ``rollout_steps`` (mean kept steps per start), ``rollout_stop_done`` and
        ``rollout_stop_disagree`` (shares of the starts that stopped for each reason).
    """
    codec = step.codec
    state, alive = starts, torch.ones(starts.shape[0], dtype=torch.bool, device=starts.device)
    kept: list[dict[str, torch.Tensor]] = []
    stop_done = torch.zeros_like(alive)
    stop_disagree = torch.zeros_like(alive)
    for _ in range(horizon):
        with torch.no_grad():
            action = policy(codec.unflatten(state))
        out = step.sample(state, action, generator)
        trusted = out.disagreement <= max_disagreement
        stop_disagree |= alive & ~trusted
        keep = alive & trusted
        kept.append(
            {
                "obs": state[keep],
                "action": action[keep],
                "reward": out.reward[keep],
                "next_obs": out.next_state[keep],
                "terminated": out.done[keep].float(),
            }
        )
        stop_done |= keep & out.done
        alive = keep & ~out.done
        state = out.next_state
        if not alive.any():
            break
    rows = {name: torch.cat([k[name] for k in kept]) for name in kept[0]}
    n = max(starts.shape[0], 1)
    stats = {
        "rollout_steps": rows["reward"].shape[0] / n,
        "rollout_stop_done": float(stop_done.sum()) / n,
        "rollout_stop_disagree": float(stop_disagree.sum()) / n,
    }
    return rows, stats

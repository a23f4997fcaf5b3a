"""A batched cross-entropy-method (CEM) planner: MPC action hints from the world model.

For N states at once, it samples ``candidates`` action sequences of ``horizon`` steps per
state from a Gaussian (clipped to the action bounds), scores every sequence by rolling it out
in the model (all N x candidates in one batch per step), refits the Gaussian to the
``elites`` best, ``iterations`` times, and returns the first action of the final mean
(Botev et al. 2013; PETS and TD-MPC plan the same way). The model step is given: the trainer
and the workers pass :meth:`~tmrl2.worldmodel.rollouts.ModelStep.particles` (each candidate
follows one ensemble member, PETS' trajectory sampling). A sequence's score is its discounted
sum of predicted rewards until a predicted termination, plus ``gamma^H V(s_H)`` when a value
function is given (the learner's critic, in ``guide`` mode). The sampling mean starts at a
given action (the policy's) when one is given, else at the middle of the action range.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tmrl2.worldmodel.config import MPCConfig
from tmrl2.worldmodel.rollouts import Step

StepFn = Callable[[torch.Tensor, torch.Tensor], Step]
"""``(states (M, S), actions (M, A)) -> Step`` (a deterministic model step)."""
ValueFn = Callable[[torch.Tensor], torch.Tensor]
"""``states (M, S) -> (M,)`` value of the final state."""


class CEMPlanner:
    """CEM over action sequences, batched over states and candidates."""

    def __init__(self, config: MPCConfig, action_low: torch.Tensor, action_high: torch.Tensor):
        """Args:
        config: the ``world_model.mpc`` section.
        action_low, action_high: ``(A,)`` bounds of the action space.
        """
        self.config = config
        self.low = action_low.to(torch.float32)
        self.high = action_high.to(torch.float32)

    @torch.no_grad()
    def plan(
        self,
        step: StepFn,
        states: torch.Tensor,
        init_action: torch.Tensor | None = None,
        value: ValueFn | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The planned first actions ``(N, A)`` for ``states`` ``(N, S)``, and the predicted
        return of the final mean sequence ``(N,)``."""
        cfg = self.config
        n, h, c = states.shape[0], cfg.horizon, cfg.candidates
        device = states.device
        low, high = self.low.to(device), self.high.to(device)
        a_dim = low.shape[0]
        mid, half = (high + low) / 2, (high - low) / 2
        first = mid.expand(n, a_dim) if init_action is None else init_action.to(device)
        mean = first.unsqueeze(1).expand(n, h, a_dim).clone()
        std = (cfg.init_std * half).expand(n, h, a_dim).clone()
        tiled = states.repeat_interleave(c, dim=0)  # (N*C, S): candidates of a state together
        for _ in range(cfg.iterations):
            noise = torch.randn((n, c, h, a_dim), generator=generator).to(device)
            seqs = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(low, high)
            seqs[:, 0] = mean  # the current mean is always a candidate
            scores = self._score(step, tiled, seqs.reshape(n * c, h, a_dim), value).view(n, c)
            top = scores.topk(cfg.elites, dim=1).indices  # (N, E)
            elite = seqs.gather(1, top[:, :, None, None].expand(-1, -1, h, a_dim))
            mean, std = elite.mean(dim=1), elite.std(dim=1, unbiased=False).clamp_min(1e-3)
        final = self._score(step, states, mean.clamp(low, high), value)
        return mean[:, 0].clamp(low, high), final

    def _score(
        self, step: StepFn, states: torch.Tensor, seqs: torch.Tensor, value: ValueFn | None
    ) -> torch.Tensor:
        """Discounted predicted return of each sequence ``(M, H, A)`` from ``states``."""
        gamma = self.config.gamma
        total = torch.zeros(states.shape[0], device=states.device)
        alive = torch.ones_like(total)
        discount = 1.0
        state = states
        for t in range(seqs.shape[1]):
            out = step(state, seqs[:, t])
            total = total + discount * alive * out.reward
            alive = alive * (~out.done).float()
            discount *= gamma
            state = out.next_state
        if value is not None:
            total = total + discount * alive * value(state)
        return total

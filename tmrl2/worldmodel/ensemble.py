"""An ensemble of K probabilistic MLPs: Gaussian heads with learned log-variance bounds.

Chua et al. 2018 ("Deep Reinforcement Learning in a Handful of Trials", PETS), as used by
MBPO (Janner et al. 2019). Each member maps ``(state, action)`` to a Gaussian over the change
of the predicted state values and the reward (mean and log-variance per output), plus one
termination logit. The log-variance is soft-clamped between two learned bounds (PETS,
appendix A.1: ``max - softplus(max - lv)``, then ``min + softplus(lv - min)``), and a small
penalty ``0.01 (sum max - sum min)`` keeps the bounds tight.

Inputs and targets are normalized by running means and standard deviations of the training
data (:class:`~tmrl2.exploration.features.RunningMeanStd`), so one learning rate serves a
LIDAR distance and a reward of another scale; the loss is the Gaussian negative
log-likelihood in normalized units plus the termination's binary cross-entropy. The members
are evaluated together (:class:`~tmrl2.algos.networks.EnsembleMLP`: one batched matmul per
layer), each on its own bootstrap of the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tmrl2.algos.networks import EnsembleMLP
from tmrl2.exploration.features import RunningMeanStd

BOUND_PENALTY = 0.01
"""Weight of ``sum(max_logvar) - sum(min_logvar)`` in the loss (PETS)."""
STD_FLOOR = 1e-2
"""Smallest standard deviation the normalization divides by: a value that never moved in
the training data (a LIDAR beam that always saw the range) must not turn a first change
into an error of 10^5 standard deviations."""


class Prediction(NamedTuple):
    """One step predicted by every member, in the targets' raw units."""

    mean: torch.Tensor
    """``(K, B, D)`` predicted means (state changes, then the reward last)."""
    std: torch.Tensor
    """``(K, B, D)`` predicted standard deviations."""
    done_prob: torch.Tensor
    """``(K, B)`` predicted probability that the step terminates the episode."""
    disagreement: torch.Tensor
    """``(B,)`` standard deviation of the members' means over the members, in units of the
    targets' standard deviation, averaged over the outputs (0 with one member)."""


class GaussianEnsemble(nn.Module):
    """K Gaussian MLPs over ``(state, action) -> (delta, reward), termination``."""

    def __init__(
        self,
        members: int,
        in_dim: int,
        out_dim: int,
        hidden_sizes: tuple[int, ...],
        activation: str = "elu",
        logvar_bounds: tuple[float, float] = (-10.0, 0.5),
    ) -> None:
        """Args:
        members: K.
        in_dim: state + action width.
        out_dim: predicted values (state changes and the reward).
        hidden_sizes: hidden layers of each member.
        activation: nonlinearity (``relu``, ``elu``, ``tanh``).
        logvar_bounds: initial ``(min, max)`` of the log-variance (normalized units).
        """
        super().__init__()
        self.members, self.in_dim, self.out_dim = members, in_dim, out_dim
        self.net = EnsembleMLP(members, [in_dim, *hidden_sizes, 2 * out_dim + 1], activation)
        low, high = logvar_bounds
        self.min_logvar = nn.Parameter(torch.full((out_dim,), float(low)))
        self.max_logvar = nn.Parameter(torch.full((out_dim,), float(high)))
        self.in_stats = RunningMeanStd((in_dim,))
        self.out_stats = RunningMeanStd((out_dim,))

    def _scale(self, stats: RunningMeanStd) -> tuple[torch.Tensor, torch.Tensor]:
        return stats.mean, stats.var.clamp_min(STD_FLOOR**2).sqrt()

    def observe(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Update the normalization with a batch of training data."""
        with torch.no_grad():
            self.in_stats.update(inputs)
            self.out_stats.update(targets)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalized means ``(K, B, D)``, bounded log-variances ``(K, B, D)`` and termination
        logits ``(K, B)`` of raw inputs ``(B, in)`` (shared) or ``(K, B, in)`` (per member)."""
        mean, std = self._scale(self.in_stats)
        out = self.net((inputs - mean) / std)
        d = self.out_dim
        mu, logvar, logit = out[..., :d], out[..., d : 2 * d], out[..., 2 * d]
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mu, logvar, logit

    def loss(
        self, inputs: torch.Tensor, targets: torch.Tensor, done: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of raw ``inputs`` and ``targets`` ``(K, B, .)`` (one bootstrap
        per member) and ``done`` ``(K, B)``; also its parts (detached): ``nll``, ``mse``
        (normalized units) and ``done_bce``."""
        mean, std = self._scale(self.out_stats)
        y = (targets - mean) / std
        mu, logvar, logit = self(inputs)
        inv_var = torch.exp(-logvar)
        nll = ((mu - y).square() * inv_var + logvar).mean()
        bce = F.binary_cross_entropy_with_logits(logit, done)
        bounds = BOUND_PENALTY * (self.max_logvar.sum() - self.min_logvar.sum())
        parts = {
            "nll": nll.detach(),
            "mse": (mu - y).square().mean().detach(),
            "done_bce": bce.detach(),
        }
        return nll + bce + bounds, parts

    @torch.no_grad()
    def errors(
        self, inputs: torch.Tensor, targets: torch.Tensor, done: torch.Tensor
    ) -> dict[str, float]:
        """Validation errors of the ensemble's mean prediction on raw data ``(B, .)``: ``mse``
        (normalized units, every output), ``reward_mse`` (raw units), ``nll`` (members'
        average), ``done_acc``."""
        mean, std = self._scale(self.out_stats)
        y = (targets - mean) / std
        mu, logvar, logit = self(inputs)
        nll = ((mu - y).square() * torch.exp(-logvar) + logvar).mean()
        avg = mu.mean(dim=0)
        reward = avg[:, -1] * std[-1] + mean[-1]
        done_pred = (torch.sigmoid(logit).mean(dim=0) > 0.5).float()
        values = torch.stack(
            [
                (avg - y).square().mean(),
                (reward - targets[:, -1]).square().mean(),
                nll,
                (done_pred == done).float().mean(),
            ]
        ).tolist()
        return dict(zip(("mse", "reward_mse", "nll", "done_acc"), values, strict=True))

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> Prediction:
        """Every member's Gaussian for raw inputs ``(B, in)`` (or ``(K, B, in)``: member
        ``i`` on ``inputs[i]``), in raw units."""
        mean, std = self._scale(self.out_stats)
        mu, logvar, logit = self(inputs)
        spread = mu.std(dim=0, unbiased=False).mean(dim=-1) if self.members > 1 else mu[0, :, 0] * 0
        return Prediction(
            mean=mu * std + mean,
            std=torch.exp(0.5 * logvar) * std,
            done_prob=torch.sigmoid(logit),
            disagreement=spread,
        )

"""Embeddings of observation dicts for the intrinsic rewards, and the running statistics.

Observations are dicts of arrays (:mod:`tmrl2.memory.batch`): an image history is a
``uint8`` part of shape ``(history, H, W)`` or ``(history, H, W, 3)`` (the CNN agent's
``image``); every other part (LIDAR, speed, previous actions...) is a vector part, flattened
as the MLP agent reads it. :class:`ObsWhitener` whitens both with running statistics
(:class:`RunningMeanStd`); :class:`ObsEncoder` runs a small strided CNN over each image and an
MLP over the vectors and the image features, so RND and ICM work on LIDAR and image
observations alike. The whitener is one per module, shared by its networks (RND's target and
predictor must see the same inputs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tmrl2.memory.batch import obs_parts

IMAGE_CHANNELS: tuple[int, ...] = (16, 32, 32)
"""Output channels of the 3x3, stride-2 convolutions over each image (small: the module
trains on every batch beside the learner, on a CPU too)."""


class RunningMeanStd(nn.Module):
    """Running mean and variance of samples of ``shape`` (Chan et al.'s parallel update, one
    batch at a time). Buffers: they go into the module's ``state_dict`` and checkpoints."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: Sequence[int] = ()) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("mean", torch.zeros(self.shape))
        self.register_buffer("var", torch.ones(self.shape))
        # float64: a float32 count stops growing by a batch of 128 past ~16 M samples
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self._affine: tuple[torch.Tensor, torch.Tensor] | None = None
        """``(1/std, -mean/std)`` of :meth:`normalize`, kept until the statistics change."""

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Fold ``x`` of shape ``(B, *shape)`` into the statistics."""
        x = x.detach().to(torch.float32).reshape(-1, *self.shape)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        ratio = float(n / total)
        self.mean += delta * ratio
        m2 = self.var * float(self.count / total) + batch_var * ratio
        self.var.copy_(m2 + delta.square() * float(self.count * n / total.square()))
        self.count.copy_(total)
        self._affine = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._affine = None

    def normalize(self, x: torch.Tensor, clip: float | None = None) -> torch.Tensor:
        """``(x - mean) / std``, clipped to ``+-clip`` when given (two torch operations: the
        scale and shift are kept between updates of the statistics)."""
        if self._affine is None or self._affine[0].device != x.device:
            scale = torch.rsqrt(self.var + 1e-8)
            self._affine = (scale, -self.mean * scale)
        scale, shift = self._affine
        out = torch.addcmul(shift, x.to(torch.float32), scale)
        return out if clip is None else out.clamp(-clip, clip)


def head(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of widths ``sizes`` with leaky ReLU between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


def image_keys(obs_space: spaces.Space) -> list[str]:
    """The image-history parts: ``uint8`` of 3 or 4 dimensions (sorted keys)."""
    return [
        key
        for key, box in obs_parts(obs_space).items()
        if box.dtype == np.uint8 and len(box.shape) in (3, 4)
    ]


class _ImageTrunk(nn.Module):
    """``(B, history, H, W[, 3])`` floats -> ``(B, flat)`` conv features."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.color = len(shape) == 4
        history, height, width = shape[:3]
        channels = history * (3 if self.color else 1)
        layers: list[nn.Module] = []
        for out in IMAGE_CHANNELS:
            layers += [nn.Conv2d(channels, out, 3, stride=2), nn.LeakyReLU()]
            channels = out
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            probe = self.convs(torch.zeros(1, history * (3 if self.color else 1), height, width))
        self.dim = int(probe.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.color:
            b, h, height, width, c = x.shape
            x = x.permute(0, 1, 4, 2, 3).reshape(b, h * c, height, width)
        return self.convs(x).flatten(1)


VECTOR_KEY = "vectors"
"""Key of the concatenated vector parts in a :class:`ObsWhitener`'s output."""


class ObsWhitener(nn.Module):
    """Observation dict -> dict of float tensors: each image part scaled to [0, 1], the vector
    parts flattened and concatenated under :data:`VECTOR_KEY`; with ``normalize``, each
    element whitened by running statistics and clipped (Burda et al. 2018, section 2.4)."""

    def __init__(self, obs_space: spaces.Space, normalize: bool = True, clip: float = 5.0) -> None:
        """Args:
        obs_space: a ``Box`` or a ``Dict`` of ``Box`` observation space.
        normalize: whiten with running statistics (:meth:`update` feeds them).
        clip: clip of the whitened values.
        """
        super().__init__()
        parts = obs_parts(obs_space)
        self.images = image_keys(obs_space)
        self.vectors = [key for key in parts if key not in self.images]
        self.normalize, self.clip = normalize, clip
        self.shapes = {k: tuple(parts[k].shape) for k in self.images}
        self.vector_dim = sum(math.prod(parts[k].shape) for k in self.vectors)
        if self.vectors:
            self.shapes[VECTOR_KEY] = (self.vector_dim,)
        self.stats = nn.ModuleDict({k: RunningMeanStd(shape) for k, shape in self.shapes.items()})

    def _raw(self, obs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: obs[k].to(torch.float32) / 255.0 for k in self.images}
        if self.vectors:
            flat = [obs[k].reshape(obs[k].shape[0], -1).to(torch.float32) for k in self.vectors]
            out[VECTOR_KEY] = torch.cat(flat, dim=-1)
        return out

    @torch.no_grad()
    def update(self, obs: Mapping[str, torch.Tensor]) -> None:
        """Fold a batch of observations into the statistics (no-op without ``normalize``)."""
        if self.normalize:
            for key, x in self._raw(obs).items():
                self.stats[key].update(x)  # type: ignore[operator]

    def forward(self, obs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raw = self._raw(obs)
        if not self.normalize:
            return raw
        return {k: self.stats[k].normalize(x, self.clip) for k, x in raw.items()}  # type: ignore[operator]


class ObsEncoder(nn.Module):
    """A :class:`ObsWhitener`'s output -> ``(B, feature_dim)``: a small CNN over each image,
    an MLP over the image features and the vector parts."""

    def __init__(
        self, whitener: ObsWhitener, feature_dim: int, hidden_sizes: Sequence[int]
    ) -> None:
        """Args:
        whitener: what the inputs come from (their keys and shapes; not owned).
        feature_dim: output width.
        hidden_sizes: hidden layers of the MLP after the image trunks.
        """
        super().__init__()
        trunks = {k: _ImageTrunk(whitener.shapes[k]) for k in whitener.images}
        self.trunks = nn.ModuleDict(trunks)
        in_dim = whitener.vector_dim + sum(trunk.dim for trunk in trunks.values())
        self.has_vector = bool(whitener.vectors)
        self.mlp = head([in_dim, *hidden_sizes, feature_dim])

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        features = [trunk(x[k]) for k, trunk in self.trunks.items()]
        if self.has_vector:
            features.append(x[VECTOR_KEY])
        return self.mlp(features[0] if len(features) == 1 else torch.cat(features, dim=-1))

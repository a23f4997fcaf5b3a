"""CNN actor-critic for image histories (``model.kind: cnn``), with DrQ augmentation.

The observation is tmrl's: a history of grey (or RGB) frames plus vector parts (speed, previous
actions, LIDAR...). One convolutional encoder turns the frames into features; the vector
parts are appended. The encoder belongs to the critic and is trained by the critic's loss
only: the actor reads its features detached (DrQ, Kostrikov et al. 2020; SAC-AE practice), so
the actor's optimizer never touches it. The actor module still holds it, so the weights sent
to the workers are self-contained.

DrQ: each update shifts the images of ``obs`` and ``next_obs`` by up to ``drq_pad`` pixels
(replicate padding, then a random crop back to the frame size), on the learner's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import torch
from gymnasium import spaces
from pydantic import Field
from torch import nn

from tmrl2.algos.augment import random_shift
from tmrl2.algos.networks import ObsFlattener, QEnsemble, SquashedGaussianActor
from tmrl2.config.base import ComponentConfig
from tmrl2.memory.batch import Batch


class CNNConfig(ComponentConfig):
    """Config of the CNN actor-critic."""

    kind: str = "cnn"
    """Registry name of this model."""
    image_key: str = "image"
    """Observation part holding the frame history ``(history, H, W)`` or ``(history, H, W, 3)``."""
    channels: tuple[Annotated[int, Field(gt=0)], ...] = (16, 32, 32, 32)
    """Output channels of the 3x3 convolutions."""
    strides: tuple[Annotated[int, Field(gt=0)], ...] = (2, 2, 2, 1)
    """Stride of each convolution (as many as ``channels``). Strided early layers keep a
    64 x 64 history cheap enough for CPU training (~5 M multiply-adds per image)."""
    feature_dim: int = Field(default=64, gt=0)
    """Width of the encoder's output (linear, layer norm, tanh)."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (256, 256)
    """Hidden layers of the actor's and each Q function's MLP head."""
    activation: Literal["relu", "elu", "tanh"] = "relu"
    """Nonlinearity of the heads."""
    drq_pad: int = Field(default=4, ge=0)
    """DrQ random shift in pixels (0: no augmentation)."""


class ImageEncoder(nn.Module):
    """uint8 frame history -> ``(B, feature_dim)`` features."""

    def __init__(self, config: CNNConfig, image_space: spaces.Box) -> None:
        super().__init__()
        shape = tuple(image_space.shape)
        self.color = len(shape) == 4
        history, height, width = shape[:3]
        in_channels = history * (3 if self.color else 1)
        layers: list[nn.Module] = []
        if len(config.strides) != len(config.channels):
            raise ValueError("model.strides needs one stride per entry of model.channels")
        for out, stride in zip(config.channels, config.strides, strict=True):
            layers += [nn.Conv2d(in_channels, out, 3, stride=stride), nn.ReLU()]
            in_channels = out
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, history * (3 if self.color else 1), height, width))
        self.project = nn.Sequential(
            nn.Linear(flat.numel(), config.feature_dim),
            nn.LayerNorm(config.feature_dim),
            nn.Tanh(),
        )
        self.dim = config.feature_dim

    def channels_first(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, history, H, W[, 3])`` -> float ``(B, C, H, W)`` in [0, 1]."""
        x = images.to(torch.float32) / 255.0
        if self.color:
            b, h, height, width, c = x.shape
            x = x.permute(0, 1, 4, 2, 3).reshape(b, h * c, height, width)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.channels_first(images))
        return self.project(x.flatten(1))


class ImageFeatures(nn.Module):
    """Encoder features of the images, concatenated with the flattened vector parts."""

    def __init__(
        self, encoder: ImageEncoder, obs_space: spaces.Dict, image_key: str, detach: bool
    ) -> None:
        super().__init__()
        self.encoder, self.image_key, self.detach = encoder, image_key, detach
        vector = {k: v for k, v in obs_space.spaces.items() if k != image_key}
        self.vector = ObsFlattener(spaces.Dict(vector)) if vector else None
        self.dim = encoder.dim + (self.vector.dim if self.vector else 0)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        features = self.encoder(obs[self.image_key])
        if self.detach:
            features = features.detach()
        if self.vector is None:
            return features
        return torch.cat([features, self.vector(obs)], dim=-1)


class CNNActorCritic(nn.Module):
    """Squashed Gaussian actor and an ensemble of Q heads over one shared image encoder."""

    Config = CNNConfig

    def __init__(self, config: CNNConfig, obs_space: spaces.Space, action_space: spaces.Box):
        super().__init__()
        if not isinstance(obs_space, spaces.Dict) or config.image_key not in obs_space.spaces:
            raise ValueError(
                f"model.kind cnn needs a Dict observation with an {config.image_key!r} part "
                "(set env.image: true), got " + str(obs_space)
            )
        image_space = obs_space.spaces[config.image_key]
        if not isinstance(image_space, spaces.Box) or len(image_space.shape) not in (3, 4):
            raise ValueError(f"{config.image_key!r} must be (history, H, W[, 3]): {image_space}")
        self.config = config
        self._spaces = (obs_space, action_space)
        self.encoder = ImageEncoder(config, image_space)
        actor_features = ImageFeatures(self.encoder, obs_space, config.image_key, detach=True)
        self.actor = SquashedGaussianActor(config, obs_space, action_space, actor_features)
        self.critic = self._critic(2)
        self._generator: torch.Generator | None = None

    def _critic(self, n: int) -> QEnsemble:
        obs_space, action_space = self._spaces
        assert isinstance(obs_space, spaces.Dict)
        features = ImageFeatures(self.encoder, obs_space, self.config.image_key, detach=False)
        return QEnsemble(self.config, obs_space, action_space, n=n, features=features)

    def set_critics(self, n: int) -> None:
        """An ensemble of ``n`` Q heads over the same encoder (REDQ with images)."""
        self.critic = self._critic(n)

    def actor_parameters(self) -> list[nn.Parameter]:
        """The actor's head: the encoder is the critic's to train."""
        shared = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.actor.parameters() if id(p) not in shared]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def augment(self, batch: Batch) -> Batch:
        """DrQ random shift of the images of ``obs`` and ``next_obs`` (independent shifts)."""
        pad, key = self.config.drq_pad, self.config.image_key
        if pad == 0:
            return batch
        return batch._replace(
            obs={**batch.obs, key: random_shift(batch.obs[key], pad, self._rng(batch))},
            next_obs={
                **batch.next_obs,
                key: random_shift(batch.next_obs[key], pad, self._rng(batch)),
            },
        )

    def _rng(self, batch: Batch) -> torch.Generator:
        device = batch.obs[self.config.image_key].device
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        return self._generator

"""Base classes for every config model: frozen, strict about unknown keys.

Each component (env, reward, memory, model, algorithm) declares its own ``Config`` class that
subclasses :class:`ComponentConfig`; the loader picks it from the registry by ``kind`` and
validates the YAML section against it, so a typo fails at start-up with the key path.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """A validated, immutable config section that rejects unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ComponentConfig(FrozenModel):
    """Config of a component picked by name from a registry or by import path."""

    kind: str
    """Registry name (e.g. ``sim``) or import path ``package.module:Name``."""

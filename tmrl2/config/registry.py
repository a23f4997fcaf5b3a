"""Component registries: a ``kind:`` name or an import path ``package.module:Name``.

Each section of the config that names a component (env, reward, memory, model, algorithm)
is resolved here. Built-in names map to lazy import paths, so that loading a config imports
only the components it uses. A component is a class (or factory) with a ``Config`` attribute:
the pydantic model its section is validated against. An import path lets users plug in their
own component without touching this package.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from tmrl2.config.base import ComponentConfig

SECTIONS: tuple[str, ...] = ("env", "reward", "memory", "model", "algorithm")

_BUILTINS: dict[str, dict[str, str]] = {
    "env": {
        "sim": "tmrl2.envs.sim.env:SimEnv",
        "trackmania": "tmrl2.envs.trackmania.env:TrackManiaEnv",
    },
    "reward": {
        "terms": "tmrl2.rewards.manager:RewardManager",
        "progress": "tmrl2.rewards.progress:ProgressReward",
    },
    "memory": {"ring": "tmrl2.memory.ring:RingMemory"},
    "model": {
        "mlp": "tmrl2.algos.networks:MLPActorCritic",
        "cnn": "tmrl2.algos.cnn:CNNActorCritic",
    },
    "algorithm": {"sac": "tmrl2.algos.sac:SAC", "redq": "tmrl2.algos.redq:REDQ"},
}


class RegistryError(ValueError):
    """A component name or import path that cannot be resolved."""


class _OpenConfig(ComponentConfig):
    """Config of an imported component that declares no ``Config``: any keys pass through."""

    model_config = {"frozen": True, "extra": "allow"}


def known(section: str) -> list[str]:
    """Names registered for ``section``."""
    return sorted(_BUILTINS[section])


def register(section: str, name: str, target: str) -> None:
    """Register ``name`` for ``section`` as an import path ``package.module:Name``."""
    if section not in _BUILTINS:
        raise RegistryError(f"unknown section {section!r}; sections are {', '.join(SECTIONS)}")
    if ":" not in target:
        raise RegistryError(f"target {target!r} must be an import path 'package.module:Name'")
    _BUILTINS[section][name] = target


def import_path(path: str, where: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"{where}: {path!r} is not an import path 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"{where}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RegistryError(f"{where}: module {module_name!r} has no attribute {attr!r}") from None


def resolve(section: str, kind: str) -> Any:
    """Return the component class or factory that ``kind`` names in ``section``."""
    where = f"{section}.kind"
    if ":" in kind:
        return import_path(kind, where)
    names = _BUILTINS[section]
    if kind not in names:
        close = difflib.get_close_matches(kind, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"{where}: unknown {section} {kind!r}{hint} Known: {', '.join(sorted(names))}, "
            "or an import path 'package.module:Name'."
        )
    return import_path(names[kind], where)


def config_model(component: Any) -> type[ComponentConfig]:
    """The pydantic model a component's section is validated against."""
    model = getattr(component, "Config", None)
    if isinstance(model, type) and issubclass(model, ComponentConfig):
        return model
    return _OpenConfig

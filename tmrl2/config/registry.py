"""Component registries: a ``kind:`` name or an import path ``package.module:Name``.

Each section of the config that names a component (env, reward, memory, model, algorithm,
exploration)
is resolved here. Built-in names map to lazy import paths, so that loading a config imports
only the components it uses. A component is a class (or factory) with a ``Config`` attribute:
the pydantic model its section is validated against. An import path lets users plug in their
own component without touching this package.

Importing a module runs its code, so an import path in a config that came from somewhere else
(a checkpoint someone shared) must not be followed blindly: inside
``with trusted_imports(False):`` :func:`import_path` refuses any path that is not the target of
a registered name and raises :class:`UntrustedImportError` *before* importing anything. Configs
the user wrote (files, ``--set``, their own run folder) are trusted; ``tmrl2 eval`` of a
checkpoint is not, unless ``--trust-config`` is passed.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
from collections.abc import Iterator
from typing import Any

from tmrl2.config.base import ComponentConfig

SECTIONS: tuple[str, ...] = (
    "env",
    "reward",
    "memory",
    "model",
    "algorithm",
    "exploration",
    "world_model",
)

_BUILTINS: dict[str, dict[str, str]] = {
    "env": {
        "sim": "tmrl2.envs.sim.env:SimEnv",
        "trackmania": "tmrl2.envs.trackmania.env:TrackManiaEnv",
        "gym": "tmrl2.envs.gym_env:GymEnv",
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
    "exploration": {
        "none": "tmrl2.exploration.base:NoExploration",
        "rnd": "tmrl2.exploration.rnd:RND",
        "icm": "tmrl2.exploration.icm:ICM",
        "param_noise": "tmrl2.exploration.param_noise:ParamNoise",
    },
    "world_model": {
        "none": "tmrl2.worldmodel.config:NoWorldModel",
        "mbpo": "tmrl2.worldmodel.config:WorldModel",
    },
}


class RegistryError(ValueError):
    """A component name or import path that cannot be resolved."""


class UntrustedImportError(RegistryError):
    """A config from an untrusted source names code by import path."""


_TRUST_IMPORTS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tmrl2_trust_imports", default=True
)


@contextlib.contextmanager
def trusted_imports(trust: bool) -> Iterator[None]:
    """Within the block, import paths that no registered name maps to are refused unless
    ``trust`` (built-in and registered components always resolve)."""
    token = _TRUST_IMPORTS.set(trust)
    try:
        yield
    finally:
        _TRUST_IMPORTS.reset(token)


def imports_trusted() -> bool:
    """Whether arbitrary import paths may be imported here and now."""
    return _TRUST_IMPORTS.get()


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
    """Import ``package.module:Name``; ``where`` (the config key) goes into every error.

    Raises:
        UntrustedImportError: inside ``trusted_imports(False)`` for a path that is not a
            registered target; nothing is imported.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"{where}: {path!r} is not an import path 'package.module:Name'")
    if not _TRUST_IMPORTS.get() and not _is_registered_target(path):
        raise UntrustedImportError(
            f"{where} names the import path {path!r}: this config comes from a checkpoint, and "
            "importing it would run that module's code. If you trust where the checkpoint came "
            "from, pass --trust-config"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"{where}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RegistryError(f"{where}: module {module_name!r} has no attribute {attr!r}") from None


def _is_registered_target(path: str) -> bool:
    return any(path in names.values() for names in _BUILTINS.values())


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

"""Load a run's config: YAML file, ``--set section.key=value`` overrides, validation.

Errors are collected into one :class:`ConfigError` whose lines name the key path, what was
wrong and how to fix it (the closest valid key for a typo, the expected type for a bad
value), so that a bad config fails at start-up and never an hour into a run.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tmrl2.config import registry
from tmrl2.config.base import ComponentConfig
from tmrl2.config.schema import DEFAULT_KINDS, Config, migrate_renamed

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config that cannot be used; the message lists every problem by key path."""


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
    trust_imports: bool = True,
) -> Config:
    """Read, override and validate a config.

    Args:
        path: YAML file; ``None`` uses the built-in defaults (the simulator LIDAR job).
        overrides: ``section.key=value`` strings; values are parsed as YAML scalars/lists.
        data: an already-parsed mapping (e.g. a resolved config sent to a child process);
            used instead of ``path`` when given.
        trust_imports: whether import paths (``package.module:Name``) in the config may be
            imported. ``False`` for a config that came from elsewhere (a checkpoint's): any
            import path that is not a registered component fails validation with a
            :class:`ConfigError` naming the key, before anything is imported.
    """
    raw: dict[str, Any] = {}
    if data is not None:
        raw = _copy_tree(data)
    elif path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides:
        _apply_override(raw, item)
    for note in migrate_renamed(raw):
        log.warning("config: %s", note)
    with registry.trusted_imports(trust_imports):
        return validate_config(raw)


def _whole(tree: dict[str, Any], problems: list[str]) -> Config | None:
    """The config from its validated sections, or None with ``problems`` extended: what
    only conflicts across sections (e.g. ``worker.envs`` and the env's settings)."""
    from tmrl2.envs.sim.vec_check import check_worker_envs

    try:
        config = Config.model_validate(tree)
        check_worker_envs(config)
    except ValidationError as exc:
        problems.extend(_describe(exc, Config, prefix=()))
        return None
    except ValueError as exc:
        problems.append(str(exc))
        return None
    return config


def validate_config(raw: Mapping[str, Any]) -> Config:
    """Validate a parsed config tree into a frozen :class:`Config`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    problems: list[str] = []
    tree: dict[str, Any] = {}
    section_models: dict[str, type[BaseModel]] = {}
    for key, value in raw.items():
        if key in DEFAULT_KINDS:
            continue
        if key not in Config.model_fields:
            problems.append(_unknown_key(key, list(Config.model_fields)))
        else:
            tree[key] = value
    for section, default_kind in DEFAULT_KINDS.items():
        if section in tree:  # settled by the env (first): an env with its own reward has none
            continue
        found = _component(section, raw, default_kind, tree, problems)
        if found is None:
            continue
        component, kind, body = found
        model = registry.config_model(component)
        section_models[section] = model
        try:
            tree[section] = model.model_validate({**body, "kind": kind})
        except ValidationError as exc:
            problems.extend(_describe(exc, model, prefix=(section,)))
    if not problems:
        config = _whole(tree, problems)
        if config is not None:
            return config
    if len(problems) == 1:  # one problem, one line (the CLI prints it as is)
        raise ConfigError(f"invalid config: {problems[0]}")
    raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _component(
    section: str,
    raw: Mapping[str, Any],
    default_kind: str,
    tree: dict[str, Any],
    problems: list[str],
) -> tuple[Any, str, Mapping[str, Any]] | None:
    """The component a section names, its kind and the section; None when it cannot be
    resolved (the problem added). The env's contract is checked here (:func:`_check_env`)."""
    body = raw.get(section) or {}
    if not isinstance(body, Mapping):
        problems.append(f"{section}: expected a mapping, got {body!r}")
        return None
    kind = str(body.get("kind", default_kind))
    try:
        component = registry.resolve(section, kind)
    except registry.RegistryError as exc:
        problems.append(str(exc))
        return None
    if section == "env":
        _check_env(component, kind, raw.get("reward"), tree, problems)
    return component, kind, body


def _check_env(
    env_cls: Any, kind: str, reward: Any, tree: dict[str, Any], problems: list[str]
) -> None:
    """Add the problems of the env's constructor contract (checked from its signature, nothing
    is built); an env that brings its own reward gets ``reward: None`` in ``tree``, and a
    problem if the config has a reward section anyway."""
    from tmrl2.envs.factory import constructor_problem, provides_reward

    problem = constructor_problem(env_cls, kind)
    if problem is not None:
        problems.append(problem)
    if not provides_reward(env_cls):
        return
    tree["reward"] = None
    if reward:
        problems.append(
            f"reward: env.kind {kind} brings its own reward (provides_reward = True), so a "
            "reward section would not be used: remove it"
        )


def dump_config(config: Config) -> dict[str, Any]:
    """The resolved config as plain data (YAML/JSON-able, includes every default)."""
    return config.model_dump(mode="json", serialize_as_any=True)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (the run folder's record of what ran)."""
    text = "# Resolved EVO RL config: every value this run used, defaults included.\n"
    text += yaml.safe_dump(dump_config(config), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


HASHED_SECTIONS = ("env", "reward", "model")
"""What a worker and the trainer must agree on (observations, rewards, the actor's shape);
per-machine sections (server address, keys, worker name and count) are left out."""


def config_hash(config: Config) -> str:
    """A short stable hash of the sections roles must share (compared at connect time)."""
    data = dump_config(config)
    blob = json.dumps({k: data[k] for k in HASHED_SECTIONS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_reason(exc)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return loaded


def _copy_tree(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {item!r}: expected 'section.key=value' (e.g. run.steps=5000)")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {item!r}: the value is not valid YAML ({_yaml_reason(exc)}); close "
            "every bracket and quote, e.g. --set model.hidden_sizes=[128,128]"
        ) from None


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: the problem and where it is."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _unknown_key(path: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(path.rsplit(".", 1)[-1], valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return f"{path}: unknown key{hint}"


def _describe(exc: ValidationError, model: type[BaseModel], prefix: tuple[str, ...]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = prefix + tuple(str(p) for p in err["loc"])
        path = ".".join(loc)
        parent = _model_at(model, tuple(str(p) for p in err["loc"][:-1]))
        if err["type"] == "extra_forbidden" and parent is not None:
            lines.append(_unknown_key(path, list(parent.model_fields)))
            continue
        expected = _expected_type(parent, str(err["loc"][-1])) if err["loc"] else None
        if err["type"] == "missing":
            lines.append(f"{path}: required ({expected or 'a value'}), and not set")
            continue
        # a validator's own message says what was wrong; the type prefix would mislead there
        if err["type"] == "value_error":
            expected = None
        what = f"expected {expected}, got {err.get('input')!r}: " if expected else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        # a whole-model check (several sections) names its keys in its message
        lines.append(f"{path}: {what}{msg}" if path else f"{what}{msg}")
    return lines


def _model_at(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] = model
    for name in loc:
        field = current.model_fields.get(name)
        if field is None or not _is_model(field.annotation):
            return None
        current = typing.cast(type[BaseModel], field.annotation)
    return current


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _expected_type(model: type[BaseModel] | None, name: str) -> str | None:
    if model is None or name not in model.model_fields:
        return None
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and not issubclass(annotation, ComponentConfig):
        return annotation.__name__
    return str(annotation).replace("typing.", "")

"""The reward manager (``reward.kind: terms``): a weighted sum of named terms from the YAML.

```yaml
reward:
  kind: terms
  terms:
    progress: {weight: 0.7, scale: 0.1}
    speed: {weight: 0.3, scale: 0.01}
  custom:                                # your own terms, by import path
    - {kind: mypkg.rewards:drift_bonus, weight: 0.1}
  no_progress: {grace_steps: 40, patience_steps: 100, min_progress_m: 1.0}
```

Every term and its parameters are validated at start-up (an unknown term name gets the closest
valid one). Each step's weighted terms are in ``last_terms``; the env wrapper reports them in
``info["reward_terms"]`` and the worker sums them per episode for the logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, model_validator

from tmrl2.config.base import ComponentConfig, FrozenModel
from tmrl2.rewards.terms import (
    TERMS,
    AirTimeConfig,
    CheckpointConfig,
    FinishConfig,
    OffTrackConfig,
    PenaltyConfig,
    ProgressConfig,
    SpeedConfig,
    SteeringConfig,
    Term,
    TermConfig,
)


class TermsConfig(FrozenModel):
    """The built-in terms to use; leave a term out to not use it."""

    progress: ProgressConfig | None = None
    checkpoint: CheckpointConfig | None = None
    speed: SpeedConfig | None = None
    off_track: OffTrackConfig | None = None
    wall: PenaltyConfig | None = None
    steering: SteeringConfig | None = None
    air_time: AirTimeConfig | None = None
    time: PenaltyConfig | None = None
    finish: FinishConfig | None = None


class CustomTermConfig(FrozenModel):
    """A term of your own: a :class:`Term` subclass (with its ``Config``) or a function
    ``f(info: dict) -> float``, named by import path."""

    kind: str
    """Import path ``package.module:Name``."""
    name: str | None = None
    """Name in the logs (default: the attribute name)."""
    weight: float = 1.0
    params: dict[str, Any] = {}
    """Parameters for the term's ``Config`` (classes only)."""

    @model_validator(mode="after")
    def _importable(self) -> CustomTermConfig:
        from tmrl2.config.registry import import_path

        target = import_path(self.kind, "reward.custom.kind")
        if not callable(target):
            raise ValueError(f"{self.kind} is not a Term class or a function")
        return self


class NoProgressConfig(FrozenModel):
    """Truncate an episode that stops making progress (after a grace period)."""

    grace_steps: int = Field(default=40, ge=0)
    """Steps at the start of an episode that never count as stalled."""
    patience_steps: int = Field(default=100, gt=0)
    """Truncate after this many steps without ``min_progress_m`` of progress."""
    min_progress_m: float = Field(default=1.0, gt=0)


class RewardManagerConfig(ComponentConfig):
    kind: str = "terms"
    terms: TermsConfig = TermsConfig(progress=ProgressConfig())
    """Built-in terms with their weights and parameters."""
    custom: list[CustomTermConfig] = []
    """Your own terms by import path."""
    no_progress: NoProgressConfig | None = None
    """Optional termination helper: truncate stalled episodes."""

    @model_validator(mode="after")
    def _some_term(self) -> RewardManagerConfig:
        if not self.custom and all(v is None for v in self.terms.model_dump().values()):
            raise ValueError("no reward term configured: add one under reward.terms")
        return self


class _FunctionTerm(Term):
    def __init__(self, fn: Callable[[dict[str, Any]], float], weight: float) -> None:
        super().__init__(TermConfig(weight=weight))
        self.fn = fn

    def __call__(self, info: dict[str, Any]) -> float:
        return float(self.fn(info))


class RewardManager:
    """Weighted sum of terms; implements the :class:`~tmrl2.rewards.base.Reward` protocol."""

    Config = RewardManagerConfig

    def __init__(self, config: RewardManagerConfig | None = None) -> None:
        self.config = config or RewardManagerConfig()
        self.terms: dict[str, Term] = {}
        for name, term_config in self.config.terms:
            if term_config is not None:
                self.terms[name] = TERMS[name](term_config)
        for custom in self.config.custom:
            self.terms[custom.name or custom.kind.rpartition(":")[2]] = _build_custom(custom)
        self.last_terms: dict[str, float] = {}

    def reset(self, info: dict[str, Any]) -> None:
        for term in self.terms.values():
            term.reset(info)
        self.last_terms = dict.fromkeys(self.terms, 0.0)

    def __call__(self, info: dict[str, Any]) -> float:
        self.last_terms = {
            name: term.config.weight * term(info) for name, term in self.terms.items()
        }
        return sum(self.last_terms.values())


def _build_custom(custom: CustomTermConfig) -> Term:
    from tmrl2.config.registry import import_path

    target = import_path(custom.kind, "reward.custom.kind")
    if isinstance(target, type) and issubclass(target, Term):
        params = {"weight": custom.weight, **custom.params}
        return target(target.Config.model_validate(params))
    return _FunctionTerm(target, custom.weight)


class NullReward:
    """Zero every step: for envs whose reward a wrapper computes instead."""

    def reset(self, info: dict[str, Any]) -> None:
        pass

    def __call__(self, info: dict[str, Any]) -> float:
        return 0.0

"""Config of the ``world_model:`` section: off (``kind: none``) unless ``kind: mbpo``.

Every field is documented where it is declared; docs/world_model.md lists them with their
defaults. The section is validated at load time like every component section, so a bad value
fails at start-up naming its key (``world_model.rollout.real_ratio``...).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from tmrl2.config.base import ComponentConfig, FrozenModel


class NoWorldModelConfig(ComponentConfig):
    """``world_model.kind: none``: plain model-free learning (the default)."""

    kind: str = "none"
    """Registry name (``none``, ``mbpo``) or an import path."""


class NoWorldModel:
    """No world model (the default): the learner of ``algorithm.kind`` alone."""

    Config = NoWorldModelConfig
    enabled: ClassVar[bool] = False


class RolloutConfig(FrozenModel):
    """Dyna/MBPO rollouts (Janner et al. 2019, "When to Trust Your Model")."""

    real_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    """Share of real transitions in each learner batch; the rest are model transitions
    (1.0: no rollouts, the model only serves the planner). MBPO uses 0.05 with 20-40 policy
    updates per env step; with this project's 0.5 updates per step, more real data is safer."""
    horizon: int = Field(default=1, ge=1, le=50)
    """Model steps per rollout (MBPO: 1 on most tasks)."""
    horizon_final: int | None = Field(default=None, ge=1, le=50)
    """Horizon reached at the end of a linear schedule over ``horizon_updates`` learner
    updates after ``world_model.start_updates`` (None: ``horizon`` throughout)."""
    horizon_updates: int = Field(default=0, ge=0)
    """Learner updates over which the horizon moves from ``horizon`` to ``horizon_final``."""
    starts: int = Field(default=256, gt=0)
    """Real states each rollout starts from (drawn from the pool of recently sampled states)."""
    every_updates: int = Field(default=10, gt=0)
    """Learner updates between two rollouts."""
    buffer_capacity: int = Field(default=50_000, gt=0)
    """Model transitions kept (the oldest are overwritten first)."""
    start_pool: int = Field(default=20_000, gt=0)
    """Real states kept as rollout starts: every state of the learner's real batches (the
    replay memory's own samples) goes in, so starts are spread like the replay."""
    max_disagreement: float = Field(default=1.0, gt=0.0)
    """A rollout stops for a state whose ensemble disagreement (standard deviation of the
    members' predicted means, in units of the targets' standard deviation, averaged over the
    outputs) exceeds this; that step is not kept."""
    min_buffer: int = Field(default=1000, ge=0)
    """Model transitions needed before any batch mixes them in."""

    @model_validator(mode="after")
    def _schedule_complete(self) -> RolloutConfig:
        if self.horizon_final is not None and self.horizon_updates == 0:
            raise ValueError(
                "world_model.rollout.horizon_updates must be > 0 when "
                "world_model.rollout.horizon_final is set"
            )
        return self

    def horizon_at(self, updates: int) -> int:
        """The horizon ``updates`` learner updates into the schedule."""
        if self.horizon_final is None or updates >= self.horizon_updates:
            return self.horizon if self.horizon_final is None else self.horizon_final
        frac = updates / self.horizon_updates
        return round(self.horizon + frac * (self.horizon_final - self.horizon))


class MPCConfig(FrozenModel):
    """MPC hints: a batched CEM planner over the ensemble (docs/world_model.md)."""

    mode: Literal["none", "explore", "guide"] = "none"
    """``none``: no planning; ``explore``: workers act with the planner's action with
    probability ``explore_prob`` (the model's weights travel with the actor's); ``guide``:
    an actor loss term
    ``guide_weight * |pi_mode(s) - a_plan(s)|^2`` on replay states, with a decaying weight."""
    candidates: int = Field(default=32, ge=2)
    """Action sequences evaluated per state and iteration."""
    horizon: int = Field(default=3, ge=1, le=50)
    """Planning horizon (model steps)."""
    iterations: int = Field(default=2, ge=1)
    """CEM refits of the sampling distribution."""
    elites: int = Field(default=4, ge=1)
    """Best sequences the distribution is refitted to."""
    init_std: float = Field(default=0.5, gt=0.0)
    """First sampling standard deviation, as a fraction of the action range's half width."""
    gamma: float = Field(default=0.99, ge=0.0, le=1.0)
    """Discount of the planned rewards (and of the terminal value)."""
    terminal_value: bool = True
    """``guide``: add ``gamma^H min_i Q_i(s_H, pi(s_H))`` of the learner's critic to each
    plan's return (the workers have no critic: their plans sum rewards only)."""
    explore_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """``explore``: probability that a worker's step acts with the planner."""
    guide_weight: float = Field(default=1.0, ge=0.0)
    """``guide``: weight of the term at ``world_model.start_updates``."""
    guide_weight_final: float = Field(default=0.0, ge=0.0)
    """``guide``: weight at the end of the linear decay (then kept)."""
    guide_decay_updates: int = Field(default=20_000, ge=1)
    """``guide``: learner updates over which the weight decays."""
    guide_states: int = Field(default=16, ge=1)
    """``guide``: replay states of each actor step that get a planned action."""
    guide_every: int = Field(default=5, ge=1)
    """``guide``: plan for one actor step in this many (the term is off in between)."""

    @model_validator(mode="after")
    def _elites_fit(self) -> MPCConfig:
        if self.elites > self.candidates:
            raise ValueError(
                f"world_model.mpc.elites ({self.elites}) must not exceed "
                f"world_model.mpc.candidates ({self.candidates})"
            )
        return self

    def guide_weight_at(self, updates: int) -> float:
        """The guide term's weight ``updates`` learner updates into the decay."""
        frac = min(updates / self.guide_decay_updates, 1.0)
        return self.guide_weight + frac * (self.guide_weight_final - self.guide_weight)


class WorldModelConfig(ComponentConfig):
    """``world_model.kind: mbpo``: an ensemble dynamics model, Dyna/MBPO rollouts and MPC."""

    kind: str = "mbpo"
    """Registry name."""
    ensemble_size: int = Field(default=5, ge=1, le=64)
    """K probabilistic MLPs (each sees its own bootstrap of every training batch)."""
    hidden_sizes: tuple[Annotated[int, Field(gt=0)], ...] = (128, 128)
    """Hidden layers of each member (MBPO uses 4 x 200; 2 x 128 keeps a model step near a
    SAC step's cost on 2 CPU cores)."""
    activation: Literal["relu", "elu", "tanh"] = "elu"
    """Nonlinearity after each hidden layer."""
    lr: float = Field(default=1e-3, gt=0.0)
    """Learning rate of the model's optimizer (Adam)."""
    weight_decay: float = Field(default=1e-5, ge=0.0)
    """L2 weight decay of the model."""
    steps_per_update: int = Field(default=1, ge=0)
    """Model gradient steps per learner update, on the learner's real batch (minus the
    held-out rows); 0 freezes the model."""
    holdout_frac: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of the replay's rows (by storage row, fixed) never trained on: the model's
    validation set, whose loss is logged (``loss/wm_val_*``)."""
    start_updates: int = Field(default=1000, ge=0)
    """Learner updates (model steps) before rollouts and planning start."""
    history_keys: tuple[str, ...] = ("lidar", "prev_actions")
    """Observation parts of shape ``(history, *frame)``, newest frame last: the model
    predicts the newest frame and the stack shifts (other parts are predicted whole)."""
    action_keys: tuple[str, ...] = ("prev_actions",)
    """History parts whose newest frame is the action just taken (copied, not predicted)."""
    logvar_max: float = Field(default=0.5)
    """Initial upper bound of the predicted log-variance (normalized units; learned)."""
    logvar_min: float = Field(default=-10.0)
    """Initial lower bound of the predicted log-variance (learned)."""
    rollout: RolloutConfig = RolloutConfig()
    """Dyna/MBPO rollouts and the real/model mix of the learner's batches."""
    mpc: MPCConfig = MPCConfig()
    """MPC hints from the planner: ``none``, ``explore`` (workers) or ``guide`` (actor loss)."""

    @model_validator(mode="after")
    def _keys_consistent(self) -> WorldModelConfig:
        stray = [key for key in self.action_keys if key not in self.history_keys]
        if stray:
            raise ValueError(
                f"world_model.action_keys {stray} must also be in world_model.history_keys "
                "(their newest frame is the action)"
            )
        if self.logvar_min >= self.logvar_max:
            raise ValueError("world_model.logvar_min must be below world_model.logvar_max")
        return self


class WorldModel:
    """Registry target of ``world_model.kind: mbpo`` (built by
    :func:`tmrl2.worldmodel.learner.wrap_world_model`)."""

    Config = WorldModelConfig
    enabled: ClassVar[bool] = True

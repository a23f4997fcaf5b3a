"""The vectorized worker (``worker.envs: N``): N simulator cars in one process.

One :class:`~tmrl2.envs.sim.vec.SimBatch` step and one batched policy forward per step for
all N cars; each car's episodes, track and randomization are its own. :class:`CarBatch` adds
what :func:`tmrl2.envs.factory.build_env` wraps around a ``SimEnv``, car by car: the
configured reward (one real :class:`~tmrl2.rewards.base.Reward` object per car, fed the
``info`` dict a ``SimEnv`` reports plus ``action``) and the stall detection
(:class:`~tmrl2.envs.wrappers.NoProgressTruncation`'s rule, vectorized). So car ``i`` with
seed ``s`` produces exactly the transitions of a plain :class:`~tmrl2.roles.worker.Worker`
whose env was reset with seed ``s`` and given the same actions.

Chunks stay per car: :class:`VecChunkBuilder` keeps ``chunk_steps`` rows per car, and one
message carries all N sub-chunks car-major with meta ``cars: N`` (the trainer appends each
car's rows on its own, :meth:`tmrl2.roles.ingest.Accepted.parts`). See docs/vectorized.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from tmrl2.algos.policy import as_tensor
from tmrl2.config.schema import Config
from tmrl2.envs.factory import build_reward
from tmrl2.envs.observation import action_space, observation_space
from tmrl2.envs.sim.vec_check import check_worker_envs
from tmrl2.memory.batch import chunk_key, chunk_spec, obs_parts
from tmrl2.roles.pacing import Pacer
from tmrl2.roles.vec_reward import VecReward
from tmrl2.roles.worker import Worker
from tmrl2.telemetry.episodes import episode_record

__all__ = ["SEED_STRIDE", "CarBatch", "VecChunkBuilder", "VecWorker", "check_worker_envs"]

SEED_STRIDE = 1_000_003
"""Car ``i`` of a worker seeded ``s`` is seeded ``s + i * SEED_STRIDE`` (car 0: ``s``, as a
plain worker's env; apart from the seeds of the other workers of a run, ``s + 1000 k``)."""


class CarBatch:
    """``n`` simulator cars with their rewards and stall detection (module docstring).

    The reward is computed by :class:`~tmrl2.roles.vec_reward.VecReward` when it applies (the
    built-in terms; ``per_car_rewards=True`` forces the general path), else by one reward
    object per car fed ``SimEnv``'s ``info`` dicts. Each car's episode return terms are summed
    here; :meth:`ended` gives the final ``info`` and the sums of the cars whose episode ended.
    """

    def __init__(
        self, config: Config, n: int, seeds: int | Sequence[int], per_car_rewards: bool = False
    ) -> None:
        """Args:
        config: the run's config (``env``: a simulator config the batch supports; ``reward``).
        n: cars.
        seeds: one per car (``SimEnv.reset(seed)``'s), or ``s`` for ``s, s + 1, ...``.
        per_car_rewards: one reward object per car even when the vectorized terms apply.
        """
        from tmrl2.envs.sim.env import SimEnvConfig
        from tmrl2.envs.sim.vec import SimBatch

        env_cfg = config.env
        assert isinstance(env_cfg, SimEnvConfig)
        self.n = n
        self.sim = SimBatch(n, env_cfg, seeds, threads=config.worker.sim_threads)
        self.observation_space = observation_space(env_cfg)
        if env_cfg.track_id_input:  # as SimEnv does
            self.observation_space.spaces["track_id"] = spaces.Box(
                0.0, 1.0, (self.sim.n_train,), np.float32
            )
        self.action_space = action_space()
        first = build_reward(config)
        self.vec_reward = (
            None if per_car_rewards or not VecReward.applies(first) else VecReward(first, n)  # type: ignore[arg-type]
        )
        self.rewards = (
            [] if self.vec_reward else [first] + [build_reward(config) for _ in range(n - 1)]
        )
        names = self.vec_reward.names if self.vec_reward else []
        self._sums = np.zeros((n, len(names)))
        """Per-car episode sums of the vectorized reward's weighted terms."""
        self._term_dicts: list[dict[str, float]] = [{} for _ in range(n)]
        """Per-car episode sums of the reward objects' ``last_terms``."""
        self._infos: list[dict[str, Any]] = []
        self._lap = np.full(n, np.nan)
        no_progress = getattr(config.reward, "no_progress", None)
        if no_progress is not None:
            self.grace, self.patience = no_progress.grace_steps, no_progress.patience_steps
            self.min_progress = no_progress.min_progress_m
        else:
            self.grace, self.patience = 0, env_cfg.stuck_steps
            self.min_progress = env_cfg.stuck_progress_m
        self._stall_steps = np.zeros(n, np.int64)
        self._since = np.zeros(n, np.int64)
        self._anchor = np.zeros(n)

    def reset(self, idx: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """New episodes for the cars ``idx`` (all by default); every car's observation."""
        cars = np.arange(self.n) if idx is None else np.asarray(idx, np.int64)
        obs = self.sim.reset(cars)
        if self.vec_reward is not None:
            self.vec_reward.reset(cars, self.sim.telemetry(cars))
            self._sums[cars] = 0.0
        else:
            for i, info in zip(cars.tolist(), self.sim.infos(cars, False), strict=True):
                self.rewards[i].reset(info)
                self._term_dicts[i] = {}
        self._stall_steps[cars] = 0
        self._since[cars] = 0
        self._anchor[cars] = self.sim.progress[cars]
        return obs

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """``(obs, reward, terminated, truncated)``, one row per car; cars whose episode ended
        are not reset (read :meth:`ended`, then :meth:`reset` them)."""
        obs, terminated, truncated, self._lap = self.sim.step(actions)
        if self.vec_reward is not None:
            tele = self.sim.telemetry()
            reward, values = self.vec_reward(tele, self.sim.states, actions)
            self._sums += values
        else:
            reward = self._rewards_car_by_car(actions, terminated)
        # NoProgressTruncation's rule, car by car
        self._stall_steps += 1
        progress = self.sim.progress
        moved = progress >= self._anchor + self.min_progress
        self._anchor = np.where(moved, progress, self._anchor)
        self._since = np.where(moved, self._stall_steps, self._since)
        stalled = self._stall_steps - np.maximum(self._since, self.grace) >= self.patience
        stalled &= ~(terminated | truncated)
        return obs, reward, terminated, truncated | stalled

    def _rewards_car_by_car(self, actions: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """What ``RewardWrapper`` does, for each car: ``reward(info)`` with ``info["action"]``."""
        self._infos = infos = self.sim.infos()
        for i in np.flatnonzero(terminated & ~np.isnan(self._lap)).tolist():
            infos[i]["lap_time_s"] = float(self._lap[i])
        reward = np.zeros(self.n)
        for i, (info, fn, action, sums) in enumerate(
            zip(infos, self.rewards, actions, self._term_dicts, strict=True)
        ):
            info["action"] = action
            reward[i] = fn(info)
            terms = getattr(fn, "last_terms", None)
            if terms is not None:
                info["reward_terms"] = terms
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value
        return reward

    def ended(self, cars: Sequence[int]) -> list[tuple[dict[str, Any], dict[str, float]]]:
        """``(final info, episode's weighted reward terms summed)`` of each car of ``cars``
        whose episode ended at this step (before :meth:`reset`)."""
        if self.vec_reward is None:
            return [(self._infos[i], self._term_dicts[i]) for i in cars]
        infos = self.sim.infos(np.asarray(cars, np.int64))
        names = self.vec_reward.names
        out = []
        for i, info in zip(cars, infos, strict=True):
            if not np.isnan(self._lap[i]):
                info["lap_time_s"] = float(self._lap[i])
            out.append((info, dict(zip(names, self._sums[i].tolist(), strict=True))))
        return out

    def close(self) -> None:
        """Nothing to release (the batch holds arrays only)."""


class VecChunkBuilder:
    """``size`` transitions per car for ``cars`` cars; :meth:`take` gives them car-major."""

    def __init__(
        self, obs_space: gym.Space[Any], action_space: spaces.Box, size: int, cars: int
    ) -> None:
        """Args:
        obs_space, action_space: one car's spaces (those of the chunk spec).
        size: transitions per car in a full chunk (``worker.chunk_steps``).
        cars: cars.
        """
        self.size, self.cars = size, cars
        self._obs_keys = {
            part: (chunk_key("obs", part, obs_space), chunk_key("next_obs", part, obs_space))
            for part in obs_parts(obs_space)
        }
        self._arrays = {  # time-major: a step of every car is one contiguous write
            name: np.zeros((size, cars, *shape), dtype)
            for name, (shape, dtype) in chunk_spec(obs_space, action_space).items()
        }
        self.count = 0

    def add(
        self,
        obs: dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: dict[str, np.ndarray],
    ) -> None:
        """One step of every car (arrays with one row per car)."""
        t = self.count
        arrays = self._arrays
        for part, (obs_name, next_name) in self._obs_keys.items():
            arrays[obs_name][t] = obs[part]
            arrays[next_name][t] = next_obs[part]
        arrays["action"][t] = action
        arrays["reward"][t] = reward
        arrays["terminated"][t] = terminated
        arrays["truncated"][t] = truncated
        self.count += 1

    @property
    def full(self) -> bool:
        """Whether every car has ``size`` transitions."""
        return self.count >= self.size

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays of a full chunk."""
        return sum(array.nbytes for array in self._arrays.values())

    def take(self) -> dict[str, np.ndarray]:
        """The filled rows, car 0's first (``cars * count`` rows); the builder starts empty."""
        count = self.count
        chunk = {
            name: np.array(array[:count].swapaxes(0, 1), order="C").reshape(-1, *array.shape[2:])
            for name, array in self._arrays.items()
        }
        self.count = 0
        return chunk


class VecWorker(Worker):
    """A :class:`Worker` driving a :class:`CarBatch`: one policy forward for all its cars per
    step, chunks of ``cars`` sub-chunks (meta ``cars``). Pacing and credit count transitions
    as the plain worker does (``steps`` grows by the number of cars per step)."""

    def __init__(self, config: Config, *, env: CarBatch, actor: nn.Module, **kwargs: Any) -> None:
        """Args as :class:`Worker`'s (``env``: the cars; ``seed``: the random warm-up's);
        refuses chunks larger than ``server.max_message_bytes``."""
        super().__init__(config, env=env, actor=actor, **kwargs)  # type: ignore[arg-type]
        self.batch = env
        self.cars = env.n
        chunk = VecChunkBuilder(
            env.observation_space, env.action_space, self.cfg.chunk_steps, self.cars
        )
        self.chunk = chunk  # type: ignore[assignment]  # the same interface, for N cars
        limit = config.server.max_message_bytes
        if chunk.nbytes > 0.9 * limit:  # the header and the frames' framing need a little
            raise ValueError(
                f"worker.envs: {self.cars} x worker.chunk_steps: {self.cfg.chunk_steps} make "
                f"chunks of {chunk.nbytes / 2**20:.0f} MiB, over server.max_message_bytes "
                f"({limit / 2**20:.0f} MiB): lower worker.chunk_steps"
            )
        self.pacer = Pacer(self.cfg.chunk_steps * self.cars, self.cfg.pace and not self._realtime)
        self._random = np.random.default_rng(self.seed + 1)
        self._returns = np.zeros(self.cars)
        self._lengths = np.zeros(self.cars, np.int64)

    def start(self) -> None:
        """Connect, then start every car's first episode (seeded at construction)."""
        self.client, _ = self._connect(self.session, {"weights_version": self.policy_version})
        self._obs = self.batch.reset()

    def _chunk_meta(self) -> dict[str, Any]:
        return {"cars": self.cars}

    def _env_step(self) -> None:
        obs = self._obs
        actions = self._act(obs)
        next_obs, reward, terminated, truncated = self.batch.step(actions)
        self.chunk.add(obs, actions, reward, terminated, truncated, next_obs)  # type: ignore[arg-type]
        self.steps += self.cars
        self._returns += reward
        self._lengths += 1
        done = np.flatnonzero(terminated | truncated).tolist()
        if self.noise is not None:  # the cars share one perturbation: car 0's episodes
            self.noise.after_step(obs, bool(done) and done[0] == 0)
        if done:
            for i, (info, terms) in zip(done, self.batch.ended(done), strict=True):
                record = episode_record(float(self._returns[i]), int(self._lengths[i]), info, terms)
                record["car"] = i
                self._episodes.append(self._with_noise(record))
                self._returns[i], self._lengths[i] = 0.0, 0
            next_obs = self.batch.reset(done)
        self._obs = next_obs

    def _act(self, obs: Any) -> np.ndarray:
        if self.policy_version == 0 and self.steps < self.cfg.random_steps:
            return self._random.uniform(-1.0, 1.0, (self.cars, 3)).astype(np.float32)
        actor, deterministic = self.actor, False
        if self.noise is not None:
            actor, deterministic = self.noise.acting_actor, self.noise.deterministic
        with torch.inference_mode():
            batch = {key: as_tensor(value) for key, value in obs.items()}
            action, _ = actor(batch, deterministic=deterministic, with_logprob=False)
        return np.asarray(action.numpy(), np.float32)

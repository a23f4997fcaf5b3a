"""The rollout worker: acts in its env with the latest policy and streams experience.

It never waits for an episode end to take new weights: weights that arrived are swapped in
at the next step boundary, and the worker keeps acting with the older policy meanwhile.
In fast mode it paces itself against the trainer's update count (``max_steps_per_update``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gymnasium as gym
import numpy as np

from tmrl2.algos.policy import actor_act, load_actor_weights
from tmrl2.config.schema import Config
from tmrl2.envs.factory import build_env
from tmrl2.net.codec import Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.chunks import ChunkBuilder
from tmrl2.roles.common import NeverStop, StopFlag, connect, set_torch_threads
from tmrl2.roles.components import build_model

log = logging.getLogger(__name__)


class Worker:
    """One env, one CPU policy, one connection to the server."""

    def __init__(
        self, config: Config, address: str, stop: StopFlag | None = None, index: int = 0
    ) -> None:
        """Args:
        config: the run's config (the worker reads ``worker``, ``env``, ``reward``, ``model``).
        address: the server, ``tcp://host:port``.
        stop: set it to stop the worker at the next step.
        index: rank of this worker among a local run's workers (seeds and name differ).
        """
        self.config = config
        self.name = config.worker.name if index == 0 else f"{config.worker.name}-{index}"
        self.seed = config.run.seed + 1000 * index
        self.cfg = config.worker
        self.stop = stop or NeverStop()
        set_torch_threads(self.cfg.torch_threads)
        self.env = build_env(config)
        self.actor = build_model(config, self.env.observation_space, self.env.action_space).actor
        self.actor.eval()
        assert isinstance(self.env.action_space, gym.spaces.Box), "actions must be a Box"
        self.chunk = ChunkBuilder(
            self.env.observation_space,
            self.env.action_space,
            self.cfg.chunk_steps,
            compact=self.cfg.compact_frames,
        )
        self.env.action_space.seed(self.seed + 1)
        self.address = address
        self.client: ClientSocket | None = None
        self.policy_version = 0
        self.trainer_updates = 0
        self.steps = 0
        self._episodes: list[dict[str, Any]] = []
        self._realtime = bool(getattr(config.env, "realtime", False))

    def run(self) -> None:
        """Act and stream until the stop flag is set."""
        self.client = connect(self.config, self.address, "worker", self.name, self.stop)
        try:
            self._loop()
        finally:
            self.client.send(Message("bye", {}, {}))
            self.client.close()
            self.env.close()

    def _loop(self) -> None:
        obs, info = self.env.reset(seed=self.seed)
        ep_return, ep_steps = 0.0, 0
        ep_terms: dict[str, float] = {}
        while not self.stop.is_set():
            self._poll(timeout_ms=0)
            if self._must_wait():
                if self.chunk.count:  # the trainer may be waiting for exactly these samples
                    self._send_chunk()
                self._poll(timeout_ms=20)
                continue
            action = self._act(obs)
            next_obs, reward, terminated, truncated, info = self.env.step(action)
            self.chunk.add(obs, action, float(reward), terminated, truncated, next_obs)
            self.steps += 1
            ep_return += float(reward)
            ep_steps += 1
            for name, value in info.get("reward_terms", {}).items():
                ep_terms[name] = ep_terms.get(name, 0.0) + value
            obs = next_obs
            if terminated or truncated:
                self._episodes.append(_episode_record(ep_return, ep_steps, info, ep_terms))
                obs, info = self.env.reset()
                ep_return, ep_steps, ep_terms = 0.0, 0, {}
            if self.chunk.full:
                self._send_chunk_when_allowed()

    def _act(self, obs: Any) -> np.ndarray:
        if self.policy_version == 0 and self.steps < self.cfg.random_steps:
            return np.asarray(self.env.action_space.sample(), dtype=np.float32)
        return actor_act(self.actor, obs, deterministic=False)

    def _must_wait(self) -> bool:
        ratio = self.cfg.max_steps_per_update
        if self._realtime or ratio <= 0:
            return False
        budget = max(self.cfg.random_steps, self.config.trainer.start_samples)
        return self.steps >= budget + ratio * self.trainer_updates

    def _poll(self, timeout_ms: int) -> None:
        assert self.client is not None
        msg = self.client.recv(timeout_ms=timeout_ms)
        while msg is not None:
            if msg.kind == "weights":
                load_actor_weights(self.actor, msg.arrays)
                self.policy_version = int(msg.meta["version"])
                self.trainer_updates = int(msg.meta.get("updates", 0))
            msg = self.client.recv(timeout_ms=0)

    def _send_chunk_when_allowed(self) -> None:
        """Fast mode waits for the server's chunk credit (backpressure: the worker slows down
        rather than the server queue overflowing); real time never stalls the env, so it
        sends and the server accounts for it."""
        assert self.client is not None
        while not self._realtime and not self.client.can_send_chunk() and not self.stop.is_set():
            self._poll(timeout_ms=20)
        self._send_chunk()

    def _send_chunk(self) -> None:
        assert self.client is not None
        arrays = self.chunk.take()
        n = int(arrays["reward"].shape[0])
        meta = {
            "worker": self.name,
            "policy_version": self.policy_version,
            "n": n,
            "episodes": self._episodes,
        }
        self.client.send(Message("chunk", meta, arrays))
        self._episodes = []


def _episode_record(
    ep_return: float, steps: int, info: dict[str, Any], terms: dict[str, float]
) -> dict[str, Any]:
    lap = info.get("lap_time_s")
    return {
        "terms": {name: float(value) for name, value in terms.items()},
        "return": ep_return,
        "steps": steps,
        "finished": bool(info.get("finished", False)),
        "lap_time_s": float(lap) if lap is not None else None,
        "progress_frac": float(info.get("progress_frac", 0.0)),
    }


def run_worker(config: Config, address: str, stop: StopFlag | None = None, index: int = 0) -> None:
    """Entry point of the worker role (process target and CLI)."""
    start = time.monotonic()
    worker = Worker(config, address, stop, index)
    worker.run()
    log.info(
        "worker %s stopped after %d steps in %.0f s",
        worker.name,
        worker.steps,
        time.monotonic() - start,
    )

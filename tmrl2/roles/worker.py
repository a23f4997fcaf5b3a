"""The rollout worker: acts in its env with the latest policy and streams experience.

It never waits for an episode end to take new weights: weights that arrived are swapped in
at the next step boundary, and the worker keeps acting with the older policy meanwhile.
In fast mode it paces itself against the trainer's ``state`` (:mod:`tmrl2.roles.pacing`) and
waits for the server's chunk credit; every such wait says, after 30 s, what it waits for.
Chunks are numbered per process session (``session``, ``seq``, ``sent``) so the trainer can
count what was lost on the way. Nothing here blocks on the socket: chunks and the final bye
go out with ``try_send``; a chunk the socket cannot take is dropped and shows up as lost.

Construction (:func:`build_worker`: env, actor, socket) is apart from behaviour
(:class:`Worker`, given its collaborators; :meth:`Worker.step` is one pass of its loop), so
tests drive workers and a trainer in one process with fakes.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
from torch import nn

from tmrl2.algos.policy import actor_act, load_actor_weights
from tmrl2.config.schema import Config
from tmrl2.contracts import ClientTransport
from tmrl2.envs.factory import build_env
from tmrl2.exploration.base import ActorNoise, build_actor_noise
from tmrl2.exploration.param_noise import obs_rows
from tmrl2.memory.batch import BOX_KEY
from tmrl2.net.codec import Message
from tmrl2.net.errors import Stopped
from tmrl2.roles.chunks import ChunkBuilder
from tmrl2.roles.common import (
    DEFAULT_SEND_TIMEOUT_MS,
    Connector,
    NeverStop,
    StopFlag,
    connector,
    new_session,
    set_torch_threads,
)
from tmrl2.roles.components import build_model
from tmrl2.roles.pacing import Clock, Pacer, TrainerState, WaitLog
from tmrl2.telemetry.episodes import episode_record
from tmrl2.worldmodel.explore import MPCExplorer, build_mpc_explorer, split_weights

log = logging.getLogger(__name__)

WAIT_POLL_MS = 20
"""How long one pass of a wait looks at the socket."""
CLOSE_LINGER_MS = 1000
"""How long a stopping worker's socket may take to hand its last messages over."""
DROP_LOG_S = 10.0
"""Dropped chunks (send queue full) are logged at most this often."""


class Worker:
    """One env, one CPU policy, one connection to the server."""

    def __init__(
        self,
        config: Config,
        *,
        env: gym.Env[Any, Any],
        actor: nn.Module,
        connect: Connector,
        name: str,
        seed: int,
        stop: StopFlag | None = None,
        clock: Clock = time.monotonic,
        noise: ActorNoise | None = None,
        mpc: MPCExplorer | None = None,
    ) -> None:
        """Args:
        config: the run's config (reads ``worker``, ``env.realtime``).
        env: this worker's env (it closes it at the end).
        actor: the policy module, on the CPU.
        connect: connects with a hello carrying the given extra meta (see
            :data:`~tmrl2.roles.common.Connector`).
        name: the name reported to the server (unique among the run's workers).
        seed: seed of the env and of the random warm-up actions.
        stop: set it to stop the worker at the next step.
        clock: ``time.monotonic`` or a test's fake clock.
        noise: parameter-space noise (``exploration.kind: param_noise``): act with its
            perturbed copy of ``actor``; ``actor`` itself keeps the trainer's weights.
        mpc: the world model's planner (``world_model.mpc.mode: explore``): some steps act
            with its action, once the model's weights came with the actor's.
        """
        self.config = config
        self.cfg = config.worker
        self.name = name
        self.seed = seed
        self.stop = stop or NeverStop()
        self.env, self.actor = env, actor
        self.actor.eval()
        self.noise = noise
        self._noise_restored = False
        self.mpc = mpc
        assert isinstance(env.action_space, gym.spaces.Box), "actions must be a Box"
        self.chunk = ChunkBuilder(
            env.observation_space,
            env.action_space,
            self.cfg.chunk_steps,
            compact=self.cfg.compact_frames,
        )
        env.action_space.seed(seed + 1)
        self._connect = connect
        self.clock = clock
        self.session = new_session()
        self.client: ClientTransport | None = None
        self.policy_version = 0
        self.steps = 0
        self.seq = 0
        self.sent = 0
        """Transitions this session has sent (chunk meta ``sent``)."""
        self.dropped = 0
        """Chunks the socket could not take (send queue full: server away)."""
        self._realtime = bool(getattr(config.env, "realtime", False))
        self.pacer = Pacer(self.cfg.chunk_steps, self.cfg.pace and not self._realtime)
        self._credit_wait = WaitLog(f"worker {name} waiting for chunk credit", clock)
        self._pace_wait = WaitLog(f"worker {name} waiting for the trainer", clock)
        self._last_drop_log = -math.inf
        self._episodes: list[dict[str, Any]] = []
        self._obs: Any = None
        self._episode: tuple[float, int, dict[str, float]] = (0.0, 0, {})  # return, steps, terms

    def run(self) -> None:
        """Act and stream until the stop flag is set (a stop before the server answered is
        a clean stop)."""
        try:
            self.start()
        except Stopped as exc:
            log.info("%s", exc)
            self.env.close()
            return
        try:
            while not self.stop.is_set():
                self.step()
        finally:
            self.finish()

    def start(self) -> None:
        self.client, _ = self._connect(self.session, {"weights_version": self.policy_version})
        self._obs, _ = self.env.reset(seed=self.seed)

    def finish(self) -> None:
        """A clean stop: the partial chunk and ``bye`` go out (if the socket takes them
        within :data:`CLOSE_LINGER_MS`), so a stopped worker loses no transition it made."""
        try:
            if self.client is not None:
                if self.chunk.count and self._may_send():
                    self._send_chunk()
                self.client.try_send(Message("bye", {}, {}))
                self.client.close(linger_ms=CLOSE_LINGER_MS)
        finally:
            self.env.close()

    def step(self, wait_ms: int = WAIT_POLL_MS) -> bool:
        """One pass of the loop: an env step, or one look at the socket while waiting (for
        credit or for the trainer). True when the env stepped."""
        self._poll(timeout_ms=0)
        if self.chunk.full:
            if not self._may_send():
                self._credit_wait.waiting(self._why_no_credit)
                self._poll(timeout_ms=wait_ms)
                return False
            self._credit_wait.done()
            self._send_chunk()
        if self.pacer.must_wait(self.steps):
            if self.chunk.count and self._may_send():  # the trainer may need exactly these
                self._send_chunk()
            self._pace_wait.waiting(lambda: self.pacer.describe(self.steps))
            self._poll(timeout_ms=wait_ms)
            return False
        self._pace_wait.done()
        self._env_step()
        return True

    def _env_step(self) -> None:
        obs = self._obs
        action = self._act(obs)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.chunk.add(obs, action, float(reward), terminated, truncated, next_obs)
        self.steps += 1
        ep_return, ep_steps, ep_terms = self._episode
        ep_return += float(reward)
        for name, value in info.get("reward_terms", {}).items():
            ep_terms[name] = ep_terms.get(name, 0.0) + value
        self._episode = (ep_return, ep_steps + 1, ep_terms)
        self._obs = next_obs
        if self.noise is not None:
            self.noise.after_step(obs_rows(obs, BOX_KEY), terminated or truncated)
        if terminated or truncated:
            self._episodes.append(
                self._with_noise(episode_record(ep_return, ep_steps + 1, info, ep_terms))
            )
            self._obs, _ = self.env.reset()
            self._episode = (0.0, 0, {})

    def _with_noise(self, record: dict[str, Any]) -> dict[str, Any]:
        """The episode record with the noise's stats (key ``exploration``), when there is
        noise: how worker-side values reach the trainer's metrics (``explore/<name>``)."""
        if self.noise is not None:
            record["exploration"] = self.noise.stats()
        if self.mpc is not None:
            record["exploration"] = {**record.get("exploration", {}), **self.mpc.stats()}
        return record

    def _act(self, obs: Any) -> np.ndarray:
        if self.policy_version == 0 and self.steps < self.cfg.random_steps:
            return np.asarray(self.env.action_space.sample(), dtype=np.float32)
        if self.mpc is not None:
            planned = self.mpc.maybe_act(obs, self.actor)
            if planned is not None:
                return planned
        if self.noise is not None:
            return actor_act(self.noise.acting_actor, obs, self.noise.deterministic)
        return actor_act(self.actor, obs, deterministic=False)

    def _may_send(self) -> bool:
        """Real time never stalls the env (the server accounts for excess); fast mode waits
        for the server's chunk credit (backpressure)."""
        assert self.client is not None
        return self._realtime or self.client.can_send_chunk()

    def _why_no_credit(self) -> str:
        assert self.client is not None
        return (
            f"the server gave back no chunk credit (credit {self.client.chunk_credit}, "
            f"server restarts seen: {self.client.rejoins}): the trainer takes no data, or the "
            "server is away or stalled"
        )

    def _poll(self, timeout_ms: int) -> None:
        assert self.client is not None
        msg = self.client.recv(timeout_ms=timeout_ms)
        while msg is not None:
            if msg.kind == "weights":
                actor_arrays, model_arrays = split_weights(msg.arrays)  # world model: "wm/"
                load_actor_weights(self.actor, actor_arrays)
                if self.mpc is not None:
                    self.mpc.load(model_arrays)
                if self.noise is not None:
                    self.noise.weights_changed()
                self.policy_version = int(msg.meta["version"])
                session = msg.meta.get("session")
                self.pacer.on_updates(
                    session if isinstance(session, str) else None, int(msg.meta.get("updates", 0))
                )
            elif msg.kind == "state":
                state = TrainerState.from_meta(msg.meta)
                if state is not None:
                    self.pacer.on_state(state, self.steps)
                    self._restore_noise(state.explore)
            msg = self.client.recv(timeout_ms=0)

    def _restore_noise(self, values: dict[str, float]) -> None:
        """Once per worker process: the run's exploration values (the adapted noise scale)
        for a noise that takes them (``restore``, optional in ``ActorNoise``)."""
        if self._noise_restored or not values or self.noise is None:
            return
        self._noise_restored = True
        restore = getattr(self.noise, "restore", None)
        if callable(restore) and restore(values):
            log.info("exploration restored from the trainer's state: %s", values)

    def _chunk_meta(self) -> dict[str, Any]:
        """Extra meta of each chunk (a vectorized worker's ``cars``)."""
        return {}

    def _send_chunk(self) -> None:
        assert self.client is not None
        arrays = self.chunk.take()
        n = int(arrays["reward"].shape[0])
        self.seq += 1
        self.sent += n
        meta = {
            "worker": self.name,
            "policy_version": self.policy_version,
            "n": n,
            "episodes": self._episodes,
            "session": self.session,
            "seq": self.seq,
            "sent": self.sent,
            **self._chunk_meta(),
        }
        self._episodes = []
        if not self.client.try_send(Message("chunk", meta, arrays)):
            self.dropped += 1
            now = self.clock()
            if now - self._last_drop_log >= DROP_LOG_S:
                self._last_drop_log = now
                credit = self.client.chunk_credit
                why = (
                    "no chunk credit left (real time does not wait for it)"
                    if credit is not None and credit <= 0
                    else "the send queue is full (server away?)"
                )
                log.warning(
                    "worker %s: %s: dropped %d chunk(s) so far (counted as lost)",
                    self.name,
                    why,
                    self.dropped,
                )


def worker_name(config: Config, index: int) -> str:
    """The name of a local run's worker ``index`` (``-<index>`` appended after the first)."""
    return config.worker.name if index == 0 else f"{config.worker.name}-{index}"


def build_worker(
    config: Config,
    address: str,
    stop: StopFlag | None = None,
    index: int = 0,
    *,
    run_token: str | None = None,
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS,
) -> Worker:
    """The worker role wired for real: env, actor, a ZeroMQ connection.

    With ``worker.envs > 1`` (the simulator only) it is a
    :class:`~tmrl2.roles.vec_worker.VecWorker` driving that many cars.

    Args:
        index: rank of this worker among a local run's workers (seeds and name differ).
    """
    set_torch_threads(config.worker.torch_threads)
    name = worker_name(config, index)
    stop = stop or NeverStop()
    seed = config.run.seed + 1000 * index
    connect = connector(config, address, "worker", name, stop, run_token, send_timeout_ms)
    if config.worker.envs > 1:  # N simulator cars in this process (roles/vec_worker.py)
        from tmrl2.roles.vec_worker import SEED_STRIDE, CarBatch, VecWorker, check_worker_envs

        check_worker_envs(config)
        seeds = [seed + i * SEED_STRIDE for i in range(config.worker.envs)]
        cars = CarBatch(config, config.worker.envs, seeds)
        actor = build_model(config, cars.observation_space, cars.action_space).actor
        noise = build_actor_noise(config.exploration, actor, cars.action_space, seed)
        return VecWorker(
            config,
            env=cars,
            actor=actor,
            connect=connect,
            name=name,
            seed=seed,
            stop=stop,
            noise=noise,
        )
    env = build_env(config)
    actor = build_model(config, env.observation_space, env.action_space).actor
    noise = build_actor_noise(config.exploration, actor, env.action_space, seed)
    mpc = build_mpc_explorer(config.world_model, env.observation_space, env.action_space, seed)
    return Worker(
        config,
        env=env,
        actor=actor,
        connect=connect,
        name=name,
        seed=seed,
        stop=stop,
        noise=noise,
        mpc=mpc,
    )


def run_worker(
    config: Config,
    address: str,
    stop: StopFlag | None = None,
    index: int = 0,
    *,
    run_token: str | None = None,
) -> None:
    """Entry point of the worker role (process target and CLI)."""
    start = time.monotonic()
    worker = build_worker(config, address, stop, index, run_token=run_token)
    worker.run()
    log.info(
        "worker %s stopped after %d steps in %.0f s",
        worker.name,
        worker.steps,
        time.monotonic() - start,
    )

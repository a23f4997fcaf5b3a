"""The trainer: fills the replay memory from the server, updates, publishes weights.

Flow control: the trainer grants the server ``credit`` chunks ahead and renews it as it
consumes them, so experience never piles up unbounded in the trainer. Updates are capped at
``trainer.updates_per_step`` per sample received since the memory was ready (it waits for
data rather than over-fitting a small memory; :class:`~tmrl2.roles.pacing.UpdateBudget`);
weights go out every ``publish_every_updates`` updates, or
every ``publish_every_s`` seconds when that is set and the weights changed since (a slow
learner, e.g. big images on a CPU, still refreshes its workers' policy on time).

Lifecycle: the trainer tells the workers its ``state`` (session, updates, samples, ready,
weights version) right after connecting, when ``ready`` flips, and every
:data:`STATE_PERIOD_S`; workers pace themselves on it (:mod:`tmrl2.roles.pacing`), so a
resumed trainer never deadlocks them. Credit, state and weights go through an
:class:`~tmrl2.roles.outbox.Outbox` (never blocking): a server outage of any length costs
nothing but the data that did not come. Counters continue from the checkpoint, and weight
versions continue above both the checkpoint's and the server's (``welcome``).

Alarms (:mod:`tmrl2.telemetry.alarms`) are checked at every report; NaN or infinite losses
(every update) or weights (every checkpoint) stop the trainer with ``failure`` in its summary,
and the last good checkpoint stays on disk.

Construction (:func:`build_trainer`: env spaces, components, the socket) is apart from
behaviour (:class:`Trainer`, given its collaborators), so tests run it in one process with
fakes (``tests/unit/rolekit.py``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from tmrl2.config.load import dump_config
from tmrl2.config.schema import Config
from tmrl2.contracts import ActorCritic, ClientTransport, Learner, ReplayMemory
from tmrl2.envs.factory import build_env
from tmrl2.exploration.learner import wrap_learner
from tmrl2.memory.recorder import TrajectoryWriter, load_into
from tmrl2.net.codec import Message
from tmrl2.net.errors import Stopped
from tmrl2.roles.chunks import Spec, spec_meta, wire_spec
from tmrl2.roles.common import (
    DEFAULT_SEND_TIMEOUT_MS,
    Connector,
    NeverStop,
    StopFlag,
    connector,
    new_session,
    set_torch_threads,
)
from tmrl2.roles.components import build_algorithm, build_memory, build_model
from tmrl2.roles.ingest import Accepted, Ingest
from tmrl2.roles.outbox import Outbox
from tmrl2.roles.pacing import Clock, TrainerState, UpdateBudget, WaitLog
from tmrl2.roles.runfolder import RunFolder
from tmrl2.telemetry.alarms import Alarms, divergence_line, nonfinite_losses, weights_finite
from tmrl2.telemetry.episodes import ReturnStats, TrackStats, episode_stats
from tmrl2.telemetry.progress import ProgressReporter, RateMeter
from tmrl2.telemetry.sinks import build_sinks
from tmrl2.worldmodel.learner import wrap_world_model

log = logging.getLogger(__name__)

TRAJECTORIES_NAME = "trajectories.h5"
"""HDF5 file of the received transitions (``trainer.record_trajectories``)."""

UPDATE_BURST_S = 0.05
"""Longest stretch of updates between two looks at the socket."""
STATE_PERIOD_S = 0.5
"""The trainer's ``state`` goes out at most this often (and at once when ``ready`` flips)."""
SERVER_STATS = ("queued_chunks", "chunks_dropped", "over_credit", "rejected", "malformed")
"""The server's counters its ``stats`` messages bring (about every second, because the hello
sets ``server_stats``); the metrics carry them as ``server_<name>``."""
BATCH_CHUNKS = 16
"""Most chunks the server may send in one ``chunks`` message (the hello's ``batch_chunks``):
fewer messages per chunk on both sides; the socket hands them over one by one (issue 18)."""


class Trainer:
    """Memory + learner + one connection to the server."""

    def __init__(
        self,
        config: Config,
        *,
        memory: ReplayMemory,
        learner: Learner,
        model: ActorCritic,
        spec: Spec,
        connect: Connector,
        address: str = "",
        run_dir: Path | None = None,
        stop: StopFlag | None = None,
        resume: bool = False,
        live: bool = True,
        clock: Clock = time.monotonic,
        on_report: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Args:
        config: the run's config (reads ``trainer``, ``run``, ``algorithm.batch_size``).
        memory, learner, model: the components (:func:`build_trainer` builds them).
        spec: every array of a chunk of this run (:func:`~tmrl2.roles.chunks.wire_spec`).
        connect: connects with a hello carrying the given extra meta; returns the transport
            and the ``welcome`` meta.
        address: the server's address, for log lines.
        run_dir: where checkpoints, metrics and the summary go (None: nowhere).
        stop: set it to end the run (the trainer saves and says bye).
        resume: restore the checkpoint of ``run_dir`` first.
        live: show the live progress line.
        clock: ``time.monotonic`` or a test's fake clock (waits, periods).
        on_report: called with the metrics at every report (the launcher watches stalls).
        """
        self.config = config
        self.cfg = config.trainer
        self.memory, self.algo, self.model = memory, learner, model
        self.spec = spec
        self._connect = connect
        self.address = address
        self.run_dir = run_dir
        self.stop = stop or NeverStop()
        self.clock = clock
        self.on_report = on_report
        self.session = new_session()
        self.batch_size = int(getattr(config.algorithm, "batch_size", 256))
        self.ingest = Ingest(spec, clock)
        self.outbox = Outbox(address, clock)
        self.client: ClientTransport | None = None
        for path in self.cfg.preload:
            rows = load_into(self.memory, path)
            log.info("preloaded %d transitions from %s", rows, path)
        self.recorder: TrajectoryWriter | None = None
        if self.cfg.record_trajectories and run_dir is not None:
            self.recorder = TrajectoryWriter(run_dir / TRAJECTORIES_NAME)
        self._sources: dict[str, int] = {}
        self.counters = {
            "samples": 0,
            "updates": 0,
            "chunks": 0,
            "episodes": 0,
            "finishes": 0,
            "weights_version": 0,
            "worker_policy_version": 0,
        }
        self.best_lap_s: float | None = None
        self.track_stats = TrackStats()
        """Per-track episodes, finish rate, best lap and lap/reference ratio."""
        self._tracks_changed = False
        self.last_episode: dict[str, Any] | None = None
        self.explore: dict[str, float] = {}
        """The workers' latest exploration values (``noise_std``): checkpointed, and sent in
        the state so that a new worker starts from them."""
        self.returns = ReturnStats()
        """Every episode's return: per log window (none dropped) and the recent ones."""
        self.budget = UpdateBudget(self.cfg.updates_per_step)
        self._session_samples0 = 0
        self.last_losses: dict[str, float] = {}
        self.server_stats: dict[str, int] = {}
        """The server's latest queue depth and drop counters (``server_<name>``)."""
        self.elapsed_before_s = 0.0
        self._start = self._last_report = self._last_ckpt = clock()
        self._last_publish = (0, clock())
        self._last_state_t = -float("inf")
        self._ready = False
        self._latest_weights: Message | None = None
        self._no_samples = WaitLog("trainer waiting for samples", clock)
        self.folder = (
            None
            if run_dir is None
            else RunFolder(run_dir, self.cfg.save_memory, clock, config.run.keep_checkpoints)
        )
        payload = self.folder.load(self.memory) if resume and self.folder is not None else None
        if payload is not None:
            self._restore(payload)
        self.failure: str | None = None
        """Why the trainer stopped itself (NaN or infinite losses or weights), or None."""
        self._saved_updates = self.counters["updates"] if payload is not None else None
        """Updates in the checkpoint on disk (None: none written yet)."""
        self.alarms = Alarms(config.logging.alarms, run_dir)
        self.reporter = ProgressReporter(
            live=live,
            sinks=build_sinks(config, run_dir, resume),
            minutes=config.run.minutes,
            steps=config.run.steps,
        )
        self._sample_rate, self._update_rate = RateMeter(), RateMeter()
        log.info("replay memory: %s bytes per transition", self.memory.bytes_per_transition)

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        """Train until the stop flag, ``run.steps`` or ``run.minutes``; return the summary
        (a stop before the server answered is a clean stop with nothing to save)."""
        try:
            self.start()
        except Stopped as exc:
            log.info("%s", exc)
            return self.metrics()
        try:
            while not self.done():
                self.step()
            if self._reached_steps():
                self.settle()
        finally:
            self.finish()
        return self.metrics()

    def settle(self) -> None:
        """At ``run.steps``: make the updates the ratio still owes for the samples received
        (those in flight when the limit was reached), so that a run of N steps has
        ``updates_per_step x (N - start_samples)`` updates, as in SB3 (not on Ctrl-C or at
        ``run.minutes``: those stop now)."""
        owed = self.budget.owed(self.counters["updates"], self.counters["samples"])
        if owed >= 1:
            log.info("run.steps reached: %d updates owed by trainer.updates_per_step", owed)
        while self._can_update() and not self.stop.is_set() and self.failure is None:
            self._update_burst()
            if self.clock() - self._last_report >= self.config.run.log_every_s:
                self.report()
                self._last_report = self.clock()

    def start(self) -> None:
        """Connect; grant credit, tell the state, re-publish restored weights."""
        hello = {
            "spec": spec_meta(self.spec),
            "weights_version": self.counters["weights_version"],
            "server_stats": True,  # the server's queue depth and drops, for the metrics
            "batch_chunks": BATCH_CHUNKS,
        }
        self.client, welcome = self._connect(self.session, hello)
        self._on_welcome(welcome)
        self._start = self._last_report = self._last_ckpt = self.clock()
        self._last_publish = (self.counters["updates"], self._start)
        self._session_samples0 = self.counters["samples"]
        if self.counters["updates"]:
            self._publish()
        self.outbox.flush(self.client)

    def step(self) -> None:
        """One pass: take chunks, update for a while, publish, report, checkpoint."""
        assert self.client is not None
        can_update = self._can_update()
        consumed = self._drain(timeout_ms=0 if can_update else 10)
        self.outbox.owe_credit(consumed)
        if consumed or can_update:
            self._no_samples.done()
        else:
            self._no_samples.waiting(self._why_no_samples)
        self._update_burst()
        if self.failure is not None:  # NaN: nothing more is published or saved
            return
        updates, now = self.counters["updates"], self.clock()
        last_updates, last_t = self._last_publish
        if self._publish_due(updates - last_updates, now - last_t):
            self._publish()
            self._last_publish = (updates, now)
        ready = self._memory_ready()
        if ready != self._ready or now - self._last_state_t >= STATE_PERIOD_S:
            self._ready = ready
            self._put_state(now)
        self.outbox.flush(self.client)
        if now - self._last_report >= self.config.run.log_every_s:
            self.report()
            self._last_report = now
        if now - self._last_ckpt >= self.cfg.checkpoint_every_s:
            self.save()
            self._last_ckpt = now

    def finish(self) -> None:
        """Save, publish the last weights, say bye (none of it may block)."""
        try:
            self.save()
            if self.client is not None:
                if self.failure is None:
                    self._publish()
                self.outbox.flush(self.client)
                self.client.try_send(Message("bye", {}, {}))
                self.client.close(linger_ms=1000)  # the last weights and bye leave
        finally:
            if self.recorder is not None:
                self.recorder.close()  # drains the queue: a clean stop loses no episode
            last = {**self.metrics(), **self.returns.take_window(), **self.alarms.shown()}
            self.reporter.report(last)  # the episodes since the last tick: none dropped
            self.reporter.close()
            self.alarms.close()
        if self.run_dir:
            (self.run_dir / "summary.json").write_text(json.dumps(self.metrics(), indent=2))

    def done(self) -> bool:
        run = self.config.run
        if self.stop.is_set() or self.failure is not None or self._reached_steps():
            return True
        return bool(run.minutes and self.clock() - self._start >= run.minutes * 60)

    def _reached_steps(self) -> bool:
        steps = self.config.run.steps
        return bool(steps and self.counters["samples"] >= steps)

    def report(self) -> None:
        """One ``metrics.jsonl`` row and progress line: the episodes of the window since the
        last report (every return, none dropped), per-track rows when they changed."""
        metrics = {**self.metrics(tracks=self._tracks_changed), **self.returns.take_window()}
        self._tracks_changed = False
        metrics.update(self.alarms.update(metrics, self.clock()))
        self.reporter.report(metrics)
        if self.on_report is not None:
            self.on_report(metrics)

    def _elapsed(self) -> float:
        return self.elapsed_before_s + self.clock() - self._start

    def _memory_ready(self) -> bool:
        """Whether the memory holds ``start_samples`` (the ``ready`` of the trainer's state)."""
        return len(self.memory) >= max(self.cfg.start_samples, 1)

    def _can_update(self) -> bool:
        c = self.counters
        ready = self._memory_ready()
        if ready and self.budget.anchor is None:
            # Samples beyond start_samples that arrived before the memory was seen ready (the
            # workers do not wait before that) are owed updates too, as in SB3; samples of
            # earlier sessions are not.
            surplus = max(len(self.memory) - self.cfg.start_samples, 0)
            samples0 = max(self._session_samples0, c["samples"] - surplus)
            self.budget.anchor = (c["updates"], samples0)
        return self.budget.allows(ready, c["updates"], c["samples"])

    def _why_no_samples(self) -> str:
        rejoins = self.client.rejoins if self.client is not None else 0
        return (
            f"no chunk from the server at {self.address} (memory {len(self.memory)}/"
            f"{self.cfg.start_samples} transitions, {self.counters['samples']} samples, "
            f"{self.counters['updates']} updates, server restarts seen: {rejoins}): are "
            "workers running and connected to this server?"
        )

    def _drain(self, timeout_ms: int) -> int:
        assert self.client is not None
        consumed = 0
        msg = self.client.recv(timeout_ms=timeout_ms)
        while msg is not None:
            if msg.kind == "chunk":
                self._ingest(msg)
                consumed += 1
            elif msg.kind == "welcome":  # rejoined a restarted server: it knows nothing
                self._on_welcome(dict(msg.meta))
                log.warning("rejoined the server; re-sent credit, state and weights")
            elif msg.kind == "stats":  # the server's counters since it (re)started
                got = {k: msg.meta.get(k) for k in SERVER_STATS}
                self.server_stats |= {f"server_{k}": v for k, v in got.items() if type(v) is int}
            msg = self.client.recv(timeout_ms=0)
        return consumed

    def _on_welcome(self, welcome: dict[str, Any]) -> None:
        """A (new) server session: credit starts over, it needs the state and the weights,
        and version numbers continue above any it saw."""
        seen = welcome.get("weights_version", 0)
        if isinstance(seen, int) and not isinstance(seen, bool):
            self.counters["weights_version"] = max(self.counters["weights_version"], seen)
        self.outbox.reset_credit(self.cfg.credit)
        self._put_state(self.clock())
        if self._latest_weights is not None:
            self.outbox.put_weights(self._latest_weights)

    def _ingest(self, msg: Message) -> None:
        chunk = self.ingest.take(msg.meta, msg.arrays)
        if chunk is None:
            return
        try:
            for _, part in chunk.parts():  # one append per car: histories never cross cars
                self.memory.append(part)
        except (ValueError, TypeError) as exc:  # never fatal: the spec check should see it first
            self.ingest.rejected_chunks += 1
            log.warning("replay memory refused a chunk of %r: %s", chunk.worker, exc)
            return
        self._count(chunk)

    def _count(self, chunk: Accepted) -> None:
        if self.recorder is not None:
            for source_name, part in chunk.parts():
                source = self._sources.setdefault(source_name, len(self._sources))
                self.recorder.append(part, source)
        self.alarms.heard_from(chunk.worker, self.clock())
        c = self.counters
        c["samples"] += chunk.n
        c["chunks"] += 1
        c["worker_policy_version"] = max(c["worker_policy_version"], chunk.policy_version)
        for episode in chunk.episodes:
            c["episodes"] += 1
            self.last_episode = episode
            self.explore = episode_stats(episode, prefix="") or self.explore
            self.returns.add(episode.get("return"))
            if "progress_frac" in episode:  # a racing env's episode (telemetry)
                self.track_stats.add(episode)
                self._tracks_changed = True
            lap = episode.get("lap_time_s")
            if episode.get("finished") and lap is not None:
                c["finishes"] += 1
                if self.best_lap_s is None or lap < self.best_lap_s:
                    self.best_lap_s = float(lap)

    def _update_burst(self) -> None:
        deadline = time.monotonic() + UPDATE_BURST_S
        feed = self.memory.wants_priorities
        while self._can_update() and time.monotonic() < deadline:
            batch = self.memory.sample(self.batch_size)
            self.last_losses = self.algo.update(batch)
            bad = nonfinite_losses(self.last_losses)
            if bad is not None:  # the update is not counted; nothing after it goes out
                self._diverged(
                    "nan_loss", f"losses became {bad} at update {self.counters['updates'] + 1}"
                )
                return
            td_error = self.algo.last_td_error
            if feed and td_error is not None:  # a world model's batch: its real rows come first
                self.memory.update_priorities(batch.indices[: len(td_error)], td_error)
            self.counters["updates"] += 1

    def _publish_due(self, new_updates: int, since_s: float) -> bool:
        """Every ``publish_every_updates`` updates OR ``publish_every_s`` seconds (0: off),
        whichever comes first; never the same weights twice."""
        if new_updates <= 0:
            return False
        if new_updates >= self.cfg.publish_every_updates:
            return True
        every_s = self.cfg.publish_every_s
        return every_s > 0 and since_s >= every_s

    def _publish(self) -> None:
        """New weights replace any still pending (coalesced, never queued)."""
        self.counters["weights_version"] += 1
        meta = {
            "version": self.counters["weights_version"],
            "updates": self.counters["updates"],
            "session": self.session,
        }
        self._latest_weights = Message("weights", meta, self.algo.actor_weights())
        self.outbox.put_weights(self._latest_weights)

    def _put_state(self, now: float) -> None:
        self._last_state_t = now
        state = TrainerState(
            session=self.session,
            updates=self.counters["updates"],
            samples=self.counters["samples"],
            ready=self._memory_ready(),
            weights_version=self.counters["weights_version"],
            updates_per_step=self.cfg.updates_per_step,
            ahead=self.budget.ahead(self.counters["updates"], self.counters["samples"]),
            explore=self.explore,
        )
        self.outbox.put_state(state.meta())

    # ------------------------------------------------------------------ state
    def metrics(self, tracks: bool = True) -> dict[str, Any]:
        """The counters and rates of the run; with ``tracks``, the per-track rows too (the
        periodic report writes them only when an episode came in since the last one)."""
        c = self.counters
        last = self.last_episode or {}
        racing = bool(self.track_stats.rows)
        per_track = {"tracks": self.track_stats.as_dict()} if tracks and racing else {}
        race = (
            {"last_progress": last.get("progress_frac", 0.0), "best_lap_s": self.best_lap_s}
            if racing
            else {}
        )
        return {
            **c,
            **self.ingest.counters(),
            "elapsed_s": round(self._elapsed(), 2),
            "samples_per_s": self._sample_rate.rate(c["samples"]),
            "updates_per_s": self._update_rate.rate(c["updates"]),
            "updates_per_step": self.budget.measured(c["updates"], c["samples"]),
            "updates_per_step_set": self.cfg.updates_per_step,
            "last_return": last.get("return"),
            **self.returns.recent(),
            **race,
            "memory_size": len(self.memory),
            **self.server_stats,
            **{f"loss/{k}": v for k, v in self.last_losses.items()},
            **{f"reward/{k}": v for k, v in last.get("terms", {}).items()},
            **episode_stats(last),
            **per_track,
            **({"failure": self.failure} if self.failure else {}),
        }

    def save(self) -> None:
        """Write the checkpoint durably (no-op without a run folder); a full disk is logged
        and training goes on (:class:`~tmrl2.roles.runfolder.RunFolder`). Weights that are
        not finite are not written: the trainer stops (:meth:`_diverged`)."""
        if self.folder is None or self.failure is not None:
            return
        if not weights_finite([self.model.actor, self.model.critic]):
            what = f"weights became NaN or infinite by update {self.counters['updates']}"
            self._diverged("nan_weights", what)
            return
        payload = {
            "algorithm": self.algo.state_dict(),
            "actor": self.model.actor.state_dict(),
            "counters": dict(self.counters),
            "best_lap_s": self.best_lap_s,
            "tracks": self.track_stats.state(),
            "elapsed_s": self._elapsed(),
            "explore": dict(self.explore),
            "config": dump_config(self.config),
        }
        if self.folder.save(payload, self.memory):
            self._saved_updates = self.counters["updates"]

    def _diverged(self, kind: str, what: str) -> None:
        """Stop on NaN: no checkpoint or weights go out any more; the last good one stays."""
        self.failure = divergence_line(what, self._saved_updates, self.run_dir)
        at = {**self.counters, "elapsed_s": round(self._elapsed(), 2)}
        self.alarms.fatal(kind, self.failure, self.clock(), at)

    def _restore(self, payload: dict[str, Any]) -> None:
        self.algo.load_state_dict(payload["algorithm"])
        self.counters.update(payload["counters"])
        self.best_lap_s = payload.get("best_lap_s")
        self.track_stats.restore(payload.get("tracks"))
        self.elapsed_before_s = float(payload.get("elapsed_s", 0.0))
        self.explore = episode_stats({"exploration": payload.get("explore")}, prefix="")
        log.info(
            "resumed at %d updates, %d samples", self.counters["updates"], self.counters["samples"]
        )


def build_learner(
    config: Config,
    model: ActorCritic,
    obs_space: gym.Space[Any],
    action_space: gym.Space[Any],
    device: torch.device,
) -> Learner:
    """The configured algorithm for ``model``, wrapped by the exploration bonus (RND/ICM: in
    the critic target, trained on the sampled batches; docs/exploration.md) and the world model
    (ensemble dynamics, model rollouts in the batches, MPC; docs/world_model.md), in that
    order: the trainer's one learner."""
    learner = build_algorithm(config, model, device)
    learner = wrap_learner(config.exploration, learner, obs_space, action_space, device)
    return wrap_world_model(
        config.world_model,
        learner,
        model,
        obs_space,
        action_space,
        device,
        gamma=float(getattr(config.algorithm, "gamma", 0.99)),
        seed=config.run.seed,
    )


def build_trainer(
    config: Config,
    address: str,
    run_dir: Path | None = None,
    stop: StopFlag | None = None,
    resume: bool = False,
    *,
    run_token: str | None = None,
    live: bool = True,
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS,
    on_report: Callable[[dict[str, Any]], None] | None = None,
) -> Trainer:
    """The trainer role wired for real: env spaces, components, a ZeroMQ connection."""
    set_torch_threads(config.trainer.torch_threads)
    torch.manual_seed(config.run.seed)
    device = torch.device(config.trainer.device)
    # the spaces come from an env instance: cheap for the simulator; a game env will need
    # its spaces without a game running on the trainer's machine (the bridge issue)
    env = build_env(config)
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    model = build_model(config, obs_space, action_space)
    learner = build_learner(config, model, obs_space, action_space, device)
    memory = build_memory(config, obs_space, action_space, device)
    stop = stop or NeverStop()
    return Trainer(
        config,
        memory=memory,
        learner=learner,
        model=model,
        spec=wire_spec(obs_space, action_space, config.worker.compact_frames),  # type: ignore[arg-type]
        connect=connector(config, address, "trainer", "trainer", stop, run_token, send_timeout_ms),
        address=address,
        run_dir=run_dir,
        stop=stop,
        resume=resume,
        live=live,
        on_report=on_report,
    )


def run_trainer(
    config: Config,
    address: str,
    run_dir: Path | None = None,
    stop: StopFlag | None = None,
    resume: bool = False,
    *,
    run_token: str | None = None,
    on_report: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Entry point of the trainer role (process target and CLI)."""
    trainer = build_trainer(
        config, address, run_dir, stop, resume, run_token=run_token, on_report=on_report
    )
    return trainer.run()

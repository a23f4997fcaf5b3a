"""The trainer: fills the replay memory from the server, updates, publishes weights.

Flow control: the trainer grants the server ``credit`` chunks ahead and renews it as it
consumes them, so experience never piles up unbounded in the trainer. Updates are capped at
``max_updates_per_sample`` times the samples received (it waits for data rather than
over-fitting a small memory); weights go out every ``publish_every_updates`` updates, or
every ``publish_every_s`` seconds when that is set and the weights changed since (a slow
learner, e.g. big images on a CPU, still refreshes its workers' policy on time).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from tmrl2.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from tmrl2.config.load import dump_config
from tmrl2.config.schema import Config
from tmrl2.envs.factory import build_env
from tmrl2.memory.compact import expand_chunk
from tmrl2.memory.recorder import TrajectoryWriter, load_into
from tmrl2.net.codec import Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.common import NeverStop, StopFlag, connect, set_torch_threads
from tmrl2.roles.components import build_algorithm, build_memory, build_model
from tmrl2.telemetry.progress import ProgressReporter, RateMeter

log = logging.getLogger(__name__)

TRAJECTORIES_NAME = "trajectories.h5"
"""HDF5 file of the received transitions (``trainer.record_trajectories``)."""
MEMORY_DIR = "memory"
"""Folder of the saved replay memory inside the run folder."""

UPDATE_BURST_S = 0.05
"""Longest stretch of updates between two looks at the socket."""


class Trainer:
    """Memory + algorithm + one connection to the server."""

    def __init__(
        self,
        config: Config,
        address: str,
        run_dir: Path | None = None,
        stop: StopFlag | None = None,
        resume: bool = False,
        live: bool = True,
    ) -> None:
        self.config = config
        self.cfg = config.trainer
        self.address = address
        self.run_dir = run_dir
        self.stop = stop or NeverStop()
        set_torch_threads(self.cfg.torch_threads)
        torch.manual_seed(config.run.seed)
        self.device = torch.device(self.cfg.device)
        # the spaces come from an env instance: cheap for the simulator; a game env will need
        # its spaces without a game running on the trainer's machine (the bridge issue)
        env = build_env(config)
        obs_space, action_space = env.observation_space, env.action_space
        env.close()
        self.model = build_model(config, obs_space, action_space)
        self.algo = build_algorithm(config, self.model, self.device)
        self.memory = build_memory(config, obs_space, action_space, self.device)
        self.batch_size = int(getattr(config.algorithm, "batch_size", 256))
        self._feed_priorities = bool(getattr(self.memory, "wants_priorities", False))
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
        self.last_episode: dict[str, Any] | None = None
        self.last_losses: dict[str, float] = {}
        self.elapsed_before_s = 0.0
        self._start = time.monotonic()
        if resume and run_dir is not None and (run_dir / CHECKPOINT_NAME).is_file():
            self._restore(run_dir / CHECKPOINT_NAME)
        self.reporter = ProgressReporter(run_dir / "metrics.jsonl" if run_dir else None, live=live)
        self._sample_rate, self._update_rate = RateMeter(), RateMeter()
        log.info(
            "replay memory: %s bytes per transition",
            getattr(self.memory, "bytes_per_transition", "?"),
        )

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        """Train until the stop flag, ``run.steps`` or ``run.minutes``; return the summary."""
        client = connect(self.config, self.address, "trainer", "trainer", self.stop)
        self._start = time.monotonic()
        last_report = last_ckpt = self._start
        last_publish_updates = self.counters["updates"]
        last_publish_t = time.monotonic()
        client.send(Message("credit", {"n": self.cfg.credit}, {}))
        if self.counters["updates"]:
            self._publish(client)
        try:
            while not self._done():
                consumed = self._drain(client, timeout_ms=0 if self._can_update() else 10)
                if consumed:
                    client.send(Message("credit", {"n": consumed}, {}))
                self._update_burst()
                updates, now = self.counters["updates"], time.monotonic()
                if self._publish_due(updates - last_publish_updates, now - last_publish_t):
                    self._publish(client)
                    last_publish_updates, last_publish_t = updates, now
                if now - last_report >= self.config.run.log_every_s:
                    self.reporter.report(self.metrics())
                    last_report = now
                if now - last_ckpt >= self.cfg.checkpoint_every_s:
                    self.save()
                    last_ckpt = now
        finally:
            self.save()
            self._publish(client)
            client.send(Message("bye", {}, {}))
            client.close()
            if self.recorder is not None:
                self.recorder.close()  # drains the queue: a clean stop loses no episode
            self.reporter.report(self.metrics())
            self.reporter.close()
        summary = self.metrics()
        if self.run_dir:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _done(self) -> bool:
        run = self.config.run
        if self.stop.is_set():
            return True
        if run.steps and self.counters["samples"] >= run.steps:
            return True
        return bool(run.minutes and time.monotonic() - self._start >= run.minutes * 60)

    def _elapsed(self) -> float:
        return self.elapsed_before_s + time.monotonic() - self._start

    def _can_update(self) -> bool:
        c = self.counters
        return (
            len(self.memory) >= max(self.cfg.start_samples, 1)
            and c["updates"] < self.cfg.max_updates_per_sample * c["samples"]
        )

    def _drain(self, client: ClientSocket, timeout_ms: int) -> int:
        consumed = 0
        msg = client.recv(timeout_ms=timeout_ms)
        while msg is not None:
            if msg.kind == "chunk":
                self._ingest(msg)
                consumed += 1
            elif msg.kind == "welcome":  # rejoined a restarted server: credit starts over
                client.send(Message("credit", {"n": self.cfg.credit}, {}))
                log.warning("rejoined the server; re-sent credit")
            msg = client.recv(timeout_ms=0)
        return consumed

    def _ingest(self, msg: Message) -> None:
        arrays = expand_chunk(msg.arrays)  # image histories may arrive once per frame
        self.memory.append(arrays)
        if self.recorder is not None:
            worker = str(msg.meta.get("worker", ""))
            source = self._sources.setdefault(worker, len(self._sources))
            self.recorder.append(arrays, source)
        self.counters["samples"] += int(msg.meta["n"])
        self.counters["chunks"] += 1
        self.counters["worker_policy_version"] = max(
            self.counters["worker_policy_version"], int(msg.meta.get("policy_version", 0))
        )
        for episode in msg.meta.get("episodes", []):
            self.counters["episodes"] += 1
            self.last_episode = episode
            lap = episode.get("lap_time_s")
            if episode.get("finished") and lap is not None:
                self.counters["finishes"] += 1
                if self.best_lap_s is None or lap < self.best_lap_s:
                    self.best_lap_s = float(lap)

    def _update_burst(self) -> None:
        deadline = time.monotonic() + UPDATE_BURST_S
        while self._can_update() and time.monotonic() < deadline:
            batch = self.memory.sample(self.batch_size)
            self.last_losses = self.algo.update(batch)
            td_error = getattr(self.algo, "last_td_error", None)
            if self._feed_priorities and td_error is not None:
                self.memory.update_priorities(batch.indices, td_error)
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

    def _publish(self, client: ClientSocket) -> None:
        self.counters["weights_version"] += 1
        meta = {"version": self.counters["weights_version"], "updates": self.counters["updates"]}
        client.send(Message("weights", meta, self.algo.actor_weights()))

    # ------------------------------------------------------------------ state
    def metrics(self) -> dict[str, Any]:
        c = self.counters
        last = self.last_episode or {}
        return {
            **c,
            "elapsed_s": round(self._elapsed(), 2),
            "samples_per_s": self._sample_rate.rate(c["samples"]),
            "updates_per_s": self._update_rate.rate(c["updates"]),
            "last_return": last.get("return"),
            "last_progress": last.get("progress_frac", 0.0),
            "best_lap_s": self.best_lap_s,
            "memory_size": len(self.memory),
            **{f"loss/{k}": v for k, v in self.last_losses.items()},
            **{f"reward/{k}": v for k, v in last.get("terms", {}).items()},
        }

    def save(self) -> None:
        """Write the checkpoint atomically (no-op without a run folder)."""
        if self.run_dir is None:
            return
        payload = {
            "algorithm": self.algo.state_dict(),
            "actor": self.model.actor.state_dict(),
            "counters": dict(self.counters),
            "best_lap_s": self.best_lap_s,
            "elapsed_s": self._elapsed(),
            "config": dump_config(self.config),
        }
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, payload)
        if self.cfg.save_memory and hasattr(self.memory, "save"):
            self.memory.save(self.run_dir / MEMORY_DIR)

    def _restore(self, path: Path) -> None:
        payload = load_checkpoint(path)
        self.algo.load_state_dict(payload["algorithm"])
        self.counters.update(payload["counters"])
        self.best_lap_s = payload.get("best_lap_s")
        self.elapsed_before_s = float(payload.get("elapsed_s", 0.0))
        if self.cfg.save_memory and (path.parent / MEMORY_DIR).is_dir():
            self.memory.load(path.parent / MEMORY_DIR)
            log.info("reloaded %d transitions into the replay memory", len(self.memory))
        log.info("resumed from %s at %d updates", path, self.counters["updates"])


def run_trainer(
    config: Config,
    address: str,
    run_dir: Path | None = None,
    stop: StopFlag | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Entry point of the trainer role (process target and CLI)."""
    return Trainer(config, address, run_dir, stop, resume).run()

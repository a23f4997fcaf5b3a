"""The typed, frozen config tree of a run. Every field is documented where it is declared.

Component sections (``env``, ``reward``, ``memory``, ``model``, ``algorithm``,
``exploration``, ``world_model``) are typed as
:class:`ComponentConfig` here and validated against the chosen component's own ``Config`` model
by :mod:`tmrl2.config.load`; the other sections are fixed models below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from tmrl2.config.base import ComponentConfig, FrozenModel

if TYPE_CHECKING:
    from tmrl2.net.keys import ServerCurve

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest message accepted by default (the codec's ``DEFAULT_MAX_BYTES``; a test holds them
equal). Defined here so that loading a config never imports pyzmq."""

DEFAULT_KINDS: dict[str, str] = {
    "env": "sim",
    "reward": "terms",
    "memory": "ring",
    "model": "mlp",
    "algorithm": "sac",
    "exploration": "none",
    "world_model": "none",
}
"""The component each section names when its ``kind`` is left out."""


def migrate_renamed(raw: dict[str, Any]) -> list[str]:
    """Rewrite the keys of earlier versions in a parsed config tree, in place (a run folder's
    resolved config, an old YAML file), and say what was rewritten:
    ``worker.max_steps_per_update: X`` (steps per update) is ``trainer.updates_per_step:
    1/X`` (0: ``worker.pace: false``), unless that is set; ``trainer.max_updates_per_sample``
    (a cap on the trainer alone) is dropped: ``updates_per_step`` caps both sides."""
    notes: list[str] = []
    worker, trainer = raw.get("worker"), raw.get("trainer")
    if isinstance(worker, dict) and "max_steps_per_update" in worker:
        old = worker.pop("max_steps_per_update")
        if not isinstance(trainer, dict):
            trainer = raw["trainer"] = {} if trainer is None else trainer
        try:
            steps = float(old)
        except (TypeError, ValueError):
            steps = -1.0
        if steps == 0:
            worker.setdefault("pace", False)
        elif steps > 0 and isinstance(trainer, dict):
            trainer.setdefault("updates_per_step", 1.0 / steps)
        notes.append(
            f"worker.max_steps_per_update: {old} is now trainer.updates_per_step "
            f"({'worker.pace: false' if steps == 0 else f'{1.0 / steps:g}' if steps > 0 else '?'})"
        )
    if isinstance(trainer, dict) and "max_updates_per_sample" in trainer:
        old = trainer.pop("max_updates_per_sample")
        notes.append(
            f"trainer.max_updates_per_sample: {old} was dropped: trainer.updates_per_step "
            "caps the trainer and paces the workers"
        )
    return notes


class ServerConfig(FrozenModel):
    """The broker between the workers and the trainer."""

    host: str = "127.0.0.1"
    """Interface to bind: ``127.0.0.1`` for one machine, ``0.0.0.0`` to accept remote roles."""
    port: int = Field(default=55555, ge=0, le=65535)
    """TCP port to bind (0 = any free port; the server reports the one it got)."""
    max_queued_chunks: int = Field(default=512, gt=0)
    """Chunks kept while the trainer has no credit; beyond, the oldest is dropped (counted)."""
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    """Largest message accepted (all frames); larger ones are dropped as malformed."""
    worker_credit: int = Field(default=8, gt=0)
    """Chunks a worker may have in flight (sent, not yet forwarded to the trainer) before it
    waits: backpressure, so that fast workers slow down rather than fill the queue."""
    secret_key: Path | None = None
    """The server's ``.key_secret`` file (``tmrl2 keys server``): turns on CurveZMQ
    encryption and client authentication. None: plaintext (loopback only by default)."""
    authorized_keys: Path | None = None
    """Folder of the workers' public ``.key`` files (or one such file) allowed to connect;
    other keys are refused and logged. Needs ``secret_key``."""
    trainer_keys: Path | None = None
    """Folder of the public ``.key`` files (or one such file) allowed to act as the trainer
    (they may connect too). With Curve on and ``authorized_keys`` set, a trainer ``hello``
    from any other key is refused (code ``role``): a worker's key cannot take the experience
    stream or publish weights. Needs ``secret_key``."""
    allow_insecure: bool = False
    """Bind a non-loopback ``host`` without keys anyway (plaintext, anyone reaching the port
    may connect): only on a network you trust."""
    run_token: str | None = Field(default=None, max_length=128)
    """Refuse clients whose ``hello`` carries another run token (or none): they belong to
    another run. ``tmrl2 train`` makes a random one per run; None: not checked."""
    peer_ttl_s: float = Field(default=600.0, gt=0)
    """Per-peer records (worker counters by name, recent sessions, hello rates) of peers not
    seen for this long are pruned, so that the server's memory stays bounded."""
    max_peers: int = Field(default=4096, gt=0)
    """Most per-worker counter entries kept; beyond, the longest unseen are pruned."""
    hello_rate_per_s: float = Field(default=2.0, gt=0)
    """Hellos per second one client identity may send on average (a token bucket of
    ``hello_burst``); beyond, its hellos are refused with code ``rate``."""
    hello_burst: int = Field(default=20, gt=0)
    """Hellos one client identity may send at once before ``hello_rate_per_s`` applies."""

    def curve(self) -> ServerCurve | None:
        """The server's Curve keys from the files named here; None when ``secret_key`` is
        unset. Raises :class:`SecurityError` for a missing or malformed file."""
        from tmrl2.net.errors import SecurityError
        from tmrl2.net.keys import ServerCurve

        if self.secret_key is None:
            for name in ("authorized_keys", "trainer_keys"):
                if getattr(self, name) is not None:
                    raise SecurityError(f"server.{name} is set but server.secret_key is not")
            return None
        return ServerCurve.from_files(self.secret_key, self.authorized_keys, self.trainer_keys)


class RunConfig(FrozenModel):
    """What the run is called, where it writes, and when it stops."""

    name: str = "sim_lidar"
    """Run name; the run folder is ``<dir>/<name>``."""
    dir: Path = Path("runs")
    """Parent folder of run folders (checkpoints, resolved config, metrics)."""
    seed: int = 0
    """Seed of the env, the sampler and the networks' initialization."""
    steps: int = Field(default=0, ge=0)
    """Stop after this many env steps have reached the trainer (0 = no step limit)."""
    minutes: float = Field(default=0.0, ge=0)
    """Stop after this many minutes of wall clock (0 = no time limit)."""
    log_every_s: float = Field(default=1.0, gt=0)
    """Period of the progress line and of the metrics written to ``metrics.jsonl``."""
    eval_episodes: int = Field(default=1, ge=0)
    """Deterministic evaluation episodes driven at the end of ``tmrl2 train`` (0 = none)."""
    stall_timeout_s: float = Field(default=300.0, ge=0)
    """``tmrl2 train`` stops the run (exit code 1, one line saying so) when no new sample has
    reached the trainer for this long, counted from the start: workers stuck or cut off
    should not hold a machine for hours with nothing to show (0 = never). Standalone roles
    wait for each other as long as it takes."""
    eval_every_updates: int = Field(default=0, ge=0)
    """Evaluation during training (``tmrl2 train`` only): evaluate the newest checkpoint once
    it is this many updates past the last one evaluated (0 = off; with ``eval_every_min``,
    whichever comes first). A separate process at the lowest CPU priority drives it, so
    training never waits for it; it sees checkpoints only (``trainer.checkpoint_every_s``).
    Results go to ``<run>/eval.jsonl`` and TensorBoard's ``eval/`` tags, the best policy to
    ``<run>/best.pt`` (docs/logging.md)."""
    eval_every_min: float = Field(default=10.0, ge=0)
    """Also evaluate the newest checkpoint when this many minutes passed since the last
    evaluation (0 = off). On by default because it is cheap: one episode per evaluation track
    every 10 minutes (under a second of CPU for the default job, at the lowest priority),
    and the evaluator process is started only shortly before its first evaluation is due,
    so a run shorter than that has none."""
    eval_during_episodes: int = Field(default=1, ge=1)
    """Deterministic episodes per evaluation track in each evaluation during training (the
    same tracks and seeds every time, so that evaluations compare)."""
    keep_checkpoints: int = Field(default=3, ge=0)
    """Besides ``checkpoint.pt``, keep the last this many checkpoints as
    ``<run>/checkpoints/ckpt-<updates>.pt`` (hard links where the filesystem allows: no copy
    until the next checkpoint replaces the file); older ones are deleted, ``best.pt`` never
    (0 = no history)."""


class ClientConfig(FrozenModel):
    """How a worker or the trainer reaches the server."""

    server: str = "127.0.0.1"
    """Host of the server to connect to."""
    connect_timeout_s: float = Field(default=30.0, gt=0)
    """Give up when the server has not answered the hello within this time."""
    server_key: Path | None = None
    """The server's public ``.key`` file: turns on CurveZMQ (needs ``secret_key`` too)."""
    secret_key: Path | None = None
    """This machine's ``.key_secret`` file (``tmrl2 keys <name>``); its ``.key`` must be in
    the server's ``authorized_keys``."""


class WorkerConfig(ClientConfig):
    """A rollout worker: acts in its env with the latest policy and streams experience."""

    name: str = "worker"
    """Name reported to the server (unique among the run's workers; local extra workers
    get ``-1``, ``-2``... appended)."""
    count: int = Field(default=1, gt=0)
    """Worker processes started by ``tmrl2 train`` on this machine."""
    envs: int = Field(default=1, ge=1, le=4096)
    """Simulator cars stepped together in each worker process (``env.kind: sim`` only):
    one batched simulator step and one batched policy forward per step for all of them, each
    car with its own episodes and track; the chunks stay per car (docs/vectorized.md). 1: a
    plain env."""
    sim_threads: int = Field(default=1, ge=1, le=256)
    """Threads stepping the simulator's cars (``envs > 1``; numba threads, at most the
    machine's cores): the same results as 1, in less wall clock where cores are free. Keep 1
    where the trainer or other workers share the machine's cores."""
    chunk_steps: int = Field(default=100, gt=0)
    """Transitions per chunk sent to the server (per car with ``envs > 1``: a message then
    carries ``envs x chunk_steps`` transitions)."""
    random_steps: int = Field(default=2000, ge=0)
    """Uniform random actions before the first weights arrive (exploration warm-up)."""
    pace: bool = True
    """Fast mode only: wait for the trainer when the steps would exceed its
    ``trainer.updates_per_step`` (the trainer's value, sent in its state: one setting for
    every worker). ``false``: never wait (collection benchmarks; the trainer still caps its
    updates). Real time never waits."""
    torch_threads: int = Field(default=1, gt=0)
    """Torch threads for policy inference (1 is fastest for batch-1 MLPs)."""
    compression: Literal["none", "lz4"] = "none"
    """Compression of the chunks sent (``lz4`` pays off for images on slow links)."""
    compact_frames: bool = True
    """Send each frame of an image history once per chunk, with index histories (about 8x
    fewer bytes for 4 frames); the trainer expands them (see ``tmrl2.memory.compact``)."""


class TrainerConfig(ClientConfig):
    """The learner: receives experience, updates the networks, publishes weights."""

    device: str = "cpu"
    """Torch device of the learner (``cpu``, ``cuda``, ``cuda:1``): the actor, the replay
    memory's batches, and the critics unless ``critic_device`` says otherwise."""
    critic_device: str | None = None
    """Torch device of the critics and their targets when they should sit elsewhere than
    ``device`` (two GPUs: ``device: cuda:0``, ``critic_device: cuda:1`` puts a REDQ ensemble
    on its own GPU); ``null``: on ``device``. MLP models only (the CNN's encoder is shared)."""
    torch_threads: int = Field(default=1, gt=0)
    """Torch threads of the learner (1 holds up best on a busy 2-core machine)."""
    start_samples: int = Field(default=2000, ge=0)
    """Updates start once the memory holds this many transitions."""
    updates_per_step: float = Field(default=0.5, gt=0, le=1000)
    """The update-to-data ratio: gradient updates per env step reaching the trainer, counted
    from ``start_samples`` on (0.5: one update every two steps; 1: SB3's and CleanRL's SAC;
    20: REDQ). In fast mode both sides honour it: the trainer waits for data beyond it, and
    the workers (``worker.pace``) wait for the trainer, so the ratio holds whichever side is
    faster. In real time the env sets the pace: the trainer does at most this many. The
    progress line shows the measured ratio (``upd/step``)."""
    publish_every_updates: int = Field(default=200, gt=0)
    """Weights are sent to the workers every this many updates."""
    publish_every_s: float = Field(default=0.0, ge=0)
    """Also publish every this many seconds when the weights changed since (0: off): keeps
    workers fresh when updates are slow (images on a CPU)."""
    checkpoint_every_s: float = Field(default=60.0, gt=0)
    """Period of the atomic checkpoint written to the run folder."""
    save_memory: bool = False
    """Also save the replay memory (raw arrays, ``<run>/memory/``) with each checkpoint, and
    reload it on resume (costs disk and time for large memories)."""
    record_trajectories: bool = False
    """Write every transition received to ``trajectories.h5`` in the run folder, on a
    background thread (HDF5; read back with ``preload``; see docs/memory.md)."""
    preload: list[str] = []
    """HDF5 trajectory files loaded into the replay memory at start-up (offline pre-training,
    demonstrations); they must match the env's observation and action spaces."""
    credit: int = Field(default=16, gt=0)
    """Chunks the trainer lets the server send ahead of consumption (flow control)."""


class WandbConfig(FrozenModel):
    """Weights & Biases logging (opt-in; ``pip install tmrl2[wandb]``): the same scalars as
    TensorBoard, one W&B run per run folder (docs/logging.md).

    The API key comes from the environment only (``WANDB_API_KEY``), never from a config
    file: this section has no ``api_key`` field, so a config that sets one fails validation
    (unknown key) and no key ever reaches the run folder's resolved config."""

    project: str = Field(default="tmrl2", min_length=1)
    """W&B project the run goes to."""
    entity: str | None = None
    """W&B user or team owning the project (None: the API key's default entity)."""
    group: str | None = None
    """W&B group, to show related runs together (e.g. the seeds of one experiment)."""
    mode: Literal["online", "offline", "disabled"] = "offline"
    """``offline``: write the run under ``<run>/wandb/`` with no network (upload later with
    ``wandb sync``); ``online``: stream to the W&B server (needs ``WANDB_API_KEY`` in the
    environment; the trainer refuses to start without it); ``disabled``: no W&B at all."""


class AlarmConfig(FrozenModel):
    """The trainer's alarms (docs/logging.md, "Alarms"): each fires once when its condition
    starts and once when it clears; shown in the progress line (``ALARM: <kind>``), logged,
    written to ``<run>/alarms.jsonl`` and POSTed to ``webhook_url``. NaN or infinite losses
    or weights always stop the trainer (no key: the last good checkpoint is kept)."""

    q_abs_max: float = Field(default=1e4, ge=0)
    """``exploding_q``: the learner's mean Q value (``loss/q_mean``) beyond this in absolute
    value (0 = off). |Q| stays near ``max |reward| / (1 - gamma)``: raise it for large reward
    scales or a gamma close to 1."""
    no_samples_s: float = Field(default=60.0, ge=0)
    """``no_samples``: no new sample reached the trainer for this long, counted from its first
    report (0 = off). ``run.stall_timeout_s`` later stops a ``tmrl2 train`` run."""
    worker_lost_s: float = Field(default=120.0, ge=0)
    """``worker_lost``: a worker that sent chunks was not heard from for this long (one alarm
    per worker name, cleared when it is back; 0 = off). Raise it when many paced workers share
    a slow trainer (each then sends a chunk only every so often)."""
    policy_lag_max: int = Field(default=50, ge=0)
    """``policy_lag``: the newest published weights version minus the newest one a worker
    acted with, above this (0 = off): workers do not receive or apply new weights."""
    dropped_chunks: bool = True
    """``dropped_chunks``: chunks or episode records rejected by the trainer, or samples lost
    on the way (the ingest counters ``rejected_chunks``, ``rejected_episodes``,
    ``samples_lost``) grew; cleared after a minute without new ones."""
    return_stall_min: float = Field(default=0.0, ge=0)
    """``return_stall``: the mean return of the last 100 episodes made no new best for this
    many minutes (0 = off: a run that has converged stalls too; set e.g. 30 to be told)."""
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    """POST every alarm (raised and cleared) as JSON to this ``http(s)://`` URL, on a
    background thread with a short timeout; a failing hook is logged once and never stops
    training (None: no webhook). The JSON has a ``text`` line (Slack-style hooks show it)."""


class LoggingConfig(FrozenModel):
    """Where the trainer's metrics go, besides the console line (docs/logging.md)."""

    jsonl: bool = True
    """Append every report to ``<run>/metrics.jsonl`` (``tmrl2 report`` reads it)."""
    tensorboard: bool = True
    """Write TensorBoard event files to ``<run>/tb/`` (``tensorboard --logdir runs``)."""
    wandb: WandbConfig | None = None
    """Weights & Biases settings (None: off), e.g. ``{project: evo, mode: offline}``."""
    alarms: AlarmConfig = AlarmConfig()
    """The trainer's alarms: exploding Q, no samples, a worker lost, policy lag, dropped
    chunks, a stalled return, and where they go (``webhook_url``)."""


class Config(FrozenModel):
    """The whole run: one YAML file, every section optional (defaults are the sim job).

    Build it with :func:`tmrl2.load_config`, which validates the component sections against
    their components' own models (they are subclasses of :class:`ComponentConfig`).
    """

    run: RunConfig = RunConfig()
    server: ServerConfig = ServerConfig()
    worker: WorkerConfig = WorkerConfig()
    trainer: TrainerConfig = TrainerConfig()
    logging: LoggingConfig = LoggingConfig()
    """Metrics sinks: ``metrics.jsonl``, TensorBoard, W&B (docs/logging.md)."""
    env: ComponentConfig
    reward: ComponentConfig | None
    """The reward computed from the env's telemetry; None for an env that brings its own
    reward (``provides_reward = True``, e.g. ``env.kind: gym``), which takes no reward
    section."""
    memory: ComponentConfig
    model: ComponentConfig
    algorithm: ComponentConfig
    exploration: ComponentConfig
    """Exploration beyond the learner's own (``none``): ``rnd`` or ``icm`` (an intrinsic
    reward in the trainer's critic target), ``param_noise`` (perturbed actor weights in the
    workers), or an import path (docs/exploration.md)."""

    @field_validator("exploration")
    @classmethod
    def _exploration_side(cls, value: ComponentConfig) -> ComponentConfig:
        """The component must say where it runs (trainer or worker), at load time."""
        from tmrl2.config.registry import resolve
        from tmrl2.exploration.base import component_side

        component_side(resolve("exploration", value.kind), value)
        return value

    world_model: ComponentConfig
    """A learned dynamics model (``none``): ``mbpo`` trains an ensemble in the trainer, mixes
    its rollouts into the learner's batches and can give MPC hints (docs/world_model.md)."""

    @model_validator(mode="after")
    def _world_model_fits(self) -> Config:
        """``world_model.mpc.mode: explore`` plans in the single-car worker only."""
        mpc = getattr(self.world_model, "mpc", None)
        if getattr(mpc, "mode", None) == "explore" and self.worker.envs > 1:
            raise ValueError(
                "world_model.mpc.mode explore needs worker.envs 1 (the vectorized worker does "
                "not plan); use mode guide, or worker.count for several workers"
            )
        return self

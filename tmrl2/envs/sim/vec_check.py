"""Whether a config can run vectorized workers (``worker.envs > 1``): light, no simulator import.

:func:`check_worker_envs` reads attributes only (it imports neither numba nor torch), so a
config loader or a launcher can call it before any process starts; it raises a one-line
``ValueError`` naming the key and the fix. The batch itself (:mod:`tmrl2.envs.sim.vec`) and the
worker (:func:`tmrl2.roles.worker.build_worker`) apply the same checks.
"""

from __future__ import annotations

from typing import Any


def check_batch_config(env: Any) -> None:
    """Raise a one-line ``ValueError`` naming the first simulator setting of ``env`` (a
    ``SimEnvConfig``) that the batch of cars does not support."""
    unsupported = [
        ("image", True, "the batch observes LIDAR only", "env.image: false"),
        ("lidar", False, "the batch observes LIDAR", "env.lidar: true"),
        ("realtime", True, "the batch runs in fast mode", "env.realtime: false"),
        ("on_stuck", "respawn", "the batch restarts stalled episodes", "env.on_stuck: restart"),
    ]
    for key, bad, why, fix in unsupported:
        value = getattr(env, key, None)
        if value == bad:
            shown = str(value).lower() if isinstance(value, bool) else value
            raise ValueError(
                f"env.{key}: {shown} is not supported with worker.envs > 1 ({why}): set {fix} "
                "or worker.envs: 1"
            )


def check_worker_envs(config: Any) -> None:
    """Raise a one-line ``ValueError`` when ``config.worker.envs > 1`` cannot run: another
    env than the simulator (``env.kind`` must be ``sim``), or a simulator setting the batch
    does not support (:func:`check_batch_config`); or when ``worker.sim_threads > 1`` has no
    batch to split."""
    envs = config.worker.envs
    threads = getattr(config.worker, "sim_threads", 1)
    if envs <= 1 and threads > 1:
        raise ValueError(
            f"worker.sim_threads: {threads} splits the cars of a batch (worker.envs > 1), and "
            "worker.envs is 1: set worker.sim_threads: 1, or worker.envs to the cars per worker"
        )
    if envs <= 1:
        return
    kind = getattr(config.env, "kind", "?")
    if kind != "sim":
        raise ValueError(
            f"worker.envs: {envs} needs env.kind: sim (the batched simulator); env.kind is "
            f"{kind!r}: set worker.envs: 1"
        )
    check_batch_config(config.env)

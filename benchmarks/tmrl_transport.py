"""tmrl 0.7.1's transport, measured the way tmrl's own roles use it. Runs in tmrl's venv.

``bench_transport.py`` runs this file with tmrl's interpreter and ``HOME`` set to the tmrl
baseline's data folder of the matching env (``home_lidar``: TM20LIDAR, ``home_full``: TM20FULL
images; ``/work/shared/tools/install_tmrl_baseline.sh``)::

    python tmrl_transport.py OBS WORKERS SECONDS PACE_MS BUFFER_SAMPLES

and reads one JSON line: ``samples_per_s`` (median of 0.25 s windows; 0.0 when nothing
arrived, which the caller reports as a failed measurement), ``buffer_bytes`` (one pickled
buffer) and ``bytes_per_sample``.

What is tmrl's own here, not a copy of it:

- **the samples**: each step's observation is built as tmrl's TM20 env returns it (speed, a
  4 x 19 LIDAR history or speed, gear, rpm and a 4 x 64 x 64 uint8 frame history, then
  rtgym's buffer of the 2 previous actions), passed through the config's
  ``OBS_PREPROCESSOR`` and ``SAMPLE_COMPRESSOR`` (``tmrl.config.config_objects``), and
  appended to a ``tmrl.networking.Buffer``: exactly ``RolloutWorker.step``'s path. The
  compressor keeps the newest LIDAR scan or the newest frame per sample (and drops the
  action buffer, which tmrl's memory rebuilds), so each scan or frame travels once.
- **the transport**: a tlspyo ``Relay`` with tmrl's groups (``trainers`` max 1, ``workers``),
  worker ``Endpoint``s as ``RolloutWorker`` makes them (``deserializer_mode="synchronous"``)
  calling ``produce(buffer, "trainers")`` as ``send_and_clear_buffer`` does, and the
  trainer's ``Endpoint`` doing ``receive_all`` + ``notify(groups={"trainers": -1})`` as
  ``TrainerInterface.retrieve_buffer`` does (continuously here, not between training rounds:
  this favours tmrl), header size 12 and tmrl's max buffer length, no TLS.

Pacing: tmrl's workers have no flow control. ``PACE_MS`` 0 is a flood (each worker produces
as fast as it can: with many workers they starve tlspyo's relay of CPU); ``PACE_MS`` > 0 makes
each worker wait that long after each buffer, like a worker that spends time in its env (a
real one at 20 steps/s sends one buffer per episode, far slower still).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import socket
import statistics
import sys
import time
from typing import Any

import numpy as np

WINDOW_S = 0.25
READY_TIMEOUT_S = 180.0
"""Longest wait for a worker to build its buffer (importing tmrl) and open its endpoint."""
HEADER_SIZE = 12
"""tmrl's ``HEADER_SIZE`` (config.json)."""
MAX_BUF_LEN = 536870912
"""tmrl's ``BUFFER_SIZE`` (config.json), its endpoints' ``max_buf_len``."""
COMPRESSORS = {
    "lidar": "get_local_buffer_sample_lidar",
    "image": "get_local_buffer_sample_tm20_imgs",
}
"""The sample compressor tmrl's config must pick for each kind of observation."""


def raw_obs(obs: str, rng: np.random.Generator, acts: list[np.ndarray]) -> tuple[Any, ...]:
    """One observation as tmrl's TM20 env returns it, rtgym's 2 previous actions appended."""
    if obs == "lidar":  # TM2020InterfaceLidar: speed, LIDAR history (img_hist_len x 19)
        own: tuple[Any, ...] = (
            np.array([rng.random() * 300], np.float32),
            rng.random((4, 19), dtype=np.float32) * 800,
        )
    else:  # TM2020Interface, grayscale 64 x 64: speed, gear, rpm, frame history (uint8)
        own = (
            np.array([rng.random() * 300], np.float32),
            np.array([float(rng.integers(0, 6))], np.float32),
            np.array([rng.random() * 10000], np.float32),
            rng.integers(0, 256, (4, 64, 64), dtype=np.uint8),
        )
    return (*own, *acts)


def tmrl_buffer(obs: str, seed: int, samples: int) -> Any:
    """A ``tmrl.networking.Buffer`` of ``samples`` samples built by tmrl's own preprocessor
    and compressor, as a ``RolloutWorker`` fills it (``HOME`` must hold the matching config)."""
    from tmrl.config import config_objects as cfg_obj
    from tmrl.networking import Buffer

    compressor = cfg_obj.SAMPLE_COMPRESSOR
    if compressor.__name__ != COMPRESSORS[obs]:
        raise RuntimeError(f"tmrl's config uses {compressor.__name__} for {obs!r}: wrong HOME")
    rng = np.random.default_rng(seed)
    acts = [np.zeros(3, np.float32), np.zeros(3, np.float32)]
    buffer = Buffer()
    for step in range(samples):
        act = (rng.random(3, dtype=np.float32) * 2 - 1).astype(np.float32)
        acts = [*acts[1:], act]
        new_obs = cfg_obj.OBS_PREPROCESSOR(raw_obs(obs, rng, acts))
        truncated = step == samples - 1
        buffer.append_sample(compressor(act, new_obs, float(rng.random()), False, truncated, {}))
    return buffer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def endpoint(port: int, group: str, **extra: Any) -> Any:
    from tlspyo import Endpoint

    return Endpoint(
        ip_server="127.0.0.1",
        port=port,
        password="bench",
        groups=group,
        local_com_port=free_port(),
        header_size=HEADER_SIZE,
        max_buf_len=MAX_BUF_LEN,
        security=None,
        **extra,
    )


def worker(port: int, obs: str, seed: int, samples: int, pace_s: float, flags: Any) -> None:
    """A rollout worker's sending side: the same buffer, produced from ``go`` to ``stop``."""
    ready, go, stop = flags
    buffer = tmrl_buffer(obs, seed, samples)  # imports tmrl's config: seconds on a busy machine
    sender = endpoint(port, "workers", deserializer_mode="synchronous")
    ready.put(seed)
    go.wait()
    while not stop.is_set():
        sender.produce(buffer, "trainers")
        if pace_s > 0:
            time.sleep(pace_s)
    sender.stop()


def measure(obs: str, workers: int, seconds: float, pace_ms: float, samples: int) -> dict:
    """Samples/s through a tlspyo Relay from ``workers`` worker processes to one trainer."""
    import pickle

    from tlspyo import Relay

    port = free_port()
    groups = {
        "trainers": {"max_count": 1, "max_consumables": None},
        "workers": {"max_count": workers, "max_consumables": None},
    }
    relay = Relay(
        port=port,
        password="bench",
        accepted_groups=groups,
        local_com_port=free_port(),
        header_size=HEADER_SIZE,
        security=None,
    )
    trainer = endpoint(port, "trainers")
    size = len(pickle.dumps(tmrl_buffer(obs, 0, samples)))
    ctx = mp.get_context("spawn")
    flags = (ctx.Queue(), ctx.Event(), ctx.Event())
    args = [(port, obs, i, samples, pace_ms / 1000, flags) for i in range(workers)]
    procs = [ctx.Process(target=worker, args=a) for a in args]  # they start processes
    for proc in procs:
        proc.start()
    try:
        for _ in procs:  # every worker built its buffer and opened its endpoint
            flags[0].get(timeout=READY_TIMEOUT_S)
    except queue.Empty:
        flags[2].set()
        flags[1].set()
        error = f"{sum(not p.is_alive() for p in procs)} of {workers} workers died or hung"
    else:
        error = ""
    time.sleep(1.0 + 0.1 * workers)  # connections up (tlspyo connects in the background)
    flags[1].set()
    start = time.time() + 0.5  # the flow settles
    end = start if error else start + seconds
    received, marks, next_mark, notified = 0, [], start, 0.0
    while time.time() < end + 0.2:
        buffers = trainer.receive_all(blocking=False)
        received += sum(len(b) for b in buffers)
        if buffers or time.time() - notified > 0.1:  # a notify sent before the connection
            trainer.notify(groups={"trainers": -1})  # is up gets lost: repeat it
            notified = time.time()
        if not buffers:
            time.sleep(0.002)
        now = time.time()
        if next_mark <= end and now >= next_mark:
            marks.append((now, received))
            while next_mark <= now:
                next_mark += WINDOW_S
    flags[2].set()
    for proc in procs:
        proc.join(timeout=20)
        if proc.is_alive():
            proc.terminate()
    trainer.stop()
    relay.stop()
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(marks, marks[1:], strict=False)]
    return {
        "samples_per_s": statistics.median(rates) if rates else 0.0,
        "buffer_bytes": size,
        "bytes_per_sample": size / samples,
        "error": error,
    }


if __name__ == "__main__":
    obs, workers, seconds, pace_ms, samples = sys.argv[1:6]
    result = measure(obs, int(workers), float(seconds), float(pace_ms), int(samples))
    print(json.dumps(result), flush=True)

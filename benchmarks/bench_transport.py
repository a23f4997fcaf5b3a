"""Transport throughput: samples/s delivered through the server to a trainer, server CPU cost.

Setting: one process; the server runs in a thread; 1 then 4 worker threads stream LIDAR-sized
chunks of 100 transitions (obs = LIDAR 19 + speed 1 + 2 previous actions of 3, float32,
``obs/*`` and ``next_obs/*``, 3-D actions) as fast as they can; a consumer thread plays the
trainer: it grants credit ahead and renews it per chunk received. Figures:

- delivered samples/s at the trainer: the median over 0.25 s windows;
- server CPU per sample: ``time.thread_time()`` of the server thread over samples delivered;
- the anchor is the need of real-time training: one worker at 20 Hz makes 20 samples/s, so
  ``samples/s / 20`` is how many real-time workers one server keeps up with.

All threads share one interpreter (GIL) on a small machine, so the figures are a floor.
Run: ``python benchmarks/bench_transport.py`` (about 15 s).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time

import numpy as np

from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.server import Server, ServerConfig

CHUNK_STEPS = 100
REALTIME_SAMPLES_PER_S = 20.0
"""One real-time worker at the default 20 Hz step."""
CREDIT = 64
WINDOW_S = 0.25

OBS_SHAPES = {"lidar": (1, 19), "speed": (1,), "prev_actions": (2, 3)}


def make_chunk(worker: str, rng: np.random.Generator) -> Message:
    """A chunk following the wire contract, filled with random numbers."""
    n = CHUNK_STEPS
    arrays = {}
    for key, shape in OBS_SHAPES.items():
        for prefix in ("obs", "next_obs"):
            arrays[f"{prefix}/{key}"] = rng.random((n, *shape), dtype=np.float32)
    arrays["action"] = rng.random((n, 3), dtype=np.float32)
    arrays["reward"] = rng.random(n, dtype=np.float32)
    arrays["terminated"] = np.zeros(n, bool)
    arrays["truncated"] = np.zeros(n, bool)
    meta = {"worker": worker, "policy_version": 0, "n": n, "episodes": []}
    return Message("chunk", meta, arrays)


def join(address: str, role: str, name: str) -> ClientSocket:
    client = ClientSocket(address, identity=f"{role}-{name}")
    client.send(Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION}))
    reply = client.recv(timeout_ms=5000)
    if reply is None or reply.kind != "welcome":
        raise RuntimeError(f"{role} {name} was not welcomed: {reply}")
    return client


def worker_loop(address: str, name: str, stop: threading.Event) -> None:
    client = join(address, "worker", name)
    msg = make_chunk(name, np.random.default_rng(hash(name) % 2**32))
    try:
        while not stop.is_set():
            client.send(msg)
    finally:
        client.close()


class Trainer:
    """Consumes chunks, renews credit, and samples its delivered-samples counter."""

    def __init__(self, address: str) -> None:
        self.client = join(address, "trainer", "bench")
        self.samples = 0

    def loop(self, stop: threading.Event) -> None:
        self.client.send(Message("credit", {"n": CREDIT}))
        while not stop.is_set():
            consumed = 0
            msg = self.client.recv(timeout_ms=20)
            while msg is not None:
                self.samples += int(msg.meta["n"])
                consumed += 1
                msg = self.client.recv(timeout_ms=0)
            if consumed:
                self.client.send(Message("credit", {"n": consumed}))
        self.client.send(Message("bye"))
        self.client.close()


def measure(workers: int, seconds: float) -> dict[str, float]:
    server = Server(ServerConfig(port=0))
    address = f"tcp://127.0.0.1:{server.port}"
    stop_server, stop_trainer, stop_workers = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )
    cpu = {"start": 0.0, "now": 0.0}

    def serve() -> None:
        cpu["start"] = cpu["now"] = time.thread_time()
        while not stop_server.is_set():
            server.serve_once(50)
            cpu["now"] = time.thread_time()

    server_thread = threading.Thread(target=serve)
    server_thread.start()
    trainer = Trainer(address)
    trainer_thread = threading.Thread(target=trainer.loop, args=(stop_trainer,))
    threads = [
        threading.Thread(target=worker_loop, args=(address, f"w{i}", stop_workers))
        for i in range(workers)
    ]
    for thread in [trainer_thread, *threads]:
        thread.start()
    time.sleep(0.5)  # warm-up: connections up, queues primed
    samples0, cpu0, start = trainer.samples, cpu["now"], time.perf_counter()
    rates, last, last_t = [], samples0, start
    while time.perf_counter() - start < seconds:
        time.sleep(WINDOW_S)
        now, count = time.perf_counter(), trainer.samples
        rates.append((count - last) / (now - last_t))
        last, last_t = count, now
    delivered, cpu_s = trainer.samples - samples0, cpu["now"] - cpu0
    dropped = server.stats.chunks_dropped
    elapsed = time.perf_counter() - start
    stop_workers.set()  # workers first, so that the queue never fills without a trainer
    for thread in threads:
        thread.join()
    seen = -1
    while seen != server.stats.chunks_in or server.queued_chunks:
        seen = server.stats.chunks_in  # let the trainer take what is still in flight
        time.sleep(0.1)
    stop_trainer.set()
    trainer_thread.join()
    stop_server.set()
    server_thread.join()
    server.close()
    return {
        "samples_per_s": statistics.median(rates),
        "cpu_us_per_sample": 1e6 * cpu_s / max(delivered, 1),
        "server_cpu_frac": cpu_s / elapsed,
        "dropped": float(dropped),
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print(
        f"chunks of {CHUNK_STEPS} LIDAR transitions, credit {CREDIT}, {args.seconds:.0f} s each",
        flush=True,
    )
    for workers in args.workers:
        r = measure(workers, args.seconds)
        print(
            f"workers={workers}: {r['samples_per_s']:>9,.0f} samples/s delivered "
            f"(= {r['samples_per_s'] / REALTIME_SAMPLES_PER_S:,.0f} real-time 20 Hz workers), "
            f"server CPU {r['cpu_us_per_sample']:.2f} us/sample "
            f"({r['cpu_us_per_sample'] * CHUNK_STEPS:.0f} us/chunk, "
            f"{100 * r['server_cpu_frac']:.0f}% of a core), "
            f"{r['dropped']:.0f} chunks dropped",
            flush=True,
        )


if __name__ == "__main__":
    main()

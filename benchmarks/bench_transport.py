"""Transport at scale: samples/s through the server to a trainer, against tmrl 0.7.1 and a
raw ZeroMQ ceiling measured in the same run; server CPU; weight freshness.

Every role is its own process (``spawn``), on 127.0.0.1. The run first prints the machine (CPU
model, cores, AVX2 or AVX-512) and its ceilings measured now (float32 matmul, memory copy, raw
ZeroMQ one hop at each chunk's size): figures from another machine are only comparable as
fractions of those.

- **ours**: 1, 4, 16, 32 synthetic workers stream chunks of 100 transitions under the
  server's chunk credit (``flow_control``, what our workers do; ``--no-flow-control``: as fast
  as they can, the server dropping what the trainer cannot take) to a trainer taking up to
  ``--batch-chunks`` (16, as ours) chunks per ``chunks`` message: LIDAR (obs = LIDAR 19 +
  speed 1 + 2 previous actions of 3, float32), image (4x64x64 uint8 frame history + speed,
  ``obs/*`` and ``next_obs/*`` both: every frame 8 times) and image_compact (the workers'
  default: each frame once, histories as indices). A trainer process grants credit and
  renews it per chunk. Figures: the median over 0.25 s windows of samples/s received by the
  trainer, and the server process's CPU time (every thread, libzmq's included) in seconds per
  1000 forwarded chunks (messages from the workers), beside the relay's of the ceiling run.
  Below each line, every role's CPU (workers together, server, trainer, all) per 1000
  messages received by the trainer and the cores it kept busy, for ours and for the ceiling:
  where the cores are all busy, the ratio of the two ``all`` figures is the fraction of the
  ceiling that the CPU per message allows.
- **ceiling**: the same processes and the same encoded bytes through raw ZeroMQ, no protocol:
  workers PUSH, a relay process PULLs and PUSHes the frames on untouched, the trainer PULLs
  and counts. Ours is reported as a fraction of it; tmrl's against the same ceiling run with
  its own message size.
- **tmrl 0.7.1** (``tmrl_transport.py``, run in tmrl's own venv:
  ``/work/shared/tools/install_tmrl_baseline.sh``; ``--tmrl-python`` or ``$TMRL_PYTHON``):
  samples built by tmrl's own preprocessor and sample compressor (newest LIDAR scan or newest
  frame per sample, as its workers send them) in tmrl's ``Buffer``, through tlspyo as tmrl
  wires it; ``flood`` (tmrl's workers have no flow control) and ``paced`` (each worker waits
  ``--tmrl-pace-ms`` after each buffer, which keeps many senders from starving tlspyo's
  relay) reported separately. Skipped with a message where tmrl is absent; a run that
  delivers nothing prints ``failed`` (never a ratio against 0).
- **summary**: first ours against tmrl's best figure of the run (any workers, any pacing:
  the choice that favours tmrl), then against tmrl with the same number of workers.
- **weight freshness**: the trainer publishes a 1M- and a 10M-parameter float32 state_dict;
  16 idle worker processes receive it and copy it into their own arrays (the swap into the
  actor). Freshness of a publish = from the trainer's send to the last of the 16 workers
  holding the new weights; median over publishes. tmrl's workers look for weights between
  episodes only (up to 50 s at its defaults).

On a 2-core machine the workers, server and trainer share the cores: figures are floors,
compare medians, ratios and fractions of the ceiling. Run: ``python
benchmarks/bench_transport.py`` (about 4-5 min with tmrl); ``--quick`` for a smoke run (under
a minute); ``--json FILE`` keeps every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import tmrl_baseline  # noqa: E402
from timing import (  # noqa: E402
    cpu_flags_line,
    fraction,
    machine,
    print_machine,
    ratio,
    valid,
    zmq_ceiling,
)

CHUNK_ENV = "TMRL2_BENCH_CHUNK_STEPS"
CHUNK_STEPS = int(os.environ.get(CHUNK_ENV, "100"))
"""Samples per chunk (``worker.chunk_steps``'s default); ``--chunk-steps`` sets it through
:data:`CHUNK_ENV`, which the spawned worker, server and trainer processes read as they import
this module."""
PACK_ENV = "TMRL2_BENCH_PACK_MAX_BYTES"
"""``--pack-max-bytes``: the codec's packing limit in every spawned process (an A/B of packing,
e.g. 0 sends every chunk a frame per array as protocol 1 did; the ceiling relays those too)."""
if os.environ.get(PACK_ENV):
    import tmrl2.net.codec as _codec

    _codec.PACK_MAX_BYTES = int(os.environ[PACK_ENV])
WINDOW_S = 0.25
ROLES = ("workers", "server", "trainer", "all")
"""The processes whose CPU per message is reported (:func:`pipeline_cpu`), and their sum."""
OBS_SHAPES: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {
    "lidar": {
        "lidar": ((1, 19), "float32"),
        "speed": ((1,), "float32"),
        "prev_actions": ((2, 3), "float32"),
    },
    "image": {"images": ((4, 64, 64), "uint8"), "speed": ((1,), "float32")},
    # the same image transitions in the compact layout (tmrl2.memory.compact): each distinct
    # frame once (a 4-frame history sliding by one frame per step), histories as indices
    "image_compact": {"images": ((4, 64, 64), "uint8"), "speed": ((1,), "float32")},
}
HWM = {"lidar": 100, "image": 4, "image_compact": 20}
"""Messages queued per peer: image chunks are 3.3 MB, 32 workers x 100 of them would not fit."""
MAX_QUEUED = {"lidar": 512, "image": 32, "image_compact": 128}
WORKER_CREDIT = {"lidar": 8, "image": 1, "image_compact": 4}
"""Chunks in flight per worker: workers x credit must fit the server's queue (no drops)."""
CREDIT = {"lidar": 64, "image": 16, "image_compact": 32}


# ----------------------------------------------------------------------------- payloads
def chunk_arrays(obs: str, seed: int) -> dict[str, np.ndarray]:
    """A chunk's arrays following the wire contract, filled with random numbers."""
    rng = np.random.default_rng(seed)
    n = CHUNK_STEPS
    arrays: dict[str, np.ndarray] = {}
    for key, (shape, dtype) in OBS_SHAPES[obs].items():
        if obs == "image_compact" and dtype == "uint8":
            history = shape[0]
            arrays[f"frames/{key}"] = rng.integers(0, 256, (n + history, *shape[1:]), np.uint8)
            rows = np.arange(n)[:, None] + np.arange(history)[None, :]
            arrays[f"obs_index/{key}"] = rows.astype(np.int32)
            arrays[f"next_index/{key}"] = (rows + 1).astype(np.int32)
            continue
        for prefix in ("obs", "next_obs"):
            if dtype == "uint8":
                arrays[f"{prefix}/{key}"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            else:
                arrays[f"{prefix}/{key}"] = rng.random((n, *shape), dtype=np.float32)
    arrays["action"] = rng.random((n, 3), dtype=np.float32)
    arrays["reward"] = rng.random(n, dtype=np.float32)
    arrays["terminated"] = np.zeros(n, bool)
    arrays["truncated"] = np.zeros(n, bool)
    return arrays


def model_arrays(n_params: int) -> dict[str, np.ndarray]:
    """An MLP-like state_dict of about ``n_params`` float32 parameters."""
    hidden = n_params // 2000
    rng = np.random.default_rng(0)
    shapes = {"fc1.weight": (hidden, 1000), "fc1.bias": (hidden,)}
    shapes |= {"fc2.weight": (1000, hidden), "fc2.bias": (1000,)}
    return {name: rng.random(shape, dtype=np.float32) for name, shape in shapes.items()}


def join(
    address: str, role: str, name: str, hwm: int = 100, flow: bool = False, batch: int = 1
) -> Any:
    from tmrl2.net.codec import PROTOCOL_VERSION, Message
    from tmrl2.net.transport import ClientSocket

    meta: dict[str, Any] = {"role": role, "name": name, "protocol": PROTOCOL_VERSION}
    if batch > 1:  # a trainer taking up to `batch` chunks per message, as ours does
        meta["batch_chunks"] = batch
    hello = Message("hello", meta)
    client = ClientSocket(address, f"{role}-{name}", 200, sndhwm=hwm, rcvhwm=hwm, flow_control=flow)
    client.send(hello)
    reply = client.recv(timeout_ms=10_000)
    if reply is None or reply.kind != "welcome":
        raise RuntimeError(f"{role} {name} was not welcomed: {reply}")
    return client


# ----------------------------------------------------------------------------- processes
def ready(results: Any) -> None:
    import tmrl2.net.transport  # noqa: F401  (imported before the clock starts)

    results.put(("ready", None))


class CpuWindow:
    """This process's CPU time (every thread, libzmq's I/O thread included) from the first
    ``tick`` at or after ``start`` to ``close``: a role's share of the measured window. Reads
    the CPU clock twice only (a system call that took tens of microseconds on a loaded VM)."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.first: tuple[float, float] | None = None
        self.last: tuple[float, float] | None = None

    def tick(self, now: float) -> None:
        if self.first is None and now >= self.start:
            self.first = (now, time.process_time())

    def close(self) -> None:
        self.last = (time.time(), time.process_time())

    def busy(self) -> float:
        """Cores this process kept busy over its window (NaN when it saw none)."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return math.nan
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


def worker_process(index: int, commands: Any, results: Any) -> None:
    """Serves commands: stream chunks until a deadline, or receive weights until one."""
    ready(results)
    for command in iter(commands.get, None):
        if command[0] == "chunks":
            results.put(("worker", index, stream_chunks(index, *command[1:])))
        elif command[0] == "raw":
            results.put(("worker", index, raw_push(index, *command[1:])))
        else:
            results.put(("weights", index, receive_weights(index, *command[1:])))


def stream_chunks(
    index: int, address: str, obs: str, start: float, until: float, flow: bool
) -> tuple[int, float]:
    from tmrl2.net.codec import Message
    from tmrl2.net.errors import NetTimeout

    client = join(address, "worker", f"w{index}", HWM[obs], flow)
    meta = {"worker": f"w{index}", "policy_version": 0, "n": CHUNK_STEPS, "episodes": []}
    msg = Message("chunk", meta, chunk_arrays(obs, index))
    sent, cpu = 0, CpuWindow(start)
    while (now := time.time()) < until:
        cpu.tick(now)
        try:
            client.send(msg, copy=False)  # the arrays never change: zero-copy is safe
            sent += 1
        except NetTimeout:
            pass
    cpu.close()
    client.close()
    return sent, cpu.busy()


def raw_frames(payload: str, index: int) -> list[Any]:
    """The ceiling's message: our encoded chunk of an ``OBS_SHAPES`` kind, or ``bytes:N``
    (one frame of N bytes: the size of tmrl's pickled buffer)."""
    if payload.startswith("bytes:"):
        return [bytes(int(payload.split(":")[1]))]
    from tmrl2.net.codec import Message, encode

    meta = {"worker": f"w{index}", "policy_version": 0, "n": CHUNK_STEPS, "episodes": []}
    return list(encode(Message("chunk", meta, chunk_arrays(payload, index))))


def hwm_of(payload: str) -> int:
    """Messages queued per peer for a ceiling payload (big ones: few)."""
    if payload.startswith("bytes:"):
        return 100 if int(payload.split(":")[1]) < 100_000 else 20
    return HWM[payload]


def raw_push(
    index: int, address: str, payload: str, start: float, until: float
) -> tuple[int, float]:
    """The ceiling's worker: the same encoded message through a bare PUSH socket."""
    import zmq

    frames = raw_frames(payload, index)
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, hwm_of(payload))
    push.setsockopt(zmq.LINGER, 0)
    push.connect(address)
    sent, cpu = 0, CpuWindow(start)
    while (now := time.time()) < until:
        cpu.tick(now)
        if push.poll(50, zmq.POLLOUT):
            push.send_multipart(frames, copy=False)
            sent += 1
    cpu.close()
    push.close()
    return sent, cpu.busy()


def raw_relay(
    hwm: int, start: float, end: float, stop_at: float, results: Any, samples: int
) -> None:
    """The ceiling's server: PULL from the workers, PUSH the frames on untouched."""
    import zmq

    ctx = zmq.Context.instance()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for sock in (pull, push):
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
    in_port = pull.bind_to_random_port("tcp://127.0.0.1")
    out_port = push.bind_to_random_port("tcp://127.0.0.1")
    results.put(("port", (in_port, out_port)))
    marks: list[tuple[float, float, int]] = []
    forwarded = 0
    more = int(zmq.SNDMORE)  # plain-int flags, the fast path our sockets use too
    while time.time() < stop_at:
        if pull.poll(10) and push.poll(10, zmq.POLLOUT):
            part = pull.recv(copy=False)
            while part.more:
                push.send(part, more, copy=False)
                part = pull.recv(copy=False)
            push.send(part, 0, copy=False)
            forwarded += samples
        now = time.time()
        if len(marks) < 2 and now >= (start if not marks else end):
            marks.append((now, time.process_time(), forwarded))
    pull.close()
    push.close()
    results.put(("server", {"marks": marks, "dropped": 0}))


def raw_pull(
    address: str, start: float, end: float, stop_at: float, samples: int
) -> list[tuple[float, int, float]]:
    """The ceiling's trainer: count the chunks a bare PULL socket receives."""
    import zmq

    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(address)
    received, marks, next_mark = 0, [], start
    while time.time() < stop_at:
        if pull.poll(10):
            pull.recv_multipart(copy=False)
            received += samples
        now = time.time()
        if next_mark <= end and now >= next_mark:
            marks.append((now, received, time.process_time()))
            while next_mark <= now:
                next_mark += WINDOW_S
    pull.close()
    return marks


def receive_weights(index: int, address: str, until: float) -> list[tuple[int, float]]:
    """(version, seconds from publish to these weights copied into the local arrays)."""
    client = join(address, "worker", f"w{index}", 4)
    local: dict[str, np.ndarray] = {}
    got = []
    while time.time() < until:
        msg = client.recv(timeout_ms=20)
        if msg is None or msg.kind != "weights":
            continue
        for name, array in msg.arrays.items():
            if name not in local:
                local[name] = np.empty_like(array)
            np.copyto(local[name], array)  # the swap into the actor's parameters
        got.append((int(msg.meta["version"]), time.time() - float(msg.meta["sent_at"])))
    client.close()
    return got


def trainer_process(commands: Any, results: Any) -> None:
    """Consumes chunks under credit; records (time, samples) at window boundaries."""
    from tmrl2.net.codec import Message

    ready(results)
    for address, obs, start, end, stop_at, batch in iter(commands.get, None):
        if obs.startswith("raw:"):  # samples per message after the colon
            samples = int(obs.split(":")[1])
            results.put(("trainer", raw_pull(address, start, end, stop_at, samples)))
            continue
        client = join(address, "trainer", "bench", 200, batch=batch)
        client.send(Message("credit", {"n": CREDIT[obs]}))
        samples, marks, next_mark = 0, [], start
        while time.time() < stop_at:
            consumed = 0
            msg = client.recv(timeout_ms=10)
            while msg is not None:
                if msg.kind == "chunk":
                    samples += int(msg.meta["n"])
                    consumed += 1
                msg = client.recv(timeout_ms=0)
            if consumed:
                client.send(Message("credit", {"n": consumed}))
            now = time.time()
            if next_mark <= end and now >= next_mark:
                marks.append((now, samples, time.process_time()))
                while next_mark <= now:
                    next_mark += WINDOW_S
        client.try_send(Message("bye"))  # the server may be gone already: never wait on it
        client.close()
        results.put(("trainer", marks))


def server_process(commands: Any, results: Any) -> None:
    """Runs one fresh server per command; reports its CPU time over the measured window."""
    from tmrl2.net.transport import ServerSocket
    from tmrl2.roles.server import Server, ServerConfig

    ready(results)
    for hwm, max_queued, credit, start, end, stop_at in iter(commands.get, None):
        if max_queued == 0:  # the raw ZeroMQ ceiling; credit: samples per message
            raw_relay(hwm, start, end, stop_at, results, credit)
            continue
        transport = ServerSocket("127.0.0.1", 0, sndhwm=hwm, rcvhwm=hwm)
        config = ServerConfig(port=0, max_queued_chunks=max_queued, worker_credit=credit)
        server = Server(config, transport)
        results.put(("port", server.port))
        marks: list[tuple[float, float, int]] = []
        while time.time() < stop_at:
            server.serve_once(10)
            now = time.time()
            if len(marks) < 2 and now >= (start if not marks else end):
                marks.append((now, time.process_time(), server.stats.samples_forwarded))
        stats = server.stats
        server.close()
        results.put(("server", {"marks": marks, "dropped": stats.chunks_dropped}))


class Pool:
    """A server, a trainer and worker processes, started once and reused by every setting."""

    def __init__(self, workers: int) -> None:
        ctx = mp.get_context("spawn")
        self.results = ctx.Queue()
        self._stash: dict[str, list[Any]] = {}
        self.server_commands = ctx.Queue()
        self.trainer_commands = ctx.Queue()
        self.worker_commands = [ctx.Queue() for _ in range(workers)]
        self.procs = [
            ctx.Process(target=server_process, args=(self.server_commands, self.results)),
            ctx.Process(target=trainer_process, args=(self.trainer_commands, self.results)),
        ]
        self.procs += [
            ctx.Process(target=worker_process, args=(i, q, self.results))
            for i, q in enumerate(self.worker_commands)
        ]
        for proc in self.procs:
            proc.daemon = True
            proc.start()
        self.expect("ready", len(self.procs))

    def expect(self, kind: str, count: int = 1) -> list[Any]:
        """The next ``count`` results of ``kind`` (others are kept for their turn)."""
        while len(self._stash.setdefault(kind, [])) < count:
            item = self.results.get(timeout=120)
            self._stash.setdefault(item[0], []).append(item[1:] if len(item) > 2 else item[1])
        got, self._stash[kind] = self._stash[kind][:count], self._stash[kind][count:]
        return got

    def start_server(self, obs: str, start: float, end: float, stop_at: float) -> str:
        command = (HWM[obs], MAX_QUEUED[obs], WORKER_CREDIT[obs], start, end, stop_at)
        self.server_commands.put(command)
        (port,) = self.expect("port")
        return f"tcp://127.0.0.1:{port}"

    def close(self) -> None:
        for queue in [self.server_commands, self.trainer_commands, *self.worker_commands]:
            queue.put(None)
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()


# ----------------------------------------------------------------------------- measurements
def median_rate(marks: list[tuple[float, int]]) -> float:
    """Median samples/s over the windows between ``(time, samples)`` marks (0.0: none)."""
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(marks, marks[1:], strict=False)]
    return statistics.median(rates) if rates else 0.0


def server_cpu(marks: list[tuple[float, float, int]]) -> dict[str, float]:
    """The server process's CPU (``time.process_time``: every thread, libzmq's I/O thread
    included) per forwarded sample, in seconds per 1000 forwarded chunks (messages of
    :data:`CHUNK_STEPS` samples), and its share of a core over the window (NaN when it did not
    reach both ends of the window)."""
    if len(marks) < 2:
        nan = math.nan
        return {"cpu_us_per_sample": nan, "cpu_s_per_1000_msgs": nan, "server_cpu_frac": nan}
    (t0, cpu0, fwd0), (t1, cpu1, fwd1) = marks
    per_sample = (cpu1 - cpu0) / max(fwd1 - fwd0, 1)
    return {
        "cpu_us_per_sample": 1e6 * per_sample,
        "cpu_s_per_1000_msgs": 1000 * CHUNK_STEPS * per_sample,
        "server_cpu_frac": (cpu1 - cpu0) / (t1 - t0),
    }


def pipeline_cpu(
    rate: float,
    workers_busy: list[float],
    server_marks: list[tuple[float, float, int]],
    trainer_marks: list[tuple[float, int, float]],
    samples: int | None = None,
) -> dict[str, float]:
    """CPU per 1000 messages of every role of a run (workers together, server or relay,
    trainer) and of all of them: the cores each kept busy over the window, divided by the
    messages per second the trainer received (the median rate). On a machine whose cores are
    all busy, the inverse ratio of two runs' ``all`` figures estimates the ratio of their
    throughputs (docs/networking.md: within 0.10 of the measured fraction)."""
    samples = CHUNK_STEPS if samples is None else samples
    msgs_per_s = rate / samples if valid(rate) else math.nan
    busy = {
        "workers": sum(workers_busy),
        "server": server_cpu(server_marks)["server_cpu_frac"],
        "trainer": math.nan,
    }
    if len(trainer_marks) >= 2 and trainer_marks[-1][0] > trainer_marks[0][0]:
        (t0, _, cpu0), (t1, _, cpu1) = trainer_marks[0], trainer_marks[-1]
        busy["trainer"] = (cpu1 - cpu0) / (t1 - t0)
    busy["all"] = sum(busy.values())
    out = {f"busy_{role}": cores for role, cores in busy.items()}
    for role, cores in busy.items():
        out[f"cpu_s_per_1000_msgs_{role}"] = 1000 * cores / msgs_per_s if msgs_per_s else math.nan
    return out


def measure_ours(
    pool: Pool, obs: str, workers: int, seconds: float, flow: bool = True, batch: int = 1
) -> dict[str, float]:
    now = time.time()
    start = now + 0.6 + 0.03 * workers  # connections up, queues primed
    end, stop_at = start + seconds, start + seconds + 0.3
    address = pool.start_server(obs, start, end, stop_at)
    pool.trainer_commands.put((address, obs, start, end, stop_at, batch))
    for queue in pool.worker_commands[:workers]:
        queue.put(("chunks", address, obs, start, end, flow))
    sent = pool.expect("worker", workers)
    (marks,) = pool.expect("trainer")
    (server,) = pool.expect("server")
    rate = median_rate(marks)
    return {
        "samples_per_s": rate,
        **server_cpu(server["marks"]),
        **pipeline_cpu(rate, [busy for _, (_, busy) in sent], server["marks"], marks),
        "dropped": float(server["dropped"]),
    }


def measure_ceiling(
    pool: Pool, payload: str, workers: int, seconds: float, samples: int | None = None
) -> dict[str, float]:
    """The same bytes and processes through bare PUSH -> relay -> PULL (no protocol):
    ``payload`` is an ``OBS_SHAPES`` kind (our chunk, :data:`CHUNK_STEPS` samples) or
    ``bytes:N`` (one frame of N bytes carrying ``samples`` samples)."""
    samples = CHUNK_STEPS if samples is None else samples  # read now: --chunk-steps sets it
    now = time.time()
    start = now + 0.6 + 0.03 * workers
    end, stop_at = start + seconds, start + seconds + 0.3
    pool.server_commands.put((hwm_of(payload), 0, samples, start, end, stop_at))
    ((in_port, out_port),) = pool.expect("port")
    trainer = (f"tcp://127.0.0.1:{out_port}", f"raw:{samples}", start, end, stop_at, 1)
    pool.trainer_commands.put(trainer)
    for queue in pool.worker_commands[:workers]:
        queue.put(("raw", f"tcp://127.0.0.1:{in_port}", payload, start, end))
    sent = pool.expect("worker", workers)
    (marks,) = pool.expect("trainer")
    (server,) = pool.expect("server")
    rate = median_rate(marks)
    busy = [b for _, (_, b) in sent]
    return {
        "samples_per_s": rate,
        **server_cpu(server["marks"]),
        **pipeline_cpu(rate, busy, server["marks"], marks, samples),
    }


def measure_freshness(pool: Pool, n_params: int, workers: int, publishes: int) -> dict[str, float]:
    from tmrl2.net.codec import Message

    arrays = model_arrays(n_params)
    period = 0.3 + 1.5e-8 * n_params * workers  # the previous publish has landed
    start = time.time() + 1.0 + 0.03 * workers
    stop_at = start + period * (publishes + 1) + 1.0
    address = pool.start_server("image", start, stop_at - 0.5, stop_at)
    for queue in pool.worker_commands[:workers]:
        queue.put(("weights", address, stop_at - 0.2))
    trainer = join(address, "trainer", "bench")
    while time.time() < start:
        time.sleep(0.01)
    for version in range(publishes + 1):  # version 0 warms up (allocations), not counted
        meta = {"version": version, "updates": version, "sent_at": time.time()}
        trainer.send(Message("weights", meta, arrays), copy=False)
        time.sleep(period)
    received = pool.expect("weights", workers)
    trainer.close()
    pool.expect("server")
    per_version: dict[int, list[float]] = {}
    for _, got in received:
        for version, latency in got:
            per_version.setdefault(version, []).append(latency)
    complete = [max(v) for k, v in per_version.items() if k > 0 and len(v) == workers]
    return {
        "params": float(sum(a.size for a in arrays.values())),
        "median_ms": 1e3 * statistics.median(complete) if complete else float("nan"),
        "max_ms": 1e3 * max(complete) if complete else float("nan"),
        "publishes": float(len(complete)),
    }


# ----------------------------------------------------------------------------- tmrl 0.7.1
TMRL_HOME = {"lidar": "home_lidar", "image": "home_full"}
"""The tmrl baseline's data folder whose config picks the env (and sample compressor)."""
TMRL_SCRIPT = Path(__file__).with_name("tmrl_transport.py")


def find_tmrl(explicit: str | None) -> str | None:
    """tmrl's interpreter (``--tmrl-python``, ``$TMRL_PYTHON`` or the baseline venv) if it
    can import tlspyo and tmrl, else None."""
    candidate = explicit or os.environ.get("TMRL_PYTHON")
    exe = tmrl_baseline.tmrl_python(candidate)
    if exe is None:
        return None
    probe = [str(exe), "-c", "import tlspyo, tmrl.networking"]
    env = tmrl_baseline.tmrl_environ("home_lidar")
    done = subprocess.run(probe, capture_output=True, timeout=120, env=env)
    return str(exe) if done.returncode == 0 else None


def measure_tmrl(
    python: str, obs: str, workers: int, seconds: float, pace_ms: float, samples: int
) -> dict[str, Any]:
    """tmrl's figure (``tmrl_transport.py`` in tmrl's venv); ``samples_per_s`` 0.0 and an
    ``error`` when the run failed."""
    command = [python, str(TMRL_SCRIPT), obs, str(workers), str(seconds), str(pace_ms)]
    command.append(str(samples))
    env = tmrl_baseline.tmrl_environ(TMRL_HOME[obs])
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=240 + 5 * workers, env=env
        )
    except subprocess.TimeoutExpired:
        return {"samples_per_s": 0.0, "error": "timed out"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return {"samples_per_s": 0.0, "error": tail[0]}
    result: dict[str, Any] = json.loads(lines[-1])
    if not valid(result["samples_per_s"]) and not result.get("error"):
        result["error"] = "no sample reached the trainer"
    return result


# ----------------------------------------------------------------------------- reporting
def figure(value: float | None, unit: str = "samples/s") -> str:
    """An absolute figure, or ``failed``."""
    return f"{value:>9,.0f} {unit}" if valid(value) else f"{'failed':>9} {unit}"


def partner(obs: str) -> str:
    """tmrl's kind of observation to compare ours with (our compact images: tmrl's images,
    each frame sent once on both sides; our full image histories: the same, 8x the bytes)."""
    return "lidar" if obs == "lidar" else "image"


def best_tmrl(results: list[dict[str, Any]], obs: str) -> dict[str, Any] | None:
    """tmrl's best figure of the run for ``obs``, whatever its workers and pacing."""
    runs = [r for r in results if r["side"] == "tmrl" and r["obs"] == obs and valid(r["rate"])]
    return max(runs, key=lambda r: r["rate"]) if runs else None


def summary(results: list[dict[str, Any]]) -> list[str]:
    """The comparison lines: first ours against tmrl's best figure of the run, then against
    tmrl with the same number of workers (its better pacing variant)."""
    lines = []
    ours = [r for r in results if r["side"] == "ours"]
    for obs in dict.fromkeys(r["obs"] for r in ours):
        theirs = partner(obs)
        best = best_tmrl(results, theirs)
        mine = [r for r in ours if r["obs"] == obs]
        if best is None:
            tmrl_runs = [r for r in results if r["side"] == "tmrl" and r["obs"] == theirs]
            why = "every tmrl run failed" if tmrl_runs else "tmrl not measured"
            lines.append(f"{obs}: ratio to tmrl's best: failed ({why})")
            continue
        label = f"{best['workers']} worker(s), {best['variant']}"
        per = ", ".join(f"{r['workers']} workers {ratio(r['rate'], best['rate'])}" for r in mine)
        lines.append(
            f"{obs}: ours / tmrl's best figure of the run ({theirs}, {best['rate']:,.0f} "
            f"samples/s with {label}): {per}"
        )
        same = []
        for r in mine:
            rivals = [
                t["rate"]
                for t in results
                if t["side"] == "tmrl" and t["obs"] == theirs and t["workers"] == r["workers"]
            ]
            if rivals:
                same.append(f"{r['workers']} workers {ratio(r['rate'], max(rivals))}")
        if same:
            lines.append(f"  same workers, tmrl's better pacing: {', '.join(same)}")
    return lines


# ----------------------------------------------------------------------------- main
def throughput(args: argparse.Namespace, pool: Pool, tmrl: str | None) -> list[dict[str, Any]]:
    """Ours for every obs and worker count, then tmrl for its kinds, workers and pacings."""
    print(f"== throughput: chunks of {CHUNK_STEPS}, {args.seconds:g} s windows ==", flush=True)
    results = [ours_row(args, pool, obs, workers) for obs in args.obs for workers in args.workers]
    if tmrl is None:
        print(
            "tmrl: not measured (no tmrl 0.7.1 baseline venv with tlspyo; run "
            "/work/shared/tools/install_tmrl_baseline.sh or pass --tmrl-python)",
            flush=True,
        )
        return results
    paces = {"flood": 0.0, "paced": args.tmrl_pace_ms}
    for obs in sorted({partner(obs) for obs in args.obs}):
        for workers in args.tmrl_workers:
            for variant in args.tmrl_variants:
                results.append(tmrl_row(args, pool, tmrl, obs, workers, paces[variant]))
    return results


def ours_row(args: argparse.Namespace, pool: Pool, obs: str, workers: int) -> dict[str, Any]:
    r = measure_ours(pool, obs, workers, args.seconds, not args.no_flow_control, args.batch_chunks)
    row = {"side": "ours", "obs": obs, "workers": workers, "rate": r["samples_per_s"]}
    row["server_cpu_s_per_1000_msgs"] = r["cpu_s_per_1000_msgs"]
    line = (
        f"ours {obs:>13} workers={workers:>2}: {figure(r['samples_per_s'])}, "
        f"server CPU {r['cpu_s_per_1000_msgs']:.3f} s/1000 msgs "
        f"({r['cpu_us_per_sample']:.2f} us/sample, {100 * r['server_cpu_frac']:.0f}% of a "
        f"core), {r['dropped']:.0f} dropped"
    )
    row["cpu_s_per_1000_msgs"] = {role: r[f"cpu_s_per_1000_msgs_{role}"] for role in ROLES}
    line += "\n    " + cpu_line("ours", r)
    if not args.no_ceiling:
        c = measure_ceiling(pool, obs, workers, args.seconds)
        row["ceiling"] = c["samples_per_s"]
        row["relay_cpu_s_per_1000_msgs"] = c["cpu_s_per_1000_msgs"]
        row["ceiling_cpu_s_per_1000_msgs"] = {
            role: c[f"cpu_s_per_1000_msgs_{role}"] for role in ROLES
        }
        line = (
            f"{line}\n    raw zmq ceiling {figure(c['samples_per_s'])} (relay CPU "
            f"{c['cpu_s_per_1000_msgs']:.3f} s/1000 msgs): ours "
            f"{fraction(r['samples_per_s'], c['samples_per_s'])}\n    {cpu_line('ceiling', c)}"
            f"\n    the ceiling's CPU per message / ours: "
            f"{fraction(c['cpu_s_per_1000_msgs_all'], r['cpu_s_per_1000_msgs_all'])} (what the "
            "CPU allows ours of the ceiling where every core is busy)"
        )
    print(line, flush=True)
    return row


def cpu_line(label: str, r: dict[str, float]) -> str:
    """CPU s per 1000 messages and cores kept busy, by role (:func:`pipeline_cpu`)."""
    parts = ", ".join(
        f"{role} {r[f'cpu_s_per_1000_msgs_{role}']:.3f} ({r[f'busy_{role}']:.2f})" for role in ROLES
    )
    return f"{label} CPU s per 1000 msgs (cores busy): {parts}"


def tmrl_row(
    args: argparse.Namespace, pool: Pool, tmrl: str, obs: str, workers: int, pace_ms: float
) -> dict[str, Any]:
    variant = f"paced {pace_ms:g} ms" if pace_ms > 0 else "flood"
    t = measure_tmrl(tmrl, obs, workers, args.seconds, pace_ms, args.tmrl_buffer)
    row = {"side": "tmrl", "obs": obs, "workers": workers, "variant": variant}
    row |= {"rate": t["samples_per_s"], "bytes_per_sample": t.get("bytes_per_sample")}
    line = f"tmrl {obs:>13} workers={workers:>2} {variant:>13}: {figure(row['rate'])}"
    if t.get("error"):
        line += f" ({t['error']})"
    elif not args.no_ceiling:
        payload = f"bytes:{int(t['buffer_bytes'])}"
        c = measure_ceiling(pool, payload, workers, args.seconds, args.tmrl_buffer)
        row["ceiling"] = c["samples_per_s"]
        line += (
            f", {t['bytes_per_sample']:.0f} B/sample | raw zmq ceiling, same bytes "
            f"{figure(c['samples_per_s'])}: tmrl {fraction(row['rate'], c['samples_per_s'])}"
        )
    print(line, flush=True)
    return row


def freshness(args: argparse.Namespace, pool: Pool) -> list[dict[str, float]]:
    if not args.params:
        return []
    workers = min(args.freshness_workers, len(pool.worker_commands))
    print(f"== weight freshness: publish -> all {workers} workers swapped ==", flush=True)
    rows = []
    for n_params in args.params:
        r = measure_freshness(pool, n_params, workers, args.publishes)
        rows.append(r)
        print(
            f"{r['params'] / 1e6:>5.1f}M params ({4 * r['params'] / 2**20:.0f} MiB): "
            f"median {r['median_ms']:.0f} ms, max {r['max_ms']:.0f} ms over "
            f"{r['publishes']:.0f} publishes (tmrl: between episodes, up to 50 s)",
            flush=True,
        )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument(
        "--obs", nargs="+", default=["lidar", "image", "image_compact"], choices=list(OBS_SHAPES)
    )
    parser.add_argument("--tmrl-workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--tmrl-variants", nargs="+", default=["flood", "paced"], choices=["flood", "paced"]
    )
    parser.add_argument(
        "--tmrl-pace-ms", type=float, default=10.0, help="paced tmrl workers' wait per buffer"
    )
    parser.add_argument(
        "--chunk-steps",
        type=int,
        default=CHUNK_STEPS,
        help="samples per chunk of ours (worker.chunk_steps; a vectorized worker's message "
        "carries worker.envs x that), and per raw ZeroMQ ceiling message",
    )
    parser.add_argument(
        "--pack-max-bytes",
        type=int,
        help="the codec's packing limit for this run (default: the codec's, 64 KiB; 0: never pack)",
    )
    parser.add_argument("--tmrl-buffer", type=int, default=100, help="samples per tmrl buffer")
    parser.add_argument("--tmrl-python", help="python of the tmrl 0.7.1 baseline venv")
    parser.add_argument("--no-tmrl", action="store_true", help="skip tmrl")
    parser.add_argument(
        "--no-flow-control", action="store_true", help="our workers ignore chunk credit"
    )
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip the raw ZeroMQ ceiling runs"
    )
    parser.add_argument(
        "--batch-chunks",
        type=int,
        default=16,
        help="our trainer's hello batch_chunks, as the real trainer's (1: one chunk a message)",
    )
    parser.add_argument(
        "--params",
        type=int,
        nargs="*",
        default=[1_000_000, 10_000_000],
        help="weight freshness for these parameter counts (none: skip it)",
    )
    parser.add_argument("--freshness-workers", type=int, default=16)
    parser.add_argument("--publishes", type=int, default=5)
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (under a minute): LIDAR, 1 and 4 workers, tmrl with 1, 1 s windows",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.workers, args.publishes = 1.0, [1, 4], 3
        args.obs, args.tmrl_workers = ["lidar"], [1]
        args.freshness_workers, args.params = 4, [1_000_000]
    return args


def main(argv: list[str] | None = None) -> None:
    global CHUNK_STEPS
    args = parse_args(argv)
    if args.chunk_steps < 1:
        raise SystemExit(f"--chunk-steps must be at least 1, got {args.chunk_steps}")
    os.environ[CHUNK_ENV] = str(args.chunk_steps)  # before the processes start
    if args.pack_max_bytes is not None:
        os.environ[PACK_ENV] = str(args.pack_max_bytes)
        import tmrl2.net.codec as codec

        codec.PACK_MAX_BYTES = args.pack_max_bytes
    CHUNK_STEPS = args.chunk_steps
    began = time.time()
    ceilings = print_machine(quick=args.quick)
    for obs in args.obs:  # one hop, no relay: what ZeroMQ alone does with this chunk's bytes
        size = sum(len(frame) for frame in raw_frames(obs, 0))
        one_hop = zmq_ceiling(size, seconds=0.2 if args.quick else 0.5)
        print(
            f"raw zmq, one hop, {obs} chunk ({size / 1e3:,.0f} kB): "
            f"{figure(one_hop['msgs_per_s'] * CHUNK_STEPS)} ({one_hop['gbytes_per_s']:.2f} GB/s)",
            flush=True,
        )
    tmrl = None if args.no_tmrl else find_tmrl(args.tmrl_python)
    pool = Pool(max(*args.workers, args.freshness_workers if args.params else 1))
    try:
        results = throughput(args, pool, tmrl)
        weights = freshness(args, pool)
    finally:
        pool.close()
    print(f"== summary ({machine()}) ==", flush=True)
    for line in summary(results):
        print(line, flush=True)
    print(f"(total {time.time() - began:.0f} s)", flush=True)
    if args.json:
        record = {"machine": machine(), "flags": cpu_flags_line(), "ceilings": ceilings}
        record |= {"argv": sys.argv[1:], "throughput": results, "freshness": weights}
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    sys.exit(main())

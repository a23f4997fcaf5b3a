"""Transport at scale: samples/s through the server to a trainer, server CPU, weight freshness.

Every role is its own process (``spawn``), on 127.0.0.1:

- **throughput**: 1, 4, 16, 32 synthetic workers stream chunks of 100 transitions as fast as
  the server's chunk credit lets them (``flow_control``; ``--no-flow-control``: as fast as
  they can, the server dropping what the trainer cannot take), LIDAR-sized (obs = LIDAR 19
  + speed 1 + 2 previous actions of 3, float32) and image-sized (4x64x64 uint8 frame
  history + speed); ``obs/*`` and ``next_obs/*`` both travel, as in our chunk format. A
  trainer process grants credit and renews it per chunk received. Figures: the median over
  0.25 s windows of samples/s received by the trainer, and the server process's CPU time
  (all its threads, ZeroMQ I/O included) per delivered sample.
- **ceiling**: the same processes and the same encoded bytes through raw ZeroMQ, no protocol:
  workers PUSH, a relay process PULLs and PUSHes the frames on untouched (zero-copy), the
  trainer process PULLs and counts. What the machine allows for this topology; ours is
  reported as a fraction of it.
- **tmrl 0.7.1 side by side**: tlspyo (tmrl's transport: Relay + Endpoints, pickled buffers,
  as ``tmrl.networking`` wires them: workers ``produce`` a buffer of 100 sample tuples to the
  trainers group, the trainer ``notify``/``receive_all``), run with the tmrl baseline venv
  (``/work/shared/tools/install_tmrl_baseline.sh``; ``--tmrl-python`` or ``$TMRL_PYTHON``);
  skipped with a message where absent. 1 and 4 workers only: each tlspyo endpoint is two
  processes, which a 2-core machine cannot run by the dozen.
- **weight freshness**: the trainer publishes a 1M- and a 10M-parameter float32 state_dict;
  16 idle worker processes receive it and copy it into their own arrays (the swap into the
  actor). Freshness of a publish = from the trainer's send to the last of the 16 workers
  holding the new weights; median over publishes. tmrl's workers look for weights between
  episodes only (up to 50 s at its defaults), so no measurement is needed for the ratio.

On a 2-core machine the workers, server and trainer share the cores: figures are floors,
compare medians and ratios. Run: ``python benchmarks/bench_transport.py`` (about 2-3 min);
``--quick`` for a smoke run (1 and 4 workers, short windows).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_STEPS = 100
WINDOW_S = 0.25
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
DEFAULT_TMRL_PYTHON = Path.home() / ".cache/tmrl-baseline/venv/bin/python"


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


def join(address: str, role: str, name: str, hwm: int = 100, flow: bool = False) -> Any:
    from tmrl2.net.codec import PROTOCOL_VERSION, Message
    from tmrl2.net.transport import ClientSocket

    hello = Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION})
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


def stream_chunks(index: int, address: str, obs: str, until: float, flow: bool) -> int:
    from tmrl2.net.codec import Message
    from tmrl2.net.errors import NetTimeout

    client = join(address, "worker", f"w{index}", HWM[obs], flow)
    meta = {"worker": f"w{index}", "policy_version": 0, "n": CHUNK_STEPS, "episodes": []}
    msg = Message("chunk", meta, chunk_arrays(obs, index))
    sent = 0
    while time.time() < until:
        try:
            client.send(msg, copy=False)  # the arrays never change: zero-copy is safe
            sent += 1
        except NetTimeout:
            pass
    client.close()
    return sent


def raw_push(index: int, address: str, obs: str, until: float) -> int:
    """The ceiling's worker: the same encoded chunk through a bare PUSH socket."""
    import zmq

    from tmrl2.net.codec import Message, encode

    meta = {"worker": f"w{index}", "policy_version": 0, "n": CHUNK_STEPS, "episodes": []}
    frames = encode(Message("chunk", meta, chunk_arrays(obs, index)))
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, HWM[obs])
    push.setsockopt(zmq.LINGER, 0)
    push.connect(address)
    sent = 0
    while time.time() < until:
        if push.poll(50, zmq.POLLOUT):
            push.send_multipart(frames, copy=False)
            sent += 1
    push.close()
    return sent


def raw_relay(hwm: int, start: float, end: float, stop_at: float, results: Any) -> None:
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
            forwarded += CHUNK_STEPS
        now = time.time()
        if len(marks) < 2 and now >= (start if not marks else end):
            marks.append((now, time.process_time(), forwarded))
    pull.close()
    push.close()
    results.put(("server", {"marks": marks, "dropped": 0}))


def raw_pull(address: str, start: float, end: float, stop_at: float) -> list[Any]:
    """The ceiling's trainer: count the chunks a bare PULL socket receives."""
    import zmq

    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(address)
    samples, marks, next_mark = 0, [], start
    while time.time() < stop_at:
        if pull.poll(10):
            pull.recv_multipart(copy=False)
            samples += CHUNK_STEPS
        now = time.time()
        if next_mark <= end and now >= next_mark:
            marks.append((now, samples))
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
    for address, obs, start, end, stop_at in iter(commands.get, None):
        if obs == "raw":
            results.put(("trainer", raw_pull(address, start, end, stop_at)))
            continue
        client = join(address, "trainer", "bench", 200)
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
                marks.append((now, samples))
                while next_mark <= now:
                    next_mark += WINDOW_S
        client.send(Message("bye"))
        client.close()
        results.put(("trainer", marks))


def server_process(commands: Any, results: Any) -> None:
    """Runs one fresh server per command; reports its CPU time over the measured window."""
    from tmrl2.net.transport import ServerSocket
    from tmrl2.roles.server import Server, ServerConfig

    ready(results)
    for hwm, max_queued, credit, start, end, stop_at in iter(commands.get, None):
        if max_queued == 0:  # the raw ZeroMQ ceiling
            raw_relay(hwm, start, end, stop_at, results)
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
def measure_ours(
    pool: Pool, obs: str, workers: int, seconds: float, flow: bool = True
) -> dict[str, float]:
    now = time.time()
    start = now + 0.6 + 0.03 * workers  # connections up, queues primed
    end, stop_at = start + seconds, start + seconds + 0.3
    address = pool.start_server(obs, start, end, stop_at)
    pool.trainer_commands.put((address, obs, start, end, stop_at))
    for queue in pool.worker_commands[:workers]:
        queue.put(("chunks", address, obs, end, flow))
    pool.expect("worker", workers)
    (marks,) = pool.expect("trainer")
    (server,) = pool.expect("server")
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(marks, marks[1:], strict=False)]
    (t0, cpu0, fwd0), (t1, cpu1, fwd1) = server["marks"]
    return {
        "samples_per_s": statistics.median(rates) if rates else 0.0,
        "cpu_us_per_sample": 1e6 * (cpu1 - cpu0) / max(fwd1 - fwd0, 1),
        "server_cpu_frac": (cpu1 - cpu0) / (t1 - t0),
        "dropped": float(server["dropped"]),
    }


def measure_ceiling(pool: Pool, obs: str, workers: int, seconds: float) -> dict[str, float]:
    """The same bytes and processes through bare PUSH -> relay -> PULL (no protocol)."""
    now = time.time()
    start = now + 0.6 + 0.03 * workers
    end, stop_at = start + seconds, start + seconds + 0.3
    pool.server_commands.put((HWM[obs], 0, 0, start, end, stop_at))
    ((in_port, out_port),) = pool.expect("port")
    pool.trainer_commands.put((f"tcp://127.0.0.1:{out_port}", "raw", start, end, stop_at))
    for queue in pool.worker_commands[:workers]:
        queue.put(("raw", f"tcp://127.0.0.1:{in_port}", obs, end))
    pool.expect("worker", workers)
    (marks,) = pool.expect("trainer")
    (server,) = pool.expect("server")
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(marks, marks[1:], strict=False)]
    (t0, cpu0, fwd0), (t1, cpu1, fwd1) = server["marks"]
    return {
        "samples_per_s": statistics.median(rates) if rates else 0.0,
        "cpu_us_per_sample": 1e6 * (cpu1 - cpu0) / max(fwd1 - fwd0, 1),
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


# ----------------------------------------------------------------------------- tmrl / tlspyo
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tmrl_buffer(obs: str, seed: int) -> list[tuple[Any, ...]]:
    """tmrl's Buffer.memory: 100 tuples (act, new_obs, rew, terminated, truncated, info)."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(CHUNK_STEPS):
        act = rng.random(3, dtype=np.float32)
        if obs == "lidar":  # TM20LIDAR: speed, 4 x 19 LIDAR history, 2 previous actions
            new_obs: tuple[Any, ...] = (
                rng.random(1, dtype=np.float32),
                rng.random((4, 19), dtype=np.float32),
                act,
                act,
            )
        else:  # TM20FULL: speed, gear, rpm, 4 x 64 x 64 grayscale, 2 previous actions
            new_obs = (
                rng.random(1, dtype=np.float32),
                rng.random(1, dtype=np.float32),
                rng.random(1, dtype=np.float32),
                rng.integers(0, 256, (4, 64, 64), dtype=np.uint8),
                act,
                act,
            )
        samples.append((act, new_obs, float(rng.random()), False, False, {}))
    return samples


def tlspyo_worker(port: int, local_port: int, obs: str, seed: int, until: float) -> None:
    from tlspyo import Endpoint

    endpoint = Endpoint("127.0.0.1", port, "bench", "workers", local_port, 12, 536870912, None)
    buffer = tmrl_buffer(obs, seed)
    while time.time() < until:
        endpoint.produce(buffer, "trainers")  # as fast as it goes, like our workers
    endpoint.stop()


def tlspyo_measure(obs: str, workers: int, seconds: float) -> dict[str, float]:
    """Run in the tmrl venv (``--tlspyo-child``): samples/s through a tlspyo Relay."""
    from tlspyo import Endpoint, Relay

    port = free_port()
    groups = {
        "trainers": {"max_count": 1, "max_consumables": None},
        "workers": {"max_count": workers, "max_consumables": None},
    }
    relay = Relay(port, "bench", groups, free_port(), 12, None)
    trainer = Endpoint("127.0.0.1", port, "bench", "trainers", free_port(), 12, 536870912, None)
    trainer.notify(groups={"trainers": -1})
    start = time.time() + 4.0 + 0.5 * workers  # endpoints: processes, slow to connect
    end = start + seconds
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=tlspyo_worker, args=(port, free_port(), obs, i, end))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    samples, marks, next_mark, notified = 0, [], start, 0.0
    while time.time() < end + 0.2:
        buffers = trainer.receive_all(blocking=False)
        samples += sum(len(b) for b in buffers)
        if buffers or time.time() - notified > 0.1:  # a notify sent before the connection
            trainer.notify(groups={"trainers": -1})  # is up gets lost: repeat it
            notified = time.time()
        if not buffers:
            time.sleep(0.002)
        now = time.time()
        if next_mark <= end and now >= next_mark:
            marks.append((now, samples))
            while next_mark <= now:
                next_mark += WINDOW_S
    for proc in procs:
        proc.join(timeout=20)
    trainer.stop()
    relay.stop()
    rates = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(marks, marks[1:], strict=False)]
    return {"samples_per_s": statistics.median(rates) if rates else 0.0}


def tmrl_python(path: str | None) -> str | None:
    candidate = path or os.environ.get("TMRL_PYTHON") or str(DEFAULT_TMRL_PYTHON)
    if not Path(candidate).is_file():
        return None
    probe = subprocess.run([candidate, "-c", "import tlspyo"], capture_output=True, timeout=60)
    return candidate if probe.returncode == 0 else None


def measure_tmrl(python: str, obs: str, workers: int, seconds: float) -> dict[str, float] | None:
    command = [python, __file__, "--tlspyo-child", obs, str(workers), str(seconds)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(f"  tlspyo run failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    result: dict[str, float] = json.loads(lines[-1])
    return result


# ----------------------------------------------------------------------------- main
def throughput(args: argparse.Namespace, pool: Pool, tmrl: str | None) -> None:
    print(f"== throughput: chunks of {CHUNK_STEPS}, {args.seconds:g} s windows ==", flush=True)
    baseline: dict[str, float] = {}
    for obs in args.obs:
        for workers in args.workers:
            r = measure_ours(pool, obs, workers, args.seconds, not args.no_flow_control)
            line = (
                f"{obs:>5} workers={workers:>2}: {r['samples_per_s']:>9,.0f} samples/s, "
                f"server CPU {r['cpu_us_per_sample']:.2f} us/sample "
                f"({100 * r['server_cpu_frac']:.0f}% of a core), {r['dropped']:.0f} dropped"
            )
            if not args.no_ceiling:
                c = measure_ceiling(pool, obs, workers, args.seconds)
                line += (
                    f" | raw zmq {c['samples_per_s']:>9,.0f} samples/s "
                    f"({c['cpu_us_per_sample']:.2f} us/sample), ours "
                    f"{r['samples_per_s'] / max(c['samples_per_s'], 1):.2f}x of it"
                )
            if tmrl and workers in args.tmrl_workers and obs in ("lidar", "image"):
                t = measure_tmrl(tmrl, obs, workers, args.seconds)
                if t:
                    baseline[obs] = max(baseline.get(obs, 0.0), t["samples_per_s"])
                    line += (
                        f" | tmrl/tlspyo {t['samples_per_s']:>8,.0f} samples/s, "
                        f"ratio {r['samples_per_s'] / max(t['samples_per_s'], 1):.1f}x"
                    )
            elif obs.split("_")[0] in baseline:  # compact images: against tmrl's images
                best = baseline[obs.split("_")[0]]
                line += f" | {r['samples_per_s'] / best:.1f}x tmrl's best"
            print(line, flush=True)
    if tmrl is None:
        print(
            "tmrl/tlspyo: not measured (no tmrl baseline venv with tlspyo; run "
            "/work/shared/tools/install_tmrl_baseline.sh or pass --tmrl-python)",
            flush=True,
        )


def freshness(args: argparse.Namespace, pool: Pool) -> None:
    workers = min(args.freshness_workers, len(pool.worker_commands))
    print(f"== weight freshness: publish -> all {workers} workers swapped ==", flush=True)
    for n_params in args.params:
        r = measure_freshness(pool, n_params, workers, args.publishes)
        print(
            f"{r['params'] / 1e6:>5.1f}M params ({4 * r['params'] / 2**20:.0f} MiB): "
            f"median {r['median_ms']:.0f} ms, max {r['max_ms']:.0f} ms over "
            f"{r['publishes']:.0f} publishes (tmrl: between episodes, up to 50 s)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument(
        "--obs", nargs="+", default=["lidar", "image", "image_compact"], choices=list(OBS_SHAPES)
    )
    parser.add_argument("--tmrl-workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tmrl-python", help="python of the tmrl 0.7.1 baseline venv")
    parser.add_argument("--no-tmrl", action="store_true", help="skip tmrl/tlspyo")
    parser.add_argument(
        "--no-flow-control", action="store_true", help="workers ignore chunk credit"
    )
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip the raw ZeroMQ ceiling runs"
    )
    parser.add_argument("--params", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--freshness-workers", type=int, default=16)
    parser.add_argument("--publishes", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 and 4 workers, 1 s windows")
    parser.add_argument("--tlspyo-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tlspyo_child:
        obs, workers, seconds = args.tlspyo_child
        print(json.dumps(tlspyo_measure(obs, int(workers), float(seconds))), flush=True)
        return
    if args.quick:
        args.seconds, args.workers, args.publishes = 1.0, [1, 4], 3
        args.freshness_workers = 4
    tmrl = None if args.no_tmrl else tmrl_python(args.tmrl_python)
    began = time.time()
    pool = Pool(max(*args.workers, args.freshness_workers))
    try:
        throughput(args, pool, tmrl)
        freshness(args, pool)
    finally:
        pool.close()
    print(f"(total {time.time() - began:.0f} s on {os.cpu_count()} cores)", flush=True)


if __name__ == "__main__":
    sys.exit(main())

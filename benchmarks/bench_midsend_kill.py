"""Workers killed or closed in the middle of sending big chunks: does the server survive?

libzmq 4.3.x can abort a process with ``Resource temporarily unavailable
(src/session_base.cpp:...)`` when a peer disconnects right after (or while) sending a
multipart message (libzmq issue 3442); one transport benchmark run here aborted its server
process that way with 4.2 MB chunks. This script looks for it in the real server: a
:class:`~tmrl2.roles.server.Server` on a ROUTER with small high-water marks, and rounds of
three worker processes that flood it with chunks (``--obs image``: 3.3 MB in 9 frames, over the
codec's packing limit; ``image_compact``: 432 kB in 7 frames; ``lidar``: 23 kB packed in 2)
without waiting for credit, then either close their socket at once (``LINGER`` 0) or are
SIGKILLed, at random moments. It prints the rounds, how the workers ended, the server's
counters, and whether the server process is still alive at the end (exit code 1 if not). Run:
``python benchmarks/bench_midsend_kill.py --seconds 120``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def serve(ports: Any, stop_at: float) -> None:
    """The server, until ``stop_at``; its counters at the end."""
    from tmrl2.net.transport import ServerSocket
    from tmrl2.roles.server import Server, ServerConfig

    transport = ServerSocket("127.0.0.1", 0, sndhwm=4, rcvhwm=4)
    server = Server(ServerConfig(port=0, max_queued_chunks=8, worker_credit=2), transport)
    ports.put(server.port)
    while time.time() < stop_at:
        server.serve_once(10)
    stats = server.stats
    ports.put((stats.chunks_in, stats.malformed, stats.over_credit, stats.errors))
    server.close()


def flood(address: str, index: int, obs: str, ending: str, seed: int) -> None:
    """Send chunks without waiting for credit; after a random while, close at once (``close``)
    or keep sending until the driver's SIGKILL (``kill``)."""
    import bench_transport as bt

    from tmrl2.net.codec import Message
    from tmrl2.net.errors import NetTimeout

    rng = random.Random(seed)
    client = bt.join(address, "worker", f"k{index}-{os.getpid()}", 4, False)
    meta = {"worker": f"k{index}", "policy_version": 0, "n": bt.CHUNK_STEPS, "episodes": []}
    msg = Message("chunk", meta, bt.chunk_arrays(obs, index))
    until = time.time() + rng.uniform(0.05, 0.6)
    while ending == "kill" or time.time() < until:
        with contextlib.suppress(NetTimeout):
            client.send(msg, copy=False)
    client.close()  # LINGER 0: whatever is not yet on the wire is dropped
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--obs", default="image", choices=["image", "image_compact", "lidar"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from timing import cpu_flags_line, machine

    print(f"machine: {machine()}; flags: {cpu_flags_line()} (a robustness check: no figure)")
    rng = random.Random(args.seed)
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    stop_at = time.time() + args.seconds
    server = ctx.Process(target=serve, args=(ports, stop_at))
    server.start()
    address = f"tcp://127.0.0.1:{ports.get(timeout=60)}"
    rounds, endings = 0, {"kill": 0, "close": 0}
    while time.time() < stop_at - 3 and server.is_alive():
        chosen = [rng.choice(["kill", "close"]) for _ in range(3)]
        procs = [
            ctx.Process(target=flood, args=(address, i, args.obs, how, rng.randrange(2**31)))
            for i, how in enumerate(chosen)
        ]
        for proc in procs:
            proc.start()
        time.sleep(rng.uniform(1.0, 2.0))
        for proc, how in zip(procs, chosen, strict=True):
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            endings[how] += 1
        rounds += 1
    server.join(timeout=30)
    alive_to_the_end = server.exitcode == 0
    print(
        f"{rounds} rounds, {args.obs} chunks; workers closed {endings['close']}, killed "
        f"{endings['kill']} (mid-send)"
    )
    if alive_to_the_end:
        chunks, malformed, over_credit, errors = ports.get(timeout=10)
        print(
            f"server survived: {chunks} chunks in, {over_credit} over credit (dropped), "
            f"{malformed} malformed, {errors} handler errors"
        )
        return 0
    print(f"server DIED: exit code {server.exitcode} (a negative code is the signal)")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

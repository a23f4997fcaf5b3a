"""Replay memory benchmark: tmrl2's RingMemory against tmrl 0.7.1's list memories, side by side.

Figures (medians over ``--rounds``; ratios are tmrl2 / tmrl, higher is better):

- sampled batches of 256 per second: LIDAR memory (4 x 19 history, speed, 2 past actions) and
  image memory (4 x 64 x 64 uint8 history), both with histories stored once per frame;
- appending chunks of 100 transitions into a full memory (``--full`` transitions) per second;
- bytes per image transition against the raw frame (4096 bytes);
- saving and loading an image memory of ``--image-size`` transitions (tmrl: pickle of its
  lists, as its checkpoints do); ours maps the saved files copy-on-write on load and the
  kernel reads them ahead, so the time until every page is in RAM is printed too. Before each
  load the page cache is emptied where the benchmark runs as root (as after a reboot);
- prioritized sampling of 256 among ``--full`` rows plus the priority update, per second.

tmrl runs in its own virtual environment (``/work/shared/tools/install_tmrl_baseline.sh``,
or ``--tmrl-python``), in a subprocess, so that it is never a dependency of tmrl2; where it is
absent its figures are skipped with a message. Run::

    .venv/bin/python benchmarks/bench_memory.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_memory.py --quick    # smaller sizes, a smoke test
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces
from timing import fraction, print_machine, rate
from tmrl_baseline import run_tmrl

from tmrl2.memory.batch import Batch
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

BATCH = 256
CHUNK = 100

LIDAR_SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1, (4, 19), np.float32),
    speed=spaces.Box(0, 1, (1,), np.float32),
    prev_actions=spaces.Box(-1, 1, (2, 3), np.float32),
)
IMAGE_SPACE = spaces.Dict(
    image=spaces.Box(0, 255, (4, 64, 64), np.uint8),
    speed=spaces.Box(0, 1, (1,), np.float32),
    prev_actions=spaces.Box(-1, 1, (2, 3), np.float32),
)
ACTION_SPACE = spaces.Box(-1, 1, (3,), np.float32)


def episode_chunks(
    space: spaces.Dict, steps: int, episode: int, rng: np.random.Generator
) -> list[dict[str, np.ndarray]]:
    """``steps`` transitions of episodes of ``episode`` steps, as chunks of ``CHUNK`` rows."""
    hist_key = "lidar" if "lidar" in space.spaces else "image"
    box = space.spaces[hist_key]
    assert box.shape is not None
    h, frame = box.shape[0], box.shape[1:]
    frames: np.ndarray
    if box.dtype == np.uint8:
        frames = rng.integers(0, 256, (steps + 1, *frame), dtype=np.uint8)
    else:
        frames = rng.random((steps + 1, *frame), dtype=np.float32)
    t = np.arange(steps + 1)
    start = (t // episode) * episode  # frame index of each step's episode start
    window = np.maximum(t[:, None] - np.arange(h - 1, -1, -1), start[:, None])
    chunks = []
    for lo in range(0, steps, CHUNK):
        hi = min(steps, lo + CHUNK)
        rows = np.arange(lo, hi)
        done = (rows + 1) % episode == 0
        obs_idx = window[rows]
        # the step after the last one of an episode is its final observation, same episode
        next_idx = np.maximum(rows[:, None] + 1 - np.arange(h - 1, -1, -1), start[rows, None])
        chunk = {
            f"obs/{hist_key}": frames[obs_idx],
            f"next_obs/{hist_key}": frames[next_idx],
            "obs/speed": rng.random((hi - lo, 1), dtype=np.float32),
            "obs/prev_actions": rng.random((hi - lo, 2, 3), dtype=np.float32),
            "action": rng.random((hi - lo, 3), dtype=np.float32),
            "reward": rng.random(hi - lo, dtype=np.float32),
            "terminated": done,
            "truncated": np.zeros(hi - lo, bool),
        }
        chunk["next_obs/speed"] = chunk["obs/speed"]
        chunk["next_obs/prev_actions"] = chunk["obs/prev_actions"]
        chunks.append(chunk)
    return chunks


def sync() -> None:
    """Flush written files to disk where the OS can (not timed)."""
    if hasattr(os, "sync"):
        os.sync()


def drop_caches() -> bool:
    """Empty Linux's page cache (root only), so that a load reads the disk; False if not."""
    sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        return False
    return True


def touch(memory: RingMemory) -> int:
    """Read one byte of every page of the memory's storage (brings a mapped memory in)."""
    total = 0
    arrays = list(memory._arrays.values())
    if memory.frames is not None:
        arrays += [*memory.frames.frames.values(), memory.frames.prev]
    for arr in arrays:
        flat = arr.reshape(-1).view(np.uint8)
        total += int(flat[::4096].sum())
    return total


def fill(memory: RingMemory, chunks: list[dict[str, np.ndarray]], total: int) -> None:
    done = 0
    while done < total:
        for chunk in chunks:
            memory.append(chunk)
            done += len(chunk["reward"])
            if done >= total:
                return


def ours(args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(0)
    return {**ours_lidar(args, rng), **ours_prioritized(args), **ours_image(args, rng)}


def sample_and_append(
    memory: RingMemory, chunks: list[dict[str, np.ndarray]], args: argparse.Namespace
) -> tuple[float, float]:
    """Batches sampled per second and transitions appended per second, once full."""
    fill(memory, chunks, args.full + 10 * CHUNK)  # full, and wrapped
    batches = rate(lambda: memory.sample(BATCH), 200, args.rounds)
    chunk_iter = iter(chunks * 1000)
    appended = rate(lambda: memory.append(next(chunk_iter)), 100, args.rounds) * CHUNK
    return batches, appended


def batch_bytes(batch: Batch) -> float:
    """Bytes a sampled batch gathers (every tensor and array of it)."""
    parts = [*batch.obs.values(), *batch.next_obs.values(), batch.action, batch.reward]
    parts += [batch.terminated, batch.weights]
    return float(sum(p.numel() * p.element_size() for p in parts) + batch.indices.nbytes)


def ours_lidar(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    chunks = episode_chunks(LIDAR_SPACE, 20_000, 500, rng)
    out: dict[str, float] = {}
    for suffix, keys in (("", ("lidar",)), ("_plain", ())):
        config = RingMemoryConfig(capacity=args.full, history_keys=keys)
        batches, appended = sample_and_append(
            RingMemory(config, LIDAR_SPACE, ACTION_SPACE), chunks, args
        )
        out[f"lidar{suffix}_batches_per_s"] = batches
        out["append_plain_samples_per_s" if suffix else "append_full_samples_per_s"] = appended
    return out


def ours_prioritized(args: argparse.Namespace) -> dict[str, float]:
    prio = RingMemory(
        RingMemoryConfig(capacity=args.full, sampler="prioritized"),
        spaces.Box(-1, 1, (4,)),
        ACTION_SPACE,
    )
    n = args.full
    prio.append(
        {
            "obs": np.zeros((n, 4), np.float32),
            "next_obs": np.zeros((n, 4), np.float32),
            "action": np.zeros((n, 3), np.float32),
            "reward": np.zeros(n, np.float32),
            "terminated": np.zeros(n, bool),
            "truncated": np.zeros(n, bool),
        }
    )
    td = torch.rand(BATCH)

    def prioritized_step() -> None:
        batch = prio.sample(BATCH)
        prio.update_priorities(batch.indices, td)

    return {"prioritized_per_s": rate(prioritized_step, 200, args.rounds)}


def ours_image(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, float]:
    out: dict[str, float] = {}
    image_chunks = episode_chunks(IMAGE_SPACE, 5_000, 500, rng)
    config = RingMemoryConfig(capacity=args.image_size, history_keys=("image",))
    image = RingMemory(config, IMAGE_SPACE, ACTION_SPACE)
    fill(image, image_chunks, args.image_size)
    out["image_batches_per_s"] = rate(lambda: image.sample(BATCH), 50, args.rounds)
    out["image_batch_bytes"] = batch_bytes(image.sample(BATCH))
    big = RingMemoryConfig(capacity=1_000_000, history_keys=("image",), check_ram=False)
    out["image_bytes_per_transition_1e6"] = RingMemory(
        big, IMAGE_SPACE, ACTION_SPACE
    ).bytes_per_transition
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.tmp))
    try:
        saves, loads, resident = [], [], []
        cold = False
        for _ in range(max(1, args.rounds // 2)):
            start = time.perf_counter()
            image.save(folder / "memory")
            saves.append(time.perf_counter() - start)
            # the load reads the disk, as after a reboot: the page cache is emptied where
            # this process may (root), for tmrl's load too
            cold = drop_caches()
            restored = RingMemory(config, IMAGE_SPACE, ACTION_SPACE)
            start = time.perf_counter()
            restored.load(folder / "memory")
            loads.append(time.perf_counter() - start)
            # the loaded memory maps the saved files (copy-on-write) and the kernel reads them
            # ahead in the background: sampling works at once; time until every page is in
            touch(restored)
            resident.append(time.perf_counter() - start)
            del restored
        out["image_save_s"] = statistics.median(saves)
        out["image_load_s"] = statistics.median(loads)
        out["image_resident_s"] = statistics.median(resident)
        out["cold_cache"] = float(cold)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


TMRL_SCRIPT = r"""
import gc, json, os, pickle, resource, statistics, sys, time
import numpy as np
from tmrl.custom.custom_memories import (
    MemoryTMLidar, MemoryTMFull, get_local_buffer_sample_lidar, get_local_buffer_sample_tm20_imgs
)
args = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
BATCH, CHUNK, rounds = 256, 100, args["rounds"]

class Buffer:
    stat_train_return = stat_test_return = 0.0
    stat_train_steps = stat_test_steps = 0
    def __init__(self, memory): self.memory = memory
    def __len__(self): return len(self.memory)

def rate(fn, calls):
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rates.append(calls / (time.perf_counter() - start))
    return statistics.median(rates)

def lidar_samples(n):
    out = []
    for t in range(n):
        act = rng.random(3, dtype=np.float32)
        obs = (rng.random(1, dtype=np.float32), rng.random((4, 19), dtype=np.float32), act, act)
        done = (t + 1) % 500 == 0
        out.append(get_local_buffer_sample_lidar(act, obs, 0.5, done, False, {}))
    return out

def image_samples(n):
    out = []
    for t in range(n):
        act = rng.random(3, dtype=np.float32)
        img = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
        one = np.ones(1, np.float32)
        obs = (rng.random(1, dtype=np.float32), one, one, img, act, act)
        done = (t + 1) % 500 == 0
        out.append(get_local_buffer_sample_tm20_imgs(act, obs, 0.5, done, False, {}))
    return out

res = {}
full = args["full"]
lidar = MemoryTMLidar(memory_size=full, batch_size=BATCH, imgs_obs=4, act_buf_len=2, device="cpu")
block = lidar_samples(20000)
while len(lidar) < full:
    lidar.append(Buffer(block))
res["lidar_batches_per_s"] = rate(lidar.sample, 20)
chunk = Buffer(block[:CHUNK])
res["append_full_samples_per_s"] = rate(lambda: lidar.append(chunk), 10) * CHUNK
del lidar, block
gc.collect()

n = args["image_size"]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

rss0 = rss()
image = MemoryTMFull(memory_size=n, batch_size=BATCH, imgs_obs=4, act_buf_len=2, device="cpu")
block = image_samples(5000)
while len(image) < n:
    image.append(Buffer(block if len(image) + 5000 <= n + 10 else block[: n + 10 - len(image)]))
    block = image_samples(5000)  # fresh frames: no sharing of arrays between rounds
res["image_batches_per_s"] = rate(image.sample, 5)
image_bytes = (rss() - rss0) / len(image)
start = time.perf_counter()
with open(args["pickle_path"], "wb") as f:
    pickle.dump(image.data, f)
res["image_save_s"] = time.perf_counter() - start
if hasattr(os, "sync"):
    os.sync()
try:  # read the disk, as after a reboot (root only), like tmrl2's load in this benchmark
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")
    res["cold_cache"] = 1.0
except OSError:
    res["cold_cache"] = 0.0
start = time.perf_counter()
with open(args["pickle_path"], "rb") as f:
    data = pickle.load(f)
res["image_load_s"] = time.perf_counter() - start
del data
res["image_bytes_per_transition_measured"] = image_bytes
print("RESULT " + json.dumps(res))
"""


def tmrl(args: argparse.Namespace) -> dict[str, float] | None:
    folder = Path(tempfile.mkdtemp(prefix="bench-tmrl-", dir=args.tmp))
    payload = {
        "rounds": args.rounds,
        "full": args.full,
        "image_size": args.image_size,
        "pickle_path": str(folder / "data.pkl"),
    }
    try:
        return run_tmrl(
            TMRL_SCRIPT,
            payload,
            home="home_full",
            timeout_s=args.tmrl_timeout_s,
            python=args.tmrl_python,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


ROWS = [
    ("lidar_batches_per_s", "LIDAR batches of 256 per s, frames once", True),
    ("lidar_plain_batches_per_s", "LIDAR batches of 256 per s, rows as is", True),
    ("image_batches_per_s", "image batches of 256 per s, frames once", True),
    ("append_full_samples_per_s", "appends/s into full LIDAR memory, frames once", True),
    ("append_plain_samples_per_s", "appends/s into full LIDAR memory, rows as is", True),
    ("prioritized_per_s", "prioritized sample 256 + update per s", True),
    ("image_save_s", "image memory save, s", False),
    ("image_load_s", "image memory load, s", False),
    ("image_resident_s", "image memory load until all in RAM, s", False),
]


def report(mine: dict[str, float], base: dict[str, float] | None, args: argparse.Namespace) -> None:
    print(
        f"\nreplay memory benchmark: full memory {args.full:,} LIDAR transitions, image memory "
        f"{args.image_size:,} transitions, median of {args.rounds} rounds"
    )
    print(f"{'figure':44s} {'tmrl2':>12s} {'tmrl 0.7.1':>12s} {'ratio':>8s}")
    same = {"lidar_plain_batches_per_s": "lidar_batches_per_s"}
    same["append_plain_samples_per_s"] = "append_full_samples_per_s"
    same["image_resident_s"] = "image_load_s"
    for key, label, higher in ROWS:
        value = mine[key]
        other = base.get(same.get(key, key)) if base else None
        ratio = "" if other is None else f"{(value / other if higher else other / value):7.1f}x"
        other_s = "-" if other is None else f"{other:12.4g}"
        print(f"{label:44s} {value:12.4g} {other_s:>12s} {ratio:>8s}")
    per = mine["image_bytes_per_transition_1e6"]
    print(
        f"{'bytes per image transition (tmrl: RSS)':44s} {per:12.0f} "
        + (f"{base['image_bytes_per_transition_measured']:12.0f}" if base else f"{'-':>12s}")
        + f"   ({per / 4096:.3f}x the 4096-byte raw frame)"
    )
    print("(for save/load, ratio = tmrl time / tmrl2 time; tmrl pickles its lists)")
    caches = [mine.get("cold_cache", 0.0)] + ([base.get("cold_cache", 0.0)] if base else [])
    print(
        "(loads read the disk: page cache emptied before each)"
        if all(caches)
        else "(the page cache could not be emptied (not root): loads may read from RAM)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (median taken)")
    parser.add_argument("--full", type=int, default=1_000_000, help="capacity of full memories")
    parser.add_argument("--image-size", type=int, default=100_000, help="image transitions")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--no-tmrl", action="store_true", help="skip tmrl 0.7.1")
    parser.add_argument("--tmrl-python", default=None, help="python of a venv with tmrl 0.7.1")
    parser.add_argument("--tmrl-timeout-s", type=float, default=1800.0)
    parser.add_argument("--tmp", default=None, help="folder for the saved memories")
    args = parser.parse_args()
    if args.quick:
        args.full, args.image_size, args.rounds = 50_000, 5_000, 3
    torch.set_num_threads(1)
    ceiling = print_machine(quick=args.quick)["mem_bandwidth_gbs"]
    mine = ours(args)
    base = None if args.no_tmrl else tmrl(args)
    report(mine, base, args)
    gathered = mine["image_batches_per_s"] * mine["image_batch_bytes"] / 1e9
    print(
        f"image batches gather {gathered:.2f} GB/s: "
        f"{fraction(gathered, ceiling)} (memory copy {ceiling:.1f} GB/s, 1 thread)"
    )


if __name__ == "__main__":
    main()

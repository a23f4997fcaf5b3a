"""Saving and loading whole memories (raw arrays, no pickle) and RAM accounting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tmrl2.memory import persist
from tmrl2.memory.accounting import available_ram_bytes, check_fits, format_bytes
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

SPACE = spaces.Dict(
    lidar=spaces.Box(0, 1e9, (3, 4), np.float32), speed=spaces.Box(0, 1e9, (1,), np.float32)
)
ACTION_SPACE = spaces.Box(-1, 1, (2,))


def episode_chunk(first: int, n: int) -> dict[str, np.ndarray]:
    """One episode of ``n`` steps whose LIDAR frame ``t`` is ``first + t`` (repeat padding)."""
    frames = first + np.arange(n + 1, dtype=np.float32)
    hist = np.stack([frames[np.maximum(np.arange(t - 2, t + 1), 0)] for t in range(n + 1)])
    lidar = np.repeat(hist[:, :, None], 4, axis=2)
    done = np.arange(n) == n - 1
    return {
        "obs/lidar": lidar[:-1],
        "next_obs/lidar": lidar[1:],
        "obs/speed": frames[:-1, None],
        "next_obs/speed": frames[1:, None],
        "action": np.repeat(frames[:-1, None], 2, axis=1),
        "reward": frames[:-1].copy(),
        "terminated": done,
        "truncated": np.zeros(n, bool),
    }


def filled(config: RingMemoryConfig, seed: int = 0) -> RingMemory:
    memory = RingMemory(config, SPACE, ACTION_SPACE, seed=seed)
    for e in range(9):
        memory.append(episode_chunk(100 * e, 7))  # 63 transitions: wraps a capacity of 40
    return memory


CONFIGS = [
    RingMemoryConfig(capacity=40),
    RingMemoryConfig(capacity=40, history_keys=("lidar",), sampler="prioritized"),
    RingMemoryConfig(capacity=100, history_keys=("lidar",)),  # not full yet
]


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_save_load_round_trip(
    tmp_path: Path, config: RingMemoryConfig, mapped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if mapped:  # large arrays: written with direct I/O, memory-mapped on load
        monkeypatch.setattr(persist, "MMAP_MIN_BYTES", 0)
        monkeypatch.setattr(persist, "DIRECT_MIN_BYTES", 0)
        monkeypatch.setattr(persist, "DIRECT_BLOCK", 8192)
    memory = filled(config)
    if memory.wants_priorities:
        memory.update_priorities(np.arange(10), np.linspace(0, 5, 10))
    memory.sample(8)
    path = memory.save(tmp_path / "memory")
    assert (path / "meta.json").is_file()
    for file in path.glob("*.npy"):
        np.load(file, allow_pickle=False)  # every file loads without pickle
    restored = RingMemory(config, SPACE, ACTION_SPACE, seed=123)
    restored.load(path)
    assert len(restored) == len(memory) and restored.total_appended == memory.total_appended
    every = np.arange(len(memory))
    for field in ("obs", "next_obs"):
        for key, tensor in getattr(memory.gather(every), field).items():
            torch.testing.assert_close(getattr(restored.gather(every), field)[key], tensor)
    a, b = memory.sample(32), restored.sample(32)  # the sampler's state came back too
    np.testing.assert_array_equal(a.indices, b.indices)
    torch.testing.assert_close(a.weights, b.weights)
    # appending after a load goes on where the saved memory was
    memory.append(episode_chunk(5000, 5))
    restored.append(episode_chunk(5000, 5))
    torch.testing.assert_close(
        restored.gather(every).obs["lidar"], memory.gather(every).obs["lidar"]
    )


@pytest.mark.parametrize("config", CONFIGS[:2])
def test_loaded_files_are_adopted_copy_on_write(
    tmp_path: Path, config: RingMemoryConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full memory keeps the saved files mapped as its storage: writing to it never changes
    the files, and saving over the folder it was loaded from keeps both right."""
    monkeypatch.setattr(persist, "MMAP_MIN_BYTES", 0)
    memory = filled(config)
    path = memory.save(tmp_path / "memory")
    every = np.arange(len(memory))
    saved = memory.gather(every).obs["lidar"].clone()
    restored = RingMemory(config, SPACE, ACTION_SPACE)
    restored.load(path)
    storage = [
        *restored._arrays.values(),
        *(restored.frames.frames.values() if restored.frames else ()),
    ]
    assert all(isinstance(arr.base, np.memmap) for arr in storage)  # adopted, not copied
    restored.append(episode_chunk(7000, 20))  # overwrite half the ring
    changed = restored.gather(every).obs["lidar"]
    assert not torch.equal(changed, saved)
    again = RingMemory(config, SPACE, ACTION_SPACE)
    again.load(path)  # the files still hold what was saved
    torch.testing.assert_close(again.gather(every).obs["lidar"], saved)
    restored.save(path)  # replaces the files that ``restored`` maps
    latest = RingMemory(config, SPACE, ACTION_SPACE)
    latest.load(path)
    torch.testing.assert_close(latest.gather(every).obs["lidar"], changed)
    torch.testing.assert_close(restored.gather(every).obs["lidar"], changed)


def test_windows_copies_instead_of_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persist, "MMAP_MIN_BYTES", 0)
    monkeypatch.setattr(persist, "ADOPT_MAPPED", False)
    memory = filled(CONFIGS[0])
    path = memory.save(tmp_path / "memory")
    restored = RingMemory(CONFIGS[0], SPACE, ACTION_SPACE)
    before = dict(restored._arrays)
    restored.load(path)
    assert all(restored._arrays[k] is arr for k, arr in before.items())  # filled in place


def test_save_replaces_atomically_and_bad_folders_are_refused(tmp_path: Path) -> None:
    memory = filled(CONFIGS[0])
    path = memory.save(tmp_path / "memory")
    memory.append(episode_chunk(9000, 3))
    memory.save(path)  # over an existing save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory"]
    restored = RingMemory(CONFIGS[0], SPACE, ACTION_SPACE)
    restored.load(path)
    assert restored.total_appended == memory.total_appended
    with pytest.raises(FileNotFoundError, match="meta.json"):
        restored.load(tmp_path / "nothing")
    other = RingMemory(RingMemoryConfig(capacity=41), SPACE, ACTION_SPACE)
    with pytest.raises(ValueError, match="capacity 40"):
        other.load(path)
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ValueError, match="version"):
        restored.load(path)


def test_frames_and_rows_of_other_shapes_are_refused(tmp_path: Path) -> None:
    memory = filled(CONFIGS[1])
    path = memory.save(tmp_path / "m")
    space = spaces.Dict(
        lidar=spaces.Box(0, 1e9, (3, 5), np.float32), speed=spaces.Box(0, 1e9, (1,), np.float32)
    )
    other = RingMemory(CONFIGS[1], space, ACTION_SPACE)
    with pytest.raises(ValueError, match="lidar"):
        other.load(path)
    with pytest.raises(ValueError, match="snapshot"):
        memory.state_dict()
    with pytest.raises(ValueError, match="cannot be saved"):
        persist.save_snapshot(
            {"arrays": {"a--b": np.zeros(1)}, "counters": {}, "sampler": {}}, tmp_path / "x"
        )


def test_available_ram_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemFree:  1000 kB\nMemAvailable:  2048 kB\n")
    assert available_ram_bytes(meminfo) == 2048 * 1024
    assert available_ram_bytes(tmp_path / "missing") is None or available_ram_bytes() > 0
    assert format_bytes(1536 * 1024**2) == "1.5 GiB" and format_bytes(12) == "12 B"


def test_capacity_that_does_not_fit_fails_at_start_up_naming_the_key() -> None:
    check_fits(100, 1000, available=100_000)  # exactly fits
    with pytest.raises(MemoryError, match=r"memory.capacity to at most 999"):
        check_fits(100, 1000, fixed_bytes=50, available=100_000)
    huge = RingMemoryConfig(capacity=10**12)
    with pytest.raises(MemoryError, match="memory.capacity"):
        RingMemory(huge, SPACE, ACTION_SPACE)
    with pytest.raises(MemoryError, match="memory.capacity"):
        RingMemory(huge.model_copy(update={"history_keys": ("lidar",)}), SPACE, ACTION_SPACE)


@pytest.mark.parametrize("shape", [(3,), (1000, 4, 64), (4097,), (2, 8192), (0, 5)])
def test_direct_io_writes_the_same_npy(
    tmp_path: Path, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large arrays bypass the page cache through an aligned staging buffer: the file is
    byte for byte what ``np.save`` writes, whatever the block boundaries."""
    monkeypatch.setattr(persist, "DIRECT_BLOCK", 8192)  # many blocks, a ragged last one
    array = np.random.default_rng(0).random(shape).astype(np.float32)
    np.save(tmp_path / "reference.npy", array, allow_pickle=False)
    if not persist._write_direct(tmp_path / "direct.npy", array):
        pytest.skip("this file system has no direct I/O (tmpfs?)")
    assert (tmp_path / "direct.npy").read_bytes() == (tmp_path / "reference.npy").read_bytes()
    monkeypatch.setattr(persist, "DIRECT_MIN_BYTES", 0)
    persist.write_npy(tmp_path / "via_save.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "via_save.npy"), array)

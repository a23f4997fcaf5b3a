"""HDF5 trajectory writer and reader: round trip, interleaved workers, clean stops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from tmrl2.memory.recorder import TrajectoryWriter, load_into, read_chunks
from tmrl2.memory.ring import RingMemory, RingMemoryConfig

SPACE = spaces.Dict(
    image=spaces.Box(0, 255, (2, 4, 4), np.uint8), speed=spaces.Box(0, 1e9, (1,), np.float32)
)
ACTION_SPACE = spaces.Box(-1, 1, (2,))


def chunk(first: int, n: int, done_at_end: bool = True) -> dict[str, np.ndarray]:
    ids = first + np.arange(n + 1)
    hist = np.stack([ids[np.maximum([t - 1, t], 0)] for t in range(n + 1)]) % 256
    image = np.broadcast_to(hist[:, :, None, None], (n + 1, 2, 4, 4)).astype(np.uint8)
    speed = ids[:, None].astype(np.float32)
    return {
        "obs/image": image[:-1],
        "next_obs/image": image[1:],
        "obs/speed": speed[:-1],
        "next_obs/speed": speed[1:],
        "action": np.repeat(speed[:-1], 2, axis=1),
        "reward": speed[:-1, 0].copy(),
        "terminated": (np.arange(n) == n - 1) & done_at_end,
        "truncated": np.zeros(n, bool),
    }


def test_round_trip_keeps_sources_apart_and_refills_a_memory(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with TrajectoryWriter(path, compression="lzf") as writer:
        writer.append(chunk(0, 5, done_at_end=False), source=1)
        writer.append(chunk(1000, 3), source=2)
        writer.append(chunk(5, 4), source=1)  # worker 1's episode goes on
    assert writer.rows_written == 12
    chunks = list(read_chunks(path))
    assert [len(c["reward"]) for c in chunks] == [5, 3, 4]
    np.testing.assert_array_equal(chunks[2]["obs/image"], chunk(5, 4)["obs/image"])
    assert "source" not in chunks[0]
    memory = RingMemory(RingMemoryConfig(capacity=32, history_keys=("image",)), SPACE, ACTION_SPACE)
    assert load_into(memory, path) == 12
    batch = memory.gather(np.arange(12))
    expected = np.concatenate(
        [chunk(0, 5, False)["obs/image"], chunk(1000, 3)["obs/image"], chunk(5, 4)["obs/image"]]
    )
    torch.testing.assert_close(batch.obs["image"], torch.from_numpy(expected))
    # a second writer appends to the same file
    with TrajectoryWriter(path) as writer:
        assert writer.rows_written == 12
        writer.append(chunk(2000, 2), source=3)
    assert sum(len(c["reward"]) for c in read_chunks(path, max_rows=2)) == 14


def test_a_clean_stop_loses_no_episode(tmp_path: Path) -> None:
    path = tmp_path / "stop.h5"
    script = textwrap.dedent(
        f"""
        import numpy as np
        from tmrl2.memory.recorder import TrajectoryWriter
        writer = TrajectoryWriter({str(path)!r}, flush_every_s=3600)
        for e in range(200):
            done = np.arange(7) == 6
            writer.append(
                {{"obs/image": np.full((7, 2, 4, 4), e, np.uint8), "reward": np.ones(7, np.float32),
                 "terminated": done, "truncated": np.zeros(7, bool)}},
                source=e % 3,
            )
        # no close(): the interpreter's exit must drain the queue
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    rows = [c for c in read_chunks(path)]
    reward = np.concatenate([c["reward"] for c in rows])
    assert len(reward) == 1400
    assert int(np.concatenate([c["terminated"] for c in rows]).sum()) == 200


def test_errors_are_reported(tmp_path: Path) -> None:
    writer = TrajectoryWriter(tmp_path / "bad.h5")
    writer.append(chunk(0, 3))
    bad = chunk(0, 3)
    bad["action"] = np.zeros((3, 5), np.float32)  # another shape than the file's dataset
    writer.append(bad)
    with pytest.raises(RuntimeError, match="failed"):
        writer.close()
    with pytest.raises(RuntimeError):
        writer.append(chunk(0, 1))
    (tmp_path / "other.h5").write_bytes(b"")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w"):
        pass
    with pytest.raises(ValueError, match="not a tmrl2-trajectories"):
        list(read_chunks(tmp_path / "other.h5"))

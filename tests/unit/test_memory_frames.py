"""De-duplicated frame histories: rebuilt histories equal the env's, at episode starts, across
chunks of interleaved workers and across both rings' wrap-around (property-based)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from tmrl2.memory.ring import RingMemory, RingMemoryConfig

ACTION_SPACE = spaces.Box(-1, 1, (2,))


def obs_space(lidar_h: int, image_h: int) -> spaces.Dict:
    return spaces.Dict(
        lidar=spaces.Box(0, 1e9, (lidar_h, 3), np.float32),
        image=spaces.Box(0, 255, (image_h, 2, 2), np.uint8),
        speed=spaces.Box(0, 1e9, (1,), np.float32),
    )


@dataclass
class Stream:
    """A worker: an env whose frame ``k`` of the run is the unique number ``first_id + k``."""

    lidar_h: int
    image_h: int
    pad: str  # "repeat": histories start with copies of the first frame; "zeros": zero frames
    next_id: int
    autoreset: bool = False  # the last next_obs is the next episode's first obs (vector envs)
    rows: list[dict[str, np.ndarray]] = field(default_factory=list)

    def _obs(self, frames: list[int]) -> dict[str, np.ndarray]:
        def history(h: int) -> list[float]:
            window = frames[-h:]
            pad = [frames[0] if self.pad == "repeat" else 0] * (h - len(window))
            return pad + window

        lidar = np.array(history(self.lidar_h), np.float32)[:, None] * np.array([1, 2, 3])
        # images wrap around at 251: equal frames of other episodes must not break anything
        image = (np.array(history(self.image_h)) % 251).astype(np.uint8)
        return {
            "lidar": lidar.astype(np.float32),
            "image": np.broadcast_to(image[:, None, None], (self.image_h, 2, 2)).copy(),
            "speed": np.array([frames[-1]], np.float32),
        }

    def play(self, length: int, terminated: bool) -> None:
        frames = [self._take()]
        for t in range(length):
            obs = self._obs(frames)
            frames.append(self._take())
            last = t == length - 1
            if last and self.autoreset:
                frames = [frames[-1]]
            self.rows.append(
                {
                    "obs": obs,
                    "next_obs": self._obs(frames),
                    "action": np.full(2, frames[-1], np.float32),
                    "terminated": np.bool_(last and terminated),
                    "truncated": np.bool_(last and not terminated),
                }
            )

    def _take(self) -> int:
        self.next_id += 1
        return self.next_id


def to_chunk(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    chunk: dict[str, np.ndarray] = {}
    for prefix in ("obs", "next_obs"):
        for part in ("lidar", "image", "speed"):
            chunk[f"{prefix}/{part}"] = np.stack([r[prefix][part] for r in rows])
    chunk["action"] = np.stack([r["action"] for r in rows])
    chunk["reward"] = chunk["action"][:, 0].copy()
    chunk["terminated"] = np.array([r["terminated"] for r in rows])
    chunk["truncated"] = np.array([r["truncated"] for r in rows])
    return chunk


layouts = st.fixed_dictionaries(
    {
        "lidar_h": st.integers(1, 4),
        "image_h": st.integers(1, 3),
        "pad": st.sampled_from(["repeat", "zeros"]),
        "episodes": st.lists(
            st.lists(st.tuples(st.integers(1, 9), st.booleans()), min_size=1, max_size=5),
            min_size=1,
            max_size=3,
        ),
        "chunk": st.integers(1, 7),
        "capacity": st.integers(1, 40),
        "frame_capacity": st.one_of(st.none(), st.integers(4, 60)),
        "order_seed": st.integers(0, 2**16),
        "lost": st.sampled_from([0.0, 0.3]),  # transitions a worker lost (no episode end)
        "autoreset": st.booleans(),
    }
)


def fill(layout: dict) -> tuple[RingMemory, list[dict[str, np.ndarray]]]:
    """A memory filled with the layout's chunks, and every appended transition in order."""
    space = obs_space(layout["lidar_h"], layout["image_h"])
    config = RingMemoryConfig(
        capacity=layout["capacity"],
        history_keys=("image", "lidar"),
        frame_capacity=layout["frame_capacity"],
    )
    memory = RingMemory(config, space, ACTION_SPACE)
    chunks: list[list[list[dict[str, np.ndarray]]]] = []
    order = np.random.default_rng(layout["order_seed"])
    for w, episodes in enumerate(layout["episodes"]):
        first_id = 1000 * (w + 1)
        stream = Stream(
            layout["lidar_h"], layout["image_h"], layout["pad"], first_id, layout["autoreset"]
        )
        for length, terminated in episodes:
            stream.play(length, terminated)
        kept = [row for row in stream.rows if order.random() >= layout["lost"]]
        size = layout["chunk"]
        chunks.append([kept[i : i + size] for i in range(0, len(kept), size)])
    appended: list[dict[str, np.ndarray]] = []
    while any(chunks):
        queue = order.choice([w for w, c in enumerate(chunks) if c])
        rows = chunks[queue].pop(0)  # each worker's chunks stay in order, workers interleave
        memory.append(to_chunk(rows))
        appended.extend(rows)
    return memory, appended


@settings(max_examples=60, deadline=None, database=None)
@given(layouts)
def test_histories_equal_a_naive_reconstruction(layout: dict) -> None:
    memory, appended = fill(layout)
    total, cap = len(appended), layout["capacity"]
    assert len(memory) == min(total, cap)
    rows = np.arange(len(memory))
    valid = ~memory._stale(rows)
    batch = memory.gather(rows[valid])
    for i, row in enumerate(rows[valid]):
        t = total - 1 - ((total - 1 - row) % cap)  # the transition that row holds
        expected = appended[t]
        for part in ("lidar", "image", "speed"):
            np.testing.assert_array_equal(batch.obs[part][i].numpy(), expected["obs"][part])
            np.testing.assert_array_equal(
                batch.next_obs[part][i].numpy(), expected["next_obs"][part]
            )
        np.testing.assert_array_equal(batch.action[i].numpy(), expected["action"])
    if layout["frame_capacity"] is None:  # the default frame ring never loses a live row
        assert valid.all()


def test_episode_start_never_shows_the_previous_episode() -> None:
    space = obs_space(4, 3)
    memory = RingMemory(
        RingMemoryConfig(capacity=50, history_keys=("image", "lidar")), space, ACTION_SPACE
    )
    stream = Stream(4, 3, "zeros", 0)
    for _ in range(10):
        stream.play(3, terminated=False)  # truncated episodes: the frames go on counting
    memory.append(to_chunk(stream.rows))
    batch = memory.gather(np.arange(30))
    lidar = batch.obs["lidar"][:, :, 0]  # (30, 4) frame numbers, zero padding
    step = torch.arange(30) % 3
    for k in range(4):
        before_start = step < 3 - k  # history position k looks back 3 - k steps
        assert (lidar[before_start, k] == 0).all()  # padding, never the last episode's frame
    torch.testing.assert_close(batch.next_obs["lidar"][:, :-1], batch.obs["lidar"][:, 1:])


def test_frames_are_stored_once_per_step() -> None:
    space = spaces.Dict(image=spaces.Box(0, 255, (4, 64, 64), np.uint8))
    naive = RingMemory(RingMemoryConfig(capacity=1000), space, ACTION_SPACE)
    framed = RingMemory(
        RingMemoryConfig(capacity=1000, history_keys=("image",), frame_slack=0.05),
        space,
        ACTION_SPACE,
    )
    assert naive.bytes_per_transition > 8 * 4096
    # one frame per transition, 5 % slack plus 1024 spare slots at this tiny capacity
    assert 4096 < framed.bytes_per_transition < 2.2 * 4096
    big = RingMemory(
        RingMemoryConfig(capacity=1_000_000, history_keys=("image",), check_ram=False),
        space,
        ACTION_SPACE,
    )
    assert big.bytes_per_transition <= 1.1 * 4096


def test_stale_rows_are_redrawn_and_too_small_a_frame_ring_says_so() -> None:
    space = obs_space(3, 1)
    config = RingMemoryConfig(capacity=30, history_keys=("lidar", "image"), frame_capacity=8)
    memory = RingMemory(config, space, ACTION_SPACE)
    stream = Stream(3, 1, "repeat", 0)
    for _ in range(10):
        stream.play(2, terminated=True)  # each episode stores 3 + 2 frames
    memory.append(to_chunk(stream.rows))
    assert memory._stale(np.arange(20)).sum() >= 17  # only the last episode's frames remain
    batch = memory.sample(64)
    assert not memory._stale(batch.indices).any()
    torch.testing.assert_close(batch.obs["speed"][:, 0] + 1, batch.next_obs["speed"][:, 0])
    tiny = RingMemory(config.model_copy(update={"frame_capacity": 3}), space, ACTION_SPACE)
    tiny.append(to_chunk(stream.rows))
    with pytest.raises(RuntimeError, match="frame_slack"):
        tiny.sample(8)


def test_history_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="not observation parts"):
        RingMemory(
            RingMemoryConfig(capacity=4, history_keys=("camera",)), obs_space(2, 2), ACTION_SPACE
        )
    with pytest.raises(ValueError, match="2 dimensions"):
        RingMemory(
            RingMemoryConfig(capacity=4, history_keys=("speed",)), obs_space(2, 2), ACTION_SPACE
        )

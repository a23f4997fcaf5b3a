"""Image histories sent once per frame: the compact chunk equals the plain one once expanded,
is several times smaller, passes the wire checks, and bad indices are refused."""

from __future__ import annotations

import numpy as np

from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.memory.compact import expand_chunk
from tmrl2.net.codec import Message, decode, encode
from tmrl2.roles.chunk_checks import check_chunk_arrays
from tmrl2.roles.chunks import ChunkBuilder, image_keys


def _chunks(compact: bool, steps: int = 130, size: int = 50) -> list[dict[str, np.ndarray]]:
    env = SimEnv(SimEnvConfig(image=True, image_width=16, image_height=16, max_episode_steps=40))
    builder = ChunkBuilder(env.observation_space, env.action_space, size, compact=compact)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    out = []
    for _ in range(steps):
        action = rng.uniform(-1, 1, 3).astype(np.float32)
        nxt, reward, terminated, truncated, _ = env.step(action)
        builder.add(obs, action, reward, terminated, truncated, nxt)
        obs = nxt
        if terminated or truncated:  # episodes restart inside chunks
            obs, _ = env.reset()
        if builder.full:
            out.append(builder.take())
    out.append(builder.take())
    return out


def test_expanded_compact_chunks_equal_plain_chunks_across_resets() -> None:
    plain, compact = _chunks(False), _chunks(True)
    assert len(plain) == len(compact) == 3
    for p, c in zip(plain, compact, strict=True):
        assert "obs/image" not in c and "frames/image" in c
        expanded = expand_chunk(c)
        assert set(expanded) == set(p)
        for key in p:
            np.testing.assert_array_equal(expanded[key], p[key], err_msg=key)
    full = sum(p["obs/image"].nbytes + p["next_obs/image"].nbytes for p in plain)
    sent = sum(c["frames/image"].nbytes for c in compact)
    assert full / sent > 6  # 4-frame histories: about 8x fewer image bytes


def test_only_uint8_histories_are_compacted() -> None:
    env = SimEnv(SimEnvConfig(image=True))
    assert image_keys(env.observation_space) == ["image"]
    assert image_keys(SimEnv().observation_space) == []


def _meta(n: int) -> dict[str, object]:
    return {"worker": "w", "policy_version": 0, "n": n, "episodes": []}


def _wire(arrays: dict[str, np.ndarray], n: int) -> Message:
    return decode(encode(Message("chunk", _meta(n), arrays)))


def test_the_wire_carries_compact_chunks_and_the_checks_refuse_bad_indices() -> None:
    chunk = _chunks(True, steps=20, size=20)[0]
    n = len(chunk["reward"])
    got = _wire(chunk, n)
    np.testing.assert_array_equal(got.arrays["frames/image"], chunk["frames/image"])
    assert check_chunk_arrays(got.arrays, n, None) is None
    bad = dict(chunk)
    bad["obs_index/image"] = bad["obs_index/image"].copy()
    bad["obs_index/image"][0, 0] = len(chunk["frames/image"])
    assert "points outside" in str(check_chunk_arrays(bad, n, None))  # server and trainer drop it
    missing = {k: v for k, v in chunk.items() if k != "next_index/image"}
    assert "lacks its next_index/image" in str(check_chunk_arrays(missing, n, None))
    orphan = {k: v for k, v in chunk.items() if k != "frames/image"}
    assert "without its frames/image" in str(check_chunk_arrays(orphan, n, None))

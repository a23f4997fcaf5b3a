"""Packed messages (codec ``"p": 1``): a chunk's arrays in one frame after its header."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

import tmrl2.net.codec as codec
from tmrl2.net.codec import (
    PACK_ALIGN,
    PACK_MAX_BYTES,
    Message,
    decode,
    decode_many,
    encode,
)
from tmrl2.net.errors import DecodeError


def chunk(n: int = 5) -> Message:
    rng = np.random.default_rng(0)
    arrays = {
        "obs/lidar": rng.random((n, 1, 19), dtype=np.float32),
        "obs/speed": rng.random((n, 1), dtype=np.float32),
        "next_obs/lidar": rng.random((n, 1, 19), dtype=np.float32),
        "next_obs/speed": rng.random((n, 1), dtype=np.float32),
        "action": rng.random((n, 3), dtype=np.float32),
        "reward": rng.random(n, dtype=np.float32),
        "terminated": np.arange(n) % 2 == 0,  # 5 bytes: the next array starts padded
        "truncated": np.zeros(n, bool),
    }
    meta = {"worker": "w", "policy_version": 0, "n": n, "episodes": []}
    return Message("chunk", meta, arrays)


def test_a_chunk_travels_as_header_and_one_aligned_frame() -> None:
    msg = chunk()
    frames = [bytes(f) for f in encode(msg)]
    assert len(frames) == 2 and msgpack.unpackb(frames[0])["p"] == 1
    got = decode(frames)
    assert list(got.arrays) == list(msg.arrays)
    body = np.frombuffer(frames[1], np.uint8)
    for name, array in msg.arrays.items():
        out = got.arrays[name]
        np.testing.assert_array_equal(out, array)
        assert out.dtype == array.dtype and out.shape == array.shape
        offset = out.__array_interface__["data"][0] - body.__array_interface__["data"][0]
        assert offset % PACK_ALIGN == 0, name
        assert np.shares_memory(out, body) or out.size == 0  # a view of the frame, no copy
    # zero padding: nothing of the sender's memory leaks between arrays
    used = sum(a.nbytes for a in msg.arrays.values())
    assert int((body != 0).sum()) <= used


def test_empty_and_scalar_arrays_pack() -> None:
    arrays = {
        "a": np.zeros((0, 3), np.float32),
        "b": np.array(2.5, np.float64),
        "c": np.arange(3, dtype=np.int8),
        "d": np.zeros(0, np.int64),
    }
    msg = Message("weights", {"version": 1, "updates": 0}, arrays)
    frames = encode(msg)
    assert len(frames) == 2
    got = decode([bytes(f) for f in frames])
    for name, array in arrays.items():
        np.testing.assert_array_equal(got.arrays[name], array)
        assert got.arrays[name].shape == array.shape


def test_large_messages_and_single_arrays_keep_zero_copy_frames() -> None:
    big = np.ones(PACK_MAX_BYTES // 4, np.float32)
    frames = encode(Message("weights", {"version": 1, "updates": 0}, {"a": big, "b": big[:2]}))
    assert len(frames) == 3 and np.shares_memory(np.frombuffer(frames[1], np.uint8), big)
    one = np.ones(8, np.float32)
    frames = encode(Message("weights", {"version": 1, "updates": 0}, {"w": one}))
    assert len(frames) == 2 and "p" not in msgpack.unpackb(frames[0])
    assert np.shares_memory(np.frombuffer(frames[1], np.uint8), one)


def test_compressed_messages_are_not_packed() -> None:
    frames = encode(chunk(), compress="lz4")
    header = msgpack.unpackb(frames[0])
    assert "p" not in header and len(frames) == 1 + len(chunk().arrays)
    np.testing.assert_array_equal(
        decode([bytes(f) for f in frames]).arrays["reward"], chunk().arrays["reward"]
    )


def test_a_batch_of_packed_chunks_decodes_to_its_chunks() -> None:
    part = [bytes(f) for f in encode(chunk())]
    batch = encode(Message("chunks", {"frames": [len(part)] * 3}))
    got = decode_many([bytes(batch[0]), *part, *part, *part])
    assert len(got) == 3 and all(m.kind == "chunk" for m in got)
    np.testing.assert_array_equal(got[2].arrays["obs/lidar"], chunk().arrays["obs/lidar"])


def packed_raw(**changes: Any) -> list[bytes]:
    frames = [bytes(f) for f in encode(chunk())]
    header = msgpack.unpackb(frames[0])
    body = changes.pop("body", frames[1])
    header.update(changes)
    return [msgpack.packb(header), body]


@pytest.mark.parametrize(
    ("frames", "says"),
    [
        (packed_raw(body=bytes(10)), "packed frame holds 10 bytes"),
        (packed_raw()[:1], "one frame after its header"),
        ([*packed_raw(), b"x"], "one frame after its header"),
        (packed_raw(p=2), "header p must be 1"),
        (packed_raw(p=True), "header p must be 1"),
        (packed_raw(z="lz4"), "both z and p"),
        (
            packed_raw(
                arrays=[["a", "<f4", [2]], ["a", "<f4", [2]]],
                kind="weights",
                meta={"version": 1, "updates": 0},
            ),
            "appears twice",
        ),
    ],
)
def test_malformed_packed_messages_say_what(frames: list[bytes], says: str) -> None:
    with pytest.raises(DecodeError, match=says):
        decode(frames)


def test_a_packed_frame_one_byte_short_or_long_is_refused() -> None:
    good = packed_raw()
    decode(good)
    for body in (good[1][:-1], good[1] + b"\0"):
        with pytest.raises(DecodeError, match="packed frame holds"):
            decode([good[0], body])


def _general(msg: Message) -> list[bytes]:
    """``encode``'s general path (every layout described anew), as bytes."""
    codec._PACK_LAYOUTS.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "_pack_known", lambda arrays: None)
        return [bytes(f) for f in encode(msg)]


def test_a_known_layout_packs_the_same_bytes_as_the_general_path() -> None:
    codec._PACK_LAYOUTS.clear()
    first = chunk()
    expected = _general(first)
    assert [bytes(f) for f in encode(first)] == expected  # described, then kept
    assert len(codec._PACK_LAYOUTS) == 1
    second = chunk()  # the same layout, other values: the kept layout packs them
    second.arrays["reward"] = second.arrays["reward"] + 1.0
    strided = np.random.default_rng(2).random((5, 6), dtype=np.float32)[:, ::2]
    second.arrays["action"] = strided  # not C-contiguous: copied in order, as before
    got = [bytes(f) for f in encode(second)]
    assert len(codec._PACK_LAYOUTS) == 1
    assert got == _general(second)
    np.testing.assert_array_equal(decode(got).arrays["action"], strided)


def test_arrays_that_need_converting_take_the_general_path() -> None:
    codec._PACK_LAYOUTS.clear()
    msg = chunk()
    msg.arrays["reward"] = msg.arrays["reward"].astype(">f4")  # big-endian: converted
    got = [bytes(f) for f in encode(msg)]
    assert not codec._PACK_LAYOUTS
    assert decode(got).arrays["reward"].dtype == np.dtype("<f4")
    np.testing.assert_array_equal(decode(got).arrays["reward"], msg.arrays["reward"])
    bad = chunk()
    bad.arrays["reward"] = np.zeros(5, np.complex64)  # not a wire dtype: the same error
    with pytest.raises(TypeError, match="complex64"):
        encode(bad)


def test_the_layout_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    codec._PACK_LAYOUTS.clear()
    monkeypatch.setattr(codec, "MAX_PACK_LAYOUTS", 4)
    for n in range(1, 11):
        assert decode(encode(chunk(n))).meta["n"] == n
        assert len(codec._PACK_LAYOUTS) <= 4

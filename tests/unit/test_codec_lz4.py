"""Codec with lz4: round trips, the header flag, and every way a compressed frame can lie."""

from __future__ import annotations

from typing import Any

import lz4.block
import msgpack
import numpy as np
import pytest

from tmrl2.net.codec import DTYPES, PROTOCOL_VERSION, Message, decode, encode
from tmrl2.net.errors import DecodeError


def image_chunk(n: int = 8) -> Message:
    rng = np.random.default_rng(1)
    frames = np.zeros((n, 4, 64, 64), np.uint8)
    frames[:, :, 20:40] = rng.integers(0, 255, (n, 4, 20, 64), dtype=np.uint8)  # a road band
    arrays = {
        "obs/images": frames,
        "next_obs/images": frames,
        "obs/speed": rng.random((n, 1), dtype=np.float32),
        "next_obs/speed": rng.random((n, 1), dtype=np.float32),
        "action": rng.random((n, 3), dtype=np.float32),
        "reward": rng.random(n, dtype=np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
    }
    return Message("chunk", {"worker": "w", "policy_version": 1, "n": n, "episodes": []}, arrays)


def received(frames: list[Any]) -> list[bytes]:
    return [bytes(frame) for frame in frames]


def header_of(frames: list[Any]) -> dict[str, Any]:
    header: dict[str, Any] = msgpack.unpackb(frames[0])
    return header


def test_compressed_chunk_round_trips_and_is_smaller() -> None:
    msg = image_chunk()
    plain, packed = encode(msg), encode(msg, compress="lz4")
    assert "z" not in header_of(plain)
    assert header_of(packed)["z"] == "lz4"
    assert sum(len(f) for f in packed) < sum(len(f) for f in plain) // 2
    out = decode(received(packed))
    assert out.meta == msg.meta and list(out.arrays) == list(msg.arrays)
    for name, array in msg.arrays.items():
        assert out.arrays[name].dtype == array.dtype and out.arrays[name].shape == array.shape
        np.testing.assert_array_equal(out.arrays[name], array)


def test_every_dtype_and_empty_arrays_round_trip_compressed() -> None:
    arrays = {f"l{i}": np.arange(6).reshape(2, 3).astype(d) for i, d in enumerate(DTYPES)}
    arrays["empty"] = np.zeros((0, 5), np.float32)
    out = decode(received(encode(Message("weights", {"version": 3, "updates": 9}, arrays), "lz4")))
    for name, array in arrays.items():
        np.testing.assert_array_equal(out.arrays[name], array)
        assert out.arrays[name].shape == array.shape


def test_unknown_compression_is_a_sender_bug() -> None:
    with pytest.raises(ValueError, match="compression"):
        encode(Message("ping"), compress="zstd")


def weights_frames(shape: list[int], payload: bytes, dtype: str = "|u1") -> list[bytes]:
    header = {
        "v": PROTOCOL_VERSION,
        "kind": "weights",
        "meta": {"version": 1, "updates": 0},
        "arrays": [["w", dtype, shape]],
        "z": "lz4",
    }
    return [msgpack.packb(header), payload]


def test_decompression_bomb_is_refused_before_decompressing() -> None:
    bomb = lz4.block.compress(bytes(50_000_000), store_size=False)  # ~200 KB on the wire
    assert len(bomb) < 300_000
    with pytest.raises(DecodeError, match="announces"):
        decode(weights_frames([50_000_000], bomb), max_bytes=1_000_000)


@pytest.mark.parametrize("announced", [999, 1001, 0])
def test_frame_must_decompress_to_exactly_the_announced_size(announced: int) -> None:
    payload = lz4.block.compress(bytes(range(200)) * 5, store_size=False)  # 1000 bytes
    with pytest.raises(DecodeError, match="'w'"):
        decode(weights_frames([announced], payload))


def test_raw_bytes_under_a_compressed_header_are_refused() -> None:
    with pytest.raises(DecodeError, match="lz4"):
        decode(weights_frames([16], bytes(range(16))))

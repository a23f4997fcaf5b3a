"""Codec: round trips keep names, dtypes, shapes and values; every malformed input is refused."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from tmrl2.net.codec import DTYPES, PROTOCOL_VERSION, Message, decode, encode
from tmrl2.net.errors import DecodeError, NetError, ProtocolError
from tmrl2.roles.chunk_checks import check_chunk_arrays, check_episode


def chunk_message(n: int = 4) -> Message:
    rng = np.random.default_rng(0)
    arrays = {
        "obs/lidar": rng.random((n, 19), dtype=np.float32),
        "obs/speed": rng.random((n, 1), dtype=np.float32),
        "next_obs/lidar": rng.random((n, 19), dtype=np.float32),
        "next_obs/speed": rng.random((n, 1), dtype=np.float32),
        "action": rng.random((n, 3), dtype=np.float32),
        "reward": rng.random(n, dtype=np.float32),
        "terminated": np.array([False, False, True, False][:n]),
        "truncated": np.zeros(n, bool),
    }
    episode = {
        "return": 1.5,
        "steps": 3,
        "finished": True,
        "lap_time_s": None,
        "progress_frac": 0.25,
    }
    meta = {"worker": "w0", "policy_version": 2, "n": n, "episodes": [episode]}
    return Message("chunk", meta, arrays)


def assert_same(a: Message, b: Message) -> None:
    assert a.kind == b.kind
    assert a.meta == b.meta
    assert list(a.arrays) == list(b.arrays)
    for name, array in a.arrays.items():
        assert b.arrays[name].dtype == array.dtype, name
        assert b.arrays[name].shape == array.shape, name
        np.testing.assert_array_equal(b.arrays[name], array)


def as_bytes(frames: list[Any]) -> list[bytes]:
    """What a receiver gets: independent byte strings, not views of the sender's arrays."""
    return [bytes(frame) for frame in frames]


def test_chunk_with_dict_obs_round_trips() -> None:
    msg = chunk_message()
    assert_same(msg, decode(as_bytes(encode(msg))))


def test_weights_of_every_dtype_and_edge_shapes_round_trip() -> None:
    arrays = {f"layer.{i}": np.arange(6).reshape(2, 3).astype(d) for i, d in enumerate(DTYPES)}
    arrays["empty"] = np.zeros((0,), np.float32)
    arrays["empty_rows"] = np.zeros((0, 5), np.int64)
    arrays["scalar"] = np.array(3.5, np.float64)
    msg = Message("weights", {"version": 3, "updates": 600}, arrays)
    out = decode(as_bytes(encode(msg)))
    assert_same(msg, out)
    assert out.arrays["scalar"].shape == ()


def test_encode_shares_memory_of_contiguous_arrays() -> None:
    weight = np.ones((64, 64), np.float32)
    frames = encode(Message("weights", {"version": 1, "updates": 0}, {"w": weight}))
    assert np.shares_memory(np.frombuffer(frames[1], np.uint8), weight)


def test_encode_fixes_strided_and_big_endian_arrays() -> None:
    strided = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]
    big = np.arange(4, dtype=">f4")
    msg = Message("weights", {"version": 1, "updates": 0}, {"s": strided, "b": big})
    out = decode(as_bytes(encode(msg)))
    np.testing.assert_array_equal(out.arrays["s"], strided)
    np.testing.assert_array_equal(out.arrays["b"], big)
    assert out.arrays["b"].dtype == np.dtype("<f4")


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (Message("weights", {"version": 1, "updates": 0}, {"o": np.array([None])}), TypeError),
        (Message("weights", {"version": 1, "updates": 0}, {"c": np.zeros(2, complex)}), TypeError),
        (Message("credit", {"n": 0}), ValueError),
        (Message("nonsense", {}), ValueError),
        (Message("ping", {"when": object()}), ValueError),
    ],
)
def test_encode_refuses_what_decode_would_refuse(msg: Message, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode(msg)


# ---------------------------------------------------------------------------- malformed input
def raw(header: Any, *frames: bytes) -> list[bytes]:
    return [msgpack.packb(header), *frames]


def header(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": "weights",
        "meta": {"version": 1, "updates": 0},
        "arrays": [["w", "<f4", [2, 3]]],
    }
    base.update(changes)
    return base


GOOD = bytes(24)


def test_raw_helper_builds_a_valid_message() -> None:
    assert decode(raw(header(), GOOD)).arrays["w"].shape == (2, 3)


def without(key: str) -> dict[str, Any]:
    h = header()
    del h[key]
    return h


MALFORMED: dict[str, tuple[list[bytes], str]] = {
    "no frames": ([], "empty"),
    "garbage bytes": ([b"\xc1\xc1\xff\x00garbage"], "msgpack"),
    "truncated header": ([msgpack.packb(header())[:-5], GOOD], "msgpack"),
    "non-map header": (raw([1, "weights", {}, []]), "map"),
    "missing key": (raw(without("meta"), GOOD), "missing ['meta']"),
    "extra key": (raw(header(x="lz4"), GOOD), "unknown ['x']"),
    "bytes and str keys": ([msgpack.packb({b"v": 1, "kind": "ping"}), GOOD], "'v'"),
    "unknown compression": (raw(header(z="zstd"), GOOD), "compression"),
    "compression not a str": (raw(header(z=1), GOOD), "compression"),
    "not lz4 data": (raw(header(z="lz4"), GOOD), "lz4"),
    "deep meta": (
        raw(
            header(meta={"version": 1, "updates": 0, "x": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}),
            GOOD,
        ),
        "deeper",
    ),
    "no version": (raw(without("v"), GOOD), "'v'"),
    "unknown kind": (raw(header(kind="shell", meta={}, arrays=[])), "unknown message kind"),
    "kind not a str": (raw(header(kind=7)), "kind"),
    "meta not a map": (raw(header(meta=[1]), GOOD), "meta must be a map"),
    "meta ext type": (
        raw(header(meta={"version": 1, "updates": 0, "x": msgpack.ExtType(1, b"")}), GOOD),
        "ExtType",
    ),
    "truncated frame": (raw(header(), GOOD[:-1]), "holds 23 bytes"),
    "long frame": (raw(header(), GOOD + b"\0"), "holds 25 bytes"),
    "missing frame": (raw(header()), "1 arrays but 0 frames"),
    "extra frame": (raw(header(), GOOD, GOOD), "1 arrays but 2 frames"),
    "wrong dtype string": (raw(header(arrays=[["w", "float32", [2, 3]]]), GOOD), "dtype"),
    "big-endian dtype": (raw(header(arrays=[["w", ">f4", [2, 3]]]), GOOD), "dtype"),
    "object dtype": (raw(header(arrays=[["w", "|O", [3]]]), GOOD), "dtype"),
    "negative dim": (raw(header(arrays=[["w", "<f4", [-2, -3]]]), GOOD), "dimension"),
    "bool dim": (raw(header(arrays=[["w", "<f4", [True, 6]]]), GOOD), "dimension"),
    "float dim": (raw(header(arrays=[["w", "<f4", [2.0, 3]]]), GOOD), "dimension"),
    "too many dims": (raw(header(arrays=[["w", "<f4", [1] * 9]]), bytes(4)), "shape"),
    "shape not a list": (raw(header(arrays=[["w", "<f4", 6]]), GOOD), "shape"),
    "bad spec": (raw(header(arrays=[["w", "<f4"]]), GOOD), "spec"),
    "name not a str": (raw(header(arrays=[[5, "<f4", [2, 3]]]), GOOD), "name"),
    "duplicate names": (raw(header(arrays=[["w", "<f4", [6]]] * 2), GOOD, GOOD), "twice"),
    "weights without version": (raw(header(meta={"updates": 0}), GOOD), "'version'"),
    "credit of zero": (raw(header(kind="credit", meta={"n": 0}, arrays=[])), "out of range"),
    "credit is a flag": (raw(header(kind="credit", meta={"n": True}, arrays=[])), "must be int"),
    "hello bad role": (
        raw(header(kind="hello", arrays=[], meta={"role": "admin", "name": "x", "protocol": 1})),
        "role",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_message_raises_decode_error_saying_what(case: str) -> None:
    frames, words = MALFORMED[case]
    with pytest.raises(DecodeError) as info:
        decode(frames)
    assert words in str(info.value), str(info.value)


def test_oversized_message_is_refused() -> None:
    frames = as_bytes(encode(chunk_message()))
    total = sum(len(f) for f in frames)
    decode(frames, max_bytes=total)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(frames, max_bytes=total - 1)


def test_other_protocol_version_raises_protocol_error_naming_both() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(raw(header(v=PROTOCOL_VERSION + 1), GOOD))
    assert str(PROTOCOL_VERSION + 1) in str(info.value)
    assert str(PROTOCOL_VERSION) in str(info.value)
    assert isinstance(info.value, NetError) and not isinstance(info.value, DecodeError)


def tampered_chunk(change: str) -> list[bytes]:
    msg = chunk_message()
    if change == "short action":
        msg.arrays["action"] = msg.arrays["action"][:3]
    elif change == "n mismatch":
        msg.meta["n"] = 5
    elif change == "n zero":
        msg.meta["n"] = 0
    elif change == "no action":
        del msg.arrays["action"]
    elif change == "obs without next_obs":
        del msg.arrays["next_obs/speed"]
    elif change == "unknown array":
        msg.arrays["secret"] = np.zeros(4)
    elif change == "scalar reward":
        msg.arrays["reward"] = np.float32(1.0)  # type: ignore[assignment]
    elif change == "episode lacks steps":
        del msg.meta["episodes"][0]["steps"]
    frames = [
        msgpack.packb(
            {
                "v": PROTOCOL_VERSION,
                "kind": "chunk",
                "meta": msg.meta,
                "arrays": [
                    [k, np.asarray(a).dtype.str, list(np.shape(a))] for k, a in msg.arrays.items()
                ],
            }
        )
    ]
    return frames + [np.ascontiguousarray(a).tobytes() for a in msg.arrays.values()]


def test_chunk_meta_rules_are_the_codecs() -> None:
    with pytest.raises(DecodeError):
        decode(tampered_chunk("n zero"))


@pytest.mark.parametrize(
    "change",
    [
        "short action",
        "n mismatch",
        "no action",
        "obs without next_obs",
        "unknown array",
        "scalar reward",
    ],
)
def test_chunk_layout_rules_are_the_roles(change: str) -> None:
    """The codec moves messages; what a chunk's arrays must hold is checked by the server and
    the trainer (tmrl2.roles.chunk_checks)."""
    msg = decode(tampered_chunk(change))
    assert check_chunk_arrays(msg.arrays, msg.meta["n"], None) is not None


def test_episode_records_are_checked_by_the_trainer_not_the_codec() -> None:
    msg = decode(tampered_chunk("episode lacks steps"))
    assert check_episode(msg.meta["episodes"][0]) is not None


def test_box_obs_chunk_is_valid() -> None:
    arrays: dict[str, np.ndarray] = {k: np.zeros((2, 3), np.float32) for k in ("obs", "next_obs")}
    arrays["action"] = np.zeros((2, 3), np.float32)
    arrays |= {
        "reward": np.zeros(2),
        "terminated": np.zeros(2, bool),
        "truncated": np.ones(2, bool),
    }
    msg = Message("chunk", {"worker": "w", "policy_version": 0, "n": 2, "episodes": []}, arrays)
    assert_same(msg, decode(as_bytes(encode(msg))))

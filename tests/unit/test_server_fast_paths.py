"""The server's per-message shortcuts (issue 18) change no verdict.

The codec remembers validated array layouts and the chunk checks remember layouts whose
structure passed; these tests check that a remembered layout never lets through what the full
checks refuse: a look-alike header (``True`` or ``1.0`` for ``1``), repeated names, bad values
in a chunk of a known layout, another spec.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from tmrl2.net import codec
from tmrl2.net.codec import Message, decode, encode
from tmrl2.net.errors import DecodeError
from tmrl2.roles.chunk_checks import check_chunk_arrays, parse_spec, spec_meta


def chunk(n: int = 4, **extra: np.ndarray) -> Message:
    arrays = {
        "obs": np.zeros((n, 3), np.float32),
        "next_obs": np.zeros((n, 3), np.float32),
        "action": np.zeros((n, 2), np.float32),
        "reward": np.zeros(n, np.float32),
        "terminated": np.zeros(n, bool),
        "truncated": np.zeros(n, bool),
        **extra,
    }
    meta = {"worker": "w", "policy_version": 0, "n": n, "episodes": []}
    return Message("chunk", meta, arrays)


def with_header(frames: list[Any], edit: Any) -> list[Any]:
    header = msgpack.unpackb(bytes(frames[0]), raw=False)
    edit(header)
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


@pytest.mark.parametrize("dim", [True, 1.0])
def test_a_remembered_layout_never_accepts_a_look_alike_dimension(dim: Any) -> None:
    msg = Message("chunk", chunk(1).meta, {k: a[:1] for k, a in chunk(1).arrays.items()})
    frames = list(encode(msg))
    decode(frames)  # the layout with shape [1, 3] is remembered now
    decode(frames)

    def edit(header: dict[str, Any]) -> None:
        header["arrays"][0][2][0] = dim

    with pytest.raises(DecodeError, match="bad dimension"):
        decode(with_header(frames, edit))


def test_repeated_names_are_still_refused_after_the_layout_was_seen() -> None:
    frames = list(encode(chunk()))

    def edit(header: dict[str, Any]) -> None:
        header["arrays"][1][0] = header["arrays"][0][0]

    for _ in range(2):
        with pytest.raises(DecodeError, match="appears twice"):
            decode(with_header(frames, edit))


def test_a_remembered_layout_still_checks_every_frame_size() -> None:
    frames = list(encode(chunk()))
    decode(frames)
    short = [*frames[:-1], bytes(len(frames[-1]) - 1)]
    with pytest.raises(DecodeError, match="frame holds"):
        decode(short)


def test_the_layout_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_LAYOUTS", 4)
    monkeypatch.setattr(codec, "_LAYOUTS", {})
    for n in range(1, 12):
        decode(encode(chunk(n)))
        assert len(codec._LAYOUTS) <= 4


def test_values_are_checked_in_every_chunk_of_a_known_layout() -> None:
    good = chunk().arrays
    assert check_chunk_arrays(good, 4, None) is None
    bad = dict(good, reward=np.array([0.0, np.nan, 0.0, 0.0], np.float32))
    assert check_chunk_arrays(bad, 4, None) == "reward holds NaN or infinite values"
    assert check_chunk_arrays(good, 4, None) is None


def test_compact_indices_are_checked_in_every_chunk_of_a_known_layout() -> None:
    frames = np.zeros((6, 2, 2), np.uint8)
    index = (np.arange(4)[:, None] + np.arange(2)[None, :]).astype(np.int32)
    base = {k: v for k, v in chunk().arrays.items() if k not in ("obs", "next_obs")}
    good = base | {"frames/img": frames, "obs_index/img": index, "next_index/img": index + 1}
    assert check_chunk_arrays(good, 4, None) is None
    outside = dict(good, **{"next_index/img": index + 3})
    assert check_chunk_arrays(outside, 4, None) == "next_index/img points outside its 6 frames"
    negative = dict(good, **{"obs_index/img": index - 1})
    assert check_chunk_arrays(negative, 4, None) == "obs_index/img points outside its 6 frames"


def test_a_new_spec_rechecks_a_known_layout() -> None:
    arrays = chunk().arrays
    spec = parse_spec(spec_meta({k: (a.shape[1:], a.dtype) for k, a in arrays.items()}))
    assert check_chunk_arrays(arrays, 4, spec) is None
    other = dict(spec, reward=((), np.dtype("<f8")))
    assert "reward has dtype <f4" in str(check_chunk_arrays(arrays, 4, other))
    assert check_chunk_arrays(arrays, 4, spec) is None
    assert "row" in str(check_chunk_arrays(arrays, 5, spec))  # n is part of the layout


def test_a_deeply_nested_layout_is_malformed_not_an_error() -> None:
    frames = list(encode(chunk()))
    deep: list[Any] = []
    for _ in range(1000):
        deep = [deep]

    def edit(header: dict[str, Any]) -> None:
        header["arrays"][0] = deep

    with pytest.raises(DecodeError):
        decode(with_header(frames, edit))

"""Fuzzing the decoder: random and mutated frames never crash it, they raise a typed error.

Whatever arrives, :func:`decode` returns a valid :class:`Message` or raises
:class:`DecodeError`/:class:`ProtocolError`; any other exception would stop a server (or
be a bug a peer could trigger at will).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmrl2.net.codec import DTYPES, PROTOCOL_VERSION, Message, decode, encode
from tmrl2.net.errors import DecodeError, ProtocolError

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
MAX_BYTES = 1 << 20


def decodes_or_raises_typed(frames: list[bytes]) -> None:
    try:
        msg = decode(frames, max_bytes=MAX_BYTES)
    except (DecodeError, ProtocolError):
        return
    assert isinstance(msg, Message)
    encode(msg)  # anything accepted must be a message the codec itself could send


def seeds() -> list[list[bytes]]:
    rng = np.random.default_rng(0)
    n = 3
    chunk = Message(
        "chunk",
        {"worker": "w", "policy_version": 1, "n": n, "episodes": []},
        {
            "obs": rng.random((n, 4), dtype=np.float32),
            "next_obs": rng.random((n, 4), dtype=np.float32),
            "action": rng.random((n, 2), dtype=np.float32),
            "reward": rng.random(n, dtype=np.float32),
            "terminated": np.zeros(n, bool),
            "truncated": np.ones(n, bool),
        },
    )
    weights = Message("weights", {"version": 2, "updates": 5}, {"w": np.arange(6, dtype="<i4")})
    hello = Message("hello", {"role": "worker", "name": "w", "protocol": PROTOCOL_VERSION})
    out = []
    for msg in (chunk, weights, hello, Message("credit", {"n": 4})):
        for compress in (None, "lz4"):
            out.append([bytes(f) for f in encode(msg, compress)])
    return out


SEEDS = seeds()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
ints = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
specs = st.lists(
    st.tuples(
        st.text(max_size=8) | ints,
        st.sampled_from([*DTYPES, "float32", "|O", ">f4", 3]),
        st.lists(st.integers(-2, 2**33), max_size=4) | ints,
    ).map(list),
    max_size=3,
)
headers = st.fixed_dictionaries(
    {
        "v": st.sampled_from([PROTOCOL_VERSION, PROTOCOL_VERSION + 1, True, "1"]),
        "kind": st.sampled_from(["chunk", "weights", "hello", "credit", "rejoin", "nope", 1]),
        "meta": trees,
        "arrays": specs,
    },
    optional={"z": st.sampled_from(["lz4", "zstd", 0]), "extra": scalars},
)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_random_frames(frames: list[bytes]) -> None:
    decodes_or_raises_typed(frames)


@FUZZ
@given(headers, st.lists(st.binary(max_size=48), max_size=4))
def test_random_headers_with_random_frames(header: dict[str, Any], payload: list[bytes]) -> None:
    decodes_or_raises_typed([msgpack.packb(header, use_bin_type=True), *payload])


@st.composite
def mutated(draw: st.DrawFn) -> list[bytes]:
    frames = list(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(frames) - 1))
        data = bytearray(frames[i])
        op = draw(st.sampled_from(["flip", "cut", "grow", "drop", "dup", "swap"]))
        if op == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "grow":
            data += draw(st.binary(min_size=1, max_size=16))
        frames[i] = bytes(data)
        if op == "drop" and len(frames) > 1:
            frames.pop(i)
        elif op == "dup":
            frames.insert(i, frames[i])
        elif op == "swap":
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
    return frames


@FUZZ
@given(mutated())
def test_mutated_valid_frames(frames: list[bytes]) -> None:
    decodes_or_raises_typed(frames)


def test_seeds_are_valid() -> None:
    for frames in SEEDS:
        decode(frames)

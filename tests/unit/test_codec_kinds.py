"""Every message kind round-trips through encode/decode, raw and lz4-compressed.

The examples are keyed by kind and must cover :data:`tmrl2.net.kinds.KINDS` exactly, so a new
kind cannot be added to the protocol without a round-trip test here.
"""

from __future__ import annotations

import numpy as np
import pytest

from tmrl2.net.codec import PROTOCOL_VERSION, Message, decode, encode
from tmrl2.net.kinds import KINDS


def _chunk() -> Message:
    n, rng = 3, np.random.default_rng(1)
    arrays = {
        "obs/images": rng.integers(0, 256, (n, 4, 8, 8), dtype=np.uint8),
        "obs/speed": rng.random((n, 1), dtype=np.float32),
        "next_obs/images": rng.integers(0, 256, (n, 4, 8, 8), dtype=np.uint8),
        "next_obs/speed": rng.random((n, 1), dtype=np.float32),
        "action": rng.random((n, 3), dtype=np.float32),
        "reward": rng.random(n, dtype=np.float32),
        "terminated": np.array([False, False, True]),
        "truncated": np.zeros(n, bool),
    }
    episode = {
        "return": -2.0,
        "steps": 7,
        "finished": False,
        "lap_time_s": None,
        "progress_frac": 0.5,
    }
    return Message(
        "chunk", {"worker": "pc1", "policy_version": 4, "n": n, "episodes": [episode]}, arrays
    )


EXAMPLES: dict[str, Message] = {
    "hello": Message(
        "hello",
        {"role": "worker", "name": "pc1", "protocol": PROTOCOL_VERSION, "config_hash": "ab12"},
    ),
    "welcome": Message(
        "welcome",
        {
            "protocol": PROTOCOL_VERSION,
            "server": "tmrl2",
            "config_hash": "ab12",
            "chunk_credit": 8,
            "config": {"run": {"seed": 3}, "worker": {"compression": "lz4"}},
        },
    ),
    "refused": Message("refused", {"reason": "config hash ab12, server config hash cd34"}),
    "rejoin": Message("rejoin", {"reason": "server restarted"}),
    "chunk": _chunk(),
    "credit": Message("credit", {"n": 5}),
    "weights": Message(
        "weights",
        {"version": 9, "updates": 1800},
        {
            "fc.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
            "fc.bias": np.zeros(3, np.float32),
            "steps": np.array(7, np.int64),
        },
    ),
    "stats": Message("stats", {"samples": 1200, "updates": 900, "loss/actor": -1.5}),
    "ping": Message("ping"),
    "bye": Message("bye"),
}


def test_examples_cover_every_kind() -> None:
    assert EXAMPLES.keys() == KINDS


@pytest.mark.parametrize("compress", [None, "lz4"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_round_trips(kind: str, compress: str | None) -> None:
    msg = EXAMPLES[kind]
    got = decode([bytes(frame) for frame in encode(msg, compress)])
    assert got.kind == kind
    assert got.meta == msg.meta
    assert list(got.arrays) == list(msg.arrays)
    for name, array in msg.arrays.items():
        assert got.arrays[name].dtype == array.dtype, name
        assert got.arrays[name].shape == array.shape, name
        np.testing.assert_array_equal(got.arrays[name], array)

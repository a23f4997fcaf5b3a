"""Every message kind round-trips through encode/decode, raw and lz4-compressed.

The examples are keyed by kind and must cover :data:`tmrl2.net.kinds.KINDS` exactly, so a new
kind cannot be added to the protocol without a round-trip test here.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tmrl2.net.codec import PROTOCOL_VERSION, Message, decode, decode_many, encode
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
        "chunk",
        {
            "worker": "pc1",
            "policy_version": 4,
            "n": n,
            "episodes": [episode],
            "session": "77aa",
            "seq": 2,
            "sent": 6,
        },
        arrays,
    )


EXAMPLES: dict[str, Message] = {
    "hello": Message(
        "hello",
        {
            "role": "trainer",
            "name": "pc1",
            "protocol": PROTOCOL_VERSION,
            "config_hash": "ab12",
            "run_token": "0123abcd",
            "session": "5f2e9a0c1d3b4e6f",
            "weights_version": 3,
            "spec": {"obs/speed": ["<f4", [1]], "frames/images": ["|u1", [8, 8]]},
        },
    ),
    "welcome": Message(
        "welcome",
        {
            "protocol": PROTOCOL_VERSION,
            "server": "tmrl2",
            "config_hash": "ab12",
            "chunk_credit": 8,
            "config": {"run": {"seed": 3}, "worker": {"compression": "lz4"}},
            "weights_version": 12,
            "session": "0a1b2c3d4e5f6a7b",
        },
    ),
    "refused": Message(
        "refused", {"reason": "config hash ab12, server config hash cd34", "code": "config"}
    ),
    "rejoin": Message("rejoin", {"reason": "server restarted"}),
    "chunk": _chunk(),
    # a batch of two whole chunk messages (the header, then each chunk's frames)
    "chunks": Message("chunks", {"frames": [1 + len(_chunk().arrays)] * 2}),
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
    "state": Message(
        "state",
        {"session": "feed", "updates": 100, "samples": 5000, "ready": True, "weights_version": 2},
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
    if kind == "chunks":  # a batch decodes to its chunks
        part = [bytes(frame) for frame in encode(EXAMPLES["chunk"], compress)]
        msg = Message("chunks", {"frames": [len(part)] * 2})  # packed: 2, lz4: one per array
        got_all = decode_many([bytes(encode(msg)[0]), *part, *part])
        assert [m.kind for m in got_all] == ["chunk", "chunk"]
        msg, got = EXAMPLES["chunk"], got_all[1]
    else:
        got = decode([bytes(frame) for frame in encode(msg, compress)])
    assert got.kind == msg.kind
    assert got.meta == msg.meta
    assert list(got.arrays) == list(msg.arrays)
    for name, array in msg.arrays.items():
        assert got.arrays[name].dtype == array.dtype, name
        assert got.arrays[name].shape == array.shape, name
        np.testing.assert_array_equal(got.arrays[name], array)


def _bad(msg: Message) -> str:
    with pytest.raises(ValueError) as info:
        encode(msg)
    return str(info.value)


@pytest.mark.parametrize(
    ("kind", "key", "value", "says"),
    [
        ("hello", "run_token", "x" * 129, "run_token"),
        ("hello", "session", 5, "session"),
        ("hello", "weights_version", -1, "weights_version"),
        ("hello", "spec", {"obs": ["<f4", [-1]]}, "spec"),
        ("hello", "spec", {"obs": "float32"}, "spec"),
        ("hello", "spec", {}, "spec"),
        ("welcome", "session", "s" * 65, "session"),
        ("refused", "code", "whatever", "code"),
        ("state", "ready", 1, "ready"),
        ("state", "updates", -3, "updates"),
        ("chunk", "seq", 0, "seq"),
        ("chunk", "sent", 2, "sent"),  # fewer than the chunk's own n
    ],
)
def test_new_optional_keys_are_checked(kind: str, key: str, value: object, says: str) -> None:
    msg = EXAMPLES[kind]
    assert says in _bad(Message(kind, {**msg.meta, key: value}, msg.arrays))


def test_spec_is_for_the_trainer_only() -> None:
    meta = {**EXAMPLES["hello"].meta, "role": "worker"}
    assert "trainer only" in _bad(Message("hello", meta))


def test_the_wire_knows_messages_not_transitions() -> None:
    """Episode contents and chunk layouts are the roles' rules (tmrl2.roles.chunk_checks): the
    codec passes a chunk whose episode says nonsense, and net/ imports nothing of memory/."""
    msg = _chunk()
    msg.meta["episodes"][0]["lap_time_s"] = -1.0
    assert decode(encode(msg)).meta["episodes"][0]["lap_time_s"] == -1.0
    code = "import sys, tmrl2.net; print(' '.join(m for m in sys.modules if 'tmrl2.' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert all(m.startswith("tmrl2.net") for m in out.stdout.split()), out.stdout

"""The rules of each message kind: which meta keys it needs, with which types, and its arrays.

:mod:`tmrl2.net.codec` documents the kinds and calls :func:`check_message` on every decoded
message, so a receiver never sees a ``credit`` without ``n`` or a ``chunk`` without a sender
name and a row count. Meta may carry extra keys beyond the documented ones (newer peers of the
same protocol version may add information); the documented ones are required.

This module knows messages, not reinforcement learning: what a chunk's arrays and episode
records must hold (a complete transition, ``n`` rows, the run's spec, finite values, a lap time
that can be true) is checked by :mod:`tmrl2.roles.chunk_checks`, in the server and the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tmrl2.net.errors import DecodeError

KINDS: frozenset[str] = frozenset(
    {
        "hello",
        "welcome",
        "refused",
        "rejoin",
        "chunk",
        "chunks",
        "credit",
        "weights",
        "state",
        "stats",
        "ping",
        "bye",
    }
)
"""Every kind a peer may send; anything else is malformed."""

ROLES: frozenset[str] = frozenset({"worker", "trainer"})
"""The client roles a ``hello`` may announce."""

MAX_NAME_CHARS = 128
"""Longest peer name accepted in a ``hello``."""

MAX_CREDIT = 1_000_000
"""Largest credit a single ``credit`` message may grant."""

MAX_BATCH_CHUNKS = 64
"""Most chunks one ``chunks`` batch may carry (a trainer's hello asks for at most this)."""

MAX_META_DEPTH = 16
"""Deepest nesting of lists and maps in meta (a config map needs a handful of levels)."""

MAX_HASH_CHARS = 128
"""Longest ``config_hash`` accepted in a ``hello`` or ``welcome``."""

MAX_TOKEN_CHARS = 128
"""Longest ``run_token`` accepted in a ``hello``."""

MAX_SESSION_CHARS = 64
"""Longest ``session`` id (a client's or the server's random id per process start)."""

MAX_SPEC_ARRAYS = 256
"""Most arrays a trainer's ``spec`` may declare."""

MAX_SPEC_DIMS = 8
"""Most per-row dimensions of one ``spec`` entry."""

MAX_STATS_KEYS = 256
"""Most counters one ``stats`` message may carry."""

REFUSAL_CODES: frozenset[str] = frozenset(
    {"protocol", "config", "token", "auth", "role", "name_taken", "trainer_taken", "rate"}
)
"""Values of a ``refused`` message's optional ``code``: why, in a word a client can act on."""

_SCALARS = (type(None), bool, int, float, str, bytes)


def check_meta_values(value: Any, where: str = "meta", depth: int = 0) -> None:
    """Raise :class:`DecodeError` unless ``value`` holds only msgpack scalars, lists, str-keyed
    dicts (no extension types, no timestamps), nested at most :data:`MAX_META_DEPTH` deep."""
    if isinstance(value, _SCALARS):
        return
    if depth >= MAX_META_DEPTH and isinstance(value, (list, dict)):
        raise DecodeError(f"{where} nests lists/maps deeper than {MAX_META_DEPTH} levels")
    # scalars are checked inline: a call and its f-string per value was most of the cost
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, _SCALARS):
                check_meta_values(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DecodeError(f"{where} has a non-string key {key!r}")
            if not isinstance(item, _SCALARS):
                check_meta_values(item, f"{where}.{key}", depth + 1)
        return
    raise DecodeError(f"{where} holds a {type(value).__name__}, not a msgpack scalar/list/map")


def _field(meta: Mapping[str, Any], kind: str, key: str, types: tuple[type, ...]) -> Any:
    if key not in meta:
        raise DecodeError(f"{kind} meta lacks {key!r} (has {sorted(meta)})")
    value = meta[key]
    # bool is an int subclass: a flag is never accepted where a number is expected
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        names = "/".join(t.__name__ for t in types)
        raise DecodeError(f"{kind} meta {key!r} must be {names}, got {value!r}")
    return value


def _int(meta: Mapping[str, Any], kind: str, key: str, low: int, high: int | None = None) -> int:
    value: int = _field(meta, kind, key, (int,))
    if value < low or (high is not None and value > high):
        raise DecodeError(f"{kind} meta {key!r}={value} is out of range [{low}, {high}]")
    return value


def _no_arrays(kind: str, arrays: Mapping[str, np.ndarray]) -> None:
    if arrays:
        raise DecodeError(f"{kind} carries no arrays, got {sorted(arrays)}")


def _check_hello(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    role = _field(meta, "hello", "role", (str,))
    if role not in ROLES:
        raise DecodeError(f"hello role must be one of {sorted(ROLES)}, got {role!r}")
    name = _field(meta, "hello", "name", (str,))
    if not 0 < len(name) <= MAX_NAME_CHARS:
        raise DecodeError(f"hello name must have 1 to {MAX_NAME_CHARS} characters: {name!r}")
    _field(meta, "hello", "protocol", (int,))
    _optional_hash(meta, "hello")
    _optional_str(meta, "hello", "run_token", MAX_TOKEN_CHARS)
    _optional_str(meta, "hello", "session", MAX_SESSION_CHARS)
    if meta.get("weights_version") is not None:
        _int(meta, "hello", "weights_version", 0)
    if meta.get("server_stats") is not None:
        if role != "trainer":
            raise DecodeError("hello server_stats is for the trainer only")
        _field(meta, "hello", "server_stats", (bool,))
    if meta.get("batch_chunks") is not None:
        if role != "trainer":
            raise DecodeError("hello batch_chunks is for the trainer only")
        _int(meta, "hello", "batch_chunks", 1, MAX_BATCH_CHUNKS)
    if meta.get("spec") is not None:
        if role != "trainer":
            raise DecodeError("hello spec is for the trainer only")
        check_spec(meta["spec"])
    _no_arrays("hello", arrays)


def _optional_str(meta: Mapping[str, Any], kind: str, key: str, most: int) -> None:
    if meta.get(key) is not None:
        value = _field(meta, kind, key, (str,))
        if len(value) > most:
            raise DecodeError(f"{kind} {key} longer than {most} characters")


def check_spec(spec: Any) -> None:
    """Raise :class:`DecodeError` unless ``spec`` is ``{name: [dtype_str, [dims...]]}``: the
    arrays a chunk of the run carries, each with its per-row shape (shape without the leading
    ``n``; for ``frames/<key>`` the per-frame shape)."""
    if not isinstance(spec, dict) or not 0 < len(spec) <= MAX_SPEC_ARRAYS:
        raise DecodeError(f"hello spec must be a map of 1 to {MAX_SPEC_ARRAYS} arrays")
    for name, entry in spec.items():
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or not 0 < len(entry[0]) <= 8
            or not isinstance(entry[1], list)
            or len(entry[1]) > MAX_SPEC_DIMS
            or not all(type(dim) is int and dim >= 0 for dim in entry[1])
        ):
            raise DecodeError(
                f"hello spec {name!r} must be [dtype_str, [dims...]] (at most "
                f"{MAX_SPEC_DIMS} non-negative ints), got {entry!r}"
            )


def _optional_hash(meta: Mapping[str, Any], kind: str) -> None:
    if meta.get("config_hash") is not None:
        value = _field(meta, kind, "config_hash", (str,))
        if len(value) > MAX_HASH_CHARS:
            raise DecodeError(f"{kind} config_hash longer than {MAX_HASH_CHARS} characters")


def _check_welcome(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _field(meta, "welcome", "protocol", (int,))
    _field(meta, "welcome", "server", (str,))
    _optional_hash(meta, "welcome")
    if meta.get("chunk_credit") is not None:
        _int(meta, "welcome", "chunk_credit", 0, MAX_CREDIT)  # 0: all of it in flight
    if meta.get("config") is not None:
        _field(meta, "welcome", "config", (dict,))
    if meta.get("weights_version") is not None:
        _int(meta, "welcome", "weights_version", 0)
    _optional_str(meta, "welcome", "session", MAX_SESSION_CHARS)
    _no_arrays("welcome", arrays)


def _check_refused(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _field(meta, "refused", "reason", (str,))
    if meta.get("code") is not None:
        code = _field(meta, "refused", "code", (str,))
        if code not in REFUSAL_CODES:
            raise DecodeError(f"refused code {code!r} is not one of {sorted(REFUSAL_CODES)}")
    _no_arrays("refused", arrays)


def _check_state(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    session = _field(meta, "state", "session", (str,))
    if len(session) > MAX_SESSION_CHARS:
        raise DecodeError(f"state session longer than {MAX_SESSION_CHARS} characters")
    _int(meta, "state", "updates", 0)
    _int(meta, "state", "samples", 0)
    _field(meta, "state", "ready", (bool,))
    _int(meta, "state", "weights_version", 0)
    _no_arrays("state", arrays)


def _check_rejoin(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _field(meta, "rejoin", "reason", (str,))
    _no_arrays("rejoin", arrays)


def _check_chunk(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _field(meta, "chunk", "worker", (str,))
    _int(meta, "chunk", "policy_version", 0)
    n = _int(meta, "chunk", "n", 1)
    _optional_str(meta, "chunk", "session", MAX_SESSION_CHARS)
    if meta.get("seq") is not None:
        _int(meta, "chunk", "seq", 1)
    if meta.get("sent") is not None:
        _int(meta, "chunk", "sent", n)
    episodes = _field(meta, "chunk", "episodes", (list,))
    for i, episode in enumerate(episodes):
        if not isinstance(episode, dict):
            raise DecodeError(f"chunk episode {i} must be a map, got {type(episode).__name__}")
    # what the arrays must hold (a transition, n rows, the run's spec, finite values) is the
    # roles' business: tmrl2.roles.chunk_checks, applied by the server and the trainer
    if not arrays:
        raise DecodeError("chunk carries no arrays")


def _check_chunks(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """A batch of whole ``chunk`` messages: ``frames`` says how many frames each one has (its
    header and its arrays); they follow the batch's header frame, in order, unchanged."""
    counts = _field(meta, "chunks", "frames", (list,))
    if not 2 <= len(counts) <= MAX_BATCH_CHUNKS:
        raise DecodeError(f"chunks carries 2 to {MAX_BATCH_CHUNKS} chunks, got {len(counts)}")
    if not all(type(count) is int and count >= 2 for count in counts):
        raise DecodeError(f"chunks frames must be ints >= 2 (a header and arrays): {counts!r}")
    _no_arrays("chunks", arrays)


def _check_stats(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Counters both ways (the trainer's, optional; the server's queue depth and drops to a
    trainer whose hello set ``server_stats``): a flat map of numbers."""
    if len(meta) > MAX_STATS_KEYS:
        raise DecodeError(f"stats carries more than {MAX_STATS_KEYS} counters")
    for key, value in meta.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise DecodeError(f"stats meta {key!r} must be a number, got {value!r}")
    _no_arrays("stats", arrays)


def _check_credit(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _int(meta, "credit", "n", 1, MAX_CREDIT)
    _no_arrays("credit", arrays)


def _check_weights(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _int(meta, "weights", "version", 0)
    _int(meta, "weights", "updates", 0)
    _optional_str(meta, "weights", "session", MAX_SESSION_CHARS)


def _check_plain(kind: str) -> Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], None]:
    def check(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        _no_arrays(kind, arrays)

    return check


_CHECKS: dict[str, Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], None]] = {
    "hello": _check_hello,
    "welcome": _check_welcome,
    "refused": _check_refused,
    "rejoin": _check_rejoin,
    "chunk": _check_chunk,
    "chunks": _check_chunks,
    "credit": _check_credit,
    "weights": _check_weights,
    "state": _check_state,
    "stats": _check_stats,
    "ping": _check_plain("ping"),
    "bye": _check_plain("bye"),
}
assert _CHECKS.keys() == KINDS


def check_message(kind: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`DecodeError` unless ``meta`` and ``arrays`` follow the rules of ``kind``."""
    check = _CHECKS.get(kind)
    if check is None:
        raise DecodeError(f"unknown message kind {kind!r}; known kinds: {sorted(KINDS)}")
    check(meta, arrays)

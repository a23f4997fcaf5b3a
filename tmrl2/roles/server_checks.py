"""What the server checks beyond the wire format: chunks against the run's spec, hello rates.

The codec (:mod:`tmrl2.net.kinds`) already guarantees a chunk's arrays agree on ``n`` and name
a complete transition. It cannot know the run's observation space: the trainer declares it in
its ``hello`` as ``spec`` (``{name: [dtype_str, [dims...]]}``, every array of a chunk with its
shape without the leading ``n``; for ``frames/<key>`` the per-frame shape). The server checks
every worker chunk against it and that float arrays are finite, so one bad worker (a wrong
observation shape, a NaN from a broken env) can neither crash nor poison the trainer. These
checks are numpy calls on the decoded views, a few microseconds per chunk.

Hellos: :func:`hello_refusal` says why a hello must be refused for what it carries (protocol,
run token, config hash) or for the Curve key it came with (a role its key may not take).
Hello rate: each client identity has a token bucket (:class:`HelloLimiter`), so a peer
looping on hellos cannot make the server re-register it (and probe the other peers) at will.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tmrl2.net.codec import PROTOCOL_VERSION

if TYPE_CHECKING:
    from tmrl2.net.keys import ServerCurve

Spec = dict[str, tuple[np.dtype[Any], tuple[int, ...]]]
"""A parsed trainer spec: array name -> (dtype, per-row shape)."""


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """A trainer's ``spec`` meta (already checked by :func:`tmrl2.net.kinds.check_spec`) as
    numpy dtypes; raises ``ValueError`` naming an entry whose dtype numpy does not know."""
    spec: Spec = {}
    for name, (dtype, dims) in raw.items():
        try:
            parsed = np.dtype(dtype)
        except TypeError as exc:
            raise ValueError(f"spec {name!r} has an unknown dtype {dtype!r}") from exc
        if parsed.byteorder == ">":  # the wire is little-endian
            parsed = parsed.newbyteorder("<")
        spec[name] = (parsed, tuple(dims))
    return spec


def check_chunk(arrays: Mapping[str, np.ndarray], spec: Spec | None) -> str | None:
    """Why ``arrays`` (a decoded chunk's) do not fit ``spec`` or hold non-finite floats; None
    when they are fine. Without a spec only finiteness is checked."""
    if spec is not None and arrays.keys() != spec.keys():
        missing, extra = sorted(spec.keys() - arrays.keys()), sorted(arrays.keys() - spec.keys())
        return f"its arrays differ from the trainer's spec: missing {missing}, unexpected {extra}"
    floats = []
    for name, array in arrays.items():
        if spec is not None:
            dtype, dims = spec[name]
            if array.dtype != dtype or array.shape[1:] != dims:
                return (
                    f"array {name!r} is {array.dtype.str} {list(array.shape[1:])} per row, the "
                    f"trainer's spec says {dtype.str} {list(dims)}"
                )
        if array.dtype.kind == "f":
            floats.append((name, array))
    if floats:
        with np.errstate(invalid="ignore"):  # once per chunk: it costs as much as a check
            for name, array in floats:
                if not _finite(array):
                    return f"array {name!r} holds NaN or infinite values"
    return None


_ZEROS = {np.dtype(t): np.zeros(1 << 16, t) for t in ("<f2", "<f4", "<f8")}
"""Zero vectors for :func:`_finite`: ``x . 0`` is 0 when every ``x`` is finite and NaN
otherwise (``inf * 0`` and ``nan * 0`` are NaN, finite products never overflow)."""


def _finite(array: np.ndarray) -> bool:
    """Whether every value of a float ``array`` is finite: one BLAS dot for arrays up to
    64k values (faster than ``np.isfinite(array).all()``, which allocates a mask). Call it
    under ``np.errstate(invalid="ignore")``: a NaN product would warn."""
    flat = array.reshape(-1)
    zeros = _ZEROS.get(array.dtype)
    if zeros is None or flat.size > zeros.size or array.dtype.itemsize < 4:
        return bool(np.isfinite(flat).all())
    return math.isfinite(flat.dot(zeros[: flat.size]))  # the caller ignores FP errors


class HelloLimiter:
    """A token bucket per client identity: ``burst`` hellos at once, ``rate_per_s`` after."""

    def __init__(self, rate_per_s: float, burst: int, most: int = 4096) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.most = most
        self._buckets: dict[bytes, tuple[float, float]] = {}

    def allow(self, identity: bytes, now: float) -> bool:
        """Take one token of ``identity``'s bucket; False when it is empty."""
        tokens, since = self._buckets.get(identity, (self.burst, now))
        tokens = min(self.burst, tokens + (now - since) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[identity] = (tokens, now)
            return False
        if identity not in self._buckets and len(self._buckets) >= self.most:
            self.prune(now)
        self._buckets[identity] = (tokens - 1.0, now)
        return True

    def prune(self, now: float) -> None:
        """Forget buckets that are full again (they behave like new ones); then, if still too
        many (identities invented by the thousand), the oldest half."""
        refill_s = self.burst / self.rate_per_s
        for identity, (_, since) in list(self._buckets.items()):
            if now - since >= refill_s:
                del self._buckets[identity]
        if len(self._buckets) >= self.most:
            oldest = sorted(self._buckets, key=lambda key: self._buckets[key][1])
            for identity in oldest[: len(oldest) // 2]:
                del self._buckets[identity]

    def __len__(self) -> int:
        return len(self._buckets)


def hello_refusal(
    meta: Mapping[str, Any],
    run_token: str | None,
    config_hash: str | None,
    curve: ServerCurve | None,
    key: str | None,
) -> tuple[str, str] | None:
    """(reason, code) when a hello must be refused for what it says or the key it came
    with; None when those allow it (the server then checks the trainer seat and the name).

    Args:
        meta: the hello's meta (checked by the codec).
        run_token: the server's run token (None: not checked).
        config_hash: the server's config hash (None: not checked).
        curve: the server's keys (None: roles come from the hello).
        key: the Z85 public key of the sender's connection (ZAP ``User-Id``).
    """
    role, name, protocol = meta["role"], meta["name"], meta["protocol"]
    if protocol != PROTOCOL_VERSION:
        return (
            f"client protocol {protocol}, server protocol {PROTOCOL_VERSION}: install "
            "the same tmrl2 version everywhere",
            "protocol",
        )
    if run_token is not None and meta.get("run_token") != run_token:
        return (
            f"{role} {name!r} reached another run's server (its run token differs): "
            "check the address and port, or start a server for this run",
            "token",
        )
    theirs = meta.get("config_hash")
    if theirs is not None and config_hash is not None and theirs != config_hash:
        return (
            f"{role} {name!r} config hash {theirs}, server config hash "
            f"{config_hash}: start every role with the same config file and --set "
            "overrides",
            "config",
        )
    if curve is not None and not curve.may_act_as(role, key):
        where = "server.trainer_keys" if role == "trainer" else "server.authorized_keys"
        return (
            f"the key {key} may not act as the {role}: put its .key file in {where}",
            "role",
        )
    return None

"""What the server checks in hellos beyond the wire format; the hello rate.

Chunks are checked by :mod:`tmrl2.roles.chunk_checks` (the same rules as the trainer's), against
the spec the trainer declares in its ``hello`` (``{name: [dtype_str, [dims...]]}``), so one bad
worker (a wrong observation shape, a NaN from a broken env) can neither crash nor poison the
trainer.

Hellos: :func:`hello_refusal` says why a hello must be refused for what it carries (protocol,
run token, config hash) or for the Curve key it came with (a role its key may not take).
Hello rate: each client identity has a token bucket (:class:`HelloLimiter`), so a peer
looping on hellos cannot make the server re-register it (and probe the other peers) at will.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tmrl2.net.codec import PROTOCOL_VERSION

if TYPE_CHECKING:
    from tmrl2.net.keys import ServerCurve


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

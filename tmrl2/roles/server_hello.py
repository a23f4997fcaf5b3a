"""The server's hello handling: who may register, as what, and what a welcome carries.

Functions of :class:`tmrl2.roles.server.Server` (they read and update its tables; split from
``server.py`` to keep both short): :func:`on_hello` handles one decoded hello. A hello is
refused (a ``refused`` message with a ``code``) when it exceeds the rate limit, fails the
static checks of :func:`~tmrl2.roles.server_checks.hello_refusal` (protocol, run token,
config hash, role bound to the Curve key), names a second trainer while the first is
connected, or a worker name another live connection holds; a repeated hello of a registered
session is welcomed again without resetting it; any other hello (re)starts the peer's
session, and a trainer's hello declares the chunk spec the server checks against (and, with
``server_stats``, asks for the server's ``stats`` messages). :func:`on_unregistered` answers
a message from a peer without a session (the server restarted under it) with ``rejoin``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tmrl2.net.codec import Message
from tmrl2.net.transport import SendResult
from tmrl2.roles.chunk_checks import Spec, parse_spec
from tmrl2.roles.server_checks import hello_refusal
from tmrl2.roles.server_peers import Peer
from tmrl2.roles.server_stats import WorkerStats, prune_workers

if TYPE_CHECKING:
    from tmrl2.roles.server import Server

__all__ = ["on_hello", "on_unregistered"]

log = logging.getLogger("tmrl2.roles.server")
"""The server's logger: one log for the whole role."""


def on_hello(server: Server, identity: bytes, frames: Sequence[Any], msg: Message) -> None:
    """Refuse, welcome again, or (re)start the session of ``identity`` (module docstring)."""
    meta = msg.meta
    role, name = meta["role"], meta["name"]
    if not server._hellos.allow(identity, time.monotonic()):
        _refuse(
            server,
            identity,
            f"{role} {name!r} sent too many hellos (more than {server.config.hello_burst} at "
            f"once or {server.config.hello_rate_per_s:g} per second): wait, then retry",
            "rate",
        )
        return
    reason = _hello_problem(server, identity, frames, meta)
    if reason is not None:
        _refuse(server, identity, *reason)
        return
    session = meta.get("session")
    current = server._peers.get(identity)
    if (
        current is not None
        and session is not None
        and (current.role, current.name, current.session) == (role, name, session)
    ):
        _welcome_again(server, identity, current)  # a repeated hello of the same session
        return
    spec: Spec | None = None
    if role == "trainer" and meta.get("spec") is not None:
        try:
            spec = parse_spec(meta["spec"])
        except ValueError as exc:
            _refuse(server, identity, f"trainer {name!r} spec: {exc}", "config")
            return
    # a hello (re)starts the peer's session
    server._forget(identity, quiet=True)
    peer = Peer(role, name, session, server._socket.peer_key(frames) if server._curve else None)
    server._peers[identity] = peer
    server.stats.samples_lost += server._pending_lost.pop(identity, 0)
    server._rejoin_asked.pop(identity, None)
    log.info("%s %r connected", role, name)
    welcome = {**server._welcome, "weights_version": server.stats.weights_version}
    if role == "trainer":
        server._trainer = identity
        peer.wants_stats = meta.get("server_stats") is True
        peer.batch_chunks = int(meta.get("batch_chunks") or 1)
        server._next_stats = 0.0  # its first stats at the next pass
        server.stats.trainer_connected = True
        server._socket.send(identity, Message("welcome", welcome))
        server._set_spec(spec)
        return
    server._names[name] = identity
    server.stats.workers_connected += 1
    workers = server.stats.workers
    if name not in workers and len(workers) >= server.config.max_peers:
        now = time.monotonic()
        prune_workers(
            workers, server._names, now, server.config.peer_ttl_s, server.config.max_peers - 1
        )
    peer.worker = workers.setdefault(name, WorkerStats())
    peer.worker.last_seen_s = time.monotonic()
    theirs = meta.get("weights_version")
    if theirs is not None and theirs >= server.stats.weights_version:
        peer.weights_sent = server._weights_seq  # it holds the latest already
    _check_window(server)
    server._socket.send(
        identity, Message("welcome", {**welcome, "chunk_credit": server.config.worker_credit})
    )
    server._push_due = True
    server._push_latest()


def _hello_problem(
    server: Server, identity: bytes, frames: Sequence[Any], meta: Mapping[str, Any]
) -> tuple[str, str] | None:
    """(reason, code) when this hello must be refused; None when it may register."""
    role, name = meta["role"], meta["name"]
    key = server._socket.peer_key(frames) if server._curve is not None else None
    static = hello_refusal(meta, server.run_token, server.config_hash, server._curve, key)
    if static is not None:
        return static
    if role == "trainer":
        current = _other_trainer(server, identity)
        if current is not None:
            return (
                f"trainer {current!r} is already connected; one trainer per server "
                "(stop it, or start another server)",
                "trainer_taken",
            )
    elif _name_taken(server, identity, name):
        return (
            f"worker name {name!r} is already connected to this server: give each "
            "worker a unique worker.name (or --index)",
            "name_taken",
        )
    return None


def _welcome_again(server: Server, identity: bytes, peer: Peer) -> None:
    """Answer a repeated hello of a registered session (its first welcome may have been
    lost) without resetting it. Its socket replaces its credit by the welcome's grant, so
    the grant is what the session may still have in flight (``worker_credit`` minus its
    queued chunks) and the credit owed to it is void: hellos in a loop add nothing."""
    welcome = {**server._welcome, "weights_version": server.stats.weights_version}
    if peer.role == "worker":
        server._owed.pop(identity, None)  # the grant below includes it
        welcome["chunk_credit"] = max(0, server.config.worker_credit - peer.in_flight)
    server._socket.send(identity, Message("welcome", welcome))
    server._push_due = True


def _name_taken(server: Server, identity: bytes, name: str) -> bool:
    """Whether another live connection holds worker ``name`` (a holder that a probe
    finds gone is forgotten: the newcomer takes the name)."""
    holder = server._names.get(name)
    if holder is None or holder == identity:
        return False
    if server._socket.send(holder, Message("ping")) is SendResult.GONE:
        server._forget(holder)
        return False
    return True


def _check_window(server: Server) -> None:
    workers = server.stats.workers_connected
    if workers * server.config.worker_credit > server.config.max_queued_chunks and (
        server._may_warn("window")
    ):
        log.warning(
            "%d workers x worker_credit %d exceed max_queued_chunks %d: chunks may be "
            "dropped while the trainer lags; raise max_queued_chunks or lower worker_credit",
            workers,
            server.config.worker_credit,
            server.config.max_queued_chunks,
        )


def _other_trainer(server: Server, identity: bytes) -> str | None:
    """Name of the registered trainer if it is another peer and still connected."""
    if server._trainer is None or server._trainer == identity:
        return None
    if server._socket.send(server._trainer, Message("ping")) is SendResult.GONE:
        server._forget(server._trainer)  # it left without bye: the newcomer may take over
        return None
    return server._peers[server._trainer].name


def _refuse(server: Server, identity: bytes, reason: str, code: str) -> None:
    server.stats.refused += 1
    server.stats.refused_codes[code] = server.stats.refused_codes.get(code, 0) + 1
    if server._may_warn(("refused", identity)):  # refused clients retry their hello
        log.warning("refused %s: %s", server._label(identity), reason)
    server._socket.send(identity, Message("refused", {"reason": reason, "code": code}))


def on_unregistered(server: Server, identity: bytes, msg: Message) -> None:
    """A peer without a session (the server restarted under it): count, ask to rejoin.

    A chunk's transitions count as lost only for a peer that held a session lately or
    opens one later (``Server._pending_lost``): a stranger cannot inflate ``samples_lost``."""
    from tmrl2.roles import server as server_module  # its limits, as tests may set them

    most, period = server_module.MAX_IDENTITIES, server_module.REJOIN_PERIOD_S
    server.stats.unregistered += 1
    if msg.kind == "chunk":
        n = int(msg.meta["n"])
        if identity in server._recent:
            server.stats.samples_lost += n
        elif identity in server._pending_lost or len(server._pending_lost) < most:
            server._pending_lost[identity] = server._pending_lost.get(identity, 0) + n
    server._malformed(identity, f"{msg.kind!r} from an unregistered peer (no hello)")
    now = time.monotonic()
    if now - server._rejoin_asked.get(identity, -period) < period:
        return
    if len(server._rejoin_asked) > most:  # random identities must not grow it
        server._rejoin_asked.clear()
    server._rejoin_asked[identity] = now
    reason = "this server has no session for you (it restarted?): send hello again"
    server._socket.send(identity, Message("rejoin", {"reason": reason}))

"""Small pieces shared by the roles: stop flags, connecting with a hello, torch threads.

Every client process has a random ``session`` (:func:`new_session`): it goes in its hellos and
in its socket identity (``<role>-<name>-<session>``), so two processes never share an identity
at the server (a restarted worker is a new session; the server tells names apart by
``name_taken``), and the trainer's loss accounting knows when a worker restarted.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from tmrl2.config.load import config_hash
from tmrl2.config.schema import Config
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.errors import NetError, NetTimeout, ProtocolError, SecurityError, Stopped
from tmrl2.net.keys import client_curve
from tmrl2.net.transport import ClientSocket, ClientTransport

log = logging.getLogger(__name__)

DEFAULT_SEND_TIMEOUT_MS = 10_000
"""How long a blocking ``send`` may wait for room in a full queue (the roles' periodic
messages use ``try_send`` and never wait)."""

Connection = tuple[ClientSocket, dict[str, Any]]
"""A connected client and the meta of the server's ``welcome``."""

Connector = Callable[[str, dict[str, Any]], tuple[ClientTransport, dict[str, Any]]]
"""``(session, extra hello meta) -> (transport, welcome meta)``: :func:`connector` in
production, a fake hub's in tests (``tests/unit/rolekit.py``)."""


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


class NeverStop:
    """A stop flag that is never set (roles run until interrupted)."""

    def is_set(self) -> bool:
        return False


def new_session() -> str:
    """A random id of this client process (16 hex digits)."""
    return uuid.uuid4().hex[:16]


REFUSAL_HINTS: dict[str, str] = {
    "protocol": "this tmrl2 speaks another protocol version than the server: install the "
    "same tmrl2 version on every machine",
    "config": "this role's config differs from the server's: start every role with the same "
    "config file and --set options",
    "token": "that is another run's server (its run token differs): check the address and "
    "port, or stop the other run",
    "auth": "the server does not accept this machine's key: add its .key to the server's "
    "authorized_keys (or server.trainer_keys for a trainer)",
    "role": "this key may not act in this role: trainer keys go in server.trainer_keys, "
    "worker keys in server.authorized_keys",
    "name_taken": "a worker of that name is already connected to this server: give each "
    "worker a unique worker.name (or --index)",
    "trainer_taken": "another trainer is connected to this server: stop it first (one "
    "trainer per server)",
    "rate": "too many hellos from this client: wait a little and retry",
}
"""One line per ``refused.code``: what to do about it."""

TRANSIENT_REFUSALS = frozenset({"name_taken", "trainer_taken", "rate"})
"""Refusals that may clear by themselves (a killed holder's connection not yet closed at the
server, a hello burst): :func:`connect` keeps asking until its deadline."""


def refusal_message(address: str, role: str, name: str, meta: dict[str, Any]) -> str:
    """One clear line for a ``refused`` meta."""
    reason = meta.get("reason", "no reason given")
    hint = REFUSAL_HINTS.get(str(meta.get("code", "")))
    text = f"server at {address} refused {role} {name!r}: {reason}"
    return f"{text} ({hint})" if hint else text


def connect(
    config: Config,
    address: str,
    role: str,
    name: str,
    stop: StopFlag,
    *,
    session: str,
    extra: dict[str, Any] | None = None,
    run_token: str | None = None,
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS,
) -> Connection:
    """Connect to the server and complete the hello; raise on refusal or timeout.

    The hello carries the config hash (the server refuses a mismatch, naming both), the
    process ``session``, the ``run_token`` (default: ``server.run_token``; a server with a
    token refuses hellos of another run) and ``extra``; CurveZMQ is on when the role's
    ``server_key`` and ``secret_key`` are set; the socket re-sends the hello by itself when a
    restarted server asks it to rejoin. Returns the client and the ``welcome`` meta.

    Raises:
        ProtocolError: refused (one line saying why and what to do).
        SecurityError: the server rejected this client's key (CurveZMQ handshake).
        NetTimeout: no answer within ``connect_timeout_s``.
    """
    cfg = config.worker if role == "worker" else config.trainer
    meta: dict[str, Any] = {
        "role": role,
        "name": name,
        "protocol": PROTOCOL_VERSION,
        "config_hash": config_hash(config),
        "session": session,
        **(extra or {}),
    }
    if run_token is None:
        run_token = config.server.run_token  # standalone roles: the config's, if any
    if run_token is not None:
        meta["run_token"] = run_token
    hello = Message("hello", meta, {})
    compression = getattr(cfg, "compression", "none")
    client = ClientSocket(
        address,
        identity=f"{role}-{name}-{session}"[:255],
        send_timeout_ms=send_timeout_ms,
        curve=client_curve(cfg.server_key, cfg.secret_key),
        hello=hello,
        compress=None if compression == "none" else compression,
    )
    timeout_s = cfg.connect_timeout_s
    deadline = time.monotonic() + timeout_s
    next_hello = 0.0
    transient: dict[str, Any] | None = None  # the latest refusal that may clear by itself
    while time.monotonic() < deadline and not stop.is_set():
        if time.monotonic() >= next_hello:
            # the socket takes a message only once connected: until then, try again soon
            sent = client.try_send(hello)
            next_hello = time.monotonic() + (1.0 if sent else 0.02)
        msg = client.recv(timeout_ms=100)
        if client.auth_failed:
            client.close()
            public = None if cfg.secret_key is None else cfg.secret_key.with_suffix(".key")
            raise SecurityError(
                f"the server at {address} refused this {role}'s key in the CurveZMQ "
                f"handshake: add {public or 'its public .key file'} to the server's "
                f"{'trainer_keys' if role == 'trainer' else 'authorized_keys'} and restart "
                "the server (and check that server_key is that server's public key)"
            )
        if msg is None:
            continue
        if msg.kind == "welcome":
            log.info("%s %s connected to %s", role, name, address)
            return client, dict(msg.meta)
        if msg.kind == "refused":
            if msg.meta.get("code") in TRANSIENT_REFUSALS:
                # the holder of the name (or trainer slot) may be a dead process whose
                # connection the server has not seen close yet: ask again until the deadline
                if transient is None:
                    log.warning(
                        "%s; retrying", refusal_message(address, role, name, dict(msg.meta))
                    )
                transient = dict(msg.meta)
                continue
            client.close()
            raise ProtocolError(refusal_message(address, role, name, dict(msg.meta)))
    client.close()
    raise _no_welcome(address, role, name, stop.is_set(), transient, timeout_s)


def _no_welcome(
    address: str,
    role: str,
    name: str,
    stopped: bool,
    transient: dict[str, Any] | None,
    timeout_s: float,
) -> NetError:
    """Why :func:`connect` ended without a welcome: a stop, a refusal that did not clear, or
    silence."""
    if stopped:
        return Stopped(f"{role} {name}: asked to stop before the server at {address} answered")
    if transient is not None:
        return ProtocolError(refusal_message(address, role, name, transient))
    return NetTimeout(
        f"no answer from the server at {address} within {timeout_s:.0f} s: "
        "is `tmrl2 server` running there, and is the port right?"
    )


def connector(
    config: Config,
    address: str,
    role: str,
    name: str,
    stop: StopFlag,
    run_token: str | None = None,
    send_timeout_ms: int = DEFAULT_SEND_TIMEOUT_MS,
) -> Connector:
    """:func:`connect` bound to everything but the session and the extra hello meta."""

    def _connect(session: str, extra: dict[str, Any]) -> Connection:
        return connect(
            config,
            address,
            role,
            name,
            stop,
            session=session,
            extra=extra,
            run_token=run_token,
            send_timeout_ms=send_timeout_ms,
        )

    return _connect


def set_torch_threads(n: int) -> None:
    """Pin the role's torch thread count (two busy processes on 2 cores collapse otherwise)."""
    import torch

    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # already set once in this process
            torch.set_num_interop_threads(1)

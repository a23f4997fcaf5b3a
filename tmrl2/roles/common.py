"""Small pieces shared by the roles: stop flags, connecting with a hello, torch threads."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Protocol

from tmrl2.config.load import config_hash
from tmrl2.config.schema import Config
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.errors import NetTimeout, ProtocolError
from tmrl2.net.keys import client_curve
from tmrl2.net.transport import ClientSocket

log = logging.getLogger(__name__)


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


class NeverStop:
    """A stop flag that is never set (roles run until interrupted)."""

    def is_set(self) -> bool:
        return False


def connect(config: Config, address: str, role: str, name: str, stop: StopFlag) -> ClientSocket:
    """Connect to the server and complete the hello; raise on refusal or timeout.

    The hello carries the config hash (the server refuses a mismatch, naming both); CurveZMQ
    is on when the role's ``server_key`` and ``secret_key`` are set; the socket re-sends the
    hello by itself when a restarted server asks it to rejoin.
    """
    cfg = config.worker if role == "worker" else config.trainer
    meta = {
        "role": role,
        "name": name,
        "protocol": PROTOCOL_VERSION,
        "config_hash": config_hash(config),
    }
    hello = Message("hello", meta, {})
    compression = getattr(cfg, "compression", "none")
    client = ClientSocket(
        address,
        identity=f"{role}-{name}",
        curve=client_curve(cfg.server_key, cfg.secret_key),
        hello=hello,
        compress=None if compression == "none" else compression,
    )
    timeout_s = cfg.connect_timeout_s
    deadline = time.monotonic() + timeout_s
    next_hello = 0.0
    while time.monotonic() < deadline and not stop.is_set():
        if time.monotonic() >= next_hello:
            client.send(hello)
            next_hello = time.monotonic() + 1.0
        msg = client.recv(timeout_ms=100)
        if msg is None:
            continue
        if msg.kind == "welcome":
            log.info("%s %s connected to %s", role, name, address)
            return client
        if msg.kind == "refused":
            client.close()
            reason = msg.meta.get("reason", msg.meta)
            raise ProtocolError(f"server at {address} refused {role} {name!r}: {reason}")
    client.close()
    raise NetTimeout(
        f"no answer from the server at {address} within {timeout_s:.0f} s: "
        "is `tmrl2 server` running there, and is the port right?"
    )


def set_torch_threads(n: int) -> None:
    """Pin the role's torch thread count (two busy processes on 2 cores collapse otherwise)."""
    import torch

    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != 1:
        with contextlib.suppress(RuntimeError):  # already set once in this process
            torch.set_num_interop_threads(1)

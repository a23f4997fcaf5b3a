"""The server role: a broker between rollout workers and the trainer. No RL inside.

::

    worker --hello--> server --welcome (+ latest weights)--> worker
    worker --chunk--> server --chunk (same frames)--> trainer   while the trainer has credit
                             \\-> bounded queue (oldest dropped, counted) otherwise
    trainer --credit n--> server: n more chunks may go to the trainer; the queue is flushed
    trainer --weights--> server --weights--> each worker, once per weights message

Every message is decoded and validated before use; a malformed one (undecodable, bad sizes,
sent before ``hello``, or of a kind the sender's role may not send) is dropped, counted in
:attr:`ServerStats.malformed` and logged at most once per peer per
:data:`WARN_PERIOD_S`, and the server keeps serving. One trainer at a time: a second one is
refused while the first is registered (a restarted trainer with the same identity takes over).
A peer that disconnects without ``bye`` is forgotten when a send to it finds it gone (the
current trainer is probed with a ``ping`` when another trainer says hello).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field

from tmrl2.config.base import FrozenModel
from tmrl2.net.codec import DEFAULT_MAX_BYTES, PROTOCOL_VERSION, Buffer, Message, decode
from tmrl2.net.errors import DecodeError, ProtocolError
from tmrl2.net.transport import SendResult, ServerSocket, ServerTransport

log = logging.getLogger(__name__)

WARN_PERIOD_S = 10.0
"""Shortest time between two warnings of the same sort (per peer for malformed messages)."""

MAX_MESSAGES_PER_SERVE = 1000
"""Messages handled by one :meth:`Server.serve_once` before the queue/weights bookkeeping."""

SERVER_NAME = "tmrl2-server"
"""Reported in ``welcome``."""

ALLOWED_KINDS: dict[str, frozenset[str]] = {
    "worker": frozenset({"chunk", "ping", "bye"}),
    "trainer": frozenset({"credit", "weights", "stats", "ping", "bye"}),
}
"""What each registered role may send (``hello`` is always allowed)."""


class ServerConfig(FrozenModel):
    """The broker between the workers and the trainer."""

    host: str = "127.0.0.1"
    """Interface to bind: ``127.0.0.1`` for one machine, ``0.0.0.0`` to accept remote roles."""
    port: int = Field(default=55555, ge=0, le=65535)
    """TCP port to bind (0 = any free port; the server reports the one it got)."""
    max_queued_chunks: int = Field(default=512, gt=0)
    """Chunks kept while the trainer has no credit; beyond, the oldest is dropped (counted)."""
    max_message_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    """Largest message accepted (all frames); larger ones are dropped as malformed."""


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


@dataclass
class WorkerStats:
    """Counters of one worker, by the name it gave in its ``hello``."""

    samples: int = 0
    """Transitions received from it."""
    chunks: int = 0
    """Chunks received from it."""
    policy_version: int = 0
    """Weights version of its latest chunk."""
    last_seen_s: float = 0.0
    """``time.monotonic()`` of its latest message."""


@dataclass
class ServerStats:
    """Counters of the server since it started."""

    messages: int = 0
    """Messages received, malformed ones included."""
    malformed: int = 0
    """Messages dropped as malformed (undecodable, unregistered sender, wrong role)."""
    errors: int = 0
    """Messages whose handling raised unexpectedly (a server bug; logged with traceback)."""
    chunks_in: int = 0
    """Valid chunks received from workers."""
    samples_in: int = 0
    """Transitions in those chunks."""
    bytes_in: int = 0
    """Bytes of all received messages."""
    chunks_forwarded: int = 0
    """Chunks sent to the trainer."""
    samples_forwarded: int = 0
    """Transitions in those chunks."""
    chunks_dropped: int = 0
    """Chunks dropped because the queue was full."""
    weights_version: int = 0
    """Version of the latest weights received from the trainer (0 = none yet)."""
    weights_sent: int = 0
    """Weights messages sent to workers."""
    workers: dict[str, WorkerStats] = field(default_factory=dict)
    """Per-worker counters, by worker name."""
    trainer_connected: bool = False
    """Whether a trainer is registered."""
    trainer_stats: dict[str, Any] = field(default_factory=dict)
    """Meta of the trainer's latest ``stats`` message."""


@dataclass
class _Peer:
    role: str
    name: str
    weights_sent: int = 0
    """Server-side sequence number of the latest weights sent to this peer."""


@dataclass
class _Chunk:
    frames: Sequence[Buffer]
    n: int


class Server:
    """Routes chunks to the trainer under credit and weights to the workers."""

    def __init__(self, config: ServerConfig, transport: ServerTransport | None = None) -> None:
        """Args:
        config: the server section.
        transport: the socket (tests may inject a fake); by default a :class:`ServerSocket`
            bound on ``config.host:config.port``.
        """
        self.config = config
        self.stats = ServerStats()
        self._socket = transport or ServerSocket(config.host, config.port)
        self._peers: dict[bytes, _Peer] = {}
        self._trainer: bytes | None = None
        self._credit = 0
        self._queue: deque[_Chunk] = deque()
        self._weights: Sequence[Buffer] | None = None
        self._weights_seq = 0
        self._last_warn: dict[object, float] = {}

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._socket.port

    @property
    def queued_chunks(self) -> int:
        """Chunks waiting for trainer credit."""
        return len(self._queue)

    @property
    def credit(self) -> int:
        """Chunks the trainer can still take."""
        return self._credit

    # ------------------------------------------------------------------ loop
    def serve_once(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for a message, handle all pending ones (at most
        :data:`MAX_MESSAGES_PER_SERVE`), then flush the queue and send pending weights."""
        item = self._socket.recv(timeout_ms)
        handled = 0
        while item is not None:
            self._handle_safely(*item)
            handled += 1
            item = self._socket.recv(0) if handled < MAX_MESSAGES_PER_SERVE else None
        self._flush()
        self._push_weights()

    def run(self, stop: StopFlag, poll_ms: int = 50) -> None:
        """Serve until ``stop.is_set()``; it is checked at least every ``poll_ms``."""
        while not stop.is_set():
            self.serve_once(poll_ms)

    def close(self) -> None:
        """Close the socket and free the port."""
        self._socket.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ dispatch
    def _handle_safely(self, identity: bytes, frames: list[Any]) -> None:
        try:
            self._handle(identity, frames)
        except Exception:  # one message must never stop the server
            self.stats.errors += 1
            if self._may_warn("error"):
                log.exception("error while handling a message from %s", self._label(identity))

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        self.stats.messages += 1
        self.stats.bytes_in += sum(len(frame) for frame in frames)
        try:
            msg = decode(frames, self.config.max_message_bytes)
        except ProtocolError as exc:
            self._malformed(identity, str(exc))
            self._socket.send(identity, Message("refused", {"reason": str(exc)}))
            return
        except DecodeError as exc:
            self._malformed(identity, str(exc))
            return
        if msg.kind == "hello":
            self._on_hello(identity, msg)
            return
        peer = self._peers.get(identity)
        if peer is None:
            self._malformed(identity, f"{msg.kind!r} from an unregistered peer (no hello)")
            return
        if msg.kind not in ALLOWED_KINDS[peer.role]:
            self._malformed(identity, f"a {peer.role} may not send {msg.kind!r}")
            return
        if peer.role == "worker":
            self.stats.workers[peer.name].last_seen_s = time.monotonic()
        if msg.kind == "chunk":
            self._on_chunk(peer, frames, msg)
        elif msg.kind == "credit":
            self._credit += int(msg.meta["n"])
            self._flush()
        elif msg.kind == "weights":
            self._on_weights(frames, msg)
        elif msg.kind == "stats":
            self.stats.trainer_stats = dict(msg.meta)
        elif msg.kind == "bye":
            log.info("%s said bye", self._label(identity))
            self._forget(identity)
        # ping: being seen is all it does

    # ------------------------------------------------------------------ handlers
    def _on_hello(self, identity: bytes, msg: Message) -> None:
        role, name, protocol = msg.meta["role"], msg.meta["name"], msg.meta["protocol"]
        if protocol != PROTOCOL_VERSION:
            self._refuse(
                identity,
                f"client protocol {protocol}, server protocol "
                f"{PROTOCOL_VERSION}: install the same tmrl2 version everywhere",
            )
            return
        current = self._other_trainer(identity) if role == "trainer" else None
        if current is not None:
            self._refuse(
                identity,
                f"trainer {current!r} is already connected; one trainer "
                "per server (stop it, or start another server)",
            )
            return
        # a hello (re)starts the peer's session: a restarted process keeps its identity
        self._forget(identity, quiet=True)
        self._peers[identity] = _Peer(role, name)
        if role == "trainer":
            self._trainer = identity
            self.stats.trainer_connected = True
        else:
            self.stats.workers.setdefault(name, WorkerStats()).last_seen_s = time.monotonic()
        log.info("%s %r connected", role, name)
        self._socket.send(
            identity, Message("welcome", {"protocol": PROTOCOL_VERSION, "server": SERVER_NAME})
        )
        self._push_weights()

    def _other_trainer(self, identity: bytes) -> str | None:
        """Name of the registered trainer if it is another peer and still connected."""
        if self._trainer is None or self._trainer == identity:
            return None
        if self._socket.send(self._trainer, Message("ping")) is SendResult.GONE:
            self._forget(self._trainer)  # it left without bye: the newcomer may take over
            return None
        return self._peers[self._trainer].name

    def _refuse(self, identity: bytes, reason: str) -> None:
        if self._may_warn(("refused", identity)):  # refused clients retry their hello
            log.warning("refused %s: %s", self._label(identity), reason)
        self._socket.send(identity, Message("refused", {"reason": reason}))

    def _on_chunk(self, peer: _Peer, frames: Sequence[Buffer], msg: Message) -> None:
        n = int(msg.meta["n"])
        self.stats.chunks_in += 1
        self.stats.samples_in += n
        worker = self.stats.workers[peer.name]
        worker.samples += n
        worker.chunks += 1
        worker.policy_version = int(msg.meta["policy_version"])
        self._queue.append(_Chunk(frames, n))
        self._flush()
        while len(self._queue) > self.config.max_queued_chunks:
            self._queue.popleft()
            self.stats.chunks_dropped += 1
            if self._may_warn("drop"):
                log.warning(
                    "chunk queue full (%d chunks, trainer %s, credit %d): dropped the oldest "
                    "chunk, %d dropped so far",
                    self.config.max_queued_chunks,
                    "connected" if self._trainer else "not connected",
                    self._credit,
                    self.stats.chunks_dropped,
                )

    def _on_weights(self, frames: Sequence[Buffer], msg: Message) -> None:
        self._weights = frames
        self._weights_seq += 1
        self.stats.weights_version = int(msg.meta["version"])
        self._push_weights()

    # ------------------------------------------------------------------ sending
    def _flush(self) -> None:
        """Send queued chunks to the trainer while it has credit."""
        while self._queue and self._credit > 0 and self._trainer is not None:
            chunk = self._queue[0]
            result = self._socket.send_frames(self._trainer, chunk.frames)
            if result is SendResult.GONE:
                self._forget(self._trainer)
                return
            if result is SendResult.BUSY:
                return  # credit beyond what the trainer's queue holds: retry next round
            self._queue.popleft()
            self._credit -= 1
            self.stats.chunks_forwarded += 1
            self.stats.samples_forwarded += chunk.n

    def _push_weights(self) -> None:
        """Send the latest weights to each worker that has not had them yet."""
        if self._weights is None:
            return
        for identity, peer in list(self._peers.items()):
            if peer.role != "worker" or peer.weights_sent >= self._weights_seq:
                continue
            result = self._socket.send_frames(identity, self._weights)
            if result:
                peer.weights_sent = self._weights_seq
                self.stats.weights_sent += 1
            elif result is SendResult.GONE:
                self._forget(identity)
            # BUSY: the worker reads slowly; the latest weights are retried next round

    def _forget(self, identity: bytes, quiet: bool = False) -> None:
        peer = self._peers.pop(identity, None)
        if peer is None:
            return
        if identity == self._trainer:
            self._trainer = None
            self._credit = 0
            self.stats.trainer_connected = False
        if not quiet:
            log.info(
                "%s %r unregistered (%d chunks queued)", peer.role, peer.name, len(self._queue)
            )

    # ------------------------------------------------------------------ logging
    def _malformed(self, identity: bytes, reason: str) -> None:
        self.stats.malformed += 1
        if self._may_warn(identity):
            log.warning(
                "dropped a malformed message from %s: %s (%d malformed in all; this peer's are "
                "logged at most every %.0f s)",
                self._label(identity),
                reason,
                self.stats.malformed,
                WARN_PERIOD_S,
            )

    def _may_warn(self, key: object) -> bool:
        now = time.monotonic()
        if now - self._last_warn.get(key, -WARN_PERIOD_S) < WARN_PERIOD_S:
            return False
        if len(self._last_warn) > 4096:  # peers with random identities must not grow it
            self._last_warn.clear()
        self._last_warn[key] = now
        return True

    def _label(self, identity: bytes) -> str:
        peer = self._peers.get(identity)
        return f"{peer.role} {peer.name!r}" if peer else f"peer {identity!r}"

"""The server role: a broker between rollout workers and the trainer. No RL inside.

::

    worker --hello--> server --welcome (+ latest weights)--> worker
    worker --chunk--> server --chunk (same frames)--> trainer   while the trainer has credit
                             \\-> bounded queue (oldest dropped, counted) otherwise
    trainer --credit n--> server: n more chunks may go to the trainer; the queue is flushed
    server --credit n--> worker: n of its chunks were forwarded (or dropped)
    trainer --weights--> server --weights--> each worker, once per weights message

Every message is decoded and validated before use; a malformed one (undecodable, bad sizes,
sent before ``hello``, or of a kind the sender's role may not send) is dropped, counted in
:attr:`ServerStats.malformed` and logged at most once per peer per
:data:`WARN_PERIOD_S`, and the server keeps serving. One trainer at a time: a second one is
refused while the first is registered (a restarted trainer with the same identity takes over).
A peer that disconnects without ``bye`` is forgotten when a send to it finds it gone (the
current trainer is probed with a ``ping`` when another trainer says hello).

Backpressure: each worker's ``welcome`` grants it ``worker_credit`` chunks; the server gives
one back per chunk of that worker it forwarded or dropped (batched, :data:`CREDIT_BATCH`).
Workers whose socket honours credit (:class:`~tmrl2.net.transport.ClientSocket` does) slow
down to the trainer's pace, and
the queue holds at most ``worker_credit`` chunks per such worker (so nothing is dropped
while ``workers x worker_credit <= max_queued_chunks``; the server warns otherwise).

A message from a peer without a session (the server restarted under it) is counted in
:attr:`ServerStats.unregistered` (a chunk's transitions in :attr:`ServerStats.samples_lost`)
and answered with ``rejoin``; the peer's hello opens a new session. Security: with
``secret_key`` set, connections are CurveZMQ-encrypted and only ``authorized_keys`` get in
(:mod:`tmrl2.net.keys`); a non-loopback ``host`` without them is refused unless
``allow_insecure``. Config distribution: a server given the run's ``config_hash`` refuses a
hello that carries another hash, naming both, and sends the hash (and the run's config, if
given) in ``welcome``; a hello without a hash is accepted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Buffer, Message, decode, encode
from tmrl2.net.errors import DecodeError, ProtocolError
from tmrl2.net.transport import SendResult, ServerSocket, ServerTransport

log = logging.getLogger(__name__)

WARN_PERIOD_S = 10.0
"""Shortest time between two warnings of the same sort (per peer for malformed messages)."""

MAX_MESSAGES_PER_SERVE = 1000
CREDIT_BATCH = 16
"""Returned chunk credit is paid after at most this many handled messages: one ``credit``
message per worker per batch rather than one per chunk (fewer sends, fewer decodes at the
worker), while a worker's few credits still come back long before it runs dry."""
"""Messages handled by one :meth:`Server.serve_once` before the queue/weights bookkeeping."""

SERVER_NAME = "tmrl2-server"
"""Reported in ``welcome``."""

REJOIN_PERIOD_S = 0.5
"""Shortest time between two ``rejoin`` requests to the same unregistered peer."""

GONE_GRACE_S = 0.5
"""A peer is forgotten when sends to it find it gone for this long. libzmq's ROUTER reports
a connected peer whose queue was just full as unreachable (EHOSTUNREACH) until its reader's
"resume" reaches the I/O thread; forgetting on the first such report loses the trainer under
load (seen in benchmarks/bench_transport.py with 4 workers)."""

ALLOWED_KINDS: dict[str, frozenset[str]] = {
    "worker": frozenset({"chunk", "ping", "bye"}),
    "trainer": frozenset({"credit", "weights", "stats", "ping", "bye"}),
}
"""What each registered role may send (``hello`` is always allowed)."""


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
    bytes: int = 0
    """Bytes of its chunks as received (compressed where they were)."""
    last_seen_s: float = 0.0
    """``time.monotonic()`` of its latest message."""


@dataclass
class ServerStats:
    """Counters of the server since it started."""

    messages: int = 0
    """Messages received, malformed ones included."""
    malformed: int = 0
    """Messages dropped as malformed (undecodable, unregistered sender, wrong role)."""
    unregistered: int = 0
    """Of the malformed, valid messages from peers without a session (asked to rejoin)."""
    samples_lost: int = 0
    """Transitions in chunks dropped because their sender had no session."""
    refused: int = 0
    """Hellos refused (protocol or config hash mismatch, a second trainer)."""
    auth_rejected: int = 0
    """Connections refused because the client's Curve key is not authorized."""
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
    origin: bytes
    """Identity of the worker that sent it (its credit comes back when the chunk leaves)."""


class Server:
    """Routes chunks to the trainer under credit and weights to the workers."""

    def __init__(
        self,
        config: ServerConfig,
        transport: ServerTransport | None = None,
        *,
        config_hash: str | None = None,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Args:
        config: the server section.
        transport: the socket (tests may inject a fake); by default a :class:`ServerSocket`
            bound on ``config.host:config.port`` with the configured keys.
        config_hash: the run's config hash; hellos carrying another one are refused.
        run_config: the run's resolved config (plain data), sent to clients in ``welcome``.
        """
        self.config = config
        self.config_hash = config_hash
        self.stats = ServerStats()
        self._welcome: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "server": SERVER_NAME}
        if config_hash is not None:
            self._welcome["config_hash"] = config_hash
        if run_config is not None:
            self._welcome["config"] = dict(run_config)
        self._socket = transport or ServerSocket(
            config.host, config.port, curve=config.curve(), allow_insecure=config.allow_insecure
        )
        self._rejoin_asked: dict[bytes, float] = {}
        self._gone_since: dict[bytes, float] = {}
        self._credit_one = encode(Message("credit", {"n": 1}))
        self._owed: dict[bytes, int] = {}
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
            if self._owed and handled % CREDIT_BATCH == 0:
                self._pay_owed_credit()
            item = self._socket.recv(0) if handled < MAX_MESSAGES_PER_SERVE else None
        self._flush()
        self._push_weights()
        if self._owed:
            self._pay_owed_credit()
        self.stats.auth_rejected = int(getattr(self._socket, "auth_rejected", 0))

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
            self._on_unregistered(identity, msg)
            return
        if msg.kind not in ALLOWED_KINDS[peer.role]:
            self._malformed(identity, f"a {peer.role} may not send {msg.kind!r}")
            return
        self._seen(identity, peer)
        if msg.kind == "chunk":
            self._on_chunk(identity, peer, frames, msg)
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

    def _seen(self, identity: bytes, peer: _Peer) -> None:
        if self._gone_since:  # it speaks, so it is not gone
            self._gone_since.pop(identity, None)
        if peer.role == "worker":
            self.stats.workers[peer.name].last_seen_s = time.monotonic()

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
        theirs = msg.meta.get("config_hash")
        if theirs is not None and self.config_hash is not None and theirs != self.config_hash:
            self._refuse(
                identity,
                f"{role} {name!r} config hash {theirs}, server config hash {self.config_hash}: "
                "start every role with the same config file and --set overrides",
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
        self._rejoin_asked.pop(identity, None)
        log.info("%s %r connected", role, name)
        welcome = self._welcome
        if role == "worker":
            welcome = {**welcome, "chunk_credit": self.config.worker_credit}
            self._check_window()
        self._socket.send(identity, Message("welcome", welcome))
        self._push_weights()

    def _check_window(self) -> None:
        workers = sum(peer.role == "worker" for peer in self._peers.values())
        if workers * self.config.worker_credit > self.config.max_queued_chunks and (
            self._may_warn("window")
        ):
            log.warning(
                "%d workers x worker_credit %d exceed max_queued_chunks %d: chunks may be "
                "dropped while the trainer lags; raise max_queued_chunks or lower worker_credit",
                workers,
                self.config.worker_credit,
                self.config.max_queued_chunks,
            )

    def _on_unregistered(self, identity: bytes, msg: Message) -> None:
        """A peer without a session (the server restarted under it): count, ask to rejoin."""
        self.stats.unregistered += 1
        if msg.kind == "chunk":
            self.stats.samples_lost += int(msg.meta["n"])
        self._malformed(identity, f"{msg.kind!r} from an unregistered peer (no hello)")
        now = time.monotonic()
        if now - self._rejoin_asked.get(identity, -REJOIN_PERIOD_S) < REJOIN_PERIOD_S:
            return
        if len(self._rejoin_asked) > 4096:  # peers with random identities must not grow it
            self._rejoin_asked.clear()
        self._rejoin_asked[identity] = now
        reason = "this server has no session for you (it restarted?): send hello again"
        self._socket.send(identity, Message("rejoin", {"reason": reason}))

    def _other_trainer(self, identity: bytes) -> str | None:
        """Name of the registered trainer if it is another peer and still connected."""
        if self._trainer is None or self._trainer == identity:
            return None
        if self._socket.send(self._trainer, Message("ping")) is SendResult.GONE:
            self._forget(self._trainer)  # it left without bye: the newcomer may take over
            return None
        return self._peers[self._trainer].name

    def _refuse(self, identity: bytes, reason: str) -> None:
        self.stats.refused += 1
        if self._may_warn(("refused", identity)):  # refused clients retry their hello
            log.warning("refused %s: %s", self._label(identity), reason)
        self._socket.send(identity, Message("refused", {"reason": reason}))

    def _on_chunk(
        self, identity: bytes, peer: _Peer, frames: Sequence[Buffer], msg: Message
    ) -> None:
        n = int(msg.meta["n"])
        self.stats.chunks_in += 1
        self.stats.samples_in += n
        worker = self.stats.workers[peer.name]
        worker.samples += n
        worker.chunks += 1
        worker.bytes += sum(len(frame) for frame in frames)
        worker.policy_version = int(msg.meta["policy_version"])
        self._queue.append(_Chunk(frames, n, identity))
        self._flush()
        while len(self._queue) > self.config.max_queued_chunks:
            self._return_credit(self._queue.popleft().origin)
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
                self._gone(self._trainer)
                return
            if result is SendResult.BUSY:
                return  # credit beyond what the trainer's queue holds: retry next round
            self._queue.popleft()
            self._credit -= 1
            self.stats.chunks_forwarded += 1
            self.stats.samples_forwarded += chunk.n
            self._return_credit(chunk.origin)

    def _return_credit(self, worker: bytes, n: int = 1) -> None:
        """``n`` chunks of ``worker`` left the queue: it may send as many more. The credit
        is owed until :meth:`_pay_owed_credit` (see :data:`CREDIT_BATCH`)."""
        if worker in self._peers:
            self._owed[worker] = self._owed.get(worker, 0) + n

    def _pay_owed_credit(self) -> None:
        """One ``credit`` message per owed worker; credit that finds the worker's queue full
        stays owed for a later round."""
        for worker, owed in list(self._owed.items()):
            frames = self._credit_one if owed == 1 else encode(Message("credit", {"n": owed}))
            if self._socket.send_frames(worker, frames) is not SendResult.BUSY:
                del self._owed[worker]

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
                self._gone(identity)
            # BUSY: the worker reads slowly; the latest weights are retried next round

    def _gone(self, identity: bytes) -> None:
        """A send found ``identity`` gone: forget it once that lasted :data:`GONE_GRACE_S`."""
        now = time.monotonic()
        if now - self._gone_since.setdefault(identity, now) >= GONE_GRACE_S:
            self._gone_since.pop(identity, None)
            self._forget(identity)

    def _forget(self, identity: bytes, quiet: bool = False) -> None:
        self._gone_since.pop(identity, None)
        self._owed.pop(identity, None)
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

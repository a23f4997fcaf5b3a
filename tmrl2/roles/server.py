"""The server role: a broker between rollout workers and the trainer. No RL inside.

::

    worker --hello--> server --welcome (+ trainer state, + latest weights if newer)--> worker
    worker --chunk--> server --chunk (same frames)--> trainer   while the trainer has credit
                             |   (or --chunks--> up to its hello's batch_chunks per message)
                             \\-> bounded queue (oldest dropped, counted) otherwise
    trainer --credit n--> server: n more chunks may go to the trainer; the queue is flushed
    server --credit n--> worker: n of its chunks were forwarded (or dropped)
    trainer --weights--> server --weights--> each worker, once per weights message
    trainer --state--> server --state--> each worker, the latest only
    server --stats (queue depth, drops)--> trainer, every STATS_PERIOD_S if its hello asked

Hello handling (admission, refusals, welcomes) is :mod:`tmrl2.roles.server_hello`.

Every message is decoded and validated before use; a malformed one (undecodable, bad sizes,
sent before ``hello``, or of a kind the sender's role may not send) is dropped, counted in
:attr:`ServerStats.malformed` and logged at most once per peer per
:data:`WARN_PERIOD_S`, and the server keeps serving.

Authority (the server decides, not the clients):

- *Who may connect and as what*: with Curve keys the handshake admits ``authorized_keys``
  (workers) and ``trainer_keys``; every received frame carries the key the connection
  authenticated with (ZAP ``User-Id``), so a ``hello`` as the trainer from a key outside
  ``trainer_keys`` is refused (code ``role``), and a registered peer whose messages suddenly
  come from another key (a connection hijacking its identity) loses its session. Without
  Curve (loopback only) roles come from the hello.
- *Which run*: a server with a ``run_token`` refuses hellos carrying another (code
  ``token``); one with the run's ``config_hash`` refuses another hash (code ``config``).
- *One trainer, unique worker names*: a second trainer is refused while the first is
  connected (``trainer_taken``), a worker name held by another live connection too
  (``name_taken``); a holder that a probe finds gone is replaced.
- *Credit is enforced*: each worker may have ``worker_credit`` chunks in flight (granted in
  ``welcome``, one returned per chunk forwarded, dropped or rejected); a chunk beyond that is
  dropped and counted (:attr:`ServerStats.over_credit`), never queued, so a greedy worker
  cannot push other workers' chunks out of the queue. A duplicate hello of the same session
  (same identity and ``session``) is welcomed with what is left of its credit
  (``worker_credit`` minus its chunks in flight), so repeating hellos never adds credit.
- *Chunks are checked*: against the trainer's ``spec`` (array names, dtypes, row shapes) and
  for finite floats (:mod:`tmrl2.roles.server_checks`); a bad chunk is rejected and counted
  (:attr:`ServerStats.rejected`, per worker too). Chunks queued before any trainer declared a
  spec are checked when one does.
- *Bounded state*: hellos are rate-limited per identity (code ``rate``); per-peer records are
  pruned after ``peer_ttl_s`` (:func:`~tmrl2.roles.server_stats.prune_workers`); the socket
  refuses frames over ``max_message_bytes`` before buffering them (``ZMQ_MAXMSGSIZE``).

Backpressure: workers whose socket honours credit (:class:`~tmrl2.net.transport.ClientSocket`
does) slow down to the trainer's pace, and the queue holds at most ``worker_credit`` chunks
per worker (nothing is dropped while ``workers x worker_credit <= max_queued_chunks``; the
server warns otherwise).

Sessions: a peer that disconnects without ``bye`` is forgotten when a send to it finds it
gone (the current trainer is probed with a ``ping`` when another trainer says hello). A
message from a peer without a session (the server restarted under it) is counted in
:attr:`ServerStats.unregistered` and answered with ``rejoin``; the peer's hello opens a new
session. ``welcome`` carries the server's random ``session`` (a client seeing a new one knows
the server restarted) and the latest ``weights_version`` it saw; the latest weights follow a
worker's welcome only when newer than the ``weights_version`` of its hello. The trainer's
latest ``state`` (its session, updates, samples, readiness) is kept and sent to each worker
once, new ones right after their welcome, so workers pace themselves on a resumed trainer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Buffer, Message, decode, encode
from tmrl2.net.errors import DecodeError, ProtocolError
from tmrl2.net.transport import SendResult, ServerSocket, ServerTransport
from tmrl2.roles.chunk_checks import Spec, check_chunk_arrays, chunk_cars
from tmrl2.roles.server_checks import HelloLimiter
from tmrl2.roles.server_hello import on_hello, on_unregistered
from tmrl2.roles.server_peers import BatchHeaders, Peer, QueuedChunk, next_batch
from tmrl2.roles.server_stats import ServerStats, WorkerStats, prune_workers

__all__ = ["Server", "ServerConfig", "ServerStats", "StopFlag", "WorkerStats"]

log = logging.getLogger(__name__)

WARN_PERIOD_S = 10.0
"""Shortest time between two warnings of the same sort (per peer for malformed messages)."""

MAX_MESSAGES_PER_SERVE = 1000
"""Messages handled by one :meth:`Server.serve_once` before the queue/weights bookkeeping."""
CREDIT_BATCH = 16
"""Returned chunk credit is paid after at most this many handled messages: one ``credit``
message per worker per batch rather than one per chunk (fewer sends, fewer decodes at the
worker), while a worker's few credits still come back long before it runs dry."""

MAX_CACHED_CREDIT = 1024
"""``credit`` messages granting up to this many chunks are encoded once and reused."""

SERVER_NAME = "tmrl2-server"
"""Reported in ``welcome``."""

REJOIN_PERIOD_S = 0.5
"""Shortest time between two ``rejoin`` requests to the same unregistered peer."""

GONE_GRACE_S = 0.5
"""A peer is forgotten when sends to it find it gone for this long. libzmq's ROUTER reports
a connected peer whose queue was just full as unreachable (EHOSTUNREACH) until its reader's
"resume" reaches the I/O thread; forgetting on the first such report loses the trainer under
load (seen in benchmarks/bench_transport.py with 4 workers)."""

PRUNE_PERIOD_S = 1.0
"""Period of the pruning of per-peer records."""

STATS_PERIOD_S = 1.0
"""Period of the ``stats`` message (queue depth, drop counters) to a trainer whose hello set
``server_stats``: its metrics carry them (docs/logging.md)."""

MAX_IDENTITIES = 4096
"""Most entries of each per-identity table (recent sessions, samples pending as lost)."""

ALLOWED_KINDS: dict[str, frozenset[str]] = {
    "worker": frozenset({"chunk", "ping", "bye"}),
    "trainer": frozenset({"credit", "weights", "state", "stats", "ping", "bye"}),
}
"""What each registered role may send (``hello`` is always allowed)."""


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


class Server:
    """Routes chunks to the trainer under credit and weights/state to the workers."""

    def __init__(
        self,
        config: ServerConfig,
        transport: ServerTransport | None = None,
        *,
        config_hash: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        run_token: str | None = None,
    ) -> None:
        """Args:
        config: the server section.
        transport: the socket (tests may inject a fake); by default a :class:`ServerSocket`
            bound on ``config.host:config.port`` with the configured keys.
        config_hash: the run's config hash; hellos carrying another one are refused.
        run_config: the run's resolved config (plain data), sent to clients in ``welcome``.
        run_token: the run's token (``tmrl2 train`` makes one per run); hellos without it
            are refused. None: ``config.run_token``.
        """
        self.config = config
        self.config_hash = config_hash
        self.run_token = run_token if run_token is not None else config.run_token
        self.session = uuid.uuid4().hex[:16]
        """This server's random id, sent in ``welcome``: a new one means a restart."""
        self.stats = ServerStats()
        self._welcome: dict[str, Any] = {
            "protocol": PROTOCOL_VERSION,
            "server": SERVER_NAME,
            "session": self.session,
        }
        if config_hash is not None:
            self._welcome["config_hash"] = config_hash
        if run_config is not None:
            self._welcome["config"] = dict(run_config)
        self._curve = config.curve()
        self._socket = transport or ServerSocket(
            config.host,
            config.port,
            curve=self._curve,
            allow_insecure=config.allow_insecure,
            max_message_bytes=config.max_message_bytes,
        )
        curve = self._curve
        if curve is not None and curve.authorized is not None and curve.trainers is None:
            log.warning(
                "server.trainer_keys is not set: no key may act as the trainer (put the "
                "trainer's .key file in a folder and set server.trainer_keys)"
            )
        self._rejoin_asked: dict[bytes, float] = {}
        self._gone_since: dict[bytes, float] = {}
        self._batch_headers = BatchHeaders(MAX_IDENTITIES)
        """Encoded ``chunks`` header frames by the frame counts of their chunks."""
        self._credit_frames: dict[int, list[bytes | memoryview]] = {}
        """Encoded ``credit`` messages by ``n`` (a worker is owed 1 to ``worker_credit``)."""
        self._owed: dict[bytes, int] = {}
        self._peers: dict[bytes, Peer] = {}
        self._names: dict[str, bytes] = {}
        """Live worker names -> their identity (names are unique among live workers)."""
        self._trainer: bytes | None = None
        self._credit = 0
        self._queue: deque[QueuedChunk] = deque()
        self._spec: Spec | None = None
        self._weights: Sequence[Buffer] | None = None
        self._weights_seq = 0
        self._state: Sequence[Buffer] | None = None
        self._state_seq = 0
        self._push_due = False
        """Some worker may lack the latest weights or state."""
        self._hellos = HelloLimiter(config.hello_rate_per_s, config.hello_burst)
        self._recent: dict[bytes, float] = {}
        """Identities that held a session lately -> when it ended (for ``samples_lost``)."""
        self._pending_lost: dict[bytes, int] = {}
        """Transitions sent without a session by identities never registered (yet)."""
        self._next_prune = time.monotonic() + PRUNE_PERIOD_S
        self._next_stats = 0.0
        """When the trainer is due its next ``stats`` (0: at the next pass)."""
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
        if self._push_due:
            self._push_latest()
        if self._owed:
            self._pay_owed_credit()
        self.stats.auth_rejected = int(getattr(self._socket, "auth_rejected", 0))
        now = time.monotonic()
        if self._trainer is not None and now >= self._next_stats:
            self._next_stats = now + STATS_PERIOD_S
            self._send_stats(self._trainer)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_PERIOD_S
            self.prune(now)

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

    def prune(self, now: float) -> None:
        """Forget per-peer records older than ``peer_ttl_s`` (called every
        :data:`PRUNE_PERIOD_S` by :meth:`serve_once`)."""
        ttl = self.config.peer_ttl_s
        prune_workers(self.stats.workers, self._names, now, ttl, self.config.max_peers)
        for identity, since in list(self._recent.items()):
            if now - since > ttl:
                del self._recent[identity]
        if len(self._pending_lost) > MAX_IDENTITIES:
            self._pending_lost.clear()  # strangers' chunks: they never count as lost
        self._hellos.prune(now)
        for identity, since in list(self._rejoin_asked.items()):
            if now - since > REJOIN_PERIOD_S:
                del self._rejoin_asked[identity]

    # ------------------------------------------------------------------ dispatch
    def _handle_safely(self, identity: bytes, frames: list[Any]) -> None:
        try:
            self._handle(identity, frames)
        except Exception:  # one message must never stop the server
            self.stats.errors += 1
            if self._may_warn("error"):
                log.exception("error while handling a message from %s", self._label(identity))

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        size = sum(map(len, frames))
        self.stats.messages += 1
        self.stats.bytes_in += size
        try:
            msg = decode(frames, self.config.max_message_bytes)
        except ProtocolError as exc:
            self._malformed(identity, str(exc))
            self._socket.send(
                identity, Message("refused", {"reason": str(exc), "code": "protocol"})
            )
            return
        except DecodeError as exc:
            self._malformed(identity, str(exc))
            return
        if msg.kind == "hello":
            on_hello(self, identity, frames, msg)
            return
        peer = self._peers.get(identity)
        if peer is not None and peer.key is not None and self._socket.peer_key(frames) != peer.key:
            self._forget(identity)  # another connection (another key) took the identity
            peer = None
        if peer is None:
            on_unregistered(self, identity, msg)
            return
        if msg.kind not in ALLOWED_KINDS[peer.role]:
            self._malformed(identity, f"a {peer.role} may not send {msg.kind!r}")
            return
        self._seen(identity, peer)
        if msg.kind == "chunk":
            self._on_chunk(identity, peer, frames, msg, size)
        elif msg.kind == "credit":
            self._credit += int(msg.meta["n"])
            self._flush()
        elif msg.kind == "weights":
            self._on_weights(frames, msg)
        elif msg.kind in ("state", "stats"):
            self._on_trainer_news(frames, msg)
        elif msg.kind == "bye":
            log.info("%s said bye", self._label(identity))
            self._forget(identity)
        # ping: being seen is all it does

    def _seen(self, identity: bytes, peer: Peer) -> None:
        if self._gone_since:  # it speaks, so it is not gone
            self._gone_since.pop(identity, None)
        if peer.worker is not None:
            peer.worker.last_seen_s = time.monotonic()

    # ------------------------------------------------------------------ chunks
    def _on_chunk(
        self, identity: bytes, peer: Peer, frames: Sequence[Buffer], msg: Message, size: int
    ) -> None:
        worker = peer.worker
        assert worker is not None
        if peer.in_flight >= self.config.worker_credit:
            self.stats.over_credit += 1
            worker.over_credit += 1
            if self._may_warn(("over_credit", identity)):
                log.warning(
                    "worker %r sent a chunk beyond its credit (%d in flight allowed): dropped "
                    "(%d of its chunks so far); its socket must wait for credit",
                    peer.name,
                    self.config.worker_credit,
                    worker.over_credit,
                )
            return
        peer.in_flight += 1
        n = int(msg.meta["n"])
        self.stats.chunks_in += 1
        self.stats.samples_in += n
        worker.samples += n
        worker.chunks += 1
        worker.bytes += size
        worker.policy_version = int(msg.meta["policy_version"])
        chunk = QueuedChunk(frames, msg, identity, peer, self._spec is not None, n, size)
        reason = check_chunk_arrays(msg.arrays, n, self._spec)
        if reason is None:
            try:
                chunk_cars(msg.meta, n)  # a vectorized worker's sub-chunks (docs/vectorized.md)
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            self._reject(chunk, reason)
            return
        self._queue.append(chunk)
        queued = len(self._queue)
        if queued >= self._batch_chunks() or queued > self.config.max_queued_chunks:
            self._flush()  # a partial batch waits for the end of the pass (serve_once)
        while len(self._queue) > self.config.max_queued_chunks:
            self._return_credit(self._queue.popleft())
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

    def _reject(self, chunk: QueuedChunk, reason: str) -> None:
        """Drop a chunk that fails the checks; its credit goes back (a worker whose env
        glitched once must not lose a unit of credit for good)."""
        self.stats.rejected += 1
        if chunk.peer.worker is not None:
            chunk.peer.worker.rejected += 1
        self._return_credit(chunk)
        if self._may_warn(("rejected", chunk.origin)):
            log.warning(
                "rejected a chunk of worker %r: %s (%d rejected in all)",
                chunk.peer.name,
                reason,
                self.stats.rejected,
            )

    def _set_spec(self, spec: Spec | None) -> None:
        """A trainer registered: check the queued chunks against its spec, once."""
        self._spec = spec
        if spec is None:
            return
        kept: deque[QueuedChunk] = deque()
        for chunk in self._queue:
            reason = check_chunk_arrays(chunk.msg.arrays, chunk.n, spec)
            if reason is None:
                chunk.checked = True
                kept.append(chunk)
            else:
                self._reject(chunk, reason)
        self._queue = kept

    def _on_trainer_news(self, frames: Sequence[Buffer], msg: Message) -> None:
        if msg.kind == "stats":
            self.stats.trainer_stats = dict(msg.meta)
            return
        self._state = frames  # coalesced: only the latest state matters
        self._state_seq += 1
        self.stats.trainer_state = dict(msg.meta)
        self._push_latest()

    def _on_weights(self, frames: Sequence[Buffer], msg: Message) -> None:
        self._weights = frames
        self._weights_seq += 1
        self.stats.weights_version = int(msg.meta["version"])
        self._push_latest()

    # ------------------------------------------------------------------ sending
    def _batch_chunks(self) -> int:
        """Most chunks per message to the trainer (1 without a trainer)."""
        trainer = self._peers.get(self._trainer) if self._trainer is not None else None
        return trainer.batch_chunks if trainer is not None else 1

    def _flush(self) -> None:
        """Send queued chunks to the trainer while it has credit: one message per chunk, or
        ``chunks`` batches of up to its hello's ``batch_chunks`` (the received frames as they
        are, behind one small header frame)."""
        most = self._batch_chunks()
        while self._queue and self._credit > 0 and self._trainer is not None:
            limit = self.config.max_message_bytes
            batch = next_batch(self._queue, min(most, self._credit), limit)
            frames = batch[0].frames if len(batch) == 1 else self._batch_headers.frames(batch)
            result = self._socket.send_frames(self._trainer, frames)
            if result is SendResult.GONE:
                self._gone(self._trainer)
                return
            if result is SendResult.BUSY:
                return  # credit beyond what the trainer's queue holds: retry next round
            self._credit -= len(batch)
            self.stats.messages_forwarded += 1
            for chunk in batch:
                self._queue.popleft()
                self.stats.chunks_forwarded += 1
                self.stats.samples_forwarded += chunk.n
                self._return_credit(chunk)

    def _return_credit(self, chunk: QueuedChunk) -> None:
        """``chunk`` left the queue: its worker may send one more, if it is still the same
        session. The credit is owed until :meth:`_pay_owed_credit` (:data:`CREDIT_BATCH`)."""
        chunk.peer.in_flight -= 1
        if self._peers.get(chunk.origin) is chunk.peer:
            self._owed[chunk.origin] = self._owed.get(chunk.origin, 0) + 1

    def _pay_owed_credit(self) -> None:
        """One ``credit`` message per owed worker; credit that finds the worker's queue full
        stays owed for a later round."""
        for worker, owed in list(self._owed.items()):
            frames = self._credit_frames.get(owed)
            if frames is None:
                frames = encode(Message("credit", {"n": owed}))
                if owed <= MAX_CACHED_CREDIT:
                    self._credit_frames[owed] = frames
            result = self._socket.send_frames(worker, frames)
            if result is SendResult.BUSY:
                continue
            del self._owed[worker]

    def _push_latest(self) -> None:
        """Send the latest trainer state, then the latest weights, to each worker that has
        not had them yet."""
        self._push_due = False
        if self._weights is None and self._state is None:
            return
        for identity, peer in list(self._peers.items()):
            if peer.role != "worker":
                continue
            if self._state is not None and peer.state_sent < self._state_seq:
                if not self._push(identity, self._state):
                    continue
                peer.state_sent = self._state_seq
                self.stats.states_sent += 1
            weights = self._weights
            if (
                weights is not None
                and peer.weights_sent < self._weights_seq
                and self._push(identity, weights)
            ):
                peer.weights_sent = self._weights_seq
                self.stats.weights_sent += 1

    def _send_stats(self, trainer: bytes) -> None:
        """The queue depth and drop counters, to a trainer that asked for them (never
        blocking: when its queue is full this one is skipped, the next one follows)."""
        if not self._peers[trainer].wants_stats:
            return
        s = self.stats
        meta = {
            "queued_chunks": len(self._queue),
            "chunks_dropped": s.chunks_dropped,
            "over_credit": s.over_credit,
            "rejected": s.rejected,
            "malformed": s.malformed,
        }
        if self._socket.send(trainer, Message("stats", meta)) is SendResult.GONE:
            self._gone(trainer)

    def _push(self, identity: bytes, frames: Sequence[Buffer]) -> bool:
        result = self._socket.send_frames(identity, frames)
        if result is SendResult.GONE:
            self._gone(identity)
        if not result:  # BUSY: the worker reads slowly; the latest is retried next round
            self._push_due = True
        return bool(result)

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
        if len(self._recent) < MAX_IDENTITIES or identity in self._recent:
            self._recent[identity] = time.monotonic()
        if identity == self._trainer:
            self._trainer = None
            self._credit = 0
            self._state = None  # a new worker must not pace itself on a gone trainer
            self.stats.trainer_connected = False
        elif peer.role == "worker":
            self.stats.workers_connected -= 1
            if self._names.get(peer.name) == identity:
                del self._names[peer.name]
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
        if len(self._last_warn) > MAX_IDENTITIES:  # random identities must not grow it
            self._last_warn.clear()
        self._last_warn[key] = now
        return True

    def _label(self, identity: bytes) -> str:
        peer = self._peers.get(identity)
        return f"{peer.role} {peer.name!r}" if peer else f"peer {identity!r}"

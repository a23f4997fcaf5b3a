"""Thin ZeroMQ sockets for the roles: a ROUTER for the server, a DEALER for each client.

They move :class:`~tmrl2.net.codec.Message` frames and know nothing about RL. Both own their
ZeroMQ context, use ``linger=0`` and terminate the context on :meth:`close`, so a process
exits promptly and a closed server's port can be bound again at once. Endpoints are
``tcp://`` only (Windows has no ``ipc://``).

- :class:`ServerSocket` never blocks on send: ``ROUTER_MANDATORY`` turns an unknown or
  disconnected peer into :attr:`SendResult.GONE` and a full peer queue into
  :attr:`SendResult.BUSY` (both falsy). It hands raw frames to the caller, who decodes them and
  can count malformed messages, and forwards received frames without re-encoding.
- :class:`ClientSocket` decodes what it receives and blocks at most ``send_timeout_ms`` on a
  full send queue (the server is gone or stalled), then raises :class:`NetTimeout`;
  :meth:`ClientSocket.try_send` never blocks (False when the queue is full), for what a role
  must keep and retry rather than wait on (weights, credit, state while the server is away).
  :class:`ClientTransport` is the interface the roles use, so they can be tested with a fake.
- Both set ``ZMQ_MAXMSGSIZE`` to their ``max_message_bytes``: libzmq drops a connection that
  announces a larger frame before buffering any of it.
- A Curve client watches its handshakes with a socket monitor: a server refusing its key
  (``EVENT_HANDSHAKE_FAILED_AUTH``) sets :attr:`ClientSocket.auth_failed`, and
  :meth:`ClientSocket.check_auth` (also called when a send times out) raises
  :class:`~tmrl2.net.errors.SecurityError` saying which key to authorize, instead of a
  timeout that looks like a dead server.

TCP keepalive probes (:data:`KEEPALIVE_IDLE_S` and after) drop connections whose peer went
silent (a crashed machine, a cut cable), so the server learns that a peer is gone even without
a ``bye``; a killed process closes its connections at once anyway. ZMTP heartbeats are *not*
used: libzmq 4.3.5 aborts the whole process (``Assertion failed: !_io_error
(src/stream_engine_base.cpp:310)``) when a heartbeat falls due on a connection whose input was
paused by a full receive queue and whose peer then disconnected (its heartbeat timer calls
``out_event`` on the dead engine). That happened to the benchmark's processes with 16-32
workers saturating the server. :class:`ServerTransport` is the small
interface the server needs, so tests may inject an in-memory fake.

Security (:mod:`tmrl2.net.keys`): given a :class:`~tmrl2.net.keys.ServerCurve`, the server
encrypts with CurveZMQ and a ZAP authenticator admits only authorized client keys; a
:class:`ClientSocket` given a :class:`~tmrl2.net.keys.ClientCurve` encrypts and checks that it
talks to the server whose public key it holds. Without keys the server binds loopback
addresses only, unless ``allow_insecure``.

Flow control of chunks: a server that offers ``chunk_credit`` in its ``welcome`` gives one
unit of credit back per chunk of the worker it forwarded (or dropped), several per ``credit``
message when it handles many chunks at once; :meth:`ClientSocket.send` then
waits for credit before sending a ``chunk``, so a worker that outruns the trainer slows down
instead of filling the server's queue. Credit messages are consumed by the socket; other
messages that arrive while it waits are kept for :meth:`ClientSocket.recv`. A ``chunks``
batch (to a trainer whose hello set ``batch_chunks``) is returned one chunk per
:meth:`ClientSocket.recv`, in order, as if each had come on its own.

Reconnection: ZeroMQ reconnects by itself, but a restarted server does not know the peer. A
:class:`ClientSocket` made with ``hello=`` answers the server's ``rejoin`` by sending that
hello again, and sends a ``ping`` from :meth:`ClientSocket.recv` when it has sent nothing for
:data:`PING_PERIOD_S`, so that even a client with nothing to say (a trainer waiting for
data) learns of the restart.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import zmq
from zmq.utils.monitor import recv_monitor_message

from tmrl2.net.codec import DEFAULT_MAX_BYTES, Buffer, Message, decode_many, encode
from tmrl2.net.errors import NetTimeout, SecurityError
from tmrl2.net.keys import ClientCurve, KeyAuthenticator, ServerCurve, check_bind

__all__ = ["ClientSocket", "ClientTransport", "SendResult", "ServerSocket", "ServerTransport"]

KEEPALIVE_IDLE_S = 5
"""Seconds of silence on a connection before the first TCP keepalive probe."""
KEEPALIVE_INTVL_S = 2
"""Seconds between keepalive probes; after :data:`KEEPALIVE_CNT` unanswered ones the
connection is closed (about 11 s after the peer went silent)."""
KEEPALIVE_CNT = 3
RECONNECT_IVL_MS = 100
"""First delay before a client reconnects; it doubles up to ``RECONNECT_IVL_MAX_MS``."""
RECONNECT_IVL_MAX_MS = 2_000
PING_PERIOD_S = 1.0
"""A client made with ``hello=`` pings when it has sent nothing for this long."""


class SendResult(enum.Enum):
    """Outcome of a non-blocking server send; only :attr:`SENT` is truthy."""

    SENT = "sent"
    """Queued for the peer."""
    BUSY = "busy"
    """The peer's queue is full (it does not read fast enough): try again later."""
    GONE = "gone"
    """No connected peer has this identity (never connected, or disconnected)."""

    def __bool__(self) -> bool:
        return self is SendResult.SENT


class ServerTransport(Protocol):
    """What :class:`tmrl2.roles.server.Server` needs from its socket."""

    @property
    def port(self) -> int: ...

    def send(self, identity: bytes, msg: Message) -> SendResult: ...

    def send_frames(self, identity: bytes, frames: Sequence[Buffer]) -> SendResult: ...

    def recv(self, timeout_ms: int) -> tuple[bytes, list[zmq.Frame]] | None: ...

    def peer_key(self, frames: Sequence[Any]) -> str | None: ...

    def close(self) -> None: ...


class ClientTransport(Protocol):
    """What a role (worker, trainer) needs from its connection to the server; implemented by
    :class:`ClientSocket`, faked in memory by the roles' unit tests."""

    chunk_credit: int | None
    """Chunks the client may still send; None: the server does no flow control."""
    rejoins: int
    """Times the server asked the client to rejoin (it restarted)."""

    def send(self, msg: Message, copy: bool = True, compress: str | None = "default") -> None: ...

    def try_send(self, msg: Message) -> bool: ...

    def recv(self, timeout_ms: int) -> Message | None: ...

    def can_send_chunk(self) -> bool: ...

    def close(self, linger_ms: int = 0) -> None: ...


def _common_options(socket: zmq.Socket[bytes], sndhwm: int, rcvhwm: int) -> None:
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, sndhwm)
    socket.setsockopt(zmq.RCVHWM, rcvhwm)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_CNT)


_HANDSHAKE_EVENTS = int(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
"""Socket monitor events a Curve client watches, to tell a refused key from a dead server."""

_NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_MORE = int(zmq.SNDMORE)
"""Plain-int flags: pyzmq's ``send_multipart``/``recv_multipart`` combine ``enum.Flag``s and
query ``RCVMORE`` per frame, which cost a quarter of the server's CPU time per chunk."""

_frame_send: Any = zmq.backend.Socket.send
_frame_recv: Any = zmq.backend.Socket.recv
"""libzmq's send and receive of one frame, without pyzmq's Python-level ``Socket.send``
wrapper (routing ids and groups of draft sockets, unused here): 0.7 us less per frame sent,
and a chunk is a dozen frames at each hop (issue 18)."""


def _recv_multipart(socket: zmq.Socket[bytes]) -> list[zmq.Frame]:
    """``recv_multipart(NOBLOCK, copy=False)`` reading ``Frame.more`` instead of RCVMORE."""
    part = _frame_recv(socket, _NOBLOCK, copy=False)
    parts = [part]
    while part.more:  # the rest of a multipart message is already there: never EAGAIN
        part = _frame_recv(socket, _NOBLOCK, copy=False)
        parts.append(part)
    return parts


def _send_multipart(
    socket: zmq.Socket[bytes], frames: Sequence[Buffer], flags: int, copy: bool
) -> None:
    """``send_multipart`` with plain-int flags. Atomic like it: ZeroMQ checks the high-water
    mark on the first frame only, so once that is queued the others are too."""
    more = flags | _MORE
    for frame in frames[:-1]:
        _frame_send(socket, frame, more, copy=copy)
    _frame_send(socket, frames[-1], flags, copy=copy)


def _recv_frames(socket: zmq.Socket[bytes], timeout_ms: int) -> list[zmq.Frame] | None:
    # try first, poll only when nothing is pending: one system call less per message
    try:
        return _recv_multipart(socket)
    except zmq.Again:
        if timeout_ms <= 0 or not socket.poll(timeout_ms, zmq.POLLIN):
            return None
        return _recv_multipart(socket)


class ServerSocket:
    """A ROUTER bound on ``tcp://host:port``; peers are addressed by their identity."""

    def __init__(
        self,
        host: str,
        port: int,
        sndhwm: int = 1000,
        rcvhwm: int = 1000,
        *,
        curve: ServerCurve | None = None,
        allow_insecure: bool = False,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Args:
        host: interface to bind (``127.0.0.1``, ``0.0.0.0``, a hostname's address).
        port: TCP port; 0 picks a free one (read it from :attr:`port`).
        sndhwm: messages queued per peer before sends to it return ``BUSY``.
        rcvhwm: messages queued per peer on the receiving side before ZeroMQ stops reading.
        curve: the server's keys and authorized clients; None: plaintext, no authentication.
        allow_insecure: bind a non-loopback ``host`` without ``curve`` (or without authorized
            keys) anyway; otherwise that raises :class:`~tmrl2.net.errors.SecurityError`.
        max_message_bytes: ``ZMQ_MAXMSGSIZE``: libzmq disconnects a peer announcing a larger
            frame before buffering any of it (a 300 MB message never reaches memory).
        """
        check_bind(host, curve, allow_insecure)  # before anything listens
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.ROUTER)
        self._auth: KeyAuthenticator | None = None
        try:
            if curve is not None:
                self._auth = KeyAuthenticator(self._context, curve.admitted)
                self._socket.curve_secretkey = curve.secret
                self._socket.curve_publickey = curve.public
                self._socket.curve_server = True
            _common_options(self._socket, sndhwm, rcvhwm)
            self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted peer takes over
            self._socket.bind(f"tcp://{host}:{port if port else '*'}")
            endpoint = self._socket.getsockopt(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self.close()
            raise OSError(f"cannot bind tcp://{host}:{port}: {exc}") from exc
        assert isinstance(endpoint, bytes)
        self.endpoint = endpoint.decode()
        """The bound endpoint, ``tcp://host:port``."""
        self._port = int(self.endpoint.rsplit(":", 1)[1])

    @property
    def port(self) -> int:
        """The bound TCP port (the one picked when 0 was asked)."""
        return self._port

    @property
    def auth_rejected(self) -> int:
        """Handshakes refused because the client's Curve key is not authorized."""
        return self._auth.rejected if self._auth is not None else 0

    def send(self, identity: bytes, msg: Message) -> SendResult:
        """Encode and queue ``msg`` for the peer ``identity`` without blocking (arrays copied)."""
        return self._send([identity, *encode(msg)], copy=True)

    def send_frames(self, identity: bytes, frames: Sequence[Buffer]) -> SendResult:
        """Queue already-encoded ``frames`` (e.g. received ones) without copying them.

        The buffers must not change afterwards: ZeroMQ reads them when it sends.
        """
        return self._send([identity, *frames], copy=False)

    def _send(self, frames: list[Buffer], copy: bool) -> SendResult:
        try:
            _send_multipart(self._socket, frames, _NOBLOCK, copy)
        except zmq.Again:
            return SendResult.BUSY
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                return SendResult.GONE
            raise
        return SendResult.SENT

    def recv(self, timeout_ms: int) -> tuple[bytes, list[zmq.Frame]] | None:
        """The next message as (peer identity, raw frames), or None after ``timeout_ms``."""
        frames = _recv_frames(self._socket, timeout_ms)
        return None if frames is None else (frames[0].bytes, frames[1:])

    def peer_key(self, frames: Sequence[Any]) -> str | None:
        """The Z85 Curve public key the sender of ``frames`` (as returned by :meth:`recv`)
        authenticated with, from ZAP's ``User-Id``; None without Curve."""
        if self._auth is None or not frames:
            return None
        try:
            key = frames[0].get("User-Id")
        except (AttributeError, zmq.ZMQError):  # not a received zmq.Frame
            return None
        return str(key) if key else None

    def close(self) -> None:
        """Close at once (queued messages are dropped) and free the port."""
        if not self._socket.closed:
            self._socket.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()


class ClientSocket:
    """A DEALER connected to the server; reconnects by itself when the connection drops."""

    def __init__(
        self,
        address: str,
        identity: str | None = None,
        send_timeout_ms: int = 10_000,
        max_message_bytes: int = DEFAULT_MAX_BYTES,
        sndhwm: int = 100,
        rcvhwm: int = 100,
        *,
        curve: ClientCurve | None = None,
        hello: Message | None = None,
        compress: str | None = None,
        flow_control: bool = False,
    ) -> None:
        """Args:
        address: the server, ``tcp://host:port``.
        identity: this peer's name at the server (1-255 bytes in UTF-8); a reconnecting
            client with the same identity takes over its old connection. None: random.
        send_timeout_ms: :meth:`send` raises :class:`NetTimeout` after waiting this long
            for room in a full send queue.
        max_message_bytes: larger received messages raise :class:`DecodeError`; a frame
            larger than this is refused by libzmq before it is buffered (``ZMQ_MAXMSGSIZE``:
            the connection is dropped and re-established).
        sndhwm: messages queued towards the server before :meth:`send` waits.
        rcvhwm: messages queued from the server before ZeroMQ stops reading.
        curve: this client's key pair and the server's public key; None: plaintext.
        hello: this client's ``hello``: sent again whenever the server asks to ``rejoin``
            (it restarted), with a ``ping`` after :data:`PING_PERIOD_S` of silence. The
            caller still sends the first hello itself. None: no automatic rejoin.
        compress: default compression of :meth:`send` (None or ``"lz4"``).
        flow_control: :meth:`send` waits for chunk credit before sending a ``chunk`` (up to
            ``send_timeout_ms``, then :class:`NetTimeout`) when the server offers credit.
            Off: chunks are sent at once and the server's queue absorbs (or drops) excess.
        """
        if not address.startswith("tcp://"):
            raise ValueError(f"server address must be tcp://host:port, got {address!r}")
        encode(Message("ping"), compress)  # an unknown compression fails here, not later
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.compress = compress
        self.hello = hello
        self.rejoins = 0
        """Times the server asked this client to rejoin (after a server restart)."""
        self.chunk_credit: int | None = None
        """Chunks this client may still send; None: the server does no flow control."""
        self.send_timeout_ms = send_timeout_ms
        self.flow_control = flow_control
        self._pending: deque[Message] = deque()
        self._batched: deque[Message] = deque()
        """The rest of a received ``chunks`` batch, older than anything still on the socket."""
        self._last_send = time.monotonic()
        self._auth_failed = False
        self.public_key: bytes | None = None if curve is None else curve.public
        """This client's Z85 Curve public key (None: plaintext)."""
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.DEALER)
        self._monitor: zmq.Socket[bytes] | None = None
        try:
            if curve is not None:
                self._socket.curve_secretkey = curve.secret
                self._socket.curve_publickey = curve.public
                self._socket.curve_serverkey = curve.server_public
                self._monitor = self._socket.get_monitor_socket(_HANDSHAKE_EVENTS)
            _common_options(self._socket, sndhwm, rcvhwm)
            self._socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
            # queue only towards a live connection: while the server is away a send fails at
            # once instead of piling up to SNDHWM stale messages (weights of a megabyte or
            # more each) that a restarted server would only discard; the roles keep the
            # latest weights/state themselves and count the chunks that could not go
            self._socket.setsockopt(zmq.IMMEDIATE, 1)
            self._socket.setsockopt(zmq.SNDTIMEO, send_timeout_ms)
            self._socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            self._socket.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            if identity is not None:
                routing_id = identity.encode()
                if not 0 < len(routing_id) < 256 or routing_id.startswith(b"\0"):
                    raise ValueError(
                        f"identity must be 1-255 bytes, not starting with NUL: {identity!r}"
                    )
                self._socket.setsockopt(zmq.IDENTITY, routing_id)
            self._socket.connect(address)
        except (zmq.ZMQError, ValueError):
            self.close()
            raise

    def send(self, msg: Message, copy: bool = True, compress: str | None = "default") -> None:
        """Queue ``msg`` for the server; waits while the queue is full, then raises.

        Args:
            msg: the message.
            copy: False sends the arrays' memory without copying it; only for arrays that
                nobody changes afterwards (ZeroMQ reads them later, from its own thread).
            compress: None or ``"lz4"`` for this message; by default the socket's.
        """
        codec = self.compress if compress == "default" else compress
        if msg.kind == "chunk" and self.chunk_credit is not None:
            if self.flow_control:
                self._wait_for_credit()
            self.chunk_credit -= 1
        try:
            _send_multipart(self._socket, encode(msg, codec), 0, copy)
        except zmq.Again as exc:
            self.check_auth()
            raise NetTimeout(
                f"could not send a {msg.kind!r} message to {self.address}: the send queue "
                "stayed full (is the server running and reading?)"
            ) from exc
        self._sent(msg)

    def try_send(self, msg: Message, compress: str | None = "default") -> bool:
        """Queue ``msg`` if that needs no wait; False when the send queue is full, or for a
        ``chunk`` when no chunk credit is left (nothing was sent then). Never blocks: for
        the messages that must not stall a role while the server is away (weights, credit,
        state), which the caller keeps and retries (latest only)."""
        if msg.kind == "chunk" and not self.can_send_chunk():
            return False
        codec = self.compress if compress == "default" else compress
        try:
            _send_multipart(self._socket, encode(msg, codec), _NOBLOCK, True)
        except zmq.Again:
            return False
        if msg.kind == "chunk" and self.chunk_credit is not None:
            self.chunk_credit -= 1
        self._sent(msg)
        return True

    def _sent(self, msg: Message) -> None:
        self._last_send = time.monotonic()
        if msg.kind == "hello" and self.chunk_credit is not None:
            # a hello opens a new session whose welcome grants fresh credit: chunks sent in
            # between would count against the new session on top of that grant, and the
            # server drops chunks beyond a peer's credit
            self.chunk_credit = 0

    @property
    def auth_failed(self) -> bool:
        """Whether the server refused this client's Curve key at its latest handshake
        (libzmq's ``EVENT_HANDSHAKE_FAILED_AUTH``; a later successful handshake clears it).
        Always False without Curve."""
        self._read_monitor()
        return self._auth_failed

    def check_auth(self, public_key_file: str | None = None) -> None:
        """Raise :class:`SecurityError` with what to do if :attr:`auth_failed`.

        Args:
            public_key_file: this machine's ``.key`` file, named in the message.
        """
        if not self.auth_failed:
            return
        key = self.public_key.decode(errors="replace") if self.public_key else "?"
        what = public_key_file or f"this machine's public .key file (key {key})"
        raise SecurityError(
            f"the server at {self.address} refused this machine's key: add {what} to the "
            "server's authorized_keys (or trainer_keys, for the trainer) and restart the server"
        )

    def _read_monitor(self) -> None:
        if self._monitor is None:
            return
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed
                return
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._auth_failed = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._auth_failed = False

    def recv(self, timeout_ms: int) -> Message | None:
        """The next message from the server, decoded, or None after ``timeout_ms``.

        With ``hello`` set, a ``rejoin`` is answered here (hello sent again) and not returned;
        ``credit`` messages (chunk flow control) are consumed here too.
        Raises :class:`DecodeError`/:class:`ProtocolError` for a malformed message.
        """
        if self._pending:
            return self._pending.popleft()
        return self._receive(timeout_ms)

    def _receive(self, timeout_ms: int) -> Message | None:
        if self._batched:
            return self._batched.popleft()
        if self.hello is not None and time.monotonic() - self._last_send >= PING_PERIOD_S:
            self._send_quietly(Message("ping"))
        if self._monitor is not None:
            self._read_monitor()  # keeps the monitor's queue short; auth_failed stays current
        while True:
            frames = _recv_frames(self._socket, timeout_ms)
            if frames is None:
                return None
            msgs = decode_many(frames, self.max_message_bytes)
            msg = msgs[0]
            if len(msgs) > 1:  # a batch of chunks: each is returned on its own, in order
                self._batched.extend(msgs[1:])
                return msg
            timeout_ms = 0  # after a consumed message, do not wait longer than asked
            if msg.kind == "credit":
                self.chunk_credit = (self.chunk_credit or 0) + int(msg.meta["n"])
            elif msg.kind == "rejoin" and self.hello is not None:
                self.rejoins += 1
                self._send_quietly(self.hello)
            else:
                if msg.kind == "welcome":  # a new session: its credit replaces the old one
                    credit = msg.meta.get("chunk_credit")
                    self.chunk_credit = None if credit is None else int(credit)
                return msg

    def can_send_chunk(self) -> bool:
        """Whether a ``chunk`` may go now (credit left, or no flow control offered); reads
        pending messages without waiting (kept for :meth:`recv`)."""
        if self.chunk_credit is not None and self.chunk_credit <= 0:
            msg = self._receive(0)
            while msg is not None:
                self._pending.append(msg)
                msg = self._receive(0)
        return self.chunk_credit is None or self.chunk_credit > 0

    def _wait_for_credit(self) -> None:
        deadline = time.monotonic() + self.send_timeout_ms / 1000
        while self.chunk_credit is not None and self.chunk_credit <= 0:
            left_ms = int(1000 * (deadline - time.monotonic()))
            if left_ms <= 0:
                raise NetTimeout(
                    f"no chunk credit from the server at {self.address} for "
                    f"{self.send_timeout_ms} ms: the trainer takes no data (is it running?)"
                )
            msg = self._receive(min(left_ms, 100))
            if msg is not None:
                self._pending.append(msg)

    def _send_quietly(self, msg: Message) -> None:
        """Send without waiting; a full queue means the server is away and hears later."""
        self._last_send = time.monotonic()
        with contextlib.suppress(zmq.Again):
            _send_multipart(self._socket, encode(msg), _NOBLOCK, True)
            self._sent(msg)

    def close(self, linger_ms: int = 0) -> None:
        """Close; messages still unsent after ``linger_ms`` (default: none) are dropped.

        A clean stop lingers a little so that its last chunk and ``bye`` leave the process.
        """
        if self._monitor is not None and not self._monitor.closed:
            with contextlib.suppress(zmq.ZMQError):
                self._socket.disable_monitor()
            self._monitor.close(linger=0)
        if not self._socket.closed:
            self._socket.close(linger=linger_ms)
        self._context.term()

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
  full send queue (the server is gone or stalled), then raises :class:`NetTimeout`.

ZMTP heartbeats drop connections whose peer went silent (a crashed machine), so the server
learns that a peer is gone even without a ``bye``. :class:`ServerTransport` is the small
interface the server needs, so tests may inject an in-memory fake.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

import zmq

from tmrl2.net.codec import DEFAULT_MAX_BYTES, Buffer, Message, decode, encode
from tmrl2.net.errors import NetTimeout

__all__ = ["ClientSocket", "SendResult", "ServerSocket", "ServerTransport"]

HEARTBEAT_IVL_MS = 2_000
"""Period of ZMTP pings on an idle connection."""
HEARTBEAT_TIMEOUT_MS = 10_000
"""A connection with no traffic (pings included) for this long is closed."""
RECONNECT_IVL_MS = 100
"""First delay before a client reconnects; it doubles up to ``RECONNECT_IVL_MAX_MS``."""
RECONNECT_IVL_MAX_MS = 2_000


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

    def close(self) -> None: ...


def _common_options(socket: zmq.Socket[bytes], sndhwm: int, rcvhwm: int) -> None:
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, sndhwm)
    socket.setsockopt(zmq.RCVHWM, rcvhwm)
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)


def _recv_frames(socket: zmq.Socket[bytes], timeout_ms: int) -> list[zmq.Frame] | None:
    # try first, poll only when nothing is pending: one system call less per message
    try:
        return socket.recv_multipart(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        if timeout_ms <= 0 or not socket.poll(timeout_ms, zmq.POLLIN):
            return None
        return socket.recv_multipart(zmq.NOBLOCK, copy=False)


class ServerSocket:
    """A ROUTER bound on ``tcp://host:port``; peers are addressed by their identity."""

    def __init__(self, host: str, port: int, sndhwm: int = 1000, rcvhwm: int = 1000) -> None:
        """Args:
        host: interface to bind (``127.0.0.1``, ``0.0.0.0``, a hostname's address).
        port: TCP port; 0 picks a free one (read it from :attr:`port`).
        sndhwm: messages queued per peer before sends to it return ``BUSY``.
        rcvhwm: messages queued per peer on the receiving side before ZeroMQ stops reading.
        """
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.ROUTER)
        try:
            _common_options(self._socket, sndhwm, rcvhwm)
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
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=copy)
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

    def close(self) -> None:
        """Close at once (queued messages are dropped) and free the port."""
        if not self._socket.closed:
            self._socket.close(linger=0)
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
    ) -> None:
        """Args:
        address: the server, ``tcp://host:port``.
        identity: this peer's name at the server (1-255 bytes in UTF-8); a reconnecting
            client with the same identity takes over its old connection. None: random.
        send_timeout_ms: :meth:`send` raises :class:`NetTimeout` after waiting this long
            for room in a full send queue.
        max_message_bytes: larger received messages raise :class:`DecodeError`.
        sndhwm: messages queued towards the server before :meth:`send` waits.
        rcvhwm: messages queued from the server before ZeroMQ stops reading.
        """
        if not address.startswith("tcp://"):
            raise ValueError(f"server address must be tcp://host:port, got {address!r}")
        self.address = address
        self.max_message_bytes = max_message_bytes
        self._context = zmq.Context()
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.DEALER)
        try:
            _common_options(self._socket, sndhwm, rcvhwm)
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

    def send(self, msg: Message, copy: bool = True) -> None:
        """Queue ``msg`` for the server; waits while the queue is full, then raises.

        Args:
            msg: the message.
            copy: False sends the arrays' memory without copying it; only for arrays that
                nobody changes afterwards (ZeroMQ reads them later, from its own thread).
        """
        try:
            self._socket.send_multipart(encode(msg), copy=copy)
        except zmq.Again as exc:
            raise NetTimeout(
                f"could not send a {msg.kind!r} message to {self.address}: the send queue "
                "stayed full (is the server running and reading?)"
            ) from exc

    def recv(self, timeout_ms: int) -> Message | None:
        """The next message from the server, decoded, or None after ``timeout_ms``.

        Raises :class:`DecodeError`/:class:`ProtocolError` for a malformed message.
        """
        frames = _recv_frames(self._socket, timeout_ms)
        return None if frames is None else decode(frames, self.max_message_bytes)

    def close(self) -> None:
        """Close at once; unsent messages are dropped."""
        if not self._socket.closed:
            self._socket.close(linger=0)
        self._context.term()

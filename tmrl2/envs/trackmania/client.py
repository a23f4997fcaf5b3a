"""The worker's end of the game bridge: a protocol v1 client with a reader thread.

The reader keeps the latest STATE (and FRAME), queues EVENTs and hands each command's reply
to the caller waiting on its request id. ``wait_state`` never returns a frame of an older
episode than asked for. A silent or vanished game is a :class:`BridgeError` that says what to
check; after a disconnect the next call reconnects (the game restarts the plugin when it
reloads it).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections import deque
from typing import TypeVar

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import (
    BridgeError,
    BridgeTimeout,
    CommandFailed,
    ProtocolError,
    VersionMismatch,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 9400
CHECKLIST = (
    "check that TrackMania 2020 is running with OpenPlanet, that the EVO RL plugin is loaded "
    "(OpenPlanet's Developer signature mode is needed for unsigned plugins: see "
    "docs/trackmania.md), that a map is open, and that the port matches the plugin's setting; "
    "`tmrl2 check-environment` tests each link"
)
_Reply = TypeVar("_Reply", p.Result, p.Pong, p.Track)


class BridgeClient:
    """Connects to the plugin (or ``tmrl2 sim serve``) at ``host:port``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
        caps: int = 0xFFFFFFFF,
    ) -> None:
        self.host, self.port = host, port
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.caps_wanted = caps
        self.hello: p.Hello | None = None
        self.malformed = 0
        """Messages from the server that failed to decode (dropped)."""
        self.reconnects = 0
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._latest: p.State | None = None
        self._frame: p.Frame | None = None
        self._events: deque[p.Event] = deque(maxlen=10_000)
        self._replies: dict[int, p.Result | p.Pong | p.Track] = {}
        self._req_ids = itertools.count(1)
        self._closed_reason: str | None = "not connected"
        self._send_lock = threading.Lock()

    # ----------------------------------------------------------------- connection
    @property
    def connected(self) -> bool:
        return self._closed_reason is None

    @property
    def caps(self) -> int:
        return self.hello.caps if self.hello else 0

    def connect(self) -> p.Hello:
        """Open the connection and do the handshake; returns the server's HELLO."""
        self.close()
        where = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout_s)
        except OSError as exc:
            raise BridgeError(
                f"cannot reach the game bridge at {where} ({exc}): {CHECKLIST}"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = p.FrameReader()
        try:
            hello = self._read_hello(sock, reader, where)
            if hello.major != p.MAJOR:
                raise VersionMismatch((p.MAJOR, p.MINOR), (hello.major, hello.minor))
            sock.sendall(p.encode(p.HelloAck(self.caps_wanted & hello.caps)))
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        self._sock, self.hello = sock, hello
        with self._cond:
            self._closed_reason = None
            self._latest, self._frame = None, None
            self._replies.clear()
        self._reader = threading.Thread(
            target=self._read_loop, args=(sock, reader), name="bridge-reader", daemon=True
        )
        self._reader.start()
        log.info(
            "connected to %s: %s, game %s, protocol v%d.%d",
            where,
            hello.server_version,
            hello.game_version,
            hello.major,
            hello.minor,
        )
        return hello

    def _read_hello(self, sock: socket.socket, reader: p.FrameReader, where: str) -> p.Hello:
        deadline = time.monotonic() + self.connect_timeout_s
        while True:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                wait = f"{self.connect_timeout_s:g} s"
                raise BridgeTimeout(f"no HELLO from {where} within {wait}: {CHECKLIST}") from None
            if not data:
                raise BridgeError(
                    f"{where} closed the connection during the handshake: {CHECKLIST}"
                )
            frames = reader.feed(data)
            if not frames:
                continue
            msg = p.decode(*frames[0])
            if isinstance(msg, p.Result):
                raise BridgeError(f"{where} refused the connection: {msg.message}")
            if not isinstance(msg, p.Hello):
                raise ProtocolError(f"{where} did not start with HELLO: {CHECKLIST}")
            return msg

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        self._reader = None
        with self._cond:
            self._closed_reason = self._closed_reason or "closed"
            self._cond.notify_all()

    def ensure_connected(self) -> None:
        """Reconnect after the game or the plugin went away."""
        if not self.connected:
            if self.hello is not None:
                self.reconnects += 1
                log.warning("bridge connection lost (%s); reconnecting", self._closed_reason)
            self.connect()

    def __enter__(self) -> BridgeClient:
        self.ensure_connected()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- reader thread
    def _read_loop(self, sock: socket.socket, reader: p.FrameReader) -> None:
        reason = "the server closed the connection"
        try:
            while True:
                data = sock.recv(1 << 16)
                if not data:
                    break
                for msg_type, payload in reader.feed(data):
                    self._on_message(msg_type, payload)
        except ProtocolError as exc:
            reason = f"the byte stream broke: {exc}"
        except OSError as exc:
            reason = f"connection error: {exc}"
        with self._cond:
            if self._sock is sock or self._sock is None:
                self._closed_reason = reason
            self._cond.notify_all()

    def _on_message(self, msg_type: int, payload: bytes) -> None:
        try:
            msg = p.decode(msg_type, payload)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("dropped a malformed message from the game: %s", exc)
            return
        with self._cond:
            if isinstance(msg, p.State):
                self._latest = msg
            elif isinstance(msg, p.Event):
                self._events.append(msg)
            elif isinstance(msg, p.Frame):
                self._frame = msg
            elif isinstance(msg, (p.Result, p.Pong, p.Track)):
                self._replies[msg.req_id] = msg
            else:
                return
            self._cond.notify_all()

    # ----------------------------------------------------------------- state
    @property
    def latest(self) -> p.State | None:
        return self._latest

    @property
    def latest_frame(self) -> p.Frame | None:
        return self._frame

    def events(self) -> list[p.Event]:
        """The EVENTs received since the last call, oldest first."""
        with self._cond:
            out = list(self._events)
            self._events.clear()
        return out

    def wait_state(
        self, after_seq: int = 0, episode: int | None = None, timeout: float | None = None
    ) -> p.State:
        """The first STATE newer than ``after_seq`` whose episode is at least ``episode``."""
        timeout = self.command_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.ensure_connected()
        with self._cond:
            while True:
                st = self._latest
                if (
                    st is not None
                    and st.seq > after_seq
                    and (episode is None or st.episode >= episode)
                ):
                    return st
                if self._closed_reason is not None:
                    raise BridgeError(f"lost the game bridge ({self._closed_reason}): {CHECKLIST}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BridgeTimeout(
                        f"no STATE newer than seq {after_seq}"
                        + (f" in episode >= {episode}" if episode is not None else "")
                        + f" within {timeout:g} s: the game is silent ({CHECKLIST})"
                    )
                self._cond.wait(left)

    def wait_frame(self, after_seq: int = 0, timeout: float | None = None) -> p.Frame:
        """The first FRAME whose seq is above ``after_seq`` (simulator only)."""
        timeout = self.command_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None or self._frame.seq <= after_seq:
                left = deadline - time.monotonic()
                if self._closed_reason is not None or left <= 0:
                    raise BridgeTimeout(
                        f"no FRAME after seq {after_seq} within {timeout:g} s; "
                        "the server must have the IMAGE capability and "
                        "FRAME_EVERY set"
                    )
                self._cond.wait(left)
            return self._frame

    # ----------------------------------------------------------------- commands
    def _send(self, msg: p.Message) -> None:
        self.ensure_connected()
        assert self._sock is not None
        data = p.encode(msg)
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                with self._cond:
                    self._closed_reason = f"send failed: {exc}"
                raise BridgeError(
                    f"lost the game bridge while sending: {exc}: {CHECKLIST}"
                ) from None

    def _request(self, msg: p.Message, reply: type[_Reply], timeout: float | None = None) -> _Reply:
        req_id = msg.req_id  # type: ignore[union-attr]
        name = msg.TYPE.name
        self._send(msg)
        timeout = self.command_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while req_id not in self._replies:
                left = deadline - time.monotonic()
                if self._closed_reason is not None:
                    raise BridgeError(f"lost the game bridge waiting for {name}: {CHECKLIST}")
                if left <= 0:
                    raise BridgeTimeout(f"no reply to {name} within {timeout:g} s ({CHECKLIST})")
                self._cond.wait(left)
            out = self._replies.pop(req_id)
        if isinstance(out, p.Result) and (reply is not p.Result or out.status != p.Status.OK):
            raise CommandFailed(name, out.status, out.message)
        if not isinstance(out, reply):
            raise ProtocolError(f"{name} was answered with {type(out).__name__}")
        return out

    def _next_id(self) -> int:
        return next(self._req_ids) & 0xFFFFFFFF or next(self._req_ids)

    def ping(self) -> float:
        """Round-trip time in seconds."""
        t0 = time.perf_counter()
        self._request(p.Ping(self._next_id(), time.time_ns() // 1_000_000), p.Pong)
        return time.perf_counter() - t0

    def respawn(self) -> None:
        self._request(p.Respawn(self._next_id()), p.Result)

    def restart(self) -> None:
        self._request(p.Restart(self._next_id()), p.Result)

    def load_map(self, path: str, mode: str = "", timeout: float = 60.0) -> str:
        """Load a map; returns the server's message (the simulator: the map uid)."""
        return self._request(p.LoadMap(self._next_id(), path, mode), p.Result, timeout).message

    def get_track(self) -> p.Track:
        return self._request(p.GetTrack(self._next_id()), p.Track)

    def set_config(self, **items: int) -> None:
        """E.g. ``set_config(stream_every=2, frame_every=1)``."""
        pairs = tuple((int(p.ConfigKey[k.upper()]), int(v)) for k, v in items.items())
        self._request(p.SetConfig(self._next_id(), pairs), p.Result)

    def set_input(self, steer: float, gas: float, brake: float, wait: bool = False) -> None:
        """Simulator only; fire and forget unless ``wait``."""
        req_id = self._next_id() if wait else 0
        msg = p.SetInput(req_id, steer, gas, brake)
        if wait:
            self._request(msg, p.Result)
        else:
            self._send(msg)

    def step(self, ticks: int) -> p.State:
        """Simulator lockstep: advance ``ticks`` of 10 ms; returns the STATE after them."""
        seq = self._latest.seq if self._latest else 0
        self._request(p.Step(self._next_id(), ticks), p.Result)
        return self.wait_state(after_seq=seq)

    def bye(self) -> None:
        with contextlib.suppress(BridgeError):
            self._request(p.Bye(self._next_id()), p.Result, timeout=2.0)
        self.close()

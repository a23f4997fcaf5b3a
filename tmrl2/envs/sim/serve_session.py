"""The connection side of ``tmrl2 sim serve``: one client's handshake and clock loop, and the
rate-limited warnings; :mod:`tmrl2.envs.sim.serve` owns the simulation and who is served.

Split from the server so that what a hostile client can reach is in one place: a handshake
with one deadline for the whole exchange (a client trickling bytes is cut off, and it never
held anything others need), bounded sends, and every failure answered or counted, never
raised into the server.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import ProtocolError

if TYPE_CHECKING:
    from tmrl2.envs.sim.serve import SimServer

log = logging.getLogger("tmrl2.envs.sim.serve")

TICK_MS = 10
"""Physics tick of the game (100 Hz)."""
SERVER_VERSION = "tmrl2-sim/1"
CAPS = (
    p.Caps.RESPAWN
    | p.Caps.RESTART
    | p.Caps.LOAD_MAP
    | p.Caps.TRACK_INFO
    | p.Caps.SET_INPUT
    | p.Caps.STEP
    | p.Caps.IMAGE
    | p.Caps.CHECKPOINTS
)
HANDSHAKE_TIMEOUT_S = 5.0
"""Whole handshake (HELLO out, HELLO_ACK in) per connection, however the bytes trickle in."""
SEND_TIMEOUT_S = 10.0
"""A served client that takes no bytes for this long is disconnected."""
WARN_EVERY_S = 10.0


class WarnLimiter:
    """At most one warning per kind every ``every_s``; the next one says how many were held
    back. A hostile client can otherwise fill the log (and the disk) at line rate."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = WARN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.every_s, self.clock = logger, every_s, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, kind: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``kind`` was logged in the last ``every_s``; True if logged."""
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.every_s:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        if held:
            msg += " (%d more like it in the last %.0f s)"
            args = (*args, held, self.every_s)
        self.logger.warning(msg, *args)
        return True


class Session:
    """One connected client: handshake, then the clock loop."""

    def __init__(self, server: SimServer, conn: socket.socket, where: str = "client") -> None:
        self.server, self.conn, self.where = server, conn, where
        self.reader = p.FrameReader()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closing = False
        self._early: list[tuple[int, bytes]] = []

    def send(self, messages: list[p.Message]) -> None:
        if messages:
            self.conn.sendall(b"".join(p.encode(m) for m in messages))

    def run(self) -> None:
        server = self.server
        self.conn.settimeout(SEND_TIMEOUT_S)  # reads only follow select(): this bounds sends
        sel = selectors.DefaultSelector()
        sel.register(self.conn, selectors.EVENT_READ, "client")
        frame_s = 1.0 / server.options.fps
        ticks_per_frame = (1000 / TICK_MS) / server.options.fps
        start = time.perf_counter()
        frames_done = 0
        ticks_owed = 0.0
        self.send(server.frame_messages(force=True))  # the state right after the handshake
        for msg_type, payload in self._early:  # what came with the HELLO_ACK
            self._dispatch(msg_type, payload)
        try:
            while not server._stop.is_set() and not self.closing:
                if server.options.lockstep:
                    timeout = 0.1
                else:
                    timeout = max(start + (frames_done + 1) * frame_s - time.perf_counter(), 0)
                if sel.select(timeout) and not self._read():
                    return
                if server.options.lockstep:
                    continue
                due = int((time.perf_counter() - start) / frame_s)
                if due - frames_done > 100:  # fell far behind (e.g. suspended): skip ahead
                    frames_done = due - 1
                while frames_done < due:
                    frames_done += 1
                    ticks_owed += ticks_per_frame
                    ticks = int(ticks_owed)
                    ticks_owed -= ticks
                    server.advance(ticks)
                    self.send(server.frame_messages(frame_index=frames_done))
        finally:
            sel.close()

    def handshake(self) -> bool:
        """HELLO out, HELLO_ACK in, all within the handshake deadline; False: close it."""
        server = self.server
        timeout_s = server.options.handshake_timeout_s
        deadline = time.monotonic() + timeout_s
        self.conn.settimeout(timeout_s)
        self.send([p.Hello(int(CAPS), SERVER_VERSION, "simulator")])
        frames: list[tuple[int, bytes]] = []
        while not frames:
            left = deadline - time.monotonic()
            if left <= 0 or server._stop.is_set():
                if left <= 0:
                    server.counters.handshake_timeouts += 1
                    server.warn(
                        "handshake",
                        "client %s: no HELLO_ACK within %.1f s; disconnected",
                        self.where,
                        timeout_s,
                    )
                return False
            self.conn.settimeout(min(left, 0.1))  # wake up for the deadline and stop()
            try:
                data = self.conn.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                return False
            if not data:
                return False
            try:
                frames = self.reader.feed(data)
            except ProtocolError as exc:
                server.counters.broken_streams += 1
                server.warn("broken", "client %s: handshake failed: %s", self.where, exc)
                return False
        self.conn.settimeout(SEND_TIMEOUT_S)
        msg_type, payload = frames[0]
        try:
            ack = p.decode(msg_type, payload)
        except ProtocolError as exc:
            ack = None
            server.warn("malformed", "client %s: bad HELLO_ACK: %s", self.where, exc)
        if not isinstance(ack, p.HelloAck):
            server.counters.malformed += 1
            self.send([p.Result(0, p.Status.VERSION, "expected HELLO_ACK first")])
            return False
        if ack.major != p.MAJOR:
            msg = (
                f"protocol v{ack.major}.{ack.minor} is not supported: this simulator speaks "
                f"v{p.MAJOR}.{p.MINOR}"
            )
            server.warn("version", "client %s refused: %s", self.where, msg)
            self.send([p.Result(0, p.Status.VERSION, msg)])
            return False
        self._early = frames[1:]
        return True

    def _read(self) -> bool:
        """Read and handle what the client sent; False when the connection is over."""
        try:
            data = self.conn.recv(65536)
        except (ConnectionError, TimeoutError):
            return False
        if not data:
            return False
        try:
            frames = self.reader.feed(data)
        except ProtocolError as exc:
            self.server.counters.broken_streams += 1
            self.server.warn("broken", "client %s disconnected: %s", self.where, exc)
            return False
        for msg_type, payload in frames:
            self._dispatch(msg_type, payload)
        return not self.closing

    def _dispatch(self, msg_type: int, payload: bytes) -> None:
        server = self.server
        counters = server.counters
        try:
            msg = p.decode(msg_type, payload)
        except ProtocolError as exc:
            counters.malformed += 1
            server.warn("malformed", "client %s: dropped a malformed message: %s", self.where, exc)
            return
        if isinstance(msg, p.Unknown) or not isinstance(msg, p.COMMANDS):
            counters.unknown += 1
            return
        try:
            replies = server.handle(msg)
        except Exception as exc:  # one failing command must not end the server or the client
            counters.failed_commands += 1
            log.debug("command %s failed", type(msg).__name__, exc_info=True)
            server.warn("command", "%s failed: %r", type(msg).__name__, exc)
            text = result_text(f"{type(msg).__name__} failed in the simulator: {exc!r}")
            replies = [p.Result(getattr(msg, "req_id", 0), p.Status.FAILED, text)]
        self.send(replies)
        if isinstance(msg, p.Bye):
            self.closing = True


def result_text(text: str, limit: int = 400) -> str:
    """One line, short enough for a RESULT message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

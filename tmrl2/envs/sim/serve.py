"""The simulator as a protocol server: plays TrackMania 2020 + the OpenPlanet plugin over TCP.

``tmrl2 sim serve`` speaks protocol v1 (:mod:`tmrl2.bridge.protocol`, docs/protocol.md) byte
for byte, so that the worker's TrackMania environment runs end to end without the game. One
physics *tick* is 10 ms, the game's 100 Hz. Two clocks:

- real time (default): ticks advance with the wall clock; a *frame* groups ``100 / fps`` ticks
  and a STATE goes out every ``STREAM_EVERY`` frames, inputs from the latest SET_INPUT;
- lockstep (``--lockstep``): physics advances only on STEP; the STATE of the last tick is sent,
  then the RESULT.

One client at a time, as the plugin serves one worker: a second connection gets
``RESULT(0, FAILED, "busy ...")`` instead of HELLO and is closed. A client that breaks the
framing is disconnected (counted); a bad payload of a known type is dropped (counted) and the
connection goes on. After a disconnect the server listens again.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import ProtocolError
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.render import Camera, Renderer
from tmrl2.envs.sim.track import load_track

log = logging.getLogger(__name__)

TICK_MS = 10
"""Physics tick of the game (100 Hz)."""
DEFAULT_PORT = 9400
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
_SURFACE_IDS = {"road": p.Surface.ROAD, "dirt": p.Surface.DIRT, "grass": p.Surface.GRASS}
_MAX_STEP_TICKS = 100_000


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    track: str = "default"
    fps: float = 50.0
    """Game frames per second in real time (each frame advances ``100 / fps`` ticks)."""
    lockstep: bool = False
    image_size: tuple[int, int] = (64, 64)
    """FRAME width, height."""
    color: bool = False
    seed: int = 0


@dataclass
class Counters:
    clients: int = 0
    refused_busy: int = 0
    malformed: int = 0
    """Payloads of known types that failed to decode (dropped, connection kept)."""
    broken_streams: int = 0
    """Clients disconnected because their byte stream lost its framing."""
    unknown: int = 0
    """Messages of unknown or server-only types (skipped)."""
    commands: int = 0
    states_sent: int = 0


@dataclass
class _Race:
    """What the plugin would track of the race on top of the car."""

    episode: int = 0
    seq: int = 0
    game_ticks: int = 0
    inputs: tuple[float, float, float] = (0.0, 0.0, 0.0)  # steer, gas, brake
    finished: bool = False
    last_cp: int = 0
    last_cp_time_ms: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    frame_flags: int = 0
    events: list[p.Event] = field(default_factory=list)


class SimServer:
    """Serves one simulated car over protocol v1. ``serve_forever`` until ``stop()``."""

    def __init__(self, options: ServeOptions | None = None) -> None:
        self.options = options or ServeOptions()
        if self.options.fps <= 0 or self.options.fps > 1000 / TICK_MS:
            raise ValueError(f"fps must be in (0, 100], got {self.options.fps}")
        self.counters = Counters()
        self.stream_every = 1
        self.frame_every = 0
        self.heartbeat_ms = 500
        self._stop = threading.Event()
        self._race = _Race()
        self._track_name = ""
        self._load(self.options.track)
        self._spawn(new_episode=True)
        self._listener = socket.create_server((self.options.host, self.options.port))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]

    # ----------------------------------------------------------------- simulation
    def _load(self, track_name: str) -> None:
        cfg = SimEnvConfig(
            track=track_name, time_step_ms=TICK_MS, max_episode_steps=10**9, stuck_steps=10**9
        )
        self.env = SimEnv(cfg)
        w, h = self.options.image_size
        self.renderer = Renderer(self.env.track, w, h, self.options.color, Camera())
        is_file = track_name.endswith((".yaml", ".yml", ".json"))
        self._track_name = Path(track_name).stem if is_file else track_name

    def _spawn(self, new_episode: bool) -> None:
        race = self._race
        _, race.info = self.env.reset(seed=self.options.seed + race.episode)
        race.finished = False
        race.last_cp, race.last_cp_time_ms = 0, 0
        if new_episode:
            race.episode += 1
            race.events.append(p.Event(p.EventKind.EPISODE_START, race.episode, 0))

    def _tick(self) -> None:
        race = self._race
        race.game_ticks += 1
        if race.finished:
            return  # the car waits behind the finish line until RESTART, as in the game
        steer, gas, brake = race.inputs
        _, _, finished, _, info = self.env.step(np.array([gas, brake, steer], np.float32))
        race.info = info
        if info["checkpoint"] > race.last_cp:
            race.last_cp, race.last_cp_time_ms = info["checkpoint"], info["race_time_ms"]
            race.frame_flags |= p.StateFlag.CP_THIS_FRAME
            race.events.append(
                p.Event(p.EventKind.CHECKPOINT, race.episode, race.last_cp_time_ms, race.last_cp)
            )
        if finished:
            race.finished = True
            time_ms = round(info.get("lap_time_s", 0.0) * 1000) or info["race_time_ms"]
            race.info = {**info, "race_time_ms": time_ms}
            race.events.append(p.Event(p.EventKind.FINISH, race.episode, time_ms, race.last_cp))

    def state(self) -> p.State:
        """The STATE of the current frame (and clears the frame's one-shot flags)."""
        race, info, car = self._race, self._race.info, self.env.car.state
        flags = p.StateFlag.SPAWNED | p.StateFlag.PLAYGROUND_LOADED | race.frame_flags
        flags |= p.StateFlag.FINISHED if race.finished else p.StateFlag.RACE_RUNNING
        contact = 0 if car.airborne else 0b1111  # the point car's wheels land together
        if contact:
            flags |= p.StateFlag.GROUND_CONTACT
        surfaces = tuple(
            _SURFACE_IDS.get(name, p.Surface.OTHER) if contact else p.Surface.NONE
            for name in info["wheel_surfaces"]
        )
        race.seq += 1
        race.frame_flags = 0
        steer, gas, brake = race.inputs
        return p.State(
            seq=race.seq,
            episode=race.episode,
            wall_ms=int(time.time() * 1000),
            game_time_ms=race.game_ticks * TICK_MS,
            race_time_ms=int(info["race_time_ms"]),
            flags=int(flags),
            pos=tuple(float(v) for v in info["position"]),  # type: ignore[arg-type]
            vel=tuple(float(v) for v in info["velocity"]),  # type: ignore[arg-type]
            ypr=tuple(float(v) for v in info["yaw_pitch_roll"]),  # type: ignore[arg-type]
            front_speed=car.forward_speed,
            side_speed=car.side_speed,
            rpm=float(car.rpm),
            inputs=(steer, gas, brake),
            gear=int(car.gear),
            wheel_contact=contact,
            surfaces=surfaces,  # type: ignore[arg-type]
            cp_passed=race.last_cp,
            cp_total=len(self.env.track.checkpoints_m),
            lap=0,
            laps_total=self.env.track.laps,
            respawns=int(info["respawns"]),
            last_cp_time_ms=race.last_cp_time_ms,
        )

    def frame(self) -> p.Frame:
        car = self.env.car.state
        image = self.renderer.render(car.x, car.z, car.heading)
        h, w = image.shape[:2]
        return p.Frame(self._race.seq + 1, w, h, 3 if image.ndim == 3 else 1, image.tobytes())

    def track_message(self, req_id: int) -> p.Track:
        track = self.env.track
        marks = [p.Landmark(0, 0, p.LandmarkKind.SPAWN, self._point(0.0))]
        for i, s in enumerate(track.checkpoints_m, start=1):
            marks.append(p.Landmark(i, i, p.LandmarkKind.CHECKPOINT, self._point(s)))
        n = len(marks)
        marks.append(p.Landmark(n, n, p.LandmarkKind.FINISH, self._point(track.length_m)))
        line = tuple((float(x), float(y), float(z)) for x, y, z in track.points)
        reference_ms = 0
        return p.Track(
            req_id,
            self._track_name,
            track.name,
            reference_ms,
            tuple(marks),
            line,
            float(np.mean(track.width_m)),
        )

    def _point(self, s: float) -> p.Vec3:
        track = self.env.track
        seg = track.segment_at(s)
        x, z = track.point_at(s)
        return (float(x), float(track.height(seg, s)), float(z))

    # ----------------------------------------------------------------- serving
    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        """Accept clients one after the other until :meth:`stop`."""
        mode = "lockstep" if self.options.lockstep else f"real time at {self.options.fps:g} fps"
        log.info(
            "sim server on %s:%d (%s), track %s",
            self.options.host,
            self.port,
            mode,
            self._track_name,
        )
        try:
            while not self._stop.is_set():
                try:
                    conn, addr = self._listener.accept()
                except TimeoutError:
                    continue
                self.counters.clients += 1
                log.info("client %s:%d connected", *addr[:2])
                try:
                    _Session(self, conn).run()
                except OSError as exc:
                    log.info("client %s:%d dropped: %s", *addr[:2], exc)
                finally:
                    conn.close()
                log.info("client %s:%d gone; listening again", *addr[:2])
        finally:
            self._listener.close()

    def refuse_busy(self) -> None:
        """Answer queued connections while a client is being served."""
        try:
            conn, _ = self._listener.accept()
        except (TimeoutError, BlockingIOError):
            return
        self.counters.refused_busy += 1
        with conn:
            msg = "busy: another client is connected to this simulator; one worker per server"
            conn.sendall(p.encode(p.Result(0, p.Status.FAILED, msg)))

    # ----------------------------------------------------------------- commands
    def handle(self, msg: p.Message) -> list[p.Message]:
        """Apply one client command; returns the messages to send back, in order."""
        self.counters.commands += 1
        race, st = self._race, p.Status
        if isinstance(msg, p.Ping):
            return [p.Pong(msg.req_id, msg.client_time, int(time.time() * 1000))]
        if isinstance(msg, p.SetInput):
            race.inputs = (
                _clip(msg.steer, -1.0, 1.0),
                _clip(msg.gas, 0.0, 1.0),
                _clip(msg.brake, 0.0, 1.0),
            )
            return [] if msg.req_id == 0 else [p.Result(msg.req_id, st.OK)]
        if isinstance(msg, p.Step):
            if not self.options.lockstep:
                return [p.Result(msg.req_id, st.WRONG_STATE, "STEP needs `sim serve --lockstep`")]
            if not 0 < msg.ticks <= _MAX_STEP_TICKS:
                return [p.Result(msg.req_id, st.BAD_ARGS, f"ticks must be 1..{_MAX_STEP_TICKS}")]
            self.advance(msg.ticks)
            return [*self.frame_messages(force=True), p.Result(msg.req_id, st.OK)]
        if isinstance(msg, p.Respawn):
            _, race.info = self.env.respawn()
            race.finished = False
            race.frame_flags |= p.StateFlag.RESPAWN_THIS_FRAME
            race.events.append(
                p.Event(
                    p.EventKind.RESPAWN,
                    race.episode,
                    race.info["race_time_ms"],
                    race.info["respawns"],
                )
            )
            return [*self.frame_messages(force=True), p.Result(msg.req_id, st.OK)]
        if isinstance(msg, p.Restart):
            self._spawn(new_episode=True)
            done = p.Result(msg.req_id, st.OK, f"episode {race.episode}")
            return [*self.frame_messages(force=True), done]
        if isinstance(msg, p.LoadMap):
            return self._load_map(msg)
        if isinstance(msg, p.GetTrack):
            return [self.track_message(msg.req_id)]
        if isinstance(msg, p.SetConfig):
            return [self._set_config(msg)]
        if isinstance(msg, p.Bye):
            return [p.Result(msg.req_id, st.OK, "bye")]
        self.counters.unknown += 1
        return []

    def _load_map(self, msg: p.LoadMap) -> list[p.Message]:
        race = self._race
        try:
            load_track(msg.path)  # validate before unloading the current map
        except (ValueError, OSError) as exc:
            return [p.Result(msg.req_id, p.Status.BAD_ARGS, f"cannot load {msg.path!r}: {exc}")]
        race.events.append(p.Event(p.EventKind.MAP_UNLOADED, race.episode, 0))
        self._load(msg.path)
        race.events.append(p.Event(p.EventKind.MAP_LOADED, race.episode, 0, 0, self._track_name))
        self._spawn(new_episode=True)
        done = p.Result(msg.req_id, p.Status.OK, self._track_name)
        return [*self.frame_messages(force=True), done]

    def _set_config(self, msg: p.SetConfig) -> p.Result:
        keys = {int(k) for k in p.ConfigKey}
        for key, value in msg.items:
            if key not in keys:
                return p.Result(msg.req_id, p.Status.BAD_ARGS, f"unknown config key {key}")
            if key == p.ConfigKey.STREAM_EVERY and value < 1:
                return p.Result(msg.req_id, p.Status.BAD_ARGS, "STREAM_EVERY must be >= 1")
            if key != p.ConfigKey.STREAM_EVERY and value < 0:
                return p.Result(msg.req_id, p.Status.BAD_ARGS, f"key {key} must be >= 0")
        for key, value in msg.items:
            if key == p.ConfigKey.STREAM_EVERY:
                self.stream_every = value
            elif key == p.ConfigKey.HEARTBEAT_MS:
                self.heartbeat_ms = value
            elif key == p.ConfigKey.FRAME_EVERY:
                self.frame_every = value
        return p.Result(msg.req_id, p.Status.OK)

    def _flush_events(self) -> list[p.Message]:
        events: list[p.Message] = list(self._race.events)
        self._race.events.clear()
        return events

    def frame_messages(self, force: bool = False, frame_index: int = 0) -> list[p.Message]:
        """EVENTs, then FRAME (when asked for), then STATE, of the current game frame.

        ``force``: regardless of STREAM_EVERY (after STEP, and after a command that spawned
        the car, so that its STATE precedes the command's RESULT)."""
        if not force and frame_index % self.stream_every:
            return []
        out = self._flush_events()
        if self.frame_every and self._race.seq % self.frame_every == 0:
            out.append(self.frame())
        out.append(self.state())
        self.counters.states_sent += 1
        return out

    def advance(self, ticks: int) -> None:
        """Run ``ticks`` physics ticks with the current inputs."""
        for _ in range(ticks):
            self._tick()


class _Session:
    """One connected client: handshake, then the clock loop."""

    def __init__(self, server: SimServer, conn: socket.socket) -> None:
        self.server, self.conn = server, conn
        self.reader = p.FrameReader()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closing = False

    def send(self, messages: list[p.Message]) -> None:
        if messages:
            self.conn.sendall(b"".join(p.encode(m) for m in messages))

    def run(self) -> None:
        if not self._handshake():
            return
        server = self.server
        sel = selectors.DefaultSelector()
        sel.register(self.conn, selectors.EVENT_READ, "client")
        sel.register(server._listener, selectors.EVENT_READ, "listener")
        frame_s = 1.0 / server.options.fps
        ticks_per_frame = (1000 / TICK_MS) / server.options.fps
        start = time.perf_counter()
        frames_done = 0
        ticks_owed = 0.0
        self.send(server.frame_messages(force=True))  # the state right after the handshake
        try:
            while not server._stop.is_set() and not self.closing:
                if server.options.lockstep:
                    timeout = 0.1
                else:
                    timeout = max(start + (frames_done + 1) * frame_s - time.perf_counter(), 0)
                for key, _ in sel.select(timeout):
                    if key.data == "listener":
                        server.refuse_busy()
                    elif not self._read():
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

    def _handshake(self) -> bool:
        server = self.server
        self.send([p.Hello(int(CAPS), SERVER_VERSION, "simulator")])
        self.conn.settimeout(HANDSHAKE_TIMEOUT_S)
        frames: list[tuple[int, bytes]] = []
        try:
            while not frames:
                data = self.conn.recv(65536)
                if not data:
                    return False
                frames = self.reader.feed(data)
        except (TimeoutError, ProtocolError) as exc:
            log.warning("handshake failed: %s", exc)
            server.counters.broken_streams += 1
            return False
        finally:
            self.conn.settimeout(None)
        msg_type, payload = frames[0]
        try:
            ack = p.decode(msg_type, payload)
        except ProtocolError as exc:
            ack = None
            log.warning("bad HELLO_ACK: %s", exc)
        if not isinstance(ack, p.HelloAck):
            server.counters.malformed += 1
            self.send([p.Result(0, p.Status.VERSION, "expected HELLO_ACK first")])
            return False
        if ack.major != p.MAJOR:
            msg = (
                f"protocol v{ack.major}.{ack.minor} is not supported: this simulator speaks "
                f"v{p.MAJOR}.{p.MINOR}"
            )
            log.warning("client refused: %s", msg)
            self.send([p.Result(0, p.Status.VERSION, msg)])
            return False
        for msg_type, payload in frames[1:]:
            self._dispatch(msg_type, payload)
        return True

    def _read(self) -> bool:
        """Read and handle what the client sent; False when the connection is over."""
        try:
            data = self.conn.recv(65536)
        except ConnectionError:
            return False
        if not data:
            return False
        try:
            frames = self.reader.feed(data)
        except ProtocolError as exc:
            self.server.counters.broken_streams += 1
            log.warning("client disconnected: %s", exc)
            return False
        for msg_type, payload in frames:
            self._dispatch(msg_type, payload)
        return not self.closing

    def _dispatch(self, msg_type: int, payload: bytes) -> None:
        counters = self.server.counters
        try:
            msg = p.decode(msg_type, payload)
        except ProtocolError as exc:
            counters.malformed += 1
            log.warning("dropped a malformed message: %s", exc)
            return
        if isinstance(msg, p.Unknown) or not isinstance(msg, p.COMMANDS):
            counters.unknown += 1
            return
        self.send(self.server.handle(msg))
        if isinstance(msg, p.Bye):
            self.closing = True


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if not v >= lo else hi if v > hi else float(v)  # NaN becomes lo


def serve_in_thread(options: ServeOptions) -> tuple[SimServer, threading.Thread]:
    """Start a server on a daemon thread (tests, benchmarks, ``check-environment`` demos)."""
    server = SimServer(options)
    thread = threading.Thread(target=server.serve_forever, name="sim-serve", daemon=True)
    thread.start()
    return server, thread

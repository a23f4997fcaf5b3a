"""The simulator as a protocol server: plays TrackMania 2020 + the OpenPlanet plugin over TCP.

``tmrl2 sim serve`` speaks protocol v1 (:mod:`tmrl2.bridge.protocol`, docs/protocol.md) byte
for byte, so that the worker's TrackMania environment runs end to end without the game. One
physics *tick* is 10 ms, the game's 100 Hz. Two clocks:

- real time (default): ticks advance with the wall clock; a *frame* groups ``100 / fps`` ticks
  and a STATE goes out every ``STREAM_EVERY`` frames, inputs from the latest SET_INPUT;
- lockstep (``--lockstep``): physics advances only on STEP; the STATE of the last tick is sent,
  then the RESULT.

One client at a time, as the plugin serves one worker: a connection that arrives while a
client is served gets ``RESULT(0, FAILED, "busy ...")`` instead of HELLO and is closed.

Hostile or broken clients never stop the server or block others:

- every connection does its handshake on its own thread with a deadline for the whole
  handshake (``handshake_timeout_s``), so a client that sends one byte every few seconds holds
  nobody up; the first client to finish it is served, later ones are refused as busy;
- a client that breaks the framing is disconnected (counted); a bad payload of a known type is
  dropped (counted) and the connection goes on; a command that fails (a malformed track file
  in LOAD_MAP, or a bug) is answered with an error RESULT and the connection goes on;
- a client that stops reading is disconnected after ``SEND_TIMEOUT_S``;
- warnings are rate-limited: at most one per kind every 10 s, with the count held back.

After a disconnect the server takes the next client.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tmrl2.bridge import protocol as p
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.render import Camera, Renderer
from tmrl2.envs.sim.serve_session import (
    HANDSHAKE_TIMEOUT_S,
    TICK_MS,
    Session,
    WarnLimiter,
    result_text,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 9400
MAX_HANDSHAKES = 16
"""Connections in their handshake at once; more are refused as busy."""
BUSY_GRACE_S = 1.0
"""A connection that arrives while a client is served waits this long for it to end (a
worker reconnecting after a drop may be faster than the server noticing the drop) before it is
refused as busy."""
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
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    """Deadline for a connection's whole handshake."""


@dataclass
class Counters:
    clients: int = 0
    refused_busy: int = 0
    handshake_timeouts: int = 0
    """Connections that did not finish their handshake within the deadline."""
    failed_commands: int = 0
    """Commands that raised (answered with an error RESULT, connection kept)."""
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
        """Raises ValueError for bad options or a track that cannot be loaded, OSError when
        the address cannot be bound."""
        self.options = options or ServeOptions()
        if self.options.fps <= 0 or self.options.fps > 1000 / TICK_MS:
            raise ValueError(f"fps must be in (0, 100], got {self.options.fps}")
        if self.options.handshake_timeout_s <= 0:
            raise ValueError("handshake_timeout_s must be > 0")
        self.counters = Counters()
        self.warnings = WarnLimiter(log)
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._active: Session | None = None
        self._threads: set[threading.Thread] = set()
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
        """Build the env of ``track_name``, then switch to it (the old map stays on failure).

        Raises ValueError (with the reason) for any track that cannot be loaded."""
        try:
            cfg = SimEnvConfig(
                track=track_name, time_step_ms=TICK_MS, max_episode_steps=10**9, stuck_steps=10**9
            )
            env = SimEnv(cfg)
        except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError, OSError) as exc:
            reason = " ".join(str(exc).split())
            raise ValueError(f"cannot load track {track_name!r}: {reason}") from None
        except ValueError as exc:  # pydantic's ValidationError included: one line
            reason = " ".join(str(exc).split())
            raise ValueError(f"cannot load track {track_name!r}: {reason}") from None
        w, h = self.options.image_size
        self.renderer = Renderer(env.track, w, h, self.options.color, Camera())
        self.env = env
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
        image = self.renderer.render(car.x, car.z, car.heading, car.y)
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
        with self._slot_free:
            self._slot_free.notify_all()

    def warn(self, kind: str, msg: str, *args: object) -> None:
        """A rate-limited warning (see :class:`WarnLimiter`)."""
        self.warnings.warn(kind, msg, *args)

    def serve_forever(self) -> None:
        """Accept clients until :meth:`stop`; each connection is handled on its own thread."""
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
                self._admit(conn, addr)
        finally:
            self._listener.close()
            for thread in list(self._threads):
                thread.join(2.0)

    def _admit(self, conn: socket.socket, addr: Any) -> None:
        with self._lock:
            full = len(self._threads) >= MAX_HANDSHAKES
        if full:
            self._refuse(conn)
            return
        thread = threading.Thread(
            target=self._client, args=(conn, addr), name="sim-serve-client", daemon=True
        )
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _client(self, conn: socket.socket, addr: Any) -> None:
        """One connection: handshake (with its deadline), then served if nobody else is.

        Nothing is shared until the handshake is done, so a slow handshake holds nobody up."""
        where = "{}:{}".format(*addr[:2])
        try:
            if not self._wait_for_slot(BUSY_GRACE_S):
                self._refuse(conn)
                return
            session = Session(self, conn, where)
            if not session.handshake():
                return
            with self._lock:
                claimed = self._active is None
                if claimed:
                    self._active = session
            if not claimed:  # another handshake finished first
                self._refuse(conn)
                return
            self.counters.clients += 1
            log.info("client %s connected", where)
            try:
                session.run()
            finally:
                with self._slot_free:
                    self._active = None
                    self._slot_free.notify_all()
            log.info("client %s gone; listening again", where)
        except OSError as exc:
            log.info("client %s dropped: %s", where, exc)
        finally:
            conn.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _wait_for_slot(self, timeout_s: float) -> bool:
        """Wait until no client is served (or the server stops); False after ``timeout_s``."""
        with self._slot_free:
            return self._slot_free.wait_for(
                lambda: self._active is None or self._stop.is_set(), timeout_s
            )

    def _refuse(self, conn: socket.socket) -> None:
        """Tell a connection that another client is served, and close it."""
        self.counters.refused_busy += 1
        msg = "busy: another client is connected to this simulator; one worker per server"
        with conn:
            try:
                conn.settimeout(1.0)
                conn.sendall(p.encode(p.Result(0, p.Status.FAILED, msg)))
            except OSError:
                pass

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
            self._load(msg.path)  # the current map stays when this fails
        except ValueError as exc:
            self.warn("load_map", "LOAD_MAP refused: %s", exc)
            return [p.Result(msg.req_id, p.Status.BAD_ARGS, result_text(str(exc)))]
        race.events.append(p.Event(p.EventKind.MAP_UNLOADED, race.episode, 0))
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


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if not v >= lo else hi if v > hi else float(v)  # NaN becomes lo


def serve_in_thread(options: ServeOptions) -> tuple[SimServer, threading.Thread]:
    """Start a server on a daemon thread (tests, benchmarks, ``check-environment`` demos)."""
    server = SimServer(options)
    thread = threading.Thread(target=server.serve_forever, name="sim-serve", daemon=True)
    thread.start()
    return server, thread

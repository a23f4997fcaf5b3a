"""Protocol v1 of the game bridge: typed messages and their exact bytes.

Every message is an 8-byte little-endian header ``<HHI`` (type, flags = 0, payload length)
followed by the payload. The OpenPlanet plugin (plugin/*.as) and the simulator's server
(:mod:`tmrl2.envs.sim.serve`) write these bytes; the worker's client reads them. Golden byte
tests (tests/unit/test_bridge_protocol.py) pin the format; bump :data:`MINOR` when STATE grows
fields at its end and :data:`MAJOR` for any other change. docs/protocol.md is the reference.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, Protocol, TypeAlias

from tmrl2.bridge.errors import ProtocolError

MAJOR = 1
MINOR = 0
HEADER = struct.Struct("<HHI")
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 1 << 20
"""Largest payload in bytes; a larger length means the stream is corrupt (close it)."""
SERVER_MAGIC = b"EVOB"
CLIENT_MAGIC = b"EVOC"


class MsgType(IntEnum):
    HELLO = 0x0001
    HELLO_ACK = 0x0002
    STATE = 0x0010
    EVENT = 0x0011
    TRACK = 0x0020
    FRAME = 0x0021
    RESULT = 0x0030
    PONG = 0x0031
    PING = 0x0100
    RESPAWN = 0x0101
    RESTART = 0x0102
    LOAD_MAP = 0x0103
    GET_TRACK = 0x0104
    SET_CONFIG = 0x0105
    BYE = 0x0106
    SET_INPUT = 0x0200
    STEP = 0x0201


class Caps(IntFlag):
    """What a server can do, sent in HELLO."""

    RESPAWN = 1 << 0
    RESTART = 1 << 1
    LOAD_MAP = 1 << 2
    TRACK_INFO = 1 << 3
    SET_INPUT = 1 << 4  # simulator only
    STEP = 1 << 5  # simulator only
    IMAGE = 1 << 6  # simulator only: FRAME messages
    CHECKPOINTS = 1 << 7


class StateFlag(IntFlag):
    SPAWNED = 1 << 0
    RACE_RUNNING = 1 << 1
    FINISHED = 1 << 2
    GROUND_CONTACT = 1 << 3
    TOP_CONTACT = 1 << 4
    TURBO = 1 << 5
    WHEELS_BURNING = 1 << 6
    IN_WATER = 1 << 7
    MENU_OPEN = 1 << 8
    PLAYGROUND_LOADED = 1 << 9
    CP_THIS_FRAME = 1 << 10
    RESPAWN_THIS_FRAME = 1 << 11


class Wheel(IntFlag):
    """Bits of STATE's wheel-contact byte; the same order indexes the 4 surface ids."""

    FL = 1 << 0
    FR = 1 << 1
    RL = 1 << 2
    RR = 1 << 3


class Surface(IntEnum):
    """Surface ids in STATE; the plugin maps the game's materials onto these."""

    NONE = 0  # wheel not touching anything
    ROAD = 1
    DIRT = 2
    GRASS = 3
    ICE = 4
    WATER = 5
    PLASTIC = 6
    SNOW = 7
    WOOD = 8
    METAL = 9
    OTHER = 255


class EventKind(IntEnum):
    EPISODE_START = 1
    CHECKPOINT = 2  # arg: checkpoints passed
    FINISH = 3  # arg: checkpoints passed
    RESPAWN = 4  # arg: respawn count
    MAP_LOADED = 5  # followed by the map uid
    MAP_UNLOADED = 6


class Status(IntEnum):
    OK = 0
    UNSUPPORTED = 1
    WRONG_STATE = 2
    BAD_ARGS = 3
    FAILED = 4
    VERSION = 5


class LandmarkKind(IntEnum):
    SPAWN = 0
    CHECKPOINT = 1
    LINKED_CHECKPOINT = 2
    START_FINISH = 3
    FINISH = 4


class ConfigKey(IntEnum):
    """Keys of SET_CONFIG."""

    STREAM_EVERY = 1  # send STATE every N game frames (>= 1)
    HEARTBEAT_MS = 2  # STATE period with no car spawned
    FRAME_EVERY = 3  # simulator only: a FRAME before every Nth STATE (0: none, the default)


class _Writer:
    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def pack(self, fmt: str, *values: float | int) -> None:
        self.buf += struct.pack("<" + fmt, *values)

    def str(self, text: str) -> None:
        data = text.encode("utf-8")
        if len(data) > 0xFFFF:
            raise ProtocolError(f"string of {len(data)} bytes is longer than 65535")
        self.pack("H", len(data))
        self.buf += data

    def raw(self, data: bytes) -> None:
        self.buf += data


class _Reader:
    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError(
                f"{self.what}: payload of {len(self.data)} bytes ends inside a field "
                f"(needs {end} bytes)"
            )
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def unpack(self, fmt: str) -> tuple[float, ...]:
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size))

    def u(self, fmt: str) -> int:
        return int(self.unpack(fmt)[0])

    def str(self) -> str:
        data = self.take(self.u("H"))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{self.what}: string is not UTF-8 ({exc})") from None

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(
                f"{self.what}: {len(self.data) - self.pos} unexpected bytes after the last field"
            )


class _Codec(Protocol):
    TYPE: ClassVar[MsgType]

    def write(self, w: _Writer) -> None: ...


Vec3: TypeAlias = tuple[float, float, float]
_STATE = struct.Struct("<IIQiiI15fBB4B5Hi")
STATE_SIZE = _STATE.size
"""Bytes of a v1.0 STATE payload (108)."""


@dataclass(frozen=True, slots=True)
class Hello:
    caps: int
    server_version: str
    game_version: str
    state_size: int = STATE_SIZE
    major: int = MAJOR
    minor: int = MINOR
    TYPE: ClassVar[MsgType] = MsgType.HELLO

    def write(self, w: _Writer) -> None:
        w.raw(SERVER_MAGIC)
        w.pack("HHI", self.major, self.minor, self.caps)
        w.str(self.server_version)
        w.str(self.game_version)
        w.pack("H", self.state_size)

    @classmethod
    def read(cls, r: _Reader) -> Hello:
        if r.take(4) != SERVER_MAGIC:
            raise ProtocolError(
                "HELLO without the EVOB magic: the program on this port is not the EVO RL "
                "plugin or simulator server (check the port)"
            )
        major, minor, caps = (int(v) for v in r.unpack("HHI"))
        server_version, game_version = r.str(), r.str()
        return cls(caps, server_version, game_version, r.u("H"), major, minor)


@dataclass(frozen=True, slots=True)
class HelloAck:
    caps: int
    major: int = MAJOR
    minor: int = MINOR
    TYPE: ClassVar[MsgType] = MsgType.HELLO_ACK

    def write(self, w: _Writer) -> None:
        w.raw(CLIENT_MAGIC)
        w.pack("HHI", self.major, self.minor, self.caps)

    @classmethod
    def read(cls, r: _Reader) -> HelloAck:
        if r.take(4) != CLIENT_MAGIC:
            raise ProtocolError("HELLO_ACK without the EVOC magic: not an EVO RL client")
        major, minor, caps = (int(v) for v in r.unpack("HHI"))
        return cls(caps, major, minor)


@dataclass(frozen=True, slots=True)
class State:
    """One game frame of the car and the race. Units: m, m/s, rad, ms; Y is up."""

    seq: int
    episode: int
    wall_ms: int
    game_time_ms: int
    race_time_ms: int
    flags: int
    pos: Vec3
    vel: Vec3
    ypr: Vec3  # yaw, pitch, roll
    front_speed: float
    side_speed: float
    rpm: float
    inputs: Vec3  # steer, gas, brake as applied
    gear: int
    wheel_contact: int
    surfaces: tuple[int, int, int, int]  # FL, FR, RL, RR
    cp_passed: int
    cp_total: int
    lap: int
    laps_total: int
    respawns: int
    last_cp_time_ms: int
    TYPE: ClassVar[MsgType] = MsgType.STATE

    def has(self, flag: StateFlag) -> bool:
        return bool(self.flags & flag)

    def write(self, w: _Writer) -> None:
        w.raw(
            _STATE.pack(
                self.seq, self.episode, self.wall_ms, self.game_time_ms, self.race_time_ms,
                self.flags, *self.pos, *self.vel, *self.ypr, self.front_speed, self.side_speed,
                self.rpm, *self.inputs, self.gear, self.wheel_contact, *self.surfaces,
                self.cp_passed, self.cp_total, self.lap, self.laps_total, self.respawns,
                self.last_cp_time_ms,
            )
        )  # fmt: skip

    @classmethod
    def read(cls, r: _Reader) -> State:
        v = _STATE.unpack(r.take(STATE_SIZE))
        r.pos = len(r.data)  # a newer minor version appends fields: skip them
        f = [float(x) for x in v[6:21]]
        i = [int(x) for x in v]
        return cls(
            i[0], i[1], i[2], i[3], i[4], i[5],
            (f[0], f[1], f[2]), (f[3], f[4], f[5]), (f[6], f[7], f[8]),
            f[9], f[10], f[11], (f[12], f[13], f[14]),
            i[21], i[22], (i[23], i[24], i[25], i[26]),
            i[27], i[28], i[29], i[30], i[31], i[32],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Event:
    kind: int
    episode: int
    race_time_ms: int
    arg: int = 0
    map_uid: str = ""  # only on the wire for MAP_LOADED
    TYPE: ClassVar[MsgType] = MsgType.EVENT

    def write(self, w: _Writer) -> None:
        w.pack("HIiI", self.kind, self.episode, self.race_time_ms, self.arg)
        if self.kind == EventKind.MAP_LOADED:
            w.str(self.map_uid)

    @classmethod
    def read(cls, r: _Reader) -> Event:
        kind, episode, race_time_ms, arg = (int(v) for v in r.unpack("HIiI"))
        uid = r.str() if kind == EventKind.MAP_LOADED else ""
        return cls(kind, episode, race_time_ms, arg, uid)


@dataclass(frozen=True, slots=True)
class Landmark:
    index: int
    order: int
    kind: int
    pos: Vec3


@dataclass(frozen=True, slots=True)
class Track:
    """Reply to GET_TRACK. The game fills the landmarks; the simulator also sends its
    centerline and width (the game sends 0 points and width 0)."""

    req_id: int
    map_uid: str
    name: str
    author_time_ms: int
    landmarks: tuple[Landmark, ...] = ()
    centerline: tuple[Vec3, ...] = ()
    width: float = 0.0
    TYPE: ClassVar[MsgType] = MsgType.TRACK

    def write(self, w: _Writer) -> None:
        w.pack("I", self.req_id)
        w.str(self.map_uid)
        w.str(self.name)
        w.pack("iH", self.author_time_ms, len(self.landmarks))
        for lm in self.landmarks:
            w.pack("HHB3f", lm.index, lm.order, lm.kind, *lm.pos)
        w.pack("fI", self.width, len(self.centerline))
        if self.centerline:
            flat = itertools.chain.from_iterable(self.centerline)
            w.raw(struct.pack(f"<{3 * len(self.centerline)}f", *flat))

    @classmethod
    def read(cls, r: _Reader) -> Track:
        req_id = r.u("I")
        uid, name = r.str(), r.str()
        author_time_ms, n = (int(v) for v in r.unpack("iH"))
        landmarks = []
        for _ in range(n):
            index, order, kind, x, y, z = r.unpack("HHB3f")
            landmarks.append(Landmark(int(index), int(order), int(kind), (x, y, z)))
        width, npoints = r.unpack("fI")
        if 12 * int(npoints) > len(r.data) - r.pos:
            raise ProtocolError(f"TRACK announces {int(npoints)} centerline points; the payload "
                                "is shorter")  # fmt: skip
        flat = r.unpack(f"{3 * int(npoints)}f")
        points = tuple((flat[k], flat[k + 1], flat[k + 2]) for k in range(0, len(flat), 3))
        return cls(req_id, uid, name, author_time_ms, tuple(landmarks), points, float(width))


@dataclass(frozen=True, slots=True)
class Frame:
    """A rendered image (simulator only): row-major height x width x channels, uint8."""

    seq: int
    width: int
    height: int
    channels: int
    pixels: bytes
    TYPE: ClassVar[MsgType] = MsgType.FRAME

    def write(self, w: _Writer) -> None:
        if len(self.pixels) != self.width * self.height * self.channels:
            raise ProtocolError(
                f"FRAME of {self.width}x{self.height}x{self.channels} needs "
                f"{self.width * self.height * self.channels} bytes, got {len(self.pixels)}"
            )
        w.pack("IHHB", self.seq, self.width, self.height, self.channels)
        w.raw(bytes(self.pixels))

    @classmethod
    def read(cls, r: _Reader) -> Frame:
        seq, width, height, channels = (int(v) for v in r.unpack("IHHB"))
        return cls(seq, width, height, channels, r.take(width * height * channels))


@dataclass(frozen=True, slots=True)
class Result:
    req_id: int
    status: int
    message: str = ""
    TYPE: ClassVar[MsgType] = MsgType.RESULT

    def write(self, w: _Writer) -> None:
        w.pack("IH", self.req_id, self.status)
        w.str(self.message)

    @classmethod
    def read(cls, r: _Reader) -> Result:
        req_id, status = (int(v) for v in r.unpack("IH"))
        return cls(req_id, status, r.str())


@dataclass(frozen=True, slots=True)
class Pong:
    req_id: int
    client_time: int
    server_wall_ms: int
    TYPE: ClassVar[MsgType] = MsgType.PONG

    def write(self, w: _Writer) -> None:
        w.pack("IQQ", self.req_id, self.client_time, self.server_wall_ms)

    @classmethod
    def read(cls, r: _Reader) -> Pong:
        return cls(*(int(v) for v in r.unpack("IQQ")))


@dataclass(frozen=True, slots=True)
class Ping:
    req_id: int
    client_time: int
    TYPE: ClassVar[MsgType] = MsgType.PING

    def write(self, w: _Writer) -> None:
        w.pack("IQ", self.req_id, self.client_time)

    @classmethod
    def read(cls, r: _Reader) -> Ping:
        return cls(*(int(v) for v in r.unpack("IQ")))


@dataclass(frozen=True, slots=True)
class _Bare:
    """A command whose payload is only its request id."""

    req_id: int

    def write(self, w: _Writer) -> None:
        w.pack("I", self.req_id)

    @classmethod
    def read(cls, r: _Reader) -> _Bare:
        return cls(r.u("I"))


@dataclass(frozen=True, slots=True)
class Respawn(_Bare):
    TYPE: ClassVar[MsgType] = MsgType.RESPAWN


@dataclass(frozen=True, slots=True)
class Restart(_Bare):
    TYPE: ClassVar[MsgType] = MsgType.RESTART


@dataclass(frozen=True, slots=True)
class GetTrack(_Bare):
    TYPE: ClassVar[MsgType] = MsgType.GET_TRACK


@dataclass(frozen=True, slots=True)
class Bye(_Bare):
    TYPE: ClassVar[MsgType] = MsgType.BYE


@dataclass(frozen=True, slots=True)
class LoadMap:
    req_id: int
    path: str
    mode: str = ""
    TYPE: ClassVar[MsgType] = MsgType.LOAD_MAP

    def write(self, w: _Writer) -> None:
        w.pack("I", self.req_id)
        w.str(self.path)
        w.str(self.mode)

    @classmethod
    def read(cls, r: _Reader) -> LoadMap:
        req_id = r.u("I")
        return cls(req_id, r.str(), r.str())


@dataclass(frozen=True, slots=True)
class SetConfig:
    req_id: int
    items: tuple[tuple[int, int], ...] = field(default=())
    TYPE: ClassVar[MsgType] = MsgType.SET_CONFIG

    def write(self, w: _Writer) -> None:
        w.pack("IH", self.req_id, len(self.items))
        for key, value in self.items:
            w.pack("Hi", key, value)

    @classmethod
    def read(cls, r: _Reader) -> SetConfig:
        req_id, n = (int(v) for v in r.unpack("IH"))
        items = tuple((r.u("H"), r.u("i")) for _ in range(n))
        return cls(req_id, items)


@dataclass(frozen=True, slots=True)
class SetInput:
    """Simulator only. ``req_id`` 0 is fire and forget (no RESULT)."""

    req_id: int
    steer: float
    gas: float
    brake: float
    TYPE: ClassVar[MsgType] = MsgType.SET_INPUT

    def write(self, w: _Writer) -> None:
        w.pack("I3f", self.req_id, self.steer, self.gas, self.brake)

    @classmethod
    def read(cls, r: _Reader) -> SetInput:
        req_id, steer, gas, brake = r.unpack("I3f")
        return cls(int(req_id), steer, gas, brake)


@dataclass(frozen=True, slots=True)
class Step:
    """Simulator only: advance ``ticks`` physics frames, then RESULT."""

    req_id: int
    ticks: int
    TYPE: ClassVar[MsgType] = MsgType.STEP

    def write(self, w: _Writer) -> None:
        w.pack("II", self.req_id, self.ticks)

    @classmethod
    def read(cls, r: _Reader) -> Step:
        return cls(*(int(v) for v in r.unpack("II")))


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message type this version does not know: readers skip it."""

    type: int
    payload: bytes


Message: TypeAlias = (
    Hello | HelloAck | State | Event | Track | Frame | Result | Pong | Ping | Respawn | Restart
    | GetTrack | Bye | LoadMap | SetConfig | SetInput | Step
)  # fmt: skip
COMMANDS = (Ping, Respawn, Restart, LoadMap, GetTrack, SetConfig, Bye, SetInput, Step)
"""Client-to-server messages; each payload starts with a u32 request id."""
_BY_TYPE = {
    cls.TYPE: cls for cls in (Hello, HelloAck, State, Event, Track, Frame, Result, Pong, *COMMANDS)
}


def encode(msg: Message) -> bytes:
    """Header + payload of ``msg``."""
    w = _Writer()
    msg.write(w)
    if len(w.buf) > MAX_PAYLOAD:
        raise ProtocolError(f"{msg.TYPE.name} payload of {len(w.buf)} bytes exceeds 1 MiB")
    return HEADER.pack(msg.TYPE, 0, len(w.buf)) + bytes(w.buf)


def decode(msg_type: int, payload: bytes) -> Message | Unknown:
    """The message of one frame; :class:`Unknown` for a type this version does not know."""
    cls = _BY_TYPE.get(msg_type)  # type: ignore[call-overload]
    if cls is None:
        return Unknown(msg_type, bytes(payload))
    r = _Reader(bytes(payload), cls.TYPE.name)
    msg = cls.read(r)
    r.done()
    return msg  # type: ignore[no-any-return]


class FrameReader:
    """Splits a TCP byte stream into ``(type, payload)`` frames.

    ``feed`` returns every complete frame so far. A length above :data:`MAX_PAYLOAD` raises
    :class:`ProtocolError`: the stream has lost its framing and the connection must be closed.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames: list[tuple[int, bytes]] = []
        start = 0
        while len(self._buf) - start >= HEADER_SIZE:
            msg_type, _flags, length = HEADER.unpack_from(self._buf, start)
            if length > MAX_PAYLOAD:
                raise ProtocolError(
                    f"frame of type 0x{msg_type:04x} announces {length} bytes (limit 1 MiB): "
                    "the stream is corrupt or the peer is not an EVO RL bridge"
                )
            end = start + HEADER_SIZE + length
            if end > len(self._buf):
                break
            frames.append((msg_type, bytes(self._buf[start + HEADER_SIZE : end])))
            start = end
        del self._buf[:start]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)

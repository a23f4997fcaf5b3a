"""Protocol v1 bytes: golden streams, round trips, framing, and a fuzzed decoder."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import ProtocolError

GOLDEN = Path(__file__).parents[1] / "data" / "protocol_v1_golden.json"


def _s(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<H", len(data)) + data


def _frame(msg_type: int, payload: bytes) -> bytes:
    return struct.pack("<HHI", msg_type, 0, len(payload)) + payload


STATE = p.State(
    seq=7, episode=2, wall_ms=1_700_000_000_123, game_time_ms=5000, race_time_ms=-1500,
    flags=int(p.StateFlag.SPAWNED | p.StateFlag.GROUND_CONTACT), pos=(1.5, 2.0, -3.25),
    vel=(10.0, 0.0, -0.5), ypr=(0.25, 0.0, -0.125), front_speed=10.0, side_speed=-0.5,
    rpm=7000.0, inputs=(-1.0, 1.0, 0.0), gear=3, wheel_contact=0b1011, surfaces=(1, 1, 3, 0),
    cp_passed=2, cp_total=9, lap=0, laps_total=1, respawns=4, last_cp_time_ms=4200,
)  # fmt: skip

# Each message next to its bytes written out from the spec (docs/protocol.md) by hand.
CASES: dict[str, tuple[p.Message, bytes]] = {
    "hello": (
        p.Hello(0xFF, "tmrl2-sim/1", "simulator"),
        _frame(1, b"EVOB" + struct.pack("<HHI", 1, 0, 255) + _s("tmrl2-sim/1")
               + _s("simulator") + struct.pack("<H", 108)),
    ),
    "hello_ack": (p.HelloAck(0x13), _frame(2, b"EVOC" + struct.pack("<HHI", 1, 0, 0x13))),
    "state": (
        STATE,
        _frame(0x10, struct.pack("<IIQiiI", 7, 2, 1_700_000_000_123, 5000, -1500, 9)
               + struct.pack("<15f", 1.5, 2.0, -3.25, 10.0, 0.0, -0.5, 0.25, 0.0, -0.125,
                             10.0, -0.5, 7000.0, -1.0, 1.0, 0.0)
               + bytes([3, 0b1011, 1, 1, 3, 0]) + struct.pack("<5Hi", 2, 9, 0, 1, 4, 4200)),
    ),
    "event_checkpoint": (
        p.Event(p.EventKind.CHECKPOINT, 2, 4200, 2),
        _frame(0x11, struct.pack("<HIiI", 2, 2, 4200, 2)),
    ),
    "event_map_loaded": (
        p.Event(p.EventKind.MAP_LOADED, 3, 0, 0, "alpine"),
        _frame(0x11, struct.pack("<HIiI", 5, 3, 0, 0) + _s("alpine")),
    ),
    "track": (
        p.Track(9, "uid1", "Name", 31000, (p.Landmark(1, 1, p.LandmarkKind.CHECKPOINT,
                (1.0, 2.0, 3.0)),), ((0.0, 0.0, 0.0), (1.0, 0.0, 0.0)), 12.0),
        _frame(0x20, struct.pack("<I", 9) + _s("uid1") + _s("Name") + struct.pack("<iH", 31000, 1)
               + struct.pack("<HHB3f", 1, 1, 1, 1.0, 2.0, 3.0) + struct.pack("<fI", 12.0, 2)
               + struct.pack("<6f", 0, 0, 0, 1, 0, 0)),
    ),
    "frame": (p.Frame(5, 2, 1, 1, b"\x00\xff"), _frame(0x21, struct.pack("<IHHB", 5, 2, 1, 1)
                                                      + b"\x00\xff")),
    "result": (p.Result(4, p.Status.BAD_ARGS, "no"), _frame(0x30, struct.pack("<IH", 4, 3)
                                                           + _s("no"))),
    "pong": (p.Pong(1, 2, 3), _frame(0x31, struct.pack("<IQQ", 1, 2, 3))),
    "ping": (p.Ping(1, 123456789), _frame(0x100, struct.pack("<IQ", 1, 123456789))),
    "respawn": (p.Respawn(2), _frame(0x101, struct.pack("<I", 2))),
    "restart": (p.Restart(3), _frame(0x102, struct.pack("<I", 3))),
    "load_map": (p.LoadMap(4, "C:/maps/a.Map.Gbx", ""), _frame(0x103, struct.pack("<I", 4)
                                                             + _s("C:/maps/a.Map.Gbx") + _s(""))),
    "get_track": (p.GetTrack(5), _frame(0x104, struct.pack("<I", 5))),
    "set_config": (
        p.SetConfig(6, ((1, 2), (2, 500))),
        _frame(0x105, struct.pack("<IH", 6, 2) + struct.pack("<Hi", 1, 2)
               + struct.pack("<Hi", 2, 500)),
    ),
    "bye": (p.Bye(7), _frame(0x106, struct.pack("<I", 7))),
    "set_input": (p.SetInput(0, -0.5, 1.0, 0.0), _frame(0x200, struct.pack("<I3f", 0, -0.5, 1, 0))),
    "step": (p.Step(8, 5), _frame(0x201, struct.pack("<II", 8, 5))),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_bytes_match_the_spec_and_round_trip(name: str) -> None:
    msg, expected = CASES[name]
    assert p.encode(msg) == expected
    (frame,) = p.FrameReader().feed(expected)
    assert p.decode(*frame) == msg


def test_golden_file_pins_every_message() -> None:
    """The frozen hex stream that the plugin's bytes are compared with (plugin/README)."""
    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(CASES)
    for name, (msg, _) in CASES.items():
        assert p.encode(msg).hex() == golden[name], name


def test_state_is_108_bytes_and_hello_announces_it() -> None:
    assert p.STATE_SIZE == 108
    assert len(p.encode(STATE)) == p.HEADER_SIZE + 108
    assert p.Hello(0, "", "").state_size == 108


def test_reader_splits_a_stream_cut_at_every_byte() -> None:
    stream = b"".join(expected for _, expected in CASES.values())
    for cut in range(len(stream) + 1):
        reader = p.FrameReader()
        frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [p.decode(*f) for f in frames] == [msg for msg, _ in CASES.values()]
        assert reader.pending == 0


def test_newer_minor_state_with_appended_fields_still_decodes() -> None:
    payload = p.encode(STATE)[p.HEADER_SIZE :] + b"\x01\x02\x03\x04"
    assert p.decode(p.MsgType.STATE, payload) == STATE


def test_unknown_type_is_skipped_by_length() -> None:
    stream = _frame(0x7777, b"abc") + p.encode(p.Respawn(1))
    frames = p.FrameReader().feed(stream)
    assert p.decode(*frames[0]) == p.Unknown(0x7777, b"abc")
    assert p.decode(*frames[1]) == p.Respawn(1)


def test_oversize_length_truncation_and_trailing_bytes_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="1 MiB"):
        p.FrameReader().feed(struct.pack("<HHI", 0x10, 0, p.MAX_PAYLOAD + 1))
    with pytest.raises(ProtocolError, match="ends inside"):
        p.decode(p.MsgType.STATE, b"\x00" * 50)
    with pytest.raises(ProtocolError, match="unexpected bytes"):
        p.decode(p.MsgType.RESPAWN, b"\x00" * 5)
    with pytest.raises(ProtocolError, match="magic"):
        p.decode(p.MsgType.HELLO, b"XXXX" + b"\x00" * 20)
    with pytest.raises(ProtocolError, match="FRAME"):
        p.encode(p.Frame(1, 4, 4, 1, b"\x00"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_reader(data: bytes) -> None:
    try:
        for frame in p.FrameReader().feed(data):
            p.decode(*frame)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CASES)), st.data())
def test_mutated_payloads_decode_or_raise_protocol_error(name: str, data: st.DataObject) -> None:
    msg, raw = CASES[name]
    payload = bytearray(raw[p.HEADER_SIZE :])
    if payload:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(payload) - 1))
            payload[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    with contextlib.suppress(ProtocolError):
        p.decode(msg.TYPE, bytes(payload[:cut]))

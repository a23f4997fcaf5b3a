"""``tmrl2 sim serve``: the simulator behind protocol v1, driven by the worker's client."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import BridgeError, CommandFailed, VersionMismatch
from tmrl2.envs.sim.serve import ServeOptions, SimServer, serve_in_thread
from tmrl2.envs.trackmania.client import BridgeClient

pytestmark = pytest.mark.timeout(60)


def _server(**kwargs: object) -> Iterator[SimServer]:
    server, thread = serve_in_thread(ServeOptions(port=0, **kwargs))  # type: ignore[arg-type]
    yield server
    server.stop()
    thread.join(5)


@pytest.fixture
def lockstep() -> Iterator[SimServer]:
    yield from _server(lockstep=True)


@pytest.fixture
def client(lockstep: SimServer) -> Iterator[BridgeClient]:
    c = BridgeClient(port=lockstep.port, command_timeout_s=10)
    c.connect()
    yield c
    c.close()


def test_handshake_announces_the_simulator_caps(client: BridgeClient) -> None:
    assert client.hello is not None
    assert (client.hello.major, client.hello.minor) == (p.MAJOR, p.MINOR)
    assert client.caps & p.Caps.STEP and client.caps & p.Caps.SET_INPUT
    first = client.wait_state(timeout=5)
    assert first.episode == 1 and first.has(p.StateFlag.SPAWNED)
    assert first.race_time_ms == 0 and first.cp_total > 0


def test_step_with_gas_drives_the_car_and_advances_race_time(client: BridgeClient) -> None:
    start = client.wait_state()
    client.set_input(steer=0.0, gas=1.0, brake=0.0, wait=True)
    st = start
    for _ in range(40):
        st = client.step(5)
    assert st.race_time_ms == 40 * 5 * 10
    assert st.game_time_ms - start.game_time_ms == 2000
    assert st.front_speed > 10.0 and st.inputs == (0.0, 1.0, 0.0)
    moved = sum((a - b) ** 2 for a, b in zip(st.pos, start.pos, strict=True)) ** 0.5
    assert moved > 10.0
    assert st.wheel_contact == 0b1111 and st.surfaces == (1, 1, 1, 1)


def test_checkpoint_events_precede_their_state_and_respawn_returns_there(
    client: BridgeClient,
) -> None:
    client.set_input(0.0, 1.0, 0.0)
    st = client.wait_state()
    while st.cp_passed == 0:
        st = client.step(10)
        assert st.race_time_ms < 20_000, "never reached the first checkpoint"
    kinds = [e.kind for e in client.events()]
    assert kinds == [p.EventKind.EPISODE_START, p.EventKind.CHECKPOINT]
    assert st.last_cp_time_ms > 0
    client.step(50)
    client.respawn()
    after = client.wait_state(after_seq=st.seq)
    assert after.has(p.StateFlag.RESPAWN_THIS_FRAME) and after.respawns == 1
    assert after.front_speed == 0.0 and after.episode == 1
    assert [e.kind for e in client.events()] == [p.EventKind.RESPAWN]


def test_restart_starts_a_new_episode_and_wait_state_skips_old_ones(
    client: BridgeClient,
) -> None:
    client.set_input(0.0, 1.0, 0.0)
    old = client.step(100)
    client.restart()
    new = client.wait_state(episode=old.episode + 1, timeout=5)
    assert new.episode == 2 and new.race_time_ms == 0 and new.seq > old.seq
    assert any(e.kind == p.EventKind.EPISODE_START and e.episode == 2 for e in client.events())


def test_load_map_get_track_and_bad_path(client: BridgeClient, tmp_path: object) -> None:
    assert client.get_track().map_uid == "default"
    assert client.load_map("ring") == "ring"
    track = client.get_track()
    kinds = [lm.kind for lm in track.landmarks]
    assert kinds[0] == p.LandmarkKind.SPAWN and kinds[-1] == p.LandmarkKind.FINISH
    assert len(track.centerline) > 50 and track.width > 0
    events = client.events()
    assert [e.kind for e in events][-3:] == [
        p.EventKind.MAP_UNLOADED, p.EventKind.MAP_LOADED, p.EventKind.EPISODE_START
    ]  # fmt: skip
    assert events[-2].map_uid == "ring"
    with pytest.raises(CommandFailed, match="cannot load") as err:
        client.load_map("no/such/track.yaml")
    assert err.value.status == p.Status.BAD_ARGS
    assert client.get_track().map_uid == "ring"  # the loaded map stays


def test_frames_come_with_their_state(client: BridgeClient) -> None:
    client.set_config(frame_every=1)
    st = client.step(3)
    frame = client.wait_frame(after_seq=st.seq - 1)
    assert frame.seq == st.seq
    assert (frame.width, frame.height, frame.channels) == (64, 64, 1)
    assert len(frame.pixels) == 64 * 64


def test_bad_config_and_step_limits_are_refused(client: BridgeClient) -> None:
    with pytest.raises(CommandFailed, match="unknown config key"):
        client._request(p.SetConfig(99, ((77, 1),)), p.Result)
    with pytest.raises(CommandFailed, match="STREAM_EVERY"):
        client.set_config(stream_every=0)
    with pytest.raises(CommandFailed, match="ticks"):
        client._request(p.Step(98, 0), p.Result)


def test_malformed_messages_are_counted_and_the_server_keeps_serving(
    lockstep: SimServer,
) -> None:
    client = BridgeClient(port=lockstep.port)
    client.connect()
    assert client._sock is not None
    client._sock.sendall(struct.pack("<HHI", p.MsgType.STEP, 0, 2) + b"\x00\x01")  # too short
    client._sock.sendall(struct.pack("<HHI", 0x7777, 0, 3) + b"abc")  # unknown type
    assert client.ping() < 5.0  # same connection still served
    assert lockstep.counters.malformed == 1 and lockstep.counters.unknown == 1
    client._sock.sendall(struct.pack("<HHI", 0x10, 0, 1 << 30))  # framing lost: dropped
    deadline = time.monotonic() + 5
    while lockstep.counters.broken_streams == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lockstep.counters.broken_streams == 1
    client.close()
    again = BridgeClient(port=lockstep.port)
    again.connect()  # listening again after the bad client
    assert again.wait_state().episode >= 1
    again.close()


def test_client_reconnects_after_the_connection_drops(lockstep: SimServer) -> None:
    client = BridgeClient(port=lockstep.port)
    client.connect()
    client.bye()
    assert not client.connected
    assert client.ping() < 5.0  # reconnects on demand
    assert client.reconnects == 1 and lockstep.counters.clients == 2
    client.close()


def test_second_client_is_refused_while_one_is_served(client: BridgeClient,
                                                      lockstep: SimServer) -> None:  # fmt: skip
    assert client.ping() < 5.0  # the first client is being served
    other = BridgeClient(port=lockstep.port, connect_timeout_s=5)
    with pytest.raises(BridgeError, match="busy"):
        other.connect()
    assert client.ping() < 5.0


def test_version_mismatch_is_refused_with_both_versions(lockstep: SimServer) -> None:
    with socket.create_connection(("127.0.0.1", lockstep.port), timeout=5) as sock:
        reader = p.FrameReader()
        frames: list[tuple[int, bytes]] = []
        while not frames:
            frames = reader.feed(sock.recv(4096))
        assert isinstance(p.decode(*frames[0]), p.Hello)
        sock.sendall(p.encode(p.HelloAck(0, major=2, minor=0)))
        frames = []
        while not frames:
            frames = reader.feed(sock.recv(4096))
        result = p.decode(*frames[0])
        assert isinstance(result, p.Result) and result.status == p.Status.VERSION
        assert "v2.0" in result.message and "v1.0" in result.message
        assert sock.recv(4096) == b""  # closed


def test_client_names_both_versions() -> None:
    err = VersionMismatch((1, 0), (2, 3))
    assert "v1.0" in str(err) and "v2.3" in str(err) and "plugin install" in str(err)


def test_unreachable_server_error_says_what_to_check() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BridgeError, match="Developer signature mode"):
        BridgeClient(port=port, connect_timeout_s=1).connect()


def test_realtime_streams_at_the_game_pace_and_stream_every_thins_it() -> None:
    for server in _server(fps=50.0):
        client = BridgeClient(port=server.port)
        client.connect()
        client.set_input(0.0, 1.0, 0.0)
        first = client.wait_state()
        time.sleep(1.0)
        last = client.wait_state(after_seq=first.seq)
        rate = (last.seq - first.seq) / ((last.wall_ms - first.wall_ms) / 1000)
        assert 35 < rate < 65, rate
        assert last.race_time_ms > first.race_time_ms and last.front_speed > 5.0
        with pytest.raises(CommandFailed, match="lockstep"):
            client.step(1)
        client.set_config(stream_every=5)
        time.sleep(0.3)
        a = client.wait_state()
        time.sleep(1.0)
        b = client.wait_state(after_seq=a.seq)
        thinned = (b.seq - a.seq) / ((b.wall_ms - a.wall_ms) / 1000)
        assert 6 < thinned < 14, thinned
        assert b.game_time_ms - a.game_time_ms >= 700  # physics still at full rate
        client.close()


def test_record_a_reference_lap_through_the_bridge(lockstep: SimServer, tmp_path: object) -> None:
    from pathlib import Path

    import numpy as np

    from tmrl2.envs.sim.autopilot import Autopilot
    from tmrl2.envs.trackmania.record import record_game_reference

    client = BridgeClient(port=lockstep.port)
    client.connect()
    pilot = Autopilot(lockstep.env.track)
    restarted: list[bool] = []

    def drive() -> None:  # the "human" driver: restart once, then the autopilot's inputs
        if not restarted:
            restarted.append(True)
            client.restart()
        gas, brake, steer = (float(v) for v in pilot.act(lockstep.env.car.state))
        client.set_input(steer, max(gas, 0.0), max(brake, 0.0))
        client.step(5)

    out = Path(str(tmp_path)) / "lap.npy"
    count = record_game_reference(client, out, timeout_s=60, tick=drive)
    line = np.load(out)
    assert count == len(line) > 100 and line.shape[1] == 3
    travelled = np.hypot(*np.diff(line[:, [0, 2]], axis=0).T).sum()
    assert travelled > 0.9 * lockstep.env.track.length_m
    client.close()

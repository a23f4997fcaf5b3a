"""``tmrl2 sim serve`` against broken and hostile clients (issue 14): a bad LOAD_MAP or a
failing command is answered and the server keeps serving; a client trickling its handshake
holds nobody up; warnings are rate-limited."""

from __future__ import annotations

import logging
import select
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmrl2.bridge import protocol as p
from tmrl2.bridge.errors import CommandFailed
from tmrl2.cli import main
from tmrl2.envs.sim.serve import ServeOptions, SimServer, WarnLimiter, serve_in_thread
from tmrl2.envs.trackmania.client import BridgeClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[SimServer]:
    srv, thread = serve_in_thread(ServeOptions(port=0, lockstep=True, handshake_timeout_s=1.0))
    yield srv
    srv.stop()
    thread.join(5)
    assert not thread.is_alive()


@pytest.fixture
def client(server: SimServer) -> Iterator[BridgeClient]:
    c = BridgeClient(port=server.port, command_timeout_s=10)
    c.connect()
    yield c
    c.close()


@pytest.mark.parametrize(
    ("content", "name"),
    [
        ("format: tmrl2-track/1\ncenterline: [[0, 0, 0], [1, 0\n", "bad.yaml"),  # not YAML
        ("format: tmrl2-track/1\ncenterline: {a: 1}\nwidth_m: 14\n", "wrong.yaml"),
        ('{"format": "tmrl2-track/1", "centerline": ', "bad.json"),
        ("- just\n- a list\n", "list.yml"),
    ],
)
def test_load_map_of_a_malformed_track_file_is_refused_and_the_server_keeps_serving(
    client: BridgeClient, server: SimServer, tmp_path: Path, content: str, name: str
) -> None:
    bad = tmp_path / name
    bad.write_text(content)
    with pytest.raises(CommandFailed, match="cannot load") as err:
        client.load_map(str(bad), timeout=5)
    assert err.value.status == p.Status.BAD_ARGS
    assert client.ping() < 5.0  # same connection, same server
    assert client.get_track().map_uid == "default"  # the loaded map stays
    assert client.load_map("ring", timeout=10) == "ring"  # and can still change


def test_load_map_of_an_unknown_map_is_refused(client: BridgeClient) -> None:
    with pytest.raises(CommandFailed, match="nosuchmap") as err:
        client.load_map("nosuchmap", timeout=5)
    assert err.value.status == p.Status.BAD_ARGS
    assert client.ping() < 5.0


def test_a_command_that_raises_is_answered_failed_and_the_connection_goes_on(
    client: BridgeClient, server: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(req_id: int) -> p.Track:
        raise RuntimeError("a bug in the simulator")

    monkeypatch.setattr(server, "track_message", broken)
    with pytest.raises(CommandFailed, match="a bug in the simulator") as err:
        client.get_track()
    assert err.value.status == p.Status.FAILED
    assert server.counters.failed_commands == 1
    assert client.ping() < 5.0
    monkeypatch.undo()
    assert client.get_track().map_uid == "default"


def _read_hello(sock: socket.socket) -> None:
    reader = p.FrameReader()
    frames: list[tuple[int, bytes]] = []
    while not frames:
        data = sock.recv(4096)
        assert data, "closed before HELLO"
        frames = reader.feed(data)
    assert isinstance(p.decode(*frames[0]), p.Hello)


def test_a_client_trickling_its_handshake_blocks_nobody_and_is_cut_at_the_deadline(
    server: SimServer,
) -> None:
    ack = p.encode(p.HelloAck(0))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
        _read_hello(slow)
        slow.sendall(ack[:1])  # one byte of its HELLO_ACK, the rest trickles
        started = time.monotonic()
        # a well-behaved client connecting meanwhile is served at once
        good = BridgeClient(port=server.port, connect_timeout_s=3, command_timeout_s=3)
        good.connect()
        assert good.ping() < 3.0
        assert good.wait_state(timeout=3).episode >= 1
        # the slow one keeps trickling and is disconnected at its handshake deadline
        sent, closed = 1, False
        while time.monotonic() - started < 5 and not closed:
            readable, _, _ = select.select([slow], [], [], 0.2)
            if readable:
                closed = slow.recv(4096) == b""
            elif sent < len(ack) - 1:
                slow.sendall(ack[sent : sent + 1])
                sent += 1
        assert closed, "the trickling client was never cut off"
        assert time.monotonic() - started < 3.0
    assert server.counters.handshake_timeouts == 1
    assert good.ping() < 3.0  # the served client never noticed
    good.close()


def test_the_handshake_deadline_holds_even_when_no_one_else_connects(server: SimServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
        _read_hello(silent)
        silent.settimeout(4.0)
        assert silent.recv(4096) == b""  # closed by the server after ~1 s
    deadline = time.monotonic() + 2
    while server.counters.handshake_timeouts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.counters.handshake_timeouts == 1
    again = BridgeClient(port=server.port, connect_timeout_s=3)
    again.connect()
    assert again.ping() < 3.0
    again.close()


def test_warn_limiter_logs_one_per_kind_per_period_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    limiter = WarnLimiter(logging.getLogger("test.limiter"), every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.limiter"):
        assert limiter.warn("malformed", "bad message %d", 1)
        for i in range(5):
            assert not limiter.warn("malformed", "bad message %d", i + 2)
        assert limiter.warn("broken", "framing lost")  # another kind is not held back
        now[0] += 9.9
        assert not limiter.warn("malformed", "bad message %d", 7)
        now[0] += 0.2
        assert limiter.warn("malformed", "bad message %d", 8)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "bad message 1",
        "framing lost",
        "bad message 8 (6 more like it in the last 10 s)",
    ]


def test_a_flood_of_malformed_messages_logs_one_warning(
    client: BridgeClient, server: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert client._sock is not None
    too_short = struct.pack("<HHI", p.MsgType.STEP, 0, 2) + b"\x00\x01"
    with caplog.at_level(logging.WARNING, logger="tmrl2.envs.sim.serve"):
        client._sock.sendall(too_short * 200)
        assert client.ping() < 5.0  # handled in order: every malformed one came first
    assert server.counters.malformed == 200
    warnings = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 1


def test_sim_serve_on_a_malformed_track_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("centerline: [[0, 0, 0]\n")
    with pytest.raises(ValueError, match="cannot load track"):
        SimServer(ServeOptions(port=0, track=str(bad)))
    assert main(["sim", "serve", "--port", "0", "--track", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "cannot load track" in err and "bad.yaml" in err


def test_sim_serve_on_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["sim", "serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"127.0.0.1:{port}" in err and "--port 0" in err

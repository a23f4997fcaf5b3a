"""The local launcher binds its server first (no race for the port), refuses a busy port it
was told to use in one line, stops a stalled run; clients turn refusals into one line."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tmrl2.config.load import dump_config, load_config
from tmrl2.net.codec import Message, decode
from tmrl2.net.errors import ProtocolError
from tmrl2.net.transport import ServerSocket
from tmrl2.roles.common import NeverStop, connect, new_session, refusal_message
from tmrl2.roles.launcher import DEFAULT_PORT, LaunchError, LocalRun, bind_port


def test_bind_port_rule() -> None:
    assert bind_port(load_config(None, [])) == 0  # the default: any free port
    assert bind_port(load_config(None, ["server.port=0"])) == 0
    assert bind_port(load_config(None, ["server.port=45678"])) == 45678
    assert DEFAULT_PORT == 55555


def test_server_child_binds_first_and_reports_its_port(tmp_path: Path) -> None:
    run = LocalRun(load_config(None, []), tmp_path / "run")
    try:
        port = run._start_server(dump_config(run.config))
        assert port not in (0, DEFAULT_PORT)
        with socket.socket() as probe:  # it is listening already
            probe.connect(("127.0.0.1", port))
    finally:
        run.stop()
    assert run.exit_codes()["server"] == 0


def test_a_busy_port_the_user_asked_for_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        run = LocalRun(load_config(None, [f"server.port={port}"]), tmp_path / "run")
        with pytest.raises(LaunchError) as info:
            run._start_server(dump_config(run.config))
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "server.port" in text and "\n" not in text


class _Alive:
    pid = None
    exitcode = None

    def is_alive(self) -> bool:
        return True


def test_a_run_without_new_samples_is_stopped_after_the_stall_timeout(tmp_path: Path) -> None:
    run = LocalRun(load_config(None, ["run.stall_timeout_s=0.3"]), tmp_path / "run")
    run.processes = {"trainer": _Alive(), "worker-0": _Alive()}  # type: ignore[dict-item]
    run.wait(poll_s=0.02)
    assert run.failure is not None and "no new sample" in run.failure
    assert "run.stall_timeout_s" in run.failure and run.stop_event.is_set()


def test_refusal_codes_become_one_clear_line() -> None:
    text = refusal_message(
        "tcp://h:1", "worker", "pc1", {"reason": "name held", "code": "name_taken"}
    )
    assert "unique worker.name" in text and "\n" not in text
    assert "another run" in refusal_message("a", "worker", "w", {"code": "token"})
    assert refusal_message("a", "worker", "w", {"reason": "odd"}).endswith("odd")


def test_connect_raises_the_refusal_line_and_sends_session_and_token() -> None:
    server = ServerSocket("127.0.0.1", 0)
    seen: list[Message] = []

    def refuse() -> None:
        got = server.recv(timeout_ms=5000)
        assert got is not None
        identity, frames = got
        assert identity == f"worker-pc1-{session}".encode()  # unique per process
        seen.append(decode(frames))
        server.send(identity, Message("refused", {"reason": "taken", "code": "name_taken"}, {}))

    session = new_session()
    thread = threading.Thread(target=refuse)
    thread.start()
    try:
        with pytest.raises(ProtocolError, match="unique worker.name"):
            connect(
                load_config(None, ["worker.connect_timeout_s=1.5"]),
                f"tcp://127.0.0.1:{server.port}",
                "worker",
                "pc1",
                NeverStop(),
                session=session,
                run_token="tok",
            )
    finally:
        thread.join()
        server.close()
    (hello,) = seen
    assert hello.meta["session"] == session and hello.meta["run_token"] == "tok"


def test_connect_asks_again_when_the_name_may_be_held_by_a_dead_process() -> None:
    """A worker restarted after kill -9 may find its name still held until the server sees the
    old connection close: ``name_taken`` is retried until the deadline, not fatal at once."""
    server = ServerSocket("127.0.0.1", 0)
    answered: list[str] = []

    def refuse_then_welcome() -> None:
        for kind in ("refused", "welcome"):
            got = server.recv(timeout_ms=5000)
            assert got is not None
            meta = (
                {"reason": "taken", "code": "name_taken"}
                if kind == "refused"
                else {
                    "protocol": 1,
                    "server": "test",
                }
            )
            server.send(got[0], Message(kind, meta, {}))
            answered.append(kind)

    thread = threading.Thread(target=refuse_then_welcome)
    thread.start()
    try:
        client, welcome = connect(
            load_config(None, ["worker.connect_timeout_s=10"]),
            f"tcp://127.0.0.1:{server.port}",
            "worker",
            "pc1",
            NeverStop(),
            session=new_session(),
        )
        client.close()
    finally:
        thread.join()
        server.close()
    assert answered == ["refused", "welcome"] and welcome["server"] == "test"

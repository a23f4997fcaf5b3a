"""CurveZMQ on 127.0.0.1: authorized keys get in, unknown or missing keys are refused and
logged; plaintext on a non-loopback address is refused unless explicitly allowed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from netkit import running

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.errors import SecurityError
from tmrl2.net.keys import ClientCurve, ServerCurve, check_bind, generate_keys, is_loopback
from tmrl2.net.transport import ClientSocket, ServerSocket
from tmrl2.roles.server import Server

HELLO = Message("hello", {"role": "worker", "name": "w", "protocol": PROTOCOL_VERSION})


def wait_until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_keys(tmp_path, "server")
    authorized = tmp_path / "authorized"
    generate_keys(authorized, "worker")
    (authorized / "worker.key_secret").rename(tmp_path / "worker.key_secret")
    generate_keys(tmp_path / "outsider", "intruder")
    generate_keys(tmp_path / "trainers", "trainer")
    (tmp_path / "trainers" / "trainer.key_secret").rename(tmp_path / "trainer.key_secret")
    return tmp_path


@pytest.fixture
def server(keys: Path) -> Iterator[Server]:
    config = ServerConfig(
        port=0,
        secret_key=keys / "server.key_secret",
        authorized_keys=keys / "authorized",
        trainer_keys=keys / "trainers",
    )
    server = Server(config)
    with running(server):
        yield server


def say_hello(
    server: Server,
    curve: ClientCurve | None,
    wait_ms: int = 1000,
    hello: Message = HELLO,
    identity: str = "worker-w",
) -> Message | None:
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity=identity, curve=curve)
    try:
        # the socket takes the hello only once the handshake has completed (ZMQ_IMMEDIATE):
        # a client whose key or server key is wrong never gets that far
        deadline = time.monotonic() + wait_ms / 1000
        while not client.try_send(hello):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)
        return client.recv(timeout_ms=wait_ms)
    finally:
        client.close()


def hello_answered(server: Server, curve: ClientCurve | None, wait_ms: int = 1000) -> bool:
    reply = say_hello(server, curve, wait_ms)
    return reply is not None and reply.kind == "welcome"


TRAINER_HELLO = Message("hello", {"role": "trainer", "name": "t", "protocol": PROTOCOL_VERSION})


def test_a_worker_key_may_not_act_as_the_trainer(server: Server, keys: Path) -> None:
    worker = ClientCurve.from_files(keys / "worker.key_secret", keys / "server.key")
    reply = say_hello(server, worker, 3000, TRAINER_HELLO, "trainer-t")
    assert reply is not None and reply.kind == "refused" and reply.meta["code"] == "role"
    assert "trainer_keys" in reply.meta["reason"]
    assert not server.stats.trainer_connected


def test_a_trainer_key_is_admitted_as_the_trainer_only(server: Server, keys: Path) -> None:
    trainer = ClientCurve.from_files(keys / "trainer.key_secret", keys / "server.key")
    reply = say_hello(server, trainer, 3000, TRAINER_HELLO, "trainer-t")
    assert reply is not None and reply.kind == "welcome"
    reply = say_hello(server, trainer, 3000)  # as a worker: not in authorized_keys
    assert reply is not None and reply.kind == "refused" and reply.meta["code"] == "role"


def test_a_connection_taking_a_registered_identity_with_another_key_loses_the_session(
    server: Server, keys: Path
) -> None:
    address = f"tcp://127.0.0.1:{server.port}"
    trainer_curve = ClientCurve.from_files(keys / "trainer.key_secret", keys / "server.key")
    trainer = ClientSocket(address, identity="trainer-t", curve=trainer_curve)
    worker_curve = ClientCurve.from_files(keys / "worker.key_secret", keys / "server.key")
    try:
        trainer.send(TRAINER_HELLO)
        reply = trainer.recv(timeout_ms=3000)
        assert reply is not None and reply.kind == "welcome"
        trainer.close()
        # a worker's key connects with the trainer's identity (ROUTER_HANDOVER gives it the
        # routing id) and sends trainer messages without a hello
        impostor = ClientSocket(address, identity="trainer-t", curve=worker_curve)
        try:
            impostor.send(Message("weights", {"version": 9, "updates": 0}, {}))
            wait_until(lambda: server.stats.unregistered >= 1)
            assert server.stats.weights_version == 0 and not server.stats.trainer_connected
        finally:
            impostor.close()
    finally:
        trainer.close()


def test_client_sees_its_key_refused_and_says_what_to_do(server: Server, keys: Path) -> None:
    intruder = ClientCurve.from_files(
        keys / "outsider" / "intruder.key_secret", keys / "server.key"
    )
    client = ClientSocket(
        f"tcp://127.0.0.1:{server.port}", identity="worker-x", curve=intruder, send_timeout_ms=200
    )
    try:
        client.try_send(HELLO)  # never taken: the handshake fails (ZMQ_IMMEDIATE)
        wait_until(lambda: client.auth_failed)
        with pytest.raises(SecurityError, match="refused this machine's key") as info:
            client.check_auth("keys/intruder.key")
        assert "keys/intruder.key" in str(info.value) and "authorized_keys" in str(info.value)
        with pytest.raises(SecurityError, match="refused this machine's key"):
            client.send(HELLO)  # a blocking send that cannot go names the auth failure
    finally:
        client.close()
    good = ClientSocket(
        f"tcp://127.0.0.1:{server.port}",
        identity="worker-w",
        curve=ClientCurve.from_files(keys / "worker.key_secret", keys / "server.key"),
    )
    try:
        good.send(HELLO)  # waits for the handshake, then goes
        assert good.recv(timeout_ms=3000) is not None
        assert not good.auth_failed
        good.check_auth()
    finally:
        good.close()


def test_trainer_keys_without_a_secret_key_is_an_error(keys: Path) -> None:
    with pytest.raises(SecurityError, match="trainer_keys"):
        Server(ServerConfig(port=0, trainer_keys=keys / "trainers"))


def test_authorized_key_is_welcomed(server: Server, keys: Path) -> None:
    curve = ClientCurve.from_files(keys / "worker.key_secret", keys / "server.key")
    assert hello_answered(server, curve, wait_ms=3000)
    assert server.stats.workers["w"].last_seen_s > 0 and server.stats.auth_rejected == 0


def test_unknown_key_is_rejected_counted_and_logged(
    server: Server, keys: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tmrl2.net.keys")
    intruder = ClientCurve.from_files(
        keys / "outsider" / "intruder.key_secret", keys / "server.key"
    )
    assert not hello_answered(server, intruder, wait_ms=500)
    wait_until(lambda: server.stats.auth_rejected >= 1)
    assert server.stats.messages == 0 and "w" not in server.stats.workers
    logged = [
        r.getMessage() for r in caplog.records if "unknown Curve public key" in r.getMessage()
    ]
    assert logged and intruder.public.decode() in logged[0]


def test_plaintext_client_and_wrong_server_key_get_nothing(server: Server, keys: Path) -> None:
    assert not hello_answered(server, None, wait_ms=300)
    # a client holding the wrong server key refuses the server (no man in the middle)
    wrong = ClientCurve.from_files(keys / "worker.key_secret", keys / "outsider" / "intruder.key")
    assert not hello_answered(server, wrong, wait_ms=300)
    assert server.stats.messages == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "trainer.example", "*", "::"])
def test_non_loopback_bind_without_keys_is_refused_before_binding(host: str) -> None:
    with pytest.raises(SecurityError, match="allow_insecure"):
        ServerSocket(host, 0)
    with pytest.raises(SecurityError, match="tmrl2 keys"):
        Server(ServerConfig(host=host, port=0))


def test_non_loopback_bind_needs_authorized_keys_too(keys: Path) -> None:
    curve = ServerCurve.from_files(keys / "server.key_secret", None)
    with pytest.raises(SecurityError, match="authorized_keys"):
        check_bind("0.0.0.0", curve, allow_insecure=False)
    check_bind(
        "0.0.0.0", ServerCurve.from_files(keys / "server.key_secret", keys / "authorized"), False
    )
    check_bind("0.0.0.0", None, allow_insecure=True)  # the explicit opt-out (nothing bound here)
    check_bind("127.0.0.1", None, allow_insecure=False)


def test_authorized_keys_without_a_secret_key_is_an_error(keys: Path) -> None:
    with pytest.raises(SecurityError, match="secret_key"):
        Server(ServerConfig(port=0, authorized_keys=keys / "authorized"))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback

"""Config distribution: the server refuses a hello whose config hash differs (naming both
hashes), accepts a hello without one, and sends its hash and the run's config in welcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from netkit import running

from tmrl2.config.load import config_hash, dump_config, load_config
from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.transport import ClientSocket
from tmrl2.roles.server import Server

CONFIG = load_config()
HASH = config_hash(CONFIG)


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server(ServerConfig(port=0), config_hash=HASH, run_config=dump_config(CONFIG))
    with running(server):
        yield server


def say_hello(server: Server, role: str, **extra: object) -> Message:
    client = ClientSocket(f"tcp://127.0.0.1:{server.port}", identity=f"{role}-x")
    try:
        meta = {"role": role, "name": "x", "protocol": PROTOCOL_VERSION, **extra}
        client.send(Message("hello", meta))
        reply = client.recv(timeout_ms=2000)
        assert reply is not None
        return reply
    finally:
        client.close()


@pytest.mark.parametrize("role", ["worker", "trainer"])
def test_other_config_hash_is_refused_naming_both(server: Server, role: str) -> None:
    other = config_hash(load_config(overrides=["env.lidar_beams=7"]))
    assert other != HASH
    reply = say_hello(server, role, config_hash=other)
    assert reply.kind == "refused"
    assert other in reply.meta["reason"] and HASH in reply.meta["reason"]
    assert "config hash" in reply.meta["reason"]
    assert server.stats.refused == 1 and not server.stats.workers


def test_same_hash_or_no_hash_is_welcomed_with_the_run_config(server: Server) -> None:
    for extra in ({"config_hash": HASH}, {}):
        reply = say_hello(server, "worker", **extra)
        assert reply.kind == "welcome"
        assert reply.meta["config_hash"] == HASH
        assert load_config(data=reply.meta["config"]) == CONFIG


def test_other_protocol_is_refused_naming_both_versions(server: Server) -> None:
    reply = say_hello(server, "worker", protocol=PROTOCOL_VERSION + 7)
    assert reply.kind == "refused"
    assert f"client protocol {PROTOCOL_VERSION + 7}" in reply.meta["reason"]
    assert f"server protocol {PROTOCOL_VERSION}" in reply.meta["reason"]

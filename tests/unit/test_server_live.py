"""``tmrl2 server``'s live counters: one redrawn line on a terminal, log lines otherwise."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from netkit import FakeServerTransport, box_chunk

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.roles.server import Server
from tmrl2.roles.server_live import run_with_status, status_line


class StopAfter:
    """Set after ``n`` checks (each check is one serve round)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0


def busy_server() -> Server:
    fake = FakeServerTransport()
    server = Server(ServerConfig(port=0, worker_credit=1), transport=fake)
    hello = {"role": "worker", "name": "w", "protocol": PROTOCOL_VERSION}
    fake.push(b"w", Message("hello", hello))
    fake.push(b"w", box_chunk(1.0))
    fake.push(b"w", box_chunk(2.0))  # beyond its credit
    fake.push(b"x", Message("ping"))  # no session
    return server


def test_status_line_names_every_counter() -> None:
    server = busy_server()
    server.serve_once(0)
    line = status_line(server.stats, 3725.0, 1234.0)
    assert line.startswith("server 1:02:05 | trainer no | workers 1 | in 5 (+1.2k/s) out 0")
    for part in ("over-credit 1", "rejected 0", "malformed 1", "refused 0", "auth 0", "v0"):
        assert part in line


def test_live_line_is_redrawn_in_place() -> None:
    out = io.StringIO()
    run_with_status(busy_server(), StopAfter(5), live=True, period_s=0.0, stream=out, poll_ms=0)
    text = out.getvalue()
    assert text.count("\r\x1b[2K") >= 2 and text.endswith("\n") and "over-credit 1" in text


def test_without_a_tty_it_logs_periodically(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tmrl2.roles.server_live")
    out = io.StringIO()
    run_with_status(busy_server(), StopAfter(3), stream=out, log_period_s=0.0, poll_ms=0)
    assert out.getvalue() == ""  # StringIO is not a TTY
    assert sum("workers 1" in r.getMessage() for r in caplog.records) >= 2


def test_it_stops_when_asked() -> None:
    stop = threading.Event()
    stop.set()
    run_with_status(busy_server(), stop, live=False)

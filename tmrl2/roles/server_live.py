"""``tmrl2 server``'s counters on one live line (a TTY) or periodic log lines (otherwise).

The operator of a standalone server sees at a glance whether the trainer is there, how many
workers are, what flows and what is refused::

    server 0:12:41 | trainer yes | workers 8 | in 1.2M (+3,1k/s) out 1.2M | dropped 0
    over-credit 0 | rejected 0 | malformed 0 | refused 2 | auth 1 | weights v14

On a terminal the line is redrawn in place every ``period_s``; when stdout is not a terminal
(a service log, a pipe) a plain log line is written every ``log_period_s`` instead, so a log
file is not flooded.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from tmrl2.roles.server import Server, StopFlag
from tmrl2.roles.server_stats import ServerStats

__all__ = ["run_with_status", "status_line"]

log = logging.getLogger(__name__)


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def status_line(stats: ServerStats, elapsed_s: float, rate_per_s: float | None = None) -> str:
    """One line of the server's counters (``rate_per_s``: samples in per second lately)."""
    rate = "" if rate_per_s is None else f" (+{_count(rate_per_s)}/s)"
    return (
        f"server {_clock(elapsed_s)} | trainer {'yes' if stats.trainer_connected else 'no'} | "
        f"workers {stats.workers_connected} | in {_count(stats.samples_in)}{rate} "
        f"out {_count(stats.samples_forwarded)} | dropped {stats.chunks_dropped} | "
        f"over-credit {stats.over_credit} | rejected {stats.rejected} | "
        f"malformed {stats.malformed} | refused {stats.refused} | auth {stats.auth_rejected} | "
        f"weights v{stats.weights_version}"
    )


def run_with_status(
    server: Server,
    stop: StopFlag,
    live: bool | None = None,
    *,
    period_s: float = 1.0,
    log_period_s: float = 10.0,
    stream: TextIO | None = None,
    poll_ms: int = 50,
) -> None:
    """Serve until ``stop.is_set()``, showing the counters.

    Args:
        server: the server (bound).
        stop: checked at least every ``poll_ms``.
        live: redraw one line in place every ``period_s``; None: when ``stream`` is a TTY.
            Otherwise a log line (logger ``tmrl2.roles.server_live``) every ``log_period_s``.
        stream: where the live line goes (default stdout).
    """
    out = stream if stream is not None else sys.stdout
    if live is None:
        live = out.isatty()
    every = period_s if live else log_period_s
    start = last = time.monotonic()
    last_in = server.stats.samples_in
    shown = False
    try:
        while not stop.is_set():
            server.serve_once(poll_ms)
            now = time.monotonic()
            if now - last < every:
                continue
            rate = (server.stats.samples_in - last_in) / (now - last)
            last, last_in = now, server.stats.samples_in
            line = status_line(server.stats, now - start, rate)
            if live:
                out.write("\r\x1b[2K" + line)
                out.flush()
                shown = True
            else:
                log.info("%s", line)
    finally:
        if shown:
            out.write("\n")
            out.flush()

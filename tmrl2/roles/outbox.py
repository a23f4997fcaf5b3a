"""The trainer's outgoing messages, coalesced: it never blocks on, or dies of, a server away.

Credit, ``state`` and weights are periodic: only the latest of each matters. They wait here
and go out with ``try_send`` (never blocking) whenever the socket has room; while the server
is away, owed credit adds up, a newer state or weights replace the pending ones (one
message each when it is back, not a queue of stale ones), and the trainer keeps training.
"""

from __future__ import annotations

import time
from typing import Any

from tmrl2.contracts import ClientTransport
from tmrl2.net.codec import Message
from tmrl2.roles.pacing import Clock, WaitLog


class Outbox:
    """Pending credit, state and weights of the trainer (module docstring)."""

    def __init__(self, address: str, clock: Clock = time.monotonic) -> None:
        self.credit = 0
        self.state: Message | None = None
        self.weights: Message | None = None
        self.address = address
        self._blocked = WaitLog("trainer cannot send to the server", clock)
        self.sent: dict[str, int] = {"credit": 0, "state": 0, "weights": 0}
        """Messages sent, by kind (for tests and the log)."""

    def owe_credit(self, n: int) -> None:
        self.credit += n

    def reset_credit(self, n: int) -> None:
        """A new server session: earlier credit is void, it starts over at ``n``."""
        self.credit = n

    def put_state(self, meta: dict[str, Any]) -> None:
        self.state = Message("state", meta, {})

    def put_weights(self, msg: Message) -> None:
        self.weights = msg

    @property
    def pending(self) -> bool:
        return bool(self.credit) or self.state is not None or self.weights is not None

    def flush(self, transport: ClientTransport) -> None:
        """Send what the socket takes now; keep the rest for the next call."""
        if self.credit and transport.try_send(Message("credit", {"n": self.credit}, {})):
            self.credit = 0
            self.sent["credit"] += 1
        if self.state is not None and transport.try_send(self.state):
            self.state = None
            self.sent["state"] += 1
        if self.weights is not None and transport.try_send(self.weights):
            self.weights = None
            self.sent["weights"] += 1
        if self.pending:
            self._blocked.waiting(
                lambda: (
                    f"the send queue to {self.address} is full (the server is away or "
                    "stalled); training continues and the latest weights, state and credit go "
                    "out when it is back"
                )
            )
        else:
            self._blocked.done()

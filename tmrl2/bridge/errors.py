"""Errors of the game bridge. Each message says what to check, not only what failed."""

from __future__ import annotations


class BridgeError(Exception):
    """Anything that went wrong between a worker and the game (or the simulator server)."""


class ProtocolError(BridgeError):
    """Bytes that do not follow protocol v1: bad length, bad magic, truncated field."""


class VersionMismatch(ProtocolError):
    """The two sides speak different major versions of the protocol."""

    def __init__(self, ours: tuple[int, int], theirs: tuple[int, int]) -> None:
        self.ours, self.theirs = ours, theirs
        super().__init__(
            f"protocol version mismatch: this tmrl2 speaks v{ours[0]}.{ours[1]}, the game "
            f"plugin speaks v{theirs[0]}.{theirs[1]}; install the plugin that ships with this "
            "tmrl2 (`tmrl2 plugin install`) and restart the game"
        )


class BridgeTimeout(BridgeError):
    """No answer in time from the game side."""


class CommandFailed(BridgeError):
    """A command was answered with a RESULT whose status is not OK."""

    def __init__(self, command: str, status: int, message: str) -> None:
        self.command, self.status, self.message = command, status, message
        super().__init__(f"{command} failed with status {status}: {message}")

"""The errors of the messaging layer, one hierarchy for everything under :mod:`tmrl2.net`.

::

    NetError                 base: catch this to handle any networking failure
    ├── DecodeError          a malformed message (bad header, sizes, dtypes, kinds, meta...)
    ├── ProtocolError        the peer speaks another protocol version, or refused us
    ├── NetTimeout           no answer, or the send queue stayed full, within the time allowed
    └── SecurityError        an unsafe setup refused (plaintext on a non-loopback address),
                             or a key file missing or invalid

Every message says what was wrong (and, where it helps, what to do), so that a log line is
enough to find the culprit. Encoding a message that cannot be sent (an object array, a
non-string array name) is a programming error and raises ``TypeError``/``ValueError`` instead.
"""

from __future__ import annotations

__all__ = ["DecodeError", "NetError", "NetTimeout", "ProtocolError", "SecurityError"]


class NetError(Exception):
    """Base class of every error raised by :mod:`tmrl2.net`."""


class DecodeError(NetError):
    """A received message is malformed: it is dropped, never half-used."""


class ProtocolError(NetError):
    """The peer speaks another protocol version, or the server refused the connection."""


class NetTimeout(NetError):
    """A peer did not answer, or a message could not be queued, within the time allowed."""


class Stopped(NetError):
    """The role was asked to stop before the server answered its hello (a clean stop)."""


class SecurityError(NetError):
    """An insecure setup was refused, or a key file is missing or malformed."""

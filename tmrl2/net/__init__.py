"""Messaging between the roles: typed messages, their wire format, ZeroMQ sockets, errors.

- :mod:`tmrl2.net.codec`: :class:`Message`, :func:`encode`, :func:`decode` (the kinds are
  documented there), :mod:`tmrl2.net.kinds` the per-kind rules;
- :mod:`tmrl2.net.transport`: :class:`ServerSocket` (ROUTER), :class:`ClientSocket` (DEALER);
- :mod:`tmrl2.net.errors`: :class:`NetError` and its subclasses.

This package knows nothing about RL and never imports torch.
"""

from tmrl2.net.codec import PROTOCOL_VERSION, Message, decode, encode
from tmrl2.net.errors import DecodeError, NetError, NetTimeout, ProtocolError
from tmrl2.net.transport import ClientSocket, SendResult, ServerSocket

__all__ = [
    "PROTOCOL_VERSION",
    "ClientSocket",
    "DecodeError",
    "Message",
    "NetError",
    "NetTimeout",
    "ProtocolError",
    "SendResult",
    "ServerSocket",
    "decode",
    "encode",
]

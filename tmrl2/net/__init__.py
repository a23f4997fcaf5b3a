"""Messaging between the roles: typed messages, their wire format, ZeroMQ sockets, errors.

- :mod:`tmrl2.net.codec`: :class:`Message`, :func:`encode`, :func:`decode` (the kinds are
  documented there), :mod:`tmrl2.net.kinds` the per-kind rules;
- :mod:`tmrl2.net.transport`: :class:`ServerSocket` (ROUTER), :class:`ClientSocket` (DEALER);
- :mod:`tmrl2.net.keys`: CurveZMQ key files (``tmrl2 keys``), authorized clients, the
  refusal to serve a non-loopback address in plaintext;
- :mod:`tmrl2.net.errors`: :class:`NetError` and its subclasses.

This package knows nothing about RL and never imports torch.
"""

from tmrl2.net.codec import PROTOCOL_VERSION, Message, decode, encode
from tmrl2.net.errors import DecodeError, NetError, NetTimeout, ProtocolError, SecurityError
from tmrl2.net.keys import ClientCurve, ServerCurve, client_curve, generate_keys
from tmrl2.net.transport import ClientSocket, SendResult, ServerSocket

__all__ = [
    "PROTOCOL_VERSION",
    "ClientCurve",
    "ClientSocket",
    "DecodeError",
    "Message",
    "NetError",
    "NetTimeout",
    "ProtocolError",
    "SecurityError",
    "SendResult",
    "ServerCurve",
    "ServerSocket",
    "client_curve",
    "decode",
    "encode",
    "generate_keys",
]

"""CurveZMQ keys: generating key pairs, loading them, checking clients, refusing unsafe binds.

Each machine (the server, every worker, the trainer) has a key pair made by ``tmrl2 keys``:
``<name>.key`` holds the public key (safe to copy anywhere) and ``<name>.key_secret`` the
public and secret keys (keep it on its machine; written with mode 0600). Both are ZeroMQ
certificate files (``zmq.auth.load_certificate`` reads them). With keys configured:

- the server (:class:`ServerCurve`) encrypts every connection and authenticates each client
  against its authorized public keys: ``authorized_keys`` (the workers') and ``trainer_keys``
  (the keys allowed to act as the trainer), each a folder of ``*.key`` files or one such
  file; the handshake admits the union of both. An unknown key fails the handshake, is
  counted in :attr:`KeyAuthenticator.rejected` and logged with the key, so the operator can
  authorize it if it is legitimate. ZAP records the admitted key (Z85 text, pyzmq's default
  user id) on every message of the connection; the server reads it from the ``User-Id``
  frame property (:meth:`~tmrl2.net.transport.ServerSocket.peer_key`) to bind roles to keys:
  a worker key saying hello as the trainer is refused;
- a client (:class:`ClientCurve`) knows the server's public key, so it talks to the real
  server only, and proves its own identity with its key pair.

Without keys, traffic is plaintext and anyone who reaches the port can send data: that is
allowed on a loopback address only; :func:`check_bind` refuses any other address unless the
user passed an explicit ``allow_insecure``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from tmrl2.net.errors import SecurityError

__all__ = [
    "ClientCurve",
    "KeyAuthenticator",
    "ServerCurve",
    "check_bind",
    "client_curve",
    "generate_keys",
    "is_loopback",
    "load_authorized_keys",
    "load_key_pair",
    "load_public_key",
]

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
Z85_KEY_CHARS = 40
"""Length of a Curve key in Z85 text (32 bytes)."""
REJECT_LOG_PERIOD_S = 10.0
"""Shortest time between two log lines about the same rejected key."""

_BANNER = (
    "#   **** Generated on {now} by tmrl2 keys ****\n"
    "#   ZeroMQ CURVE {what} certificate\n"
    "#   {advice}\n\n"
)


def generate_keys(directory: str | Path, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a new key pair: ``<directory>/<name>.key`` (public) and ``.key_secret`` (0600).

    Returns the (public, secret) paths. Raises ``FileExistsError`` rather than overwrite an
    existing pair unless ``overwrite`` (a replaced secret locks its holder out).
    """
    if not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"key name must be a plain file name, got {name!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public_path, secret_path = folder / (name + PUBLIC_SUFFIX), folder / (name + SECRET_SUFFIX)
    if not overwrite:
        for path in (public_path, secret_path):
            if path.exists():
                raise FileExistsError(f"{path} exists; pass overwrite (--force) to replace it")
    public, secret = zmq.curve_keypair()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    curve = f'curve\n    public-key = "{public.decode()}"\n'
    public_text = _BANNER.format(now=now, what="public", advice="share this file") + curve
    secret_text = (
        _BANNER.format(now=now, what="secret", advice="keep this file private")
        + curve
        + f'    secret-key = "{secret.decode()}"\n'
    )
    public_path.write_text(public_text, encoding="utf-8")
    _write_private(secret_path, secret_text)
    return public_path, secret_path


def _write_private(path: Path, text: str) -> None:
    # created 0600 from the start, never readable by others even for an instant (POSIX)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _read_certificate(path: str | Path) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise SecurityError(f"key file {str(path)!r} not found (make one with `tmrl2 keys`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"key file {str(path)!r} is not a Curve certificate: {exc}") from exc
    for key in (public, secret):
        if key is not None and len(key) != Z85_KEY_CHARS:
            raise SecurityError(f"key file {str(path)!r} holds a key of the wrong length")
    return public, secret


def load_public_key(path: str | Path) -> bytes:
    """The Z85 public key of a ``.key`` (or ``.key_secret``) file."""
    return _read_certificate(path)[0]


def load_key_pair(path: str | Path) -> tuple[bytes, bytes]:
    """The Z85 (public, secret) keys of a ``.key_secret`` file."""
    public, secret = _read_certificate(path)
    if secret is None:
        raise SecurityError(
            f"key file {str(path)!r} holds no secret key: give the {SECRET_SUFFIX} file"
        )
    return public, secret


def load_authorized_keys(path: str | Path) -> frozenset[bytes]:
    """Public keys allowed to connect: every ``*.key`` file of a folder, or one key file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*" + PUBLIC_SUFFIX))
        if not files:
            raise SecurityError(f"no *{PUBLIC_SUFFIX} files in the authorized keys folder {path}")
        return frozenset(load_public_key(file) for file in files)
    return frozenset({load_public_key(path)})


@dataclass(frozen=True)
class ServerCurve:
    """The server's Curve keys and the clients it accepts."""

    public: bytes
    secret: bytes
    authorized: frozenset[bytes] | None
    """Worker public keys accepted; None accepts any client that knows the server's key."""
    trainers: frozenset[bytes] | None = None
    """Public keys allowed to act as the trainer; None: none is (unless ``authorized`` is
    None too: then any key may take any role)."""

    @classmethod
    def from_files(
        cls,
        secret_key: str | Path,
        authorized_keys: str | Path | None,
        trainer_keys: str | Path | None = None,
    ) -> ServerCurve:
        public, secret = load_key_pair(secret_key)
        authorized = None if authorized_keys is None else load_authorized_keys(authorized_keys)
        trainers = None if trainer_keys is None else load_authorized_keys(trainer_keys)
        return cls(public, secret, authorized, trainers)

    @property
    def admitted(self) -> frozenset[bytes] | None:
        """Keys the handshake lets in: workers and trainers; None: any key."""
        if self.authorized is None:
            return None
        return self.authorized | (self.trainers or frozenset())

    def may_act_as(self, role: str, key: str | bytes | None) -> bool:
        """Whether the client holding the Z85 public ``key`` may say hello as ``role``:
        a trainer needs a key of ``trainers`` (any key when neither ``trainers`` nor
        ``authorized`` is set: no client authentication at all), a worker one of
        ``authorized`` (any key when it is None)."""
        if isinstance(key, str):
            key = key.encode("ascii", "replace")
        if role == "trainer":
            if self.trainers is None:
                return self.authorized is None
            return key in self.trainers
        return self.authorized is None or key in self.authorized


@dataclass(frozen=True)
class ClientCurve:
    """A client's Curve key pair and the server's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, secret_key: str | Path, server_key: str | Path) -> ClientCurve:
        public, secret = load_key_pair(secret_key)
        return cls(public, secret, load_public_key(server_key))


def client_curve(
    server_key: str | Path | None, secret_key: str | Path | None
) -> ClientCurve | None:
    """A client's keys from its two config fields; None when both are unset (plaintext)."""
    if server_key is None and secret_key is None:
        return None
    if server_key is None or secret_key is None:
        raise SecurityError(
            "Curve security needs both server_key (the server's .key file) and secret_key "
            "(this machine's .key_secret file); one of them is unset"
        )
    return ClientCurve.from_files(secret_key, server_key)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a hostname or "*": may resolve to anything
        return False


def check_bind(host: str, curve: ServerCurve | None, allow_insecure: bool) -> None:
    """Refuse to serve a non-loopback ``host`` without keys and authorized clients, unless
    ``allow_insecure``."""
    if is_loopback(host) or allow_insecure:
        return
    if curve is None:
        raise SecurityError(
            f"refusing to bind {host} without Curve keys: anyone who reaches this port could "
            "feed the trainer. Make keys with `tmrl2 keys server worker trainer`, set "
            "server.secret_key and server.authorized_keys (see docs/networking.md), or set "
            "server.allow_insecure: true on a network you trust"
        )
    if curve.admitted is None:
        raise SecurityError(
            f"refusing to bind {host} with Curve keys but no server.authorized_keys: any "
            "client knowing the server's public key could connect. Set authorized_keys, or "
            "server.allow_insecure: true"
        )


class KeyAuthenticator:
    """ZAP handler of a context: accepts authorized client keys, logs and counts the others.

    Runs pyzmq's :class:`ThreadAuthenticator` (a thread answering ZAP requests); sockets of
    ``context`` with ``curve_server`` set are checked by it during their handshakes.
    """

    def __init__(
        self, context: zmq.Context[zmq.Socket[bytes]], authorized: frozenset[bytes] | None
    ):
        self.authorized = authorized
        self.rejected = 0
        """Handshakes refused because the client's key is not authorized."""
        self._last_log: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._thread = ThreadAuthenticator(context, log=logging.getLogger("zmq.auth"))
        self._thread.start()
        if authorized is None:
            self._thread.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
        else:
            self._thread.configure_curve_callback(domain="*", credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP decision for a client's Z85 public ``key`` (called from the ZAP thread)."""
        if self.authorized is None or key in self.authorized:
            return True
        with self._lock:
            self.rejected += 1
            now = time.monotonic()
            if now - self._last_log.get(key, -REJECT_LOG_PERIOD_S) >= REJECT_LOG_PERIOD_S:
                if len(self._last_log) > 4096:
                    self._last_log.clear()
                self._last_log[key] = now
                log.warning(
                    "rejected a client with an unknown Curve public key %s (%d rejected so "
                    "far): copy its .key file into the authorized keys to let it in",
                    key.decode(errors="replace"),
                    self.rejected,
                )
        return False

    def stop(self) -> None:
        """Stop the ZAP thread (before the context is terminated)."""
        if self._thread.is_alive():
            self._thread.stop()

"""Pieces of the chaos benchmark (``bench_chaos.py``): role entry points with ledgers, the
hostile peer, and the sample accounting.

Role entry points: ``python benchmarks/chaoskit.py ROLE LEDGER_DIR TMRL2_ARGS...`` runs the
ordinary command line (``tmrl2 ROLE TMRL2_ARGS...``) after hooking stable APIs so that the
benchmark can count what the product may not (yet) report, without product changes:

- worker: :meth:`ClientSocket.send` (and ``try_send`` where it exists) appends one line per
  chunk (session, seq, n, time) to a per-process ledger *before* the chunk goes out, with one
  ``write`` on an ``O_APPEND`` descriptor: a SIGKILL loses nothing of the ledger (the kernel has
  the bytes), so a chunk in a ledger and nowhere else was lost in flight. Chunks without the
  contract's ``session``/``seq``/``sent`` meta (docs/protocol.md) get them here.
- trainer: :meth:`ClientSocket.recv` logs every chunk it returns (what reached the trainer),
  and the progress reporter's metrics go to the ledger each report (counters per process,
  which survive a kill -9 of the trainer, unlike its checkpoint's).
- server: :meth:`Server.serve_once` writes the server's counters (``ServerStats``, whatever
  fields it has) every 0.5 s, so a killed server's counts are known up to its last 0.5 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

SESSION = uuid.uuid4().hex[:16]
"""This process's session, for chunks the product does not stamp itself."""
STATS_EVERY_S = 0.5
HOSTILE_PREFIX = "hostile"
"""Worker name prefix of the hostile peer's registered identities."""


# ----------------------------------------------------------------------------- ledgers
class Ledger:
    """Append-only JSON lines, one ``write`` each (kill -9 safe once written)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """Records of one ledger; a torn last line (killed mid-write) is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _hook_worker(ledger: Ledger) -> None:
    from tmrl2.net.transport import ClientSocket

    state = {"seq": 0, "sent": 0}

    def stamp(msg: Any) -> dict[str, Any]:
        meta = msg.meta
        n = int(meta.get("n", 0))
        state["seq"] += 1
        state["sent"] += n
        meta.setdefault("session", SESSION)
        meta.setdefault("seq", state["seq"])
        meta.setdefault("sent", state["sent"])
        return {
            "session": meta["session"],
            "seq": int(meta["seq"]),
            "n": n,
            "worker": meta.get("worker"),
        }

    def wrap(original: Any, returns_ok: bool) -> Any:
        def hooked(self: Any, msg: Any, *args: Any, **kwargs: Any) -> Any:
            if msg.kind != "chunk":
                return original(self, msg, *args, **kwargs)
            record = stamp(msg)
            ledger.write({"ev": "send", "t": time.time(), **record})
            try:
                result = original(self, msg, *args, **kwargs)
            except BaseException:
                ledger.write({"ev": "unsent", "t": time.time(), **record})
                raise
            if returns_ok and result is False:
                ledger.write({"ev": "unsent", "t": time.time(), **record})
            return result

        return hooked

    ClientSocket.send = wrap(ClientSocket.send, False)  # type: ignore[method-assign]
    if hasattr(ClientSocket, "try_send"):
        ClientSocket.try_send = wrap(ClientSocket.try_send, True)  # type: ignore[method-assign]


def _hook_trainer(ledger: Ledger) -> None:
    from tmrl2.net.transport import ClientSocket
    from tmrl2.telemetry.progress import ProgressReporter

    recv = ClientSocket.recv

    def hooked_recv(self: Any, *args: Any, **kwargs: Any) -> Any:
        msg = recv(self, *args, **kwargs)
        if msg is not None and msg.kind == "chunk":
            meta = msg.meta
            ledger.write(
                {
                    "ev": "recv",
                    "t": time.time(),
                    "worker": meta.get("worker"),
                    "session": meta.get("session"),
                    "seq": meta.get("seq"),
                    "n": int(meta.get("n", 0)),
                }
            )
        return msg

    report = ProgressReporter.report

    def hooked_report(self: Any, metrics: dict[str, Any]) -> None:
        plain = {k: v for k, v in metrics.items() if isinstance(v, int | float | type(None))}
        ledger.write({"ev": "metrics", "t": time.time(), **plain})
        report(self, metrics)

    ClientSocket.recv = hooked_recv  # type: ignore[method-assign]
    ProgressReporter.report = hooked_report  # type: ignore[method-assign]


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return str(obj)


def _hook_server(ledger: Ledger) -> None:
    import msgpack

    from tmrl2.net.transport import ServerSocket
    from tmrl2.roles.server import Server

    recv = ServerSocket.recv

    def hooked_recv(self: Any, *args: Any, **kwargs: Any) -> Any:
        item = recv(self, *args, **kwargs)
        if item is not None:
            try:  # the header only: which chunk arrived (malformed ones are not chunks here)
                header = msgpack.unpackb(item[1][0].bytes, raw=False)
                if header.get("kind") == "chunk":
                    meta = header["meta"]
                    record = {"worker": meta.get("worker"), "session": meta.get("session")}
                    record |= {"seq": meta.get("seq"), "n": int(meta.get("n", 0))}
                    ledger.write({"ev": "arrive", "t": time.time(), **record})
            except Exception:  # noqa: BLE001 - garbage is the server's business, not ours
                pass
        return item

    serve_once = Server.serve_once
    last = [0.0]

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = serve_once(self, *args, **kwargs)
        now = time.time()
        if now - last[0] >= STATS_EVERY_S:
            last[0] = now
            ledger.write({"ev": "stats", "t": now, "stats": _plain(self.stats)})
        return result

    ServerSocket.recv = hooked_recv  # type: ignore[method-assign]
    Server.serve_once = hooked  # type: ignore[method-assign]


def role_main(argv: list[str]) -> int:
    """``chaoskit.py ROLE LEDGER_DIR ARGS...``: the CLI role with its ledger hooks."""
    role, ledger_dir, *rest = argv
    index = rest[rest.index("--index") + 1] if "--index" in rest else ""
    name = f"{role}-{index}" if index else role
    ledger = Ledger(Path(ledger_dir) / f"{name}.{os.getpid()}.jsonl")
    ledger.write({"ev": "start", "t": time.time(), "pid": os.getpid(), "role": role})
    {"worker": _hook_worker, "trainer": _hook_trainer, "server": _hook_server}[role](ledger)
    # a benchmark started in the background of a non-interactive shell passes SIGINT on as
    # ignored, and Python then keeps it ignored: the Ctrl-C kills would test nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from tmrl2.cli import main

    return main([role, *rest])


# ----------------------------------------------------------------------------- hostile peer
HOSTILE_KINDS = ("garbage", "bad_role", "bad_token", "nan_chunk", "bad_shape", "oversized", "flood")


class HostilePeer(threading.Thread):
    """A raw ZeroMQ DEALER on the server's port sending what a careless or hostile local
    process could: undecodable frames, hellos with a bad role or token (or config hash),
    chunks with NaN values or wrong shapes, messages over ``server.max_message_bytes``, and
    floods (pings, hellos and chunks beyond credit) at ``rate`` messages per second."""

    def __init__(self, address: str, config: Any, rate: float, seed: int) -> None:
        super().__init__(daemon=True, name="hostile-peer")
        self.address, self.config, self.rate = address, config, rate
        self.rng = np.random.default_rng(seed)
        self.stop_event = threading.Event()
        self.sent: Counter[str] = Counter()
        self.chunk_samples = 0
        """Transitions in the chunk messages it sent (all kinds)."""
        self.errors = 0
        self._seq = 0

    def _template(self) -> dict[str, np.ndarray]:
        from tmrl2.envs.factory import build_env
        from tmrl2.roles.chunks import ChunkBuilder

        env = build_env(self.config)
        steps = self.config.worker.chunk_steps
        builder = ChunkBuilder(
            env.observation_space,
            env.action_space,  # type: ignore[arg-type]
            steps,
            compact=self.config.worker.compact_frames,
        )
        obs, _ = env.reset(seed=1)
        for _ in range(steps):
            action = env.action_space.sample()
            nxt, reward, term, trunc, _ = env.step(action)
            builder.add(obs, action, float(reward), bool(term), bool(trunc), nxt)
            obs = nxt
        env.close()
        return builder.take()

    def _hello(self, **extra: Any) -> Any:
        from tmrl2.config.load import config_hash
        from tmrl2.net.codec import PROTOCOL_VERSION, Message

        meta: dict[str, Any] = {
            "role": "worker",
            "name": f"{HOSTILE_PREFIX}-0",
            "protocol": PROTOCOL_VERSION,
            "config_hash": config_hash(self.config),
            "session": SESSION,
        }
        token = getattr(self.config.server, "run_token", None)
        if token:
            meta["run_token"] = token
        meta.update(extra)
        return Message("hello", meta, {})

    def _raw(self, msg: Any, arrays: dict[str, np.ndarray] | None = None, **meta: Any) -> Any:
        """Frames of ``msg`` with ``meta`` patched and the array frames replaced by ``arrays``
        (same names and dtypes, any shape), past the sender-side checks of ``encode``."""
        import msgpack

        from tmrl2.net.codec import encode

        frames = encode(msg)
        header = msgpack.unpackb(frames[0], raw=False)
        header["meta"].update(meta)
        if arrays is not None:
            for spec in header["arrays"]:
                spec[2] = list(arrays[spec[0]].shape)
            data = [np.ascontiguousarray(arrays[spec[0]]).tobytes() for spec in header["arrays"]]
            frames = [frames[0], *data]
        return [msgpack.packb(header, use_bin_type=True), *frames[1:]]

    def _chunk(self, good: dict[str, np.ndarray], arrays: dict[str, np.ndarray]) -> Any:
        from tmrl2.net.codec import Message

        n = int(good["reward"].shape[0])
        self._seq += 1
        meta = {
            "worker": f"{HOSTILE_PREFIX}-0",
            "policy_version": 0,
            "n": n,
            "episodes": [],
            "session": SESSION,
            "seq": self._seq,
            "sent": self._seq * n,
        }
        return self._raw(Message("chunk", meta, good), arrays)

    def run(self) -> None:
        import zmq

        from tmrl2.net.codec import encode

        good = self._template()
        nan = {k: (np.full_like(v, np.nan) if v.dtype.kind == "f" else v) for k, v in good.items()}
        shape = {k: (v[..., :-1] if v.ndim > 1 else v) for k, v in good.items()}
        limit = int(self.config.server.max_message_bytes)
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.connect(self.address)
        period = 1.0 / max(self.rate, 1e-6)
        next_t = time.monotonic()
        hello_every, last_hello = 5.0, -10.0
        try:
            while not self.stop_event.is_set():
                if time.monotonic() - last_hello > hello_every:  # (re)register the identity
                    self._send(sock, encode(self._hello()), "hello")
                    last_hello = time.monotonic()
                kind = HOSTILE_KINDS[int(self.rng.integers(len(HOSTILE_KINDS)))]
                try:
                    self._one(sock, kind, good, nan, shape, limit)
                except Exception:  # noqa: BLE001 - a bug here must not end the benchmark
                    self.errors += 1
                while True:  # read and ignore what the server answers
                    try:
                        sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                next_t += period
                self.stop_event.wait(max(0.0, next_t - time.monotonic()))
        finally:
            sock.close(linger=0)
            context.term()

    def _one(self, sock: Any, kind: str, good: Any, nan: Any, shape: Any, limit: int) -> None:
        from tmrl2.net.codec import Message, encode

        if kind == "garbage":
            self._send(sock, [self.rng.bytes(int(self.rng.integers(1, 512)))], kind)
        elif kind == "bad_role":
            role = str(self.rng.choice(["admin", "", "server", "Trainer"]))
            self._send(sock, self._raw(self._hello(), role=role), kind)
        elif kind == "bad_token":
            hello = self._raw(self._hello(), run_token="not-this-run", config_hash="0" * 16)
            self._send(sock, hello, kind)
        elif kind in ("nan_chunk", "bad_shape"):
            arrays = nan if kind == "nan_chunk" else shape
            if self._send(sock, self._chunk(good, arrays), kind):
                self.chunk_samples += int(good["reward"].shape[0])
        elif kind == "oversized":
            self._send(sock, [b"\0" * (limit + 4096)], kind)
        else:  # flood: pings, hellos and valid chunks beyond any credit, at once
            for i in range(200):  # hellos (rate limit), pings, then chunks beyond credit
                if i < 20:
                    self._send(sock, encode(self._hello()), kind)
                elif i < 180:
                    self._send(sock, encode(Message("ping")), kind)
                elif self._send(sock, self._chunk(good, good), kind):
                    self.chunk_samples += int(good["reward"].shape[0])

    def _send(self, sock: Any, frames: Any, kind: str) -> bool:
        import zmq

        try:
            sock.send_multipart(list(frames), zmq.NOBLOCK)
        except zmq.ZMQError:
            self.errors += 1
            return False
        self.sent[kind] += 1
        return True

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


# ----------------------------------------------------------------------------- accounting
LOSS_WORDS = re.compile(r"(drop|reject|lost|over_credit|invalid|nonfinite)")
NOT_SAMPLES = re.compile(r"auth|refused|malformed|messages|bytes")
"""Counters that name a loss but count connections or messages, not experience."""


def loss_fields(stats: dict[str, Any]) -> dict[str, int]:
    """Top-level integer counters whose names say a loss of experience (dropped, rejected,
    lost, over credit, ...)."""
    return {
        k: int(v)
        for k, v in stats.items()
        if LOSS_WORDS.search(k)
        and not NOT_SAMPLES.search(k)
        and isinstance(v, int)
        and not isinstance(v, bool)
    }


def to_samples(fields: dict[str, int], chunk_steps: int) -> tuple[int, list[str]]:
    """Counters in transitions: a ``samples``/``rows``/``transitions`` field as is, a chunk
    count times ``chunk_steps`` (an upper bound: partial chunks are smaller). Returns the
    total and how each field was read."""
    total, how = 0, []
    for key, value in sorted(fields.items()):
        if re.search(r"samples|rows|transitions", key):
            total += value
            how.append(f"{key}={value}")
        else:
            total += value * chunk_steps
            how.append(f"{key}={value} chunks (x{chunk_steps})")
    return total, how


def _is_hostile(worker: Any) -> bool:
    return str(worker or "").startswith(HOSTILE_PREFIX)


def load_run(ledger_dir: Path) -> dict[str, Any]:
    """All ledgers of a run: chunks sent (workers), arrived (each server process) and
    received (trainer), trainer metrics and server stats by process."""
    sends: dict[tuple[Any, Any], dict[str, Any]] = {}
    arrivals: dict[tuple[Any, Any], dict[str, Any]] = {}
    recvs: dict[tuple[Any, Any], dict[str, Any]] = {}
    hostile_arrivals: dict[tuple[Any, Any], dict[str, Any]] = {}
    hostile_recvs: dict[tuple[Any, Any], dict[str, Any]] = {}
    metrics: dict[int, list[dict[str, Any]]] = defaultdict(list)
    stats: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(ledger_dir.glob("*.jsonl")):
        pid = int(path.name.split(".")[-2])
        for rec in read_ledger(path):
            ev, key = rec.get("ev"), (rec.get("session"), rec.get("seq"))
            rec["pid"] = pid
            if ev == "send":
                sends[key] = rec
            elif ev == "unsent":
                sends.pop(key, None)
            elif ev == "arrive":
                (hostile_arrivals if _is_hostile(rec.get("worker")) else arrivals)[key] = rec
            elif ev == "recv":
                (hostile_recvs if _is_hostile(rec.get("worker")) else recvs).setdefault(key, rec)
            elif ev == "metrics":
                metrics[pid].append(rec)
            elif ev == "stats":
                stats[pid].append(rec)
    hostile_missing: Counter[int] = Counter()
    for key, rec in hostile_arrivals.items():
        if key not in hostile_recvs:
            hostile_missing[rec["pid"]] += int(rec["n"])
    return {
        "sends": sends,
        "arrivals": arrivals,
        "recvs": recvs,
        "hostile_recv": sum(int(r["n"]) for r in hostile_recvs.values()),
        "hostile_missing": dict(hostile_missing),
        "metrics": dict(metrics),
        "stats": dict(stats),
    }


def server_counted(run: dict[str, Any], chunk_steps: int) -> dict[int, int]:
    """Per server process: the transitions its counters say it lost (its last record)."""
    out = {}
    for pid, recs in run["stats"].items():
        out[pid] = to_samples(loss_fields(recs[-1]["stats"]), chunk_steps)[0]
    return out


def attribute(
    run: dict[str, Any], events: list[dict[str, Any]], chunk_steps: int
) -> dict[str, int]:
    """Where the chunks of the worker ledgers went, in transitions.

    ``events``: the driver's kills (``t``, ``role`` of ``server``/``trainer``/``worker-i``,
    ``pid``) and the final stop (role ``final``). A chunk the trainer received is
    ``received``. One that reached a server process P but not the trainer was dropped by P:
    P's loss counters (less the hostile peer's chunks among them) are ``counted_by_server``;
    the rest of P's missing chunks were in P's queue or on their way to the trainer when P
    or the trainer was killed (``lost_server``/``lost_trainer``), or, if neither was killed
    in P's life, ``unexplained_at_server``. A chunk that reached no server was lost in the
    worker (killed: ``lost_worker``; stopped at the end: ``lost_final``) or on its way to a
    killed server (``lost_server``), whichever came first after it was sent."""
    sends, arrivals, recvs = run["sends"], run["arrivals"], run["recvs"]
    ordered = sorted(events, key=lambda e: e["t"])
    out: Counter[str] = Counter()
    missing_at: Counter[int] = Counter()
    for key, rec in sends.items():
        n = int(rec["n"])
        out["sent"] += n
        if key in recvs:
            out["received"] += n
        elif key in arrivals:
            missing_at[arrivals[key]["pid"]] += n
        else:
            for event in ordered:
                own = event["role"].startswith("worker") and event.get("pid") == rec["pid"]
                if event["t"] >= rec["t"] and (own or event["role"] in ("server", "final")):
                    out[f"lost_{event['role'].split('-')[0]}"] += n
                    break
            else:
                out["in_flight_at_end"] += n
    counted = server_counted(run, chunk_steps)
    starts = {pid: recs[0]["t"] for pid, recs in run["stats"].items()}
    killed_servers = {e["pid"]: e["t"] for e in events if e["role"] == "server" and "pid" in e}
    trainer_kills = [e["t"] for e in events if e["role"] == "trainer" and "pid" in e]
    for pid in set(missing_at) | set(counted):
        real = max(0, counted.get(pid, 0) - run["hostile_missing"].get(pid, 0))
        out["counted_by_server"] += real
        rest = missing_at[pid] - real
        if rest <= 0:
            out["server_counted_beyond_missing"] += -rest
            continue
        end = killed_servers.get(pid, float("inf"))
        if pid in killed_servers:
            out["lost_server"] += rest
        elif any(starts.get(pid, 0.0) <= t <= end for t in trainer_kills):
            out["lost_trainer"] += rest
        else:
            out["unexplained_at_server"] += rest
    out["received_not_sent"] = sum(int(r["n"]) for k, r in recvs.items() if k not in sends)
    return dict(out)


if __name__ == "__main__":
    sys.exit(role_main(sys.argv[1:]))

"""Chaos: server, trainer and N workers as processes on 127.0.0.1 while roles get killed.

A driver starts each role as its own OS process through the ordinary command line
(``tmrl2 server|trainer|worker``, via :mod:`chaoskit`'s ledger hooks), the default simulator
LIDAR job in fast mode with ``run.seed``, on a free port, with a run folder in a temp dir.
Every ``--kill-every-s A B`` seconds (uniform, seeded by ``--seed``) it kills a random role
(SIGKILL mostly, sometimes SIGTERM or SIGINT) and restarts it: the trainer with ``--resume``
from its run folder, the server on the same port, a worker with the same ``--index``. A
hostile local peer (:class:`chaoskit.HostilePeer`, a raw ZeroMQ DEALER) sends undecodable
frames, bad hellos, NaN and wrongly shaped chunks, oversized messages and floods at
``--hostile-rate`` messages/s. At the end the driver stops the roles, evaluates the final
policy (``tmrl2 eval RUN_DIR``) and reports: the policy's lap or progress; the sample
accounting (sent by workers = received by the trainer + losses the server and trainer
counted + losses in killed processes, and the unaccounted rest); each role's RSS (first
vs last minute medians, sampled every 5 s); kills, restarts, time to recover; the hostile
messages by kind; CPU model and flags.

Soak: ``--workers 32 --minutes 30 --no-chaos`` (no kills, no hostile peer): zero unaccounted
samples and flat RSS are expected. Run: ``python benchmarks/bench_chaos.py [--json out.json]``
(10 minutes by default). Counters the product does not expose are reported as
"n/a (not exposed)".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chaoskit  # noqa: E402
from timing import print_machine  # noqa: E402

KIT = str(Path(__file__).resolve().parent / "chaoskit.py")
RSS_EVERY_S = 5.0
YOUNG_S = 10.0
"""RSS samples of a process younger than this are skipped (start-up, not growth)."""
NA = "n/a (not exposed)"
SIGNALS = [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


def cpu_info() -> dict[str, Any]:
    """CPU model, core count and the vector extensions that matter for torch on CPU."""
    model, flags = "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vector = sorted(f for f in flags if f.startswith(("avx512", "avx2", "amx")))
    return {
        "model": model,
        "cores": os.cpu_count(),
        "avx512": any(f.startswith("avx512") for f in flags),
        "flags": vector,
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Role:
    """One role's current process; restarts keep its name, port and index."""

    def __init__(self, name: str, argv: list[str], ledgers: Path, logs: Path) -> None:
        self.name, self.argv, self.ledgers = name, argv, ledgers
        self.log = (logs / f"{name}.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.starts = 0

    def start(self, extra: list[str] = ()) -> int:  # type: ignore[assignment]
        role = self.name.split("-")[0]
        command = [sys.executable, KIT, role, str(self.ledgers), *self.argv, *extra]
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        self.started, self.starts = time.time(), self.starts + 1
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int, grace_s: float = 20.0) -> None:
        """Send ``sig``; SIGKILL whatever is left after ``grace_s``."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------- run
def setup(args: argparse.Namespace, root: Path) -> tuple[Any, Path, str]:
    from tmrl2.config.load import load_config, save_config
    from tmrl2.config.schema import ServerConfig
    from tmrl2.roles.launcher import free_port

    overrides = [
        f"server.port={free_port()}",
        f"run.seed={args.seed}",
        "env.realtime=false",
        f"trainer.checkpoint_every_s={args.checkpoint_every_s}",
        f"server.max_message_bytes={int(args.max_message_mb * 2**20)}",
        *args.overrides,
    ]
    if "run_token" in ServerConfig.model_fields:
        overrides.append(f"server.run_token=chaos{random.Random(args.seed).getrandbits(48):x}")
    config = load_config(None, overrides)
    path = root / "config.yaml"
    save_config(config, path)
    return config, path, f"tcp://127.0.0.1:{config.server.port}"


def trainer_metrics(run_dir: Path) -> dict[str, Any]:
    """The last line of the trainer's metrics.jsonl (empty before the first report)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 8192))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        try:
            return dict(json.loads(line))
        except json.JSONDecodeError:
            continue
    return {}


def chaos(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    config, cfg_path, address = setup(args, root)
    run_dir, ledgers, logs = root / "run", root / "ledgers", root / "logs"
    for folder in (run_dir, ledgers, logs):
        folder.mkdir(parents=True, exist_ok=True)
    common = ["--config", str(cfg_path)]
    roles = {"server": Role("server", common, ledgers, logs)}
    roles["trainer"] = Role("trainer", [*common, "--run-dir", str(run_dir)], ledgers, logs)
    for i in range(args.workers):
        roles[f"worker-{i}"] = Role(f"worker-{i}", [*common, "--index", str(i)], ledgers, logs)
    rng = random.Random(args.seed)
    events: list[dict[str, Any]] = []
    rss: dict[str, list[tuple[float, float]]] = {name: [] for name in roles}
    hostile: chaoskit.HostilePeer | None = None
    for role in roles.values():
        role.start()
    began = time.time()
    try:
        warm_deadline = began + args.warmup_s
        while time.time() < warm_deadline and not trainer_metrics(run_dir).get("updates"):
            tend(roles, events, run_dir)
            time.sleep(1.0)
        t0 = time.time()
        print(f"warm-up {t0 - began:.0f} s; chaos for {args.minutes:g} min", flush=True)
        if not args.no_chaos and args.hostile_rate > 0:
            hostile = chaoskit.HostilePeer(address, config, args.hostile_rate, args.seed)
            hostile.start()
        end = t0 + 60 * args.minutes
        schedule = [s for s in args.schedule.split(",") if s] if args.schedule else []
        next_kill = t0 + rng.uniform(*args.kill_every_s)
        next_rss = 0.0
        while time.time() < end:
            now = time.time()
            if now >= next_rss:
                next_rss = now + RSS_EVERY_S
                sample_rss(roles, rss, now)
            tend(roles, events, run_dir)
            quiet = end - now < args.quiet_s
            if not args.no_chaos and now >= next_kill and not quiet:
                target = schedule.pop(0) if schedule else rng.choice(["server", "trainer", "w"])
                if target in ("w", "worker"):
                    target = f"worker-{rng.randrange(args.workers)}"
                sig = rng.choice(SIGNALS)
                events.append(kill(roles[target], sig, rng.uniform(0, args.max_down_s), run_dir))
                print(f"{time.time() - t0:6.0f} s: {events[-1]['summary']}", flush=True)
                next_kill = time.time() + rng.uniform(*args.kill_every_s)
            time.sleep(0.25)
    finally:
        if hostile is not None:
            hostile.stop()
        final = shutdown(roles, ledgers)
    events.append({"t": final, "role": "final"})
    return analyse(args, config, roles, run_dir, ledgers, events, rss, hostile, t0, end)


def sample_rss(
    roles: dict[str, Role], rss: dict[str, list[tuple[float, float]]], now: float
) -> None:
    for name, role in roles.items():
        value = rss_mb(role.proc.pid) if role.alive() and role.proc else None
        if value is not None and now - role.started >= YOUNG_S:
            rss[name].append((now, value))


def tend(roles: dict[str, Role], events: list[dict[str, Any]], run_dir: Path) -> None:
    """Restart a role that exited by itself (a crash, a refusal), noting it."""
    for name, role in roles.items():
        if not role.alive():
            code = role.proc.returncode if role.proc else None
            print(f"{name} exited by itself (code {code}); restarting", flush=True)
            events.append({"t": time.time(), "role": name, "signal": "exit", "code": code})
            events[-1] |= restart(role, run_dir, time.time())


def restart(role: Role, run_dir: Path, now: float) -> dict[str, Any]:
    extra = []
    if role.name == "trainer" and (run_dir / "checkpoint.pt").is_file():
        extra = ["--resume"]
    pid = role.start(extra)
    return {"restart_t": time.time(), "new_pid": pid, "resume": bool(extra), "down_s": 0.0}


def kill(role: Role, sig: int, down_s: float, run_dir: Path) -> dict[str, Any]:
    assert role.proc is not None
    pid, t = role.proc.pid, time.time()
    role.stop(sig)
    exited = time.time()
    time.sleep(down_s)
    info = restart(role, run_dir, t)
    name = signal.Signals(sig).name
    summary = (
        f"{name} {role.name} (pid {pid}, exit after {exited - t:.1f} s), down {down_s:.1f} s, "
        f"restarted as pid {info['new_pid']}{' --resume' if info['resume'] else ''}"
    )
    return {"t": t, "role": role.name, "signal": name, "pid": pid, **info, "summary": summary}


def _recv_count(ledgers: Path) -> int:
    return sum(p.read_bytes().count(b'"ev":"recv"') for p in ledgers.glob("trainer.*.jsonl"))


def shutdown(roles: dict[str, Role], ledgers: Path) -> float:
    """Workers first (Ctrl-C), then wait until the trainer took the last chunks, then the
    trainer (it writes its checkpoint) and the server. Returns when the workers were told."""
    told = time.time()
    for name, role in roles.items():
        if name.startswith("worker") and role.alive():
            assert role.proc is not None
            role.proc.send_signal(signal.SIGINT)
    for name, role in roles.items():
        if name.startswith("worker"):
            role.stop(signal.SIGINT)
    count, quiet_since, deadline = _recv_count(ledgers), time.time(), time.time() + 30
    while time.time() - quiet_since < 3.0 and time.time() < deadline:
        time.sleep(0.5)
        new = _recv_count(ledgers)
        if new != count:
            count, quiet_since = new, time.time()
    roles["trainer"].stop(signal.SIGINT, grace_s=60)
    roles["server"].stop(signal.SIGINT)
    return told


def evaluate(run_dir: Path, episodes: int) -> dict[str, Any]:
    if episodes <= 0 or not (run_dir / "checkpoint.pt").is_file():
        return {"episodes": 0, "lines": ["no checkpoint" if episodes > 0 else "skipped"]}
    command = [sys.executable, "-m", "tmrl2", "eval", str(run_dir), "--episodes", str(episodes)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"episodes": episodes, "lines": ["eval timed out"]}
    lines = [line for line in done.stdout.splitlines() if line.startswith("episode")]
    laps = [float(m) for m in re.findall(r"finished in ([0-9.]+) s", done.stdout)]
    progress = [float(m) / 100 for m in re.findall(r"reached ([0-9.]+)%", done.stdout)]
    return {
        "episodes": episodes,
        "finished": len(laps),
        "lap_times_s": laps,
        "best_lap_s": min(laps) if laps else None,
        "progress": [1.0] * len(laps) + progress,
        "lines": lines or done.stderr.strip().splitlines()[-3:],
    }


# ----------------------------------------------------------------------------- analysis
def rss_summary(samples: dict[str, list[tuple[float, float]]], t0: float, end: float) -> Any:
    """Medians of each role kind's RSS over the first, middle and last window. "flat" compares
    the middle with the end: the trainer's replay memory (preallocated, its pages committed as
    it fills) grows until it has wrapped once, which is not a leak; size ``memory.capacity`` so
    that it wraps in the first half of the run for the verdict to mean something."""
    window = min(60.0, max((end - t0) / 4, 5.0))
    middle = t0 + (end - t0) / 2
    kinds: dict[str, list[tuple[float, float]]] = {}
    for name, values in samples.items():
        kinds.setdefault(name.split("-")[0], []).extend(values)
    out: dict[str, Any] = {}
    for kind, values in kinds.items():
        first = [v for t, v in values if t <= t0 + window]
        mid = [v for t, v in values if abs(t - middle) <= window / 2]
        last = [v for t, v in values if t >= end - window]
        if not first or not mid or not last:
            out[kind] = {"first_mb": None, "mid_mb": None, "last_mb": None, "flat": None}
            continue
        a, m, b = statistics.median(first), statistics.median(mid), statistics.median(last)
        flat = abs(b - m) <= max(0.1 * m, 20.0)
        out[kind] = {
            "first_mb": round(a, 1),
            "mid_mb": round(m, 1),
            "last_mb": round(b, 1),
            "flat": flat,
            "series": [
                (round(t - t0, 1), round(v, 1)) for t, v in values[:: max(1, len(values) // 400)]
            ],
        }
    out["window_s"] = window
    return out


def recoveries(run: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kill: seconds to the first chunk at the trainer that proves the role is back (a
    chunk received by the new trainer; sent after the new server started; sent by the new
    worker process)."""
    recvs = sorted(run["recvs"].items(), key=lambda kv: kv[1]["t"])
    out = []
    for e in events:
        if "restart_t" not in e:
            continue
        first = None
        for key, rec in recvs:
            if rec["t"] <= e["t"]:
                continue
            sent = run["sends"].get(key)
            if e["role"] == "trainer":
                ok = rec["pid"] == e["new_pid"]
            elif e["role"] == "server":
                ok = sent is not None and sent["t"] > e["restart_t"]
            else:
                ok = sent is not None and sent["pid"] == e["new_pid"]
            if ok:
                first = rec["t"]
                break
        out.append(
            {
                "role": e["role"],
                "signal": e["signal"],
                "recover_s": None if first is None else round(first - e["t"], 1),
            }
        )
    return out


def trainer_progress(run: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples and updates per trainer process, and their growth after the last restart."""
    per_pid = {}
    for pid, recs in run["metrics"].items():
        a, b = recs[0], recs[-1]
        per_pid[pid] = {
            "samples": [a.get("samples"), b.get("samples")],
            "updates": [a.get("updates"), b.get("updates")],
            "losses": chaoskit.loss_fields(b),
        }
    restarts = [e["restart_t"] for e in events if "restart_t" in e]
    last = max(restarts, default=0.0)
    after = sorted(
        (r for recs in run["metrics"].values() for r in recs if r["t"] > last),
        key=lambda r: r["t"],
    )
    grew = {
        k: (after[-1].get(k, 0) or 0) - (after[0].get(k, 0) or 0) if len(after) > 1 else 0
        for k in ("samples", "updates")
    }
    return {"per_process": per_pid, "growth_after_last_restart": grew}


def accounting(config: Any, run: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """sent = received + counted by the server + lost in killed/stopped processes +
    unaccounted (see :func:`chaoskit.attribute`); trainer-side counters as reported."""
    steps = int(config.worker.chunk_steps)
    where = chaoskit.attribute(run, events, steps)
    server_fields: dict[str, int] = {}
    for recs in run["stats"].values():
        for k, v in chaoskit.loss_fields(recs[-1]["stats"]).items():
            server_fields[k] = server_fields.get(k, 0) + v
    trainer_fields: dict[str, int] = {}
    for recs in run["metrics"].values():  # per process: its growth (restored values excluded)
        first = chaoskit.loss_fields(recs[0])
        for k, v in chaoskit.loss_fields(recs[-1]).items():
            trainer_fields[k] = trainer_fields.get(k, 0) + v - first.get(k, 0)
    lost = {k: where.get(k, 0) for k in ("lost_worker", "lost_server", "lost_trainer")}
    lost["lost_final_stop"] = where.get("lost_final", 0)
    counted = where.get("counted_by_server", 0) if run["stats"] else NA
    terms = [where.get("received", 0), *lost.values()]
    if isinstance(counted, int):
        terms.append(counted)
    return {
        "sent_by_workers": where.get("sent", 0),
        "received_by_trainer": where.get("received", 0),
        "counted_by_server": counted,
        **lost,
        "unaccounted": where.get("sent", 0) - sum(terms),
        "of_which_unexplained_at_server": where.get("unexplained_at_server", 0),
        "of_which_server_counted_beyond_missing": -where.get("server_counted_beyond_missing", 0),
        "of_which_in_flight_at_end": where.get("in_flight_at_end", 0),
        "received_not_in_any_ledger": where.get("received_not_sent", 0),
        "server_loss_counters": server_fields or NA,
        "trainer_loss_counters": trainer_fields or NA,
        "hostile_samples_at_trainer": run["hostile_recv"],
        "hostile_samples_counted_by_server": sum(run["hostile_missing"].values()),
    }


def analyse(args, config, roles, run_dir, ledgers, events, rss, hostile, t0, end):  # type: ignore[no-untyped-def]
    run = chaoskit.load_run(ledgers)
    kills = [e for e in events if "pid" in e]
    result = {
        "cpu": cpu_info(),
        "setup": {
            "workers": args.workers,
            "minutes": args.minutes,
            "seed": args.seed,
            "chaos": not args.no_chaos,
            "kill_every_s": args.kill_every_s,
            "hostile_rate": 0 if args.no_chaos else args.hostile_rate,
        },
        "eval": evaluate(run_dir, args.eval_episodes),
        "accounting": accounting(config, run, events),
        "rss": rss_summary(rss, t0, end),
        "kills": {
            "by_role": {k: sum(e["role"].split("-")[0] == k for e in kills) for k in roles_kinds()},
            "by_signal": {s: sum(e["signal"] == s for e in kills) for s in signal_names()},
            "restarts": {name: role.starts - 1 for name, role in roles.items()},
            "self_exits": [e for e in events if e.get("signal") == "exit"],
            "events": [e.get("summary", e["role"]) for e in events],
            "recoveries": recoveries(run, events),
        },
        "trainer": trainer_progress(run, events),
        "hostile": dict(hostile.sent) if hostile else {},
        "hostile_send_errors": hostile.errors if hostile else 0,
        "run_dir": str(run_dir),
    }
    return result


def roles_kinds() -> list[str]:
    return ["server", "trainer", "worker"]


def signal_names() -> list[str]:
    return ["SIGKILL", "SIGTERM", "SIGINT"]


def report(r: dict[str, Any]) -> None:
    cpu = r["cpu"]
    print(f"\n== chaos report ({r['setup']}) ==")
    print(f"cpu: {cpu['model']}, {cpu['cores']} cores, AVX-512 {'yes' if cpu['avx512'] else 'no'}")
    ev = r["eval"]
    print(
        f"final policy: {ev.get('finished', 0)}/{ev['episodes']} finished; "
        + "; ".join(ev["lines"])
    )
    print("sample accounting (transitions):")
    for key, value in r["accounting"].items():
        print(f"  {key:>30}: {value}")
    w = r["rss"]["window_s"]
    print(f"RSS (MB, medians of the first, middle and last {w:.0f} s; flat: middle to last):")
    for kind in roles_kinds():
        s = r["rss"].get(kind)
        if s:
            flat = {True: "flat", False: "NOT flat", None: "n/a"}[s["flat"]]
            print(f"  {kind:>8}: {s['first_mb']} -> {s['mid_mb']} -> {s['last_mb']} ({flat})")
    k = r["kills"]
    print(f"kills by role {k['by_role']}, by signal {k['by_signal']}")
    print(f"restarts {k['restarts']}, self exits {len(k['self_exits'])}")
    for rec in k["recoveries"]:
        print(f"  {rec['signal']:>7} {rec['role']:>9}: first new sample after {rec['recover_s']} s")
    print(f"trainer: {r['trainer']['growth_after_last_restart']} grown after the last restart")
    print(f"hostile messages: {r['hostile']} (send errors {r['hostile_send_errors']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-every-s", type=float, nargs=2, default=[30.0, 60.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hostile-rate", type=float, default=10.0, help="messages/s")
    parser.add_argument("--no-chaos", action="store_true", help="soak: no kills, no hostile")
    parser.add_argument("--schedule", default="", help="first kills, e.g. trainer,server,worker")
    parser.add_argument("--max-down-s", type=float, default=3.0, help="downtime before restart")
    parser.add_argument("--quiet-s", type=float, default=30.0, help="no kills in the last s")
    parser.add_argument("--warmup-s", type=float, default=180.0, help="max wait for updates")
    parser.add_argument("--checkpoint-every-s", type=float, default=20.0)
    parser.add_argument("--max-message-mb", type=float, default=4.0)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    print_machine()  # CPU model and flags, ceilings measured now: figures compare across machines
    root = Path(tempfile.mkdtemp(prefix="bench_chaos-"))
    try:
        result = chaos(args, root)
        report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
    finally:
        if args.keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

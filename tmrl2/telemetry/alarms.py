"""The trainer's alarms: what is going wrong with a run, said once when it starts and once
when it stops (docs/logging.md, "Alarms"; keys under ``logging.alarms``).

At every report the trainer hands its metrics to :meth:`Alarms.update`, which checks them
(:meth:`Alarms.check`, pure logic over the metrics and the workers last heard from) and
records each state change: a warning in the log, one line of ``<run>/alarms.jsonl``, a POST
of the same JSON to ``logging.alarms.webhook_url`` (on a background thread: the trainer never
waits for it). The kinds active are shown at the end of the progress line (``ALARM: <kind>``).

* ``exploding_q``: ``|loss/q_mean|`` above ``q_abs_max``;
* ``no_samples``: no new sample for ``no_samples_s``;
* ``worker_lost``: a worker that sent chunks silent for ``worker_lost_s`` (one per worker);
* ``policy_lag``: ``weights_version - worker_policy_version`` above ``policy_lag_max``;
* ``dropped_chunks``: the ingest counters (rejected chunks or episode records, lost samples)
  grew; it clears after :data:`DROPPED_QUIET_S` without a new one;
* ``return_stall``: no new best of ``return_recent_mean`` for ``return_stall_min`` minutes;
* ``nan_loss``, ``nan_weights``: raised by the trainer itself (:meth:`Alarms.fatal`), which
  stops without writing a checkpoint (:func:`nonfinite_losses`, :func:`weights_finite`,
  :func:`divergence_line`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import threading
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from tmrl2.config.schema import AlarmConfig

log = logging.getLogger(__name__)

ALARMS_NAME = "alarms.jsonl"
"""The alarms file in the run folder: one JSON line per alarm raised or cleared."""
DROPPED_QUIET_S = 60.0
"""``dropped_chunks`` clears after this long without a new rejected chunk or lost sample."""
MAX_WORKERS = 4096
"""Worker names remembered for ``worker_lost`` (the longest silent forgotten first)."""
WEBHOOK_TIMEOUT_S = 5.0
"""Timeout of one webhook POST."""
WEBHOOK_CLOSE_S = 5.0
"""At the end of the run, how long the alarms still queued may take to go out."""
WEBHOOK_QUEUE = 256
"""Alarms waiting for the webhook at most; beyond, new ones are not posted (logged once)."""
DROP_COUNTERS = ("rejected_chunks", "rejected_episodes", "samples_lost")
"""The ingest counters ``dropped_chunks`` watches (from ``Ingest.counters``)."""

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Alarm:
    """One state change of an alarm."""

    kind: str
    """``exploding_q``, ``no_samples``, ``worker_lost``, ``policy_lag``, ``dropped_chunks``,
    ``return_stall``, ``nan_loss`` or ``nan_weights``."""
    message: str
    """What is wrong, with its numbers (or, cleared, that it is over)."""
    time: float
    """The trainer's clock when it was seen (``time.monotonic`` in a run)."""
    severity: Severity = "warning"
    """``critical`` for the ones that stop the trainer (NaN), else ``warning``."""
    active: bool = True
    """True: the condition started; False: it cleared."""
    subject: str = ""
    """What it is about when there can be several at once (a worker's name), else empty."""


def nonfinite_losses(losses: Mapping[str, float]) -> str | None:
    """None when every term of one update is finite, else what is wrong with them:
    ``NaN (loss_critic=nan, q_mean=inf)`` or ``infinite (...)``."""
    bad = {k: v for k, v in losses.items() if isinstance(v, float) and not math.isfinite(v)}
    if not bad:
        return None
    word = "NaN" if any(math.isnan(v) for v in bad.values()) else "infinite"
    return f"{word} ({', '.join(f'{k}={v}' for k, v in bad.items())})"


def weights_finite(modules: Iterable[torch.nn.Module]) -> bool:
    """Whether every parameter of these modules is finite (one device sync: run it at save
    time, not at every update)."""
    flags: dict[torch.device, list[torch.Tensor]] = {}
    for module in modules:
        for p in module.parameters():
            flags.setdefault(p.device, []).append(torch.isfinite(p).all())
    return all(bool(torch.stack(f).all()) for f in flags.values())  # one sync per device


def divergence_line(what: str, saved_updates: int | None, run_dir: Path | None) -> str:
    """The one line of a NaN stop: what went wrong, and which checkpoint is kept where."""
    if run_dir is None:
        kept = "no checkpoint is written (no run folder)"
    elif saved_updates is None:
        kept = f"no checkpoint was written yet in {run_dir}"
    else:
        kept = f"the last good checkpoint (update {saved_updates}) is kept in {run_dir}"
    return f"{what}; stopping; {kept}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class Alarms:
    """The alarms of one trainer (module docstring)."""

    def __init__(
        self,
        config: AlarmConfig,
        run_dir: Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """Args:
        config: ``logging.alarms``.
        run_dir: where ``alarms.jsonl`` goes (None: nowhere).
        wall: the wall clock of the records (``time.time``).
        """
        self.config = config
        self.path = None if run_dir is None else run_dir / ALARMS_NAME
        self.run_name = "" if run_dir is None else run_dir.name
        self.wall = wall
        self.active: dict[tuple[str, str], Alarm] = {}
        """The alarms raised and not cleared, by (kind, subject)."""
        self._workers: OrderedDict[str, float] = OrderedDict()
        self._samples: tuple[float, float] | None = None  # (count, when it last grew)
        self._dropped_counts: dict[str, float] = {}  # the ingest counters at the last check
        self._last_drop = -math.inf  # when they last grew
        self._drop_news = ""
        self._best_return: tuple[float, float] | None = None  # (best, when it was made)
        self._write_failed = False
        self._hook = None if config.webhook_url is None else Webhook(config.webhook_url)

    # ------------------------------------------------------------------ inputs
    def heard_from(self, worker: str, now: float) -> None:
        """A chunk of ``worker`` arrived (``worker_lost`` watches the workers seen)."""
        self._workers[worker] = now
        self._workers.move_to_end(worker)
        while len(self._workers) > MAX_WORKERS:
            self._workers.popitem(last=False)

    def update(self, metrics: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Check one report's metrics, record every change; return what the report shows
        (:meth:`shown`)."""
        self.record(self.check(metrics, now), metrics)
        return self.shown()

    def fatal(self, kind: str, message: str, now: float, metrics: Mapping[str, Any]) -> Alarm:
        """Raise an alarm that stops the trainer (``nan_loss``, ``nan_weights``) and record it."""
        alarm = Alarm(kind, message, now, "critical")
        self.active[(kind, "")] = alarm
        self.record([alarm], metrics)
        return alarm

    def shown(self) -> dict[str, Any]:
        """``{"alarms": [kinds]}`` while any is active (the progress line's suffix), else {}."""
        kinds = sorted({kind for kind, _ in self.active})
        return {"alarms": kinds} if kinds else {}

    # ------------------------------------------------------------------ the checks
    def check(self, metrics: Mapping[str, Any], now: float) -> list[Alarm]:
        """The alarms that started or cleared with these metrics (nothing is written)."""
        changes: list[Alarm] = []
        for kind, on, raised, cleared in (
            ("exploding_q", *self._exploding_q(metrics)),
            ("no_samples", *self._no_samples(metrics, now)),
            ("policy_lag", *self._policy_lag(metrics)),
            ("dropped_chunks", *self._dropped_chunks(metrics, now)),
            ("return_stall", *self._return_stall(metrics, now)),
        ):
            self._state(changes, now, kind, on, raised, cleared)
        limit = self.config.worker_lost_s
        for worker, seen in self._workers.items():
            silent = now - seen
            raised = (
                f"worker {worker!r} not heard from for {silent:.0f} s "
                f"(logging.alarms.worker_lost_s = {limit:g})"
            )
            on = limit > 0 and silent >= limit
            back = f"worker {worker!r} is back"
            self._state(changes, now, "worker_lost", on, raised, back, worker)
        return changes

    def _state(
        self,
        changes: list[Alarm],
        now: float,
        kind: str,
        on: bool,
        raised: str,
        cleared: str,
        subject: str = "",
    ) -> None:
        """Append the change of ``(kind, subject)``, if its state changed."""
        key = (kind, subject)
        if on and key not in self.active:
            self.active[key] = alarm = Alarm(kind, raised, now, subject=subject)
            changes.append(alarm)
        elif not on and key in self.active:
            del self.active[key]
            changes.append(Alarm(kind, cleared, now, active=False, subject=subject))

    def _exploding_q(self, metrics: Mapping[str, Any]) -> tuple[bool, str, str]:
        limit = self.config.q_abs_max
        values = [_number(v) for k, v in metrics.items() if k.startswith("loss/q")]
        worst = max((abs(v) for v in values if v is not None), default=0.0)
        return (
            limit > 0 and worst > limit,
            f"|Q| = {worst:.3g} above logging.alarms.q_abs_max = {limit:g}: the critic "
            "diverges (lower the learning rate, check the reward scale and gamma)",
            f"|Q| = {worst:.3g} back under {limit:g}",
        )

    def _no_samples(self, metrics: Mapping[str, Any], now: float) -> tuple[bool, str, str]:
        limit = self.config.no_samples_s
        samples = _number(metrics.get("samples")) or 0.0
        if self._samples is None or samples > self._samples[0]:
            self._samples = (samples, now)  # the clock starts at the first report
        quiet = now - self._samples[1]
        return (
            limit > 0 and quiet >= limit,
            f"no new sample for {quiet:.0f} s (samples: {samples:.0f}): are the workers "
            "running and connected to the server?",
            f"samples arrive again ({samples:.0f})",
        )

    def _policy_lag(self, metrics: Mapping[str, Any]) -> tuple[bool, str, str]:
        limit = self.config.policy_lag_max
        version = _number(metrics.get("weights_version")) or 0.0
        acted = _number(metrics.get("worker_policy_version")) or 0.0
        lag = version - acted
        return (
            limit > 0 and lag > limit,
            f"policy lag {lag:.0f} weights versions (published {version:.0f}, newest a "
            f"worker acted with {acted:.0f}) above logging.alarms.policy_lag_max = {limit}: "
            "workers do not get or apply new weights",
            f"policy lag {lag:.0f} back under {limit}",
        )

    def _dropped_chunks(self, metrics: Mapping[str, Any], now: float) -> tuple[bool, str, str]:
        counts = {k: _number(metrics.get(k)) or 0.0 for k in DROP_COUNTERS}
        grew = {k: v - self._dropped_counts.get(k, 0.0) for k, v in counts.items()}
        if any(d > 0 for d in grew.values()):
            self._last_drop = now
            self._drop_news = ", ".join(f"+{d:.0f} {k}" for k, d in grew.items() if d > 0)
        self._dropped_counts = counts
        return (
            self.config.dropped_chunks and now - self._last_drop < DROPPED_QUIET_S,
            f"input dropped: {self._drop_news} (the trainer's log says why; totals: "
            + ", ".join(f"{k} {v:.0f}" for k, v in counts.items())
            + ")",
            f"nothing dropped for {DROPPED_QUIET_S:.0f} s",
        )

    def _return_stall(self, metrics: Mapping[str, Any], now: float) -> tuple[bool, str, str]:
        limit = self.config.return_stall_min
        recent = _number(metrics.get("return_recent_mean"))
        if recent is not None and (self._best_return is None or recent > self._best_return[0]):
            self._best_return = (recent, now)  # the clock starts at the first episode
        if self._best_return is None:
            return False, "", ""
        best, when = self._best_return
        stalled_min = (now - when) / 60
        return (
            limit > 0 and stalled_min >= limit,
            f"the mean return of the last 100 episodes made no new best ({best:.4g}) for "
            f"{stalled_min:.0f} min (logging.alarms.return_stall_min = {limit:g})",
            f"the mean return made a new best ({best:.4g})",
        )

    # ------------------------------------------------------------------ outputs
    def record(self, alarms: list[Alarm], metrics: Mapping[str, Any]) -> None:
        """Log each alarm, append it to ``alarms.jsonl``, post it to the webhook."""
        for alarm in alarms:
            if alarm.severity == "critical":
                log.error("ALARM %s: %s", alarm.kind, alarm.message)
            elif alarm.active:
                log.warning("ALARM %s: %s", alarm.kind, alarm.message)
            else:
                log.info("alarm %s cleared: %s", alarm.kind, alarm.message)
            row = self._row(alarm, metrics)
            self._write(row)
            if self._hook is not None:
                self._hook.post(row)

    def _row(self, alarm: Alarm, metrics: Mapping[str, Any]) -> dict[str, Any]:
        row = asdict(alarm)
        row["clock"] = row.pop("time")
        state = "raised" if row.pop("active") else "cleared"
        return {
            "time": self.wall(),
            "run": self.run_name,
            "state": state,
            **row,
            **{k: metrics.get(k) for k in ("samples", "updates", "elapsed_s")},
            "text": f"tmrl2 {self.run_name}: ALARM {alarm.kind} {state}: {alarm.message}",
        }

    def _write(self, row: dict[str, Any]) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as exc:  # a full disk: the log line still says it
            if not self._write_failed:
                self._write_failed = True
                log.warning("cannot write %s (%s); alarms go to the log only", self.path, exc)

    def close(self) -> None:
        """Let the alarms still queued for the webhook go out (at most
        :data:`WEBHOOK_CLOSE_S`)."""
        if self._hook is not None:
            self._hook.close(WEBHOOK_CLOSE_S)


class Webhook:
    """POSTs JSON records to a URL from a background thread (started at the first record);
    :meth:`post` never blocks; a failure is logged once, never raised."""

    def __init__(self, url: str, timeout_s: float | None = None) -> None:
        self.url = url
        self.timeout_s = WEBHOOK_TIMEOUT_S if timeout_s is None else timeout_s
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(WEBHOOK_QUEUE)
        self._thread: threading.Thread | None = None
        self._failed = False
        self._full = False
        self.sent = 0
        """Records delivered (a 2xx answer)."""

    def post(self, record: dict[str, Any]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tmrl2-alarm-webhook")
            self._thread.daemon = True
            self._thread.start()
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            if not self._full:
                self._full = True
                log.warning("alarm webhook %s: too many alarms queued; dropping", self.url)

    def close(self, timeout_s: float) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):  # full: a daemon; what is left is lost
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (record := self._queue.get()) is not None:
            try:
                self._send(record)
                self.sent += 1
            except Exception as exc:  # refused, timed out, an HTTP error: never fatal
                if not self._failed:
                    self._failed = True
                    log.warning(
                        "alarm webhook %s failed (%r); alarms still go to the log and "
                        "alarms.jsonl (further failures are not logged)",
                        self.url,
                        exc,
                    )

    def _send(self, record: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(record).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
            answer.read()

"""The summary table at the top of a report: counters, best lap, evaluations."""

from __future__ import annotations

from typing import Any

from tmrl2.report.lap import Lap
from tmrl2.report.run import RunData, number


def clock(seconds: float) -> str:
    """``h:mm:ss``."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _count(value: Any) -> str:
    n = number(value)
    return "-" if n is None else f"{n:,.0f}"


def _env(run: RunData) -> str:
    env = run.config.get("env") or {}
    if not isinstance(env, dict):
        return run.env_kind
    if run.env_kind == "gym":
        return f"gym {env.get('id', '?')}"
    tracks = env.get("tracks") or [env.get("track", "default")]
    shown = ", ".join(str(t) for t in tracks[:6]) + (" ..." if len(tracks) > 6 else "")
    car = f", car {env['car']}" if env.get("car") else ""
    return f"{run.env_kind}: {shown}{car}"


def best_lap(run: RunData) -> str:
    """The best training lap, with the reference and ratio when the run has one track."""
    final = run.last()
    best = number(final.get("best_lap_s"))
    if best is None:
        if not run.racing:
            return "-"
        return f"no lap finished (last episode reached {final.get('last_progress', 0.0):.0%})"
    tracks = final.get("tracks") or {}
    if isinstance(tracks, dict) and len(tracks) == 1:
        row = next(iter(tracks.values()))
        ref, ratio = number(row.get("reference_lap_s")), number(row.get("lap_ratio"))
        if ref is not None and ratio is not None:
            return f"{best:.2f} s (reference {ref:.2f} s, {ratio:.3f}x)"
    return f"{best:.2f} s"


def eval_line(summary: dict[str, Any]) -> str:
    """One line from an evaluation summary (``tmrl2.roles.evaluate.summarize``'s dict)."""
    episodes = summary.get("episodes", 0)
    mean = number(summary.get("return_mean"))
    returns = "" if mean is None else f"mean return {mean:.1f} over {episodes} episodes"
    if not summary.get("racing"):
        return returns or "no episode"
    ratio = number(summary.get("median_ratio"))
    median = "-" if ratio is None else f"{ratio:.3f}x"
    return (
        f"finished {summary.get('finished', 0)}/{episodes} "
        f"({number(summary.get('finish_rate')) or 0.0:.0%}), median lap {median} the reference, "
        f"mean progress {number(summary.get('mean_progress')) or 0.0:.0%}; {returns}"
    )


def summary_rows(run: RunData, lap: Lap | None) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the table."""
    final = run.last()
    elapsed = number(final.get("elapsed_s"))
    ratio = number(final.get("updates_per_step"))
    updates, samples = number(final.get("updates")), number(final.get("samples"))
    if ratio is None and updates is not None and samples:  # an older run's counters
        ratio = updates / samples
    rows = [
        ("run", run.name),
        ("env", _env(run)),
        ("env steps (samples)", _count(final.get("samples"))),
        ("updates", _count(final.get("updates"))),
        ("updates per step", "-" if ratio is None else f"{ratio:.2f}"),
        ("episodes", _count(final.get("episodes"))),
        ("training time", "-" if elapsed is None else clock(elapsed)),
        ("metrics rows", str(len(run.rows))),
    ]
    if run.racing:
        rows.insert(6, ("finishes", _count(final.get("finishes"))))
        rows.append(("best training lap", best_lap(run)))
    recent = number(final.get("return_recent_mean"))
    if recent is not None:
        rows.append(("return (last 100 episodes)", f"{recent:.1f}"))
    for i, line in enumerate(run.summary.get("eval") or []):
        rows.append((f"end-of-training eval {i}", str(line)))
    if isinstance(run.summary.get("eval_summary"), dict):
        rows.append(("end-of-training eval", eval_line(run.summary["eval_summary"])))
    if run.evals:
        last = run.evals[-1]
        when = last.get("time", "?")
        rows.append(
            (
                f"tmrl2 eval ({len(run.evals)} in evals.jsonl, last {when})",
                eval_line(last.get("summary") or {}),
            )
        )
    if lap is not None:
        rows.append(("report lap", lap.describe()))
    return rows

"""``tmrl2 report RUN``: one self-contained HTML page about a run.

:func:`write_report` reads the run folder, drives one deterministic lap with the run's policy
on the simulator (unless ``lap=False``, or the run is not a simulator run), draws every
figure as a PNG beside ``index.html`` (or embedded in it as base64 with ``embed``) and writes
the page: no script, no stylesheet or font from the network; it opens from the disk.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Callable
from pathlib import Path

from tmrl2 import __version__
from tmrl2.checkpoint import CHECKPOINT_NAME, CheckpointError
from tmrl2.config.load import ConfigError
from tmrl2.report import figures, system
from tmrl2.report.figures import Section
from tmrl2.report.lap import SIM_KINDS, Lap
from tmrl2.report.run import RunData, load_run
from tmrl2.report.summary import summary_rows

log = logging.getLogger(__name__)

PAGE = "index.html"
STYLE = """
body { font-family: sans-serif; max-width: 1150px; margin: 1.5em auto; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td { padding: 3px 12px 3px 0; vertical-align: top; }
td:first-child { color: #555; white-space: nowrap; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; font-style: italic; }
"""


def _lap_section(
    run: RunData, out: Path, lap_wanted: bool, trust: bool
) -> tuple[Section, Lap | None]:
    """Drive the lap and draw the racing line, or say why not."""
    title = "Racing line"
    if not lap_wanted:
        return Section(title, None, "Skipped (--no-lap)."), None
    if run.env_kind not in SIM_KINDS:
        why = "a racing line needs the built-in simulator (position and track)"
        return Section(title, None, f"Not drawn: env.kind is {run.env_kind!r}; {why}."), None
    if not (run.folder / CHECKPOINT_NAME).is_file():
        return Section(title, None, "Not drawn: the run folder has no checkpoint.pt."), None
    from tmrl2.envs.sim.car import car_params
    from tmrl2.envs.sim.env import SimEnvConfig
    from tmrl2.envs.sim.reference import speed_profile
    from tmrl2.envs.sim.tracklist import load_track_spec
    from tmrl2.report.lap import drive_lap, load_sim_policy
    from tmrl2.report.line import KMH, racing_line

    try:
        config, actor = load_sim_policy(run.folder, trust_config=trust, command="report")
        lap = drive_lap(config, actor)
    except (ConfigError, CheckpointError) as exc:
        log.warning("report: no racing line: %s", exc)
        return Section(title, None, f"Not drawn: {exc}"), None
    track = load_track_spec(lap.track)
    assert isinstance(config.env, SimEnvConfig)  # load_sim_policy checked env.kind
    reference = speed_profile(track, car_params(config.env.car)) * KMH
    return racing_line(lap, track, reference, out / "racing_line.png"), lap


def _figure(section: Section, embed: bool) -> str:
    if section.image is None:
        return f'<p class="note">{html.escape(section.text)}</p>'
    if embed:
        data = base64.b64encode(section.image.read_bytes()).decode("ascii")
        src = f"data:image/png;base64,{data}"
    else:
        src = html.escape(section.image.name)
    alt = html.escape(section.title)
    return f'<img src="{src}" alt="{alt}">\n<p>{html.escape(section.text)}</p>'


def render_page(run: RunData, sections: list[Section], lap: Lap | None, embed: bool) -> str:
    """The HTML text of the page."""
    table = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in summary_rows(run, lap)
    )
    body = "\n".join(f"<h2>{html.escape(s.title)}</h2>\n{_figure(s, embed)}" for s in sections)
    made = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>tmrl2 report: {html.escape(run.name)}</title>\n<style>{STYLE}</style>\n"
        f"</head>\n<body>\n<h1>Run {html.escape(run.name)}</h1>\n<table>\n{table}\n</table>\n"
        f'{body}\n<p class="note">Made by tmrl2 {__version__} report on {made} from '
        f"{html.escape(str(run.folder))}.</p>\n</body>\n</html>\n"
    )


def write_report(
    folder: Path,
    out: Path | None = None,
    lap: bool = True,
    trust_config: bool = False,
    embed: bool = False,
) -> Path:
    """Write the report of the run in ``folder`` to ``out`` (default ``folder/report``);
    returns the page's path."""
    run = load_run(folder)
    out = out or folder / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"report --out {out}: cannot create it ({exc.strerror or exc})") from None
    draw: list[tuple[Callable[[RunData, Path], Section], str]] = [
        (figures.learning_curves, "learning.png"),
        (figures.lap_progress, "laps.png"),
        (figures.reward_terms, "rewards.png"),
        (system.throughput, "throughput.png"),
        (system.losses, "losses.png"),
    ]
    sections = [fn(run, out / name) for fn, name in draw]
    line, driven = _lap_section(run, out, lap, trust_config)
    sections.insert(2 if run.racing else 1, line)
    page = out / PAGE
    page.write_text(render_page(run, sections, driven, embed), encoding="utf-8")
    return page

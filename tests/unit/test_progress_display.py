"""The console display of ``tmrl2 train``: the progress line fitted to a width, the plain
fallback off a terminal, the bar's fraction, the rich display on a terminal, the header."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest

from tmrl2.config.load import load_config
from tmrl2.telemetry.display import header_lines
from tmrl2.telemetry.progress import ProgressReporter, format_line, run_fraction

ANSI = re.compile(r"\x1b\[|\x1b\]|\r")

RACING: dict[str, Any] = {
    "samples": 1_234_567,
    "samples_per_s": 2500.0,
    "updates": 987_654,
    "updates_per_s": 1800.0,
    "updates_per_step": 0.8,
    "last_return": 123.4,
    "last_progress": 0.63,
    "best_lap_s": 41.25,
    "elapsed_s": 3725.0,
}
GYM: dict[str, Any] = {
    "samples": 1_234_567,
    "samples_per_s": 2500.0,
    "updates": 987_654,
    "updates_per_s": 1800.0,
    "updates_per_step": 0.8,
    "return_mean": -153.2,
    "return_min": -400.1,
    "return_max": -20.5,
    "episodes_window": 12,
    "elapsed_s": 3725.0,
}
WAITING: dict[str, Any] = {
    "samples": 0,
    "samples_per_s": 0.0,
    "updates": 0,
    "updates_per_s": 0.0,
    "elapsed_s": 42.0,
}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_whole_line_without_a_width() -> None:
    line = format_line(RACING)
    for part in ("steps 1,234,567", "2500 steps/s", "updates  987,654", "1800 upd/s"):
        assert part in line
    assert "upd/step 0.80" in line and "progress  63%" in line and "best lap 41.25 s" in line
    assert line.endswith(" 3725 s") and len(line) > 120
    assert "(-400.1..-20.5, 12 ep)" in format_line(GYM)


@pytest.mark.parametrize("metrics", [RACING, GYM], ids=["racing", "gym"])
def test_80_columns_keep_steps_return_best_lap_and_time(metrics: dict[str, Any]) -> None:
    line = format_line(metrics, 80)
    assert len(line) <= 80
    assert "steps 1,234,567" in line and "return" in line and line.endswith("3725 s")
    assert "upd/s" not in line and "upd/step" not in line and "updates" not in line
    if metrics is RACING:
        assert (
            line == "steps 1,234,567 | return   123.4 | progress  63% | best lap 41.25 s |  3725 s"
        )
    else:
        assert "(-400.1..-20.5, 12 ep)" in line and "steps/s" not in line


def test_60_columns_drop_more_and_the_padding() -> None:
    line = format_line(RACING, 60)
    assert line == "steps 1,234,567 | return 123.4 | best lap 41.25 s | 3725 s"
    assert format_line(GYM, 60) == "steps 1,234,567 | return   -153.2 |  3725 s"


@pytest.mark.parametrize("width", range(10, 180, 7))
def test_never_wider_than_the_width(width: int) -> None:
    for metrics in (RACING, GYM, {**GYM, "alarms": ["no_samples", "worker_lost"]}, WAITING):
        line = format_line(metrics, width)
        assert len(line) <= width
        if len(format_line(metrics)) <= width:
            assert line == format_line(metrics)  # fits: nothing dropped


def test_the_alarms_stay_when_fields_go() -> None:
    line = format_line({**GYM, "alarms": ["worker_lost"]}, 80)
    assert line.endswith(" | ALARM: worker_lost") and len(line) <= 80


def test_waiting_for_the_first_samples() -> None:
    assert format_line(WAITING) == "waiting for the first samples (42 s)"
    alarmed = format_line({**WAITING, "alarms": ["no_samples"]}, 80)
    assert alarmed == "waiting for the first samples (42 s) | ALARM: no_samples"
    assert "steps" not in format_line({"samples": 0, "elapsed_s": 3})  # no zero-filled line


def test_the_bar_fraction() -> None:
    assert run_fraction(100.0, 10) is None  # no bound: no bar
    assert run_fraction(30.0, 0, minutes=1) == pytest.approx(0.5)
    assert run_fraction(0.0, 250, steps=1000) == pytest.approx(0.25)
    assert run_fraction(30.0, 900, minutes=1, steps=1000) == pytest.approx(0.9)  # the larger
    assert run_fraction(600.0, 5000, minutes=1, steps=1000) == 1.0  # never past the end


def test_the_plain_fallback_has_no_escape_codes(tmp_path: Path) -> None:
    stream = io.StringIO()  # not a terminal: CI, a pipe, a file
    reporter = ProgressReporter(stream=stream, minutes=1, steps=1000, plain_every_s=0)
    for metrics in (WAITING, RACING, {**GYM, "alarms": ["no_samples"]}):
        reporter.report(metrics)
    reporter.close()
    out = stream.getvalue()
    assert not ANSI.search(out)
    lines = out.splitlines()
    assert lines == [format_line(WAITING), format_line(RACING), lines[2]]
    assert lines[2].endswith("ALARM: no_samples") and "12 ep" in lines[2]  # whole lines


def test_the_old_redrawn_line_on_a_terminal_without_rich() -> None:
    stream = _Tty()
    reporter = ProgressReporter(stream=stream, rich=False, width=80)
    reporter.report(RACING)
    reporter.close()
    assert stream.getvalue() == "\r" + format_line(RACING, 80) + "\n"


@pytest.mark.parametrize("bounded", [True, False])
def test_the_rich_display_on_a_terminal(bounded: bool) -> None:
    stream = _Tty()
    reporter = ProgressReporter(stream=stream, steps=2_000_000 if bounded else 0, width=80)
    assert reporter._display is not None
    reporter.report(WAITING)
    reporter.report(RACING)
    assert reporter.fraction(RACING) == (pytest.approx(0.617, abs=1e-3) if bounded else None)
    reporter.close()
    out = stream.getvalue()
    assert format_line(RACING, 80) in out and "waiting for the first samples" in out
    assert ("62%" in out) == bounded  # the bar's percentage


def test_the_header(tmp_path: Path) -> None:
    config = load_config(None, ["run.steps=5000", "trainer.device=cpu"])
    lines = header_lines(config, tmp_path / "run-1", "tcp://127.0.0.1:40123", None)
    text = "\n".join(lines)
    assert lines[0] == "== tmrl2 train =="
    assert f"run folder: {tmp_path / 'run-1'}" in text
    assert "server: tcp://127.0.0.1:40123" in text and "device: cpu" in text
    assert "config: defaults" in text and "stops at: 5,000 steps" in text
    assert str(tmp_path / "run-1" / "metrics.jsonl") in text and "TensorBoard" in text
    assert "W&B" not in text
    quiet = load_config(None, ["logging.jsonl=false", "logging.tensorboard=false"])
    lines = header_lines(quiet, tmp_path, "tcp://h:1", Path("my.yaml"))
    assert "     metrics: console only" in lines and "      config: my.yaml" in lines
    assert any("Ctrl-C" in line for line in lines)

"""``tmrl2 report`` and ``tmrl2 watch`` (issue 17) on tiny fabricated run folders: metrics rows
written by hand, a checkpoint of an untrained 8x8 actor (no training: seconds, not minutes)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tmrl2.checkpoint import save_checkpoint
from tmrl2.cli import main
from tmrl2.config.load import dump_config, load_config
from tmrl2.report.page import write_report

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def _racing_rows(n: int) -> list[dict[str, Any]]:
    """``n`` log windows of a racing run that never finished a lap (as the trainer writes)."""
    rows = []
    for i in range(n):
        returns = [round(2.0 + 0.3 * i + 0.5 * k, 3) for k in range(1 + i % 3)]
        rows.append(
            {
                "samples": 500 * (i + 1),
                "updates": 250 * (i + 1),
                "episodes": 2 * (i + 1),
                "finishes": 0,
                "weights_version": 3 * i + 2,
                "worker_policy_version": 3 * i + i % 2,
                "elapsed_s": 10.0 * (i + 1),
                "samples_per_s": 50.0 + (i % 4),
                "updates_per_s": 25.0 + (i % 3),
                "updates_per_step": 0.5 - 0.1 / (i + 1),
                "updates_per_step_set": 0.5,
                "last_return": returns[-1],
                "return_recent_mean": float(np.mean(returns)),
                "last_progress": min(0.02 * i, 0.9),
                "best_lap_s": None,
                "memory_size": 500 * (i + 1),
                "loss/loss_critic": 1.0 / (i + 1),
                "loss/loss_actor": -0.5 * i,
                "loss/alpha": 0.2 * 0.9**i,
                "reward/progress": returns[-1] - 0.1,
                "reward/speed": 0.1 * i,
                "tracks": {
                    "default": {
                        "episodes": 2 * (i + 1),
                        "finishes": 0,
                        "finish_rate": 0.0,
                        "recent_finish_rate": 0.0,
                        "best_lap_s": None,
                        "reference_lap_s": 20.4,
                        "lap_ratio": None,
                        "mean_progress": 0.01 * i,
                    }
                },
                "episodes_window": len(returns),
                "returns": returns,
                "return_mean": float(np.mean(returns)),
                "return_min": min(returns),
                "return_max": max(returns),
            }
        )
    return rows


def _folder(root: Path, config: Any, rows: list[dict[str, Any]], actor: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    data = dump_config(config)
    (root / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if rows:
        (root / "summary.json").write_text(json.dumps(rows[-1], indent=2))
    save_checkpoint(root / "checkpoint.pt", {"actor": actor, "config": data})
    return root


@pytest.fixture(scope="module")
def racing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator run (default track) of an untrained actor: 80-step episodes, no finish."""
    from tmrl2.envs.factory import build_env
    from tmrl2.roles.components import build_model

    config = load_config(None, ["model.hidden_sizes=[8, 8]", "env.max_episode_steps=80"])
    env = build_env(config)
    model = build_model(config, env.observation_space, env.action_space)
    env.close()
    root = tmp_path_factory.mktemp("racing") / "sim_lidar-20261201-000000"
    return _folder(root, config, _racing_rows(30), model.actor.state_dict())


@pytest.fixture(scope="module")
def gym_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Gymnasium (Pendulum) run: returns only, no tracks, no reward terms."""
    config = load_config(REPO / "configs" / "gym_pendulum.yaml")
    rows = [
        {
            "samples": 200 * (i + 1),
            "updates": 200 * i,
            "episodes": i + 1,
            "elapsed_s": 3.0 * (i + 1),
            "samples_per_s": 66.0,
            "updates_per_s": 60.0 + i,
            "updates_per_step": 1.0,
            "weights_version": i,
            "worker_policy_version": max(i - 1, 0),
            "returns": [-1500.0 + 90 * i],
            "episodes_window": 1,
            "return_mean": -1500.0 + 90 * i,
            "return_min": -1500.0 + 90 * i,
            "return_max": -1500.0 + 90 * i,
            "loss/loss_critic": 10.0 / (i + 1),
        }
        for i in range(12)
    ]
    root = tmp_path_factory.mktemp("gym") / "gym_pendulum-20261201-000000"
    return _folder(root, config, rows, {})


def _images(page: Path) -> list[Path]:
    """The PNGs the page shows (each must exist beside it)."""
    names = re.findall(r'<img src="([^"]+)"', page.read_text())
    return [page.parent / name for name in names]


def _check_png(path: Path) -> np.ndarray:
    """A valid PNG of some size that is not blank: returns its pixels."""
    from PIL import Image

    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG, path
    assert path.stat().st_size > 10_000, path
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), np.float64)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels.std() > 10.0, f"{path} looks blank"
    assert (pixels.min(axis=2) < 200).mean() > 0.01, f"{path} is nearly all white"
    return pixels


def test_report_of_a_racing_run_that_never_finished(racing_run: Path) -> None:
    page = write_report(racing_run)
    assert page == racing_run / "report" / "index.html"
    text = page.read_text()
    images = _images(page)
    names = {p.name for p in images}
    assert {"learning.png", "laps.png", "racing_line.png", "rewards.png"} <= names
    assert {"throughput.png", "losses.png"} <= names
    for image in images:
        _check_png(image)
    # self-contained: nothing fetched from the network, no script
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "no lap finished" in text and "did not finish" in text  # table: training, lap
    assert "sim_lidar-20261201-000000" in text and "15,000" in text  # name, samples


def test_racing_line_follows_the_recorded_trajectory(racing_run: Path) -> None:
    from tmrl2.report.lap import drive_lap, load_sim_policy

    config, actor = load_sim_policy(racing_run)
    lap = drive_lap(config, actor)
    assert lap.track == "default" and 2 <= len(lap.positions) <= 81
    assert lap.positions.shape == (len(lap.speeds_ms), 3) and not lap.finished
    assert np.all(np.isfinite(lap.positions)) and np.all(lap.speeds_ms >= 0.0)
    again = drive_lap(config, actor)  # deterministic: the same lap
    np.testing.assert_array_equal(lap.positions, again.positions)


def test_racing_line_of_a_finished_lap_is_coloured_by_speed(tmp_path: Path) -> None:
    """The figure of a whole lap (the autopilot's, recorded as a reference line): the line
    takes many colours of the speed scale over the grey map."""
    from tmrl2.envs.sim.car import car_params
    from tmrl2.envs.sim.record import record_sim_reference
    from tmrl2.envs.sim.reference import speed_profile
    from tmrl2.envs.sim.tracklist import load_track_spec
    from tmrl2.report.lap import Lap
    from tmrl2.report.line import KMH, arc_length, racing_line

    recorded = record_sim_reference(tmp_path / "line.npy", "default")
    points = np.load(recorded.path).astype(np.float64)
    step = np.linalg.norm(np.diff(points[:, [0, 2]], axis=0), axis=1) / 0.05
    lap = Lap(
        track="default",
        positions=points,
        speeds_ms=np.r_[0.0, step],
        headings=np.zeros(len(points)),
        finished=True,
        lap_time_s=recorded.lap_time_s,
        progress_frac=1.0,
        reference_lap_s=recorded.reference_lap_s,
        time_step_s=0.05,
    )
    track = load_track_spec("default")
    s = arc_length(track, points)
    assert s[0] < 1.0 and s[-1] >= track.length_m and np.all(np.diff(s) > -1.0)  # in order
    reference = speed_profile(track, car_params("tm2020")) * KMH
    section = racing_line(lap, track, reference, tmp_path / "line.png")
    assert section.image is not None and "finished in" in lap.describe()
    pixels = _check_png(section.image)
    colours = {tuple(p) for p in (pixels[::3, ::3] // 32).reshape(-1, 3).astype(int)}
    assert len(colours) > 25  # a rainbow of speeds, not one colour on white


def test_report_of_a_gym_run_skips_the_racing_figures(gym_run: Path, tmp_path: Path) -> None:
    page = write_report(gym_run, tmp_path / "out")
    text = page.read_text()
    names = {p.name for p in _images(page)}
    assert names == {"learning.png", "throughput.png", "losses.png"}
    for image in _images(page):
        _check_png(image)
    assert "Not a racing run" in text and "env.kind is &#x27;gym&#x27;" in text
    assert "env brings its own reward" in text and "gym Pendulum-v1" in text


@pytest.mark.parametrize("rows", [0, 1])
def test_report_of_a_run_with_very_few_rows(racing_run: Path, tmp_path: Path, rows: int) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(racing_run / "config.yaml", run)
    lines = [json.dumps(r) for r in _racing_rows(rows)]
    (run / "metrics.jsonl").write_text("\n".join([*lines, '{"samples": 12, "torn'][-rows - 1 :]))
    page = write_report(run, lap=False)
    text = page.read_text()
    assert "Skipped (--no-lap)" in text
    if rows == 0:
        assert "No episode has ended yet" in text and not _images(page)
    for image in _images(page):
        assert image.read_bytes()[:8] == PNG


def test_report_command_embeds_and_fails_in_one_line(
    racing_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "embedded"
    assert main(["report", str(racing_run), "--no-lap", "--embed", "--out", str(out)]) == 0
    text = (out / "index.html").read_text()
    assert text.count('src="data:image/png;base64,') == 5 and 'src="learning.png"' not in text
    assert "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tmrl2: ") and "run folder" in err[0]


def test_watch_writes_a_gif_with_one_frame_per_step(
    racing_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import imageio.v3 as iio

    gif = tmp_path / "lap.gif"
    argv = ["watch", str(racing_run), "--out", str(gif), "--max-steps", "6", "--size", "96x64"]
    assert main(argv) == 0
    frames = iio.imread(gif, index=None)
    assert frames.shape[:3] == (7, 64, 96)  # the start and one per step
    assert frames.std() > 10.0  # sky, grass, road and the map inset, not one colour
    assert "7 frames" in capsys.readouterr().out


def test_watch_refuses_what_it_cannot_do(
    racing_run: Path,
    gym_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    def line(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tmrl2: ")
        return err[0]

    assert "env.kind is 'gym'" in line(["watch", str(gym_run)])
    assert ".gif or .mp4" in line(["watch", str(racing_run), "--out", str(tmp_path / "a.avi")])
    assert "unknown" in line(["watch", str(racing_run), "--track", "nowhere", "--max-steps", "1"])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a),
    )
    assert "pip install imageio-ffmpeg" in line(
        ["watch", str(racing_run), "--out", str(tmp_path / "lap.mp4")]
    )


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.mark.skipif(
    _browser() is None,
    reason="no headless browser (apt-get install chromium-headless-shell or chromium)",
)
def test_the_page_renders_in_a_headless_browser(racing_run: Path, tmp_path: Path) -> None:
    page = write_report(racing_run, tmp_path / "page", lap=False)
    browser = str(_browser())
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    # every image decoded (no broken link): a copy of the page that says so in its DOM
    probe = page.with_name("probe.html")
    check = (
        "<script>window.onload=()=>{document.body.dataset.loaded=[...document.images]"
        ".every(i=>i.complete&&i.naturalWidth>0)+':'+document.images.length}</script>"
    )
    probe.write_text(page.read_text().replace("</body>", check + "</body>"))
    dom = subprocess.run(
        [browser, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-loaded="true:5"' in dom, dom[-500:]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    _check_png(shot)

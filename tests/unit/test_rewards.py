"""Reward terms on scripted trajectories with hand-computed values; the manager; wrappers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tmrl2.config.load import ConfigError, load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.wrappers import NoProgressTruncation
from tmrl2.rewards.manager import RewardManager, RewardManagerConfig
from tmrl2.rewards.reference import ReferenceLine, ReferenceLineError
from tmrl2.rewards.terms import (
    AirTime,
    AirTimeConfig,
    Checkpoint,
    CheckpointConfig,
    Progress,
    ProgressConfig,
    Speed,
    Steering,
    SteeringConfig,
)


def _drive(term: Any, infos: list[dict[str, Any]]) -> list[float]:
    term.reset(infos[0])
    return [term(info) for info in infos[1:]]


def test_progress_on_a_straight_drive_and_backwards() -> None:
    infos = [{"progress_m": m} for m in (0.0, 5.0, 10.0, 8.0, 9.0, 12.0)]
    values = _drive(Progress(ProgressConfig(scale=0.1)), infos)
    # backwards earns nothing; regained ground earns nothing until past the furthest point
    assert values == pytest.approx([0.5, 0.5, 0.0, 0.0, 0.2])


def _line(path: Path, points: np.ndarray) -> str:
    np.save(path, points.astype(np.float32))
    return str(path)


def test_progress_along_a_recorded_reference_line(tmp_path: Path) -> None:
    xs = np.arange(0.0, 101.0)
    ref = _line(tmp_path / "ref.npy", np.stack([xs, np.zeros_like(xs), np.zeros_like(xs)], 1))
    term = Progress(ProgressConfig(scale=1.0, reference=ref))
    positions = [(0, 0, 0), (3, 0, 1), (7.5, 0, -2), (5, 0, 0), (9, 0, 0)]
    values = _drive(term, [{"position": p} for p in positions])
    assert values == pytest.approx([3.0, 4.5, 0.0, 1.5])


def test_a_small_cut_pays_a_teleport_does_not(tmp_path: Path) -> None:
    # an L: 50 m along x, then 50 m along z; cutting the corner diagonally
    leg = np.arange(0.0, 51.0)
    pts = np.concatenate(
        [
            np.stack([leg, 0 * leg, 0 * leg], 1),
            np.stack([np.full(50, 50.0), 0 * leg[1:], leg[1:]], 1),
        ]
    )
    ref = _line(tmp_path / "l.npy", pts)
    term = Progress(ProgressConfig(scale=1.0, reference=ref, max_skip_m=30.0))
    values = _drive(term, [{"position": p} for p in [(40, 0, 0), (50, 0, 10), (50, 0, 50)]])
    assert values[0] == pytest.approx(20.0)  # 40 -> 60 m: a 10 m cut earns its 20 m
    assert values[1] == pytest.approx(30.0)  # capped: 90 m is 30 m beyond the max skip


def test_short_reference_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReferenceLineError, match="at least 10"):
        ReferenceLine(np.zeros((2, 3)))
    path = _line(tmp_path / "two.npy", np.array([[0, 0, 0], [1, 0, 0]]))
    with pytest.raises(ConfigError, match="record a whole lap"):
        load_config(None, [f"reward.terms.progress.reference={path}"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, [f"reward.terms.progress.reference={tmp_path / 'none.npy'}"])


def test_checkpoints_and_finish() -> None:
    infos = [
        {"checkpoint": c, "finished": f}
        for c, f in [(0, False), (0, False), (1, False), (1, False), (2, True)]
    ]
    values = _drive(Checkpoint(CheckpointConfig(per_checkpoint=1.0, finish=5.0)), infos)
    assert values == [0.0, 1.0, 0.0, 6.0]


def test_air_time_on_an_airborne_segment() -> None:
    infos = [
        {"airborne": a, "race_time_ms": t}
        for a, t in [(False, 0), (False, 50), (True, 100), (True, 150), (False, 200)]
    ]
    values = _drive(AirTime(AirTimeConfig(scale=2.0)), infos)
    assert values == pytest.approx([0.0, 0.1, 0.1, 0.0])


def test_jittery_steering_is_penalized() -> None:
    steer = [0.0, 1.0, -1.0, -1.0, -0.5]
    infos = [{"action": np.array([1.0, 0.0, s])} for s in steer]
    values = _drive(Steering(SteeringConfig(scale=0.1)), infos)
    assert values == pytest.approx([-0.1, -0.2, 0.0, -0.05])


def test_a_term_without_its_telemetry_fails_clearly() -> None:
    with pytest.raises(KeyError, match="needs telemetry"):
        Speed(Speed.Config()).reset({"progress_m": 0.0})


def test_weighted_composition_and_per_term_values() -> None:
    config = RewardManagerConfig.model_validate(
        {"terms": {"progress": {"weight": 0.7, "scale": 0.1}, "speed": {"weight": 0.3}}}
    )
    manager = RewardManager(config)
    manager.reset({"progress_m": 0.0, "speed_ms": 0.0})
    total = manager({"progress_m": 10.0, "speed_ms": 20.0})
    assert manager.last_terms == pytest.approx({"progress": 0.7, "speed": 0.3 * 0.2})
    assert total == pytest.approx(0.7 + 0.06)


def test_reward_config_errors_name_the_term() -> None:
    with pytest.raises(ConfigError, match="reward.terms.sped: unknown key; did you mean 'speed'"):
        load_config(None, ["reward.terms.sped.weight=1"])
    with pytest.raises(ConfigError, match="reward.terms.speed.scale"):
        load_config(None, ["reward.terms.speed.scale=fast"])
    with pytest.raises(ConfigError, match="no reward term"):
        load_config(None, ["reward.terms.progress=null"])


def test_custom_function_term_by_import_path(tmp_path: Path, monkeypatch: Any) -> None:
    (tmp_path / "my_rewards.py").write_text("def drift(info):\n    return 2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(None, ["reward.custom=[{kind: 'my_rewards:drift', weight: 0.5}]"])
    env = build_env(config)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
    assert info["reward_terms"]["drift"] == pytest.approx(1.0)
    assert reward == pytest.approx(sum(info["reward_terms"].values()))
    sys.modules.pop("my_rewards", None)
    with pytest.raises(ConfigError, match="cannot import module 'nope_mod'"):
        load_config(None, ["reward.custom=[{kind: 'nope_mod:f'}]"])


def test_sim_env_reports_reward_terms_and_weights_apply() -> None:
    config = load_config(
        None, ["reward.terms.speed.weight=0.3", "reward.terms.progress.weight=0.7"]
    )
    env = build_env(config)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, _, _, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
    assert set(info["reward_terms"]) == {"progress", "speed"}
    assert info["reward_terms"]["speed"] == pytest.approx(0.3 * 0.01 * info["speed_ms"])
    assert reward == pytest.approx(sum(info["reward_terms"].values()))


class _Crawl(gym.Env[np.ndarray, np.ndarray]):
    """Moves ``speeds[t]`` metres at step t."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Box(-1, 1, (1,))

    def __init__(self, speeds: list[float]) -> None:
        self.speeds, self.t, self.progress = speeds, 0, 0.0

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.t, self.progress = 0, 0.0
        return np.zeros(1, np.float32), {"progress_m": 0.0}

    def step(self, action: Any) -> Any:
        self.progress += self.speeds[self.t]
        self.t += 1
        return np.zeros(1, np.float32), 0.0, False, False, {"progress_m": self.progress}


def test_no_progress_truncation_waits_for_the_grace_period() -> None:
    env = NoProgressTruncation(
        _Crawl([0.0] * 50), grace_steps=10, patience_steps=5, min_progress_m=1.0
    )
    env.reset()
    ends = [env.step(np.zeros(1))[3] for _ in range(16)]
    assert ends.index(True) == 14  # steps 1..10 are grace, then 5 stalled steps
    env = NoProgressTruncation(
        _Crawl([2.0] * 50), grace_steps=0, patience_steps=5, min_progress_m=1.0
    )
    env.reset()
    assert not any(env.step(np.zeros(1))[3] for _ in range(40))


def test_recorded_reference_gives_the_same_progress_as_the_centerline(tmp_path: Path) -> None:
    from tmrl2.envs.sim.autopilot import Autopilot
    from tmrl2.envs.sim.record import record_sim_reference

    ref = tmp_path / "default.npy"
    assert record_sim_reference(ref).points > 100
    config = load_config(None, [f"reward.terms.progress.reference={ref}"])
    env = build_env(config)
    env.reset(seed=0)
    sim = env.unwrapped
    pilot = Autopilot(sim.track)  # type: ignore[attr-defined]
    total = 0.0
    for _ in range(300):
        _, reward, _, _, info = env.step(pilot.act(sim.car.state))  # type: ignore[attr-defined]
        total += float(reward)
    assert total == pytest.approx(0.1 * info["progress_m"], rel=0.05)


def test_off_track_by_surface_or_distance_from_the_reference(tmp_path: Path) -> None:
    from tmrl2.rewards.terms import OffTrack, OffTrackConfig

    surfaces = [{"surface": s} for s in ("road", "grass", "road", "dirt")]
    assert _drive(OffTrack(OffTrackConfig(penalty=0.5)), surfaces) == [-0.5, 0.0, -0.5]
    xs = np.arange(0.0, 101.0)
    ref = _line(tmp_path / "ref.npy", np.stack([xs, np.zeros_like(xs), np.zeros_like(xs)], 1))
    term = OffTrack(OffTrackConfig(penalty=1.0, reference=ref, max_offset_m=5.0))
    positions = [(0, 0, 0), (2, 0, 4.0), (4, 0, 6.0), (6, 0, -7.0), (8, 0, 1.0)]
    assert _drive(term, [{"position": p} for p in positions]) == [0.0, -1.0, -1.0, 0.0]
    with pytest.raises(KeyError, match="surface"):
        OffTrack(OffTrackConfig()).reset({"progress_m": 0.0})

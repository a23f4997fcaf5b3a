"""One env seam: every telemetry env (the simulator, fast and real time, and the game through
the bridge) gets the same reward and stall wrappers, and the same observation space."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from tmrl2.config.load import ConfigError, load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.trackmania.env import TrackManiaConfig, TrackManiaEnv
from tmrl2.envs.wrappers import NoProgressTruncation, RewardWrapper

GAS = np.array([1.0, 0.0, 0.0], np.float32)
BRAKE = np.array([0.0, 1.0, 0.0], np.float32)


def _wrappers(env: gym.Env[Any, Any]) -> list[type]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(type(env))
        env = env.env
    return chain


@pytest.fixture
def lockstep_server() -> Iterator[int]:
    """``tmrl2 sim serve --lockstep`` on a thread, on a free port."""
    from tmrl2.envs.sim.serve import ServeOptions, serve_in_thread

    server, thread = serve_in_thread(ServeOptions(port=0, lockstep=True))
    yield server.port
    server.stop()
    thread.join(5)


def _tm(port: int, *more: str) -> list[str]:
    return ["env.kind=trackmania", f"env.port={port}", "env.clock=lockstep", *more]


@pytest.mark.parametrize(
    "overrides",
    [[], ["env.realtime=true"], ["env.kind=trackmania"]],
    ids=["sim", "sim-realtime", "trackmania"],
)
def test_every_telemetry_env_gets_the_reward_and_stall_wrappers(overrides: list[str]) -> None:
    env = build_env(load_config(None, overrides))  # the game env connects only at reset
    try:
        assert _wrappers(env)[:2] == [NoProgressTruncation, RewardWrapper]
    finally:
        env.close()


def test_the_game_env_is_rewarded_from_telemetry_and_the_action(lockstep_server: int) -> None:
    """The steering term sees the action, reward_terms are reported (both were missing)."""
    config = load_config(
        None,
        _tm(
            lockstep_server,
            "reward.terms.progress.weight=1.0",
            "reward.terms.steering.weight=1.0",
            "reward.terms.speed.weight=0.5",
        ),
    )
    env = build_env(config)
    try:
        env.reset(seed=0)
        rewards, steering = [], []
        for k in range(10):
            action = np.array([1.0, 0.0, 0.3 * (-1) ** k], np.float32)
            _, reward, _, _, info = env.step(action)
            rewards.append(float(reward))
            steering.append(info["reward_terms"]["steering"])
            assert float(reward) == pytest.approx(sum(info["reward_terms"].values()))
        assert set(info["reward_terms"]) == {"progress", "speed", "steering"}
        assert steering[0] == pytest.approx(-0.1 * 0.3) and steering[1] == pytest.approx(-0.1 * 0.6)
    finally:
        env.close()


def test_reward_no_progress_applies_to_the_game(lockstep_server: int) -> None:
    more = ["reward.no_progress={grace_steps: 5, patience_steps: 4, min_progress_m: 1.0}"]
    env = build_env(load_config(None, _tm(lockstep_server, *more)))
    try:
        env.reset(seed=0)
        ends = []
        for _ in range(12):
            _, _, terminated, truncated, info = env.step(BRAKE)
            ends.append(truncated)
            if truncated:
                break
        assert ends.index(True) == 8 and info["stalled"]  # 5 grace steps, then 4 stalled
    finally:
        env.close()


def test_the_game_env_respawns_on_a_stall(lockstep_server: int) -> None:
    env = build_env(
        load_config(None, _tm(lockstep_server, "env.stuck_steps=3", "env.on_stuck=respawn"))
    )
    try:
        env.reset(seed=0)
        for _ in range(8):
            _, _, _, truncated, info = env.step(BRAKE)
            assert not truncated
        assert info["respawns"] >= 1
    finally:
        env.close()


def test_stall_detection_lives_in_the_wrapper_only() -> None:
    raw = SimEnv(SimEnvConfig(stuck_steps=5))
    raw.reset(seed=0)
    assert not any(raw.step(BRAKE)[3] for _ in range(20))  # the env alone never stalls
    env = build_env(load_config(None, ["env.stuck_steps=5"]))
    env.reset(seed=0)
    ends = [env.step(BRAKE) for _ in range(5)]
    assert [end[3] for end in ends] == [False] * 4 + [True] and ends[-1][4]["stalled"]


def test_the_simulator_respawns_on_a_stall_with_on_stuck_respawn() -> None:
    env = build_env(load_config(None, ["env.stuck_steps=5", "env.on_stuck=respawn"]))
    env.reset(seed=0)
    infos = [env.step(BRAKE)[4] for _ in range(12)]
    assert infos[-1]["respawns"] == 2 and "stalled" in infos[4]


def test_the_realtime_simulator_stalls_and_restarts_cleanly() -> None:
    env = build_env(
        load_config(None, ["env.realtime=true", "env.time_step_ms=20", "env.stuck_steps=3"])
    )
    try:
        env.reset(seed=0)
        ends = [env.step(BRAKE)[3] for _ in range(3)]
        assert ends == [False, False, True]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # rtgym warns "Time-step timed out" if not paused
            obs, info = env.reset(seed=1)
        assert info["race_time_ms"] == 0 and env.observation_space.contains(obs)
        assert not env.step(GAS)[3]
    finally:
        env.close()


def test_autopilot_lap_pays_the_progress_reward_through_the_wrappers() -> None:
    env = build_env(load_config(None, []))
    env.reset(seed=0)
    sim = env.unwrapped
    assert isinstance(sim, SimEnv)
    pilot = Autopilot(sim.track)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(pilot.act(sim.car.state))
        total += float(reward)
        done = terminated or truncated
    assert terminated and total == pytest.approx(0.1 * sim.track.length_m)


SETTINGS: list[dict[str, Any]] = [
    {},
    {"lidar_beams": 7, "lidar_history": 3, "action_history": 4},
    {"lidar": False, "image": True, "image_history": 2, "image_color": True},
    {"image": True, "image_width": 32, "image_height": 48, "preview_points": 5},
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_simulator_and_the_game_have_the_same_spaces(settings: dict[str, Any]) -> None:
    sim = SimEnv(SimEnvConfig(**settings))
    game = TrackManiaEnv(TrackManiaConfig(**settings))
    assert sim.observation_space == game.observation_space
    assert sim.action_space == game.action_space


def test_the_preview_is_scaled_by_the_shared_preview_range() -> None:
    near = SimEnv(SimEnvConfig(preview_points=3, preview_range_m=50.0)).reset(seed=0)[0]
    far = SimEnv(SimEnvConfig(preview_points=3)).reset(seed=0)[0]
    np.testing.assert_allclose(near["preview"], 2 * far["preview"], atol=1e-6)


def test_unknown_track_fails_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match=r"env\.track.*unknown track 'nosuch'.*default"):
        load_config(None, ["env.track=nosuch"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, ["env.track=missing.yaml"])
    for name in ("alpine", "gen:3"):
        assert load_config(None, [f"env.track={name}"]).env.track == name  # type: ignore[attr-defined]


def test_recording_an_unknown_track_is_a_one_line_error(tmp_path: Path) -> None:
    from tmrl2.envs.sim.record import record_sim_reference

    with pytest.raises(ValueError, match="unknown track 'nosuch'; known tracks: .*default") as err:
        record_sim_reference(tmp_path / "x.npy", "nosuch")
    assert "\n" not in str(err.value) and not (tmp_path / "x.npy").exists()


def test_rewards_import_no_env() -> None:
    code = (
        "import sys, tmrl2.rewards.manager, tmrl2.rewards.terms, tmrl2.rewards.progress, "
        "tmrl2.rewards.reference; "
        "print(sorted(m for m in sys.modules if m.startswith('tmrl2.envs')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_observation_keys_are_declared_once() -> None:
    from tmrl2.envs.observation import ObservationConfig, TelemetryEnvConfig

    shared = set(TelemetryEnvConfig.model_fields) - {"kind"}
    assert set(ObservationConfig.model_fields) <= shared
    for cls in (SimEnvConfig, TrackManiaConfig):
        assert issubclass(cls, TelemetryEnvConfig)
        assert not shared & set(cls.__annotations__), cls  # nothing redeclared

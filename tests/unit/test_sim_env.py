"""SimEnv: the Gymnasium contract, episode ends, determinism, the autopilot's lap (the reward
and stall wrappers every telemetry env shares: tests/unit/test_env_seam.py)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pydantic
import pytest
from gymnasium.utils.env_checker import check_env

from tmrl2.config.load import load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig

INFO_KEYS = {
    "progress_m",
    "progress_frac",
    "speed_ms",
    "finished",
    "wall_contact",
    "checkpoint",
    "race_time_ms",
    "track_length_m",
    "position",
    "gear",
    "rpm",
    "surface",
    "wheel_surfaces",
    "wheel_contact",
    "airborne",
    "air_time_s",
    "respawns",
    "velocity",
    "yaw_pitch_roll",
    "track",
    "reference_lap_s",
}
GAS = np.array([1.0, 0.0, 0.0], np.float32)
BRAKE = np.array([0.0, 1.0, 0.0], np.float32)


def run(env: SimEnv, policy: Any, steps: int) -> list[tuple[Any, ...]]:
    """Step ``env`` with ``policy(env)`` until the episode ends or ``steps`` steps."""
    out = []
    for _ in range(steps):
        out.append(env.step(policy(env)))
        if out[-1][2] or out[-1][3]:
            break
    return out


def test_passes_gymnasium_env_checker() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The one warning left: render modes cannot be checked on an env built without
        # gymnasium.make (it has no spec); SimEnv renders nothing.
        warnings.filterwarnings("ignore", message=".*alternative render modes")
        check_env(SimEnv())


def test_spaces_and_first_observation() -> None:
    env = SimEnv(SimEnvConfig(lidar_beams=7, lidar_history=3, action_history=4))
    obs, info = env.reset(seed=0)
    assert env.observation_space["lidar"].shape == (3, 7)
    assert env.observation_space["prev_actions"].shape == (4, 3)
    assert env.action_space.shape == (3,)
    assert env.observation_space.contains(obs)
    assert set(info) == INFO_KEYS
    assert not obs["prev_actions"].any() and obs["speed"][0] == 0.0
    assert info["progress_m"] == 0.0 and info["race_time_ms"] == 0 and info["checkpoint"] == 0
    np.testing.assert_array_equal(obs["lidar"][0], obs["lidar"][-1])  # history filled at reset


def test_observations_stay_in_space_under_random_actions() -> None:
    env = SimEnv(SimEnvConfig(lidar_history=2))
    env.action_space.seed(1)
    env.reset(seed=1)
    for obs, reward, _, _, info in run(env, lambda e: e.action_space.sample() * 1.5, 300):
        assert env.observation_space.contains(obs)
        assert set(info) == INFO_KEYS and np.isfinite(reward)
    action = np.array([2.0, -3.0, 0.25], np.float32)
    obs = env.step(action)[0]
    np.testing.assert_array_equal(obs["prev_actions"][-1], [1.0, -1.0, 0.25])  # clipped


def test_autopilot_finishes_the_default_track() -> None:
    env = SimEnv()
    env.reset(seed=0)
    pilot = Autopilot(env.track)
    steps = run(env, lambda e: pilot.act(e.car.state), 2400)
    _, _, terminated, truncated, info = steps[-1]
    assert terminated and not truncated
    assert info["finished"] and info["progress_frac"] == 1.0
    assert info["checkpoint"] == len(env.track.checkpoints_m)
    assert not any(step[4]["wall_contact"] for step in steps)
    assert 20.0 < info["lap_time_s"] < 60.0
    assert (len(steps) - 1) * 0.05 < info["lap_time_s"] <= len(steps) * 0.05
    assert all("lap_time_s" not in step[4] for step in steps[:-1])
    # The env reports telemetry; its reward is the wrappers' (tests/unit/test_env_seam.py).
    assert all(step[1] == 0.0 for step in steps)
    progress = [step[4]["progress_m"] for step in steps]
    assert progress == sorted(progress)


def test_braking_in_place_truncates_as_stuck() -> None:
    env = build_env(load_config(None, ["env.stuck_steps=30"]))
    env.reset(seed=0)
    steps = run(env, lambda e: BRAKE, 100)  # type: ignore[arg-type]
    assert len(steps) == 30
    assert steps[-1][3] and not steps[-1][2] and steps[-1][4]["stalled"]


def test_driving_on_is_not_stuck_but_hits_the_step_limit() -> None:
    env = build_env(load_config(None, ["env.stuck_steps=30", "env.max_episode_steps=50"]))
    env.reset(seed=0)
    sim = env.unwrapped
    assert isinstance(sim, SimEnv)
    pilot = Autopilot(sim.track)
    steps = run(env, lambda e: pilot.act(sim.car.state), 100)  # type: ignore[arg-type]
    assert len(steps) == 50 and steps[-1][3] and not steps[-1][2]
    assert steps[-1][4]["race_time_ms"] == 50 * 50


def test_end_on_wall_terminates_at_the_first_contact() -> None:
    """A crash is a terminal state (``terminated``, not ``truncated``: nothing is bootstrapped
    beyond it), and it is no finish: no lap time, ``finished`` false."""
    env = SimEnv(SimEnvConfig(end_on_wall=True))
    env.reset(seed=0)
    steps = run(env, lambda e: np.array([1.0, 0.0, 1.0], np.float32), 200)
    *_, terminated, truncated, info = steps[-1]
    assert terminated and not truncated and info["wall_contact"]
    assert not info["finished"] and "lap_time_s" not in info
    assert not any(step[4]["wall_contact"] for step in steps[:-1])


def test_same_seed_same_trajectory() -> None:
    def trajectory(seed: int) -> list[Any]:
        env = SimEnv()
        obs, _ = env.reset(seed=seed)
        actions = np.random.default_rng(7).uniform(-1, 1, (150, 3)).astype(np.float32)
        out: list[Any] = [obs]
        for action in actions:
            obs, reward, terminated, truncated, info = env.step(action)
            out.append((obs, reward, terminated, truncated, info))
        return out

    first, second, other = trajectory(3), trajectory(3), trajectory(4)
    for a, b in zip(first[1:], second[1:], strict=True):
        for key in a[0]:
            np.testing.assert_array_equal(a[0][key], b[0][key])
        assert a[1:] == b[1:]
    assert first[-1][4]["position"] != other[-1][4]["position"]  # seeded start noise


def test_gas_pays_progress_reward() -> None:
    env = build_env(load_config(None, []))
    env.reset(seed=0)
    steps = run(env, lambda e: GAS, 20)  # type: ignore[arg-type]
    assert all(step[1] > 0 for step in steps[1:])
    assert steps[-1][4]["speed_ms"] > 10.0
    assert steps[-1][0]["speed"][0] == pytest.approx(steps[-1][4]["speed_ms"] * 3.6 / 1000.0)
    vx, _, vz = steps[-1][4]["velocity"]
    assert np.hypot(vx, vz) == pytest.approx(steps[-1][4]["speed_ms"])
    assert steps[-1][4]["yaw_pitch_roll"][0] == env.unwrapped.car.state.heading  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "override", [{"time_step_ms": 0}, {"lidar_beams": 0}, {"lidar_range_m": -1.0}, {"lidr": 3}]
)
def test_config_rejects_bad_values(override: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        SimEnvConfig(**override)


def test_unknown_track_fails_in_the_config() -> None:
    with pytest.raises(pydantic.ValidationError, match="known tracks: .*default"):
        SimEnvConfig(track="monaco")


def test_respawn_puts_the_car_at_the_last_checkpoint_and_the_episode_goes_on() -> None:
    env = SimEnv()
    env.reset(seed=0)
    pilot = Autopilot(env.track)
    run(env, lambda e: pilot.act(e.car.state), 200)  # past the first checkpoints
    before = env.step(pilot.act(env.car.state))[4]
    assert before["checkpoint"] >= 2
    obs, info = env.respawn()
    assert info["respawns"] == 1 and info["speed_ms"] == 0.0
    assert env.car.state.s == pytest.approx(env.track.checkpoints_m[before["checkpoint"] - 1])
    assert info["race_time_ms"] == before["race_time_ms"]
    assert info["progress_m"] == before["progress_m"] and env.observation_space.contains(obs)
    assert env.step(GAS)[4]["respawns"] == 1
    assert env.reset(seed=0)[1]["respawns"] == 0

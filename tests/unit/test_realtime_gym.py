"""Any Gymnasium env in real time (GymWorld through rtgym): actions, rewards, flags, pacing."""

from __future__ import annotations

import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

from tmrl2.envs.realtime import default_action, make_realtime_gym_env

STEP_MS = 20


class PointEnv(gym.Env[Any, np.ndarray]):
    """A point moved by its action (any dimension); reward: the sum of the action applied."""

    def __init__(
        self,
        dim: int = 2,
        low: float | list[float] = -1.0,
        high: float | list[float] = 1.0,
        dict_obs: bool = False,
        terminate_after: int | None = None,
    ) -> None:
        self.action_space = spaces.Box(
            np.full(dim, low, np.float32), np.full(dim, high, np.float32), (dim,), np.float32
        )
        pos = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.observation_space: spaces.Space[Any] = (
            spaces.Dict({"pos": pos, "steps": spaces.Box(0, np.inf, (1,), np.float32)})
            if dict_obs
            else pos
        )
        self.dict_obs, self.terminate_after = dict_obs, terminate_after
        self.pos = np.zeros(dim, np.float32)
        self.steps = 0
        self.applied: list[np.ndarray] = []
        self.reset_args: list[tuple[int | None, dict[str, Any] | None]] = []

    def _obs(self) -> Any:
        if self.dict_obs:
            return {"pos": self.pos.copy(), "steps": np.array([self.steps], np.float32)}
        return self.pos.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.reset_args.append((seed, options))
        self.pos[:] = 0.0
        self.steps = 0
        return self._obs(), {"start": True}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.applied.append(np.array(action))
        self.pos += action
        self.steps += 1
        terminated = self.terminate_after is not None and self.steps >= self.terminate_after
        return self._obs(), float(np.sum(action)), terminated, False, {"steps": self.steps}


class Made:
    """``make_env`` for the tests, keeping the env it made."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.env: Any = None

    def __call__(self) -> gym.Env[Any, Any]:
        self.env = self.make()
        return self.env  # type: ignore[no-any-return]


def test_pendulum_runs_in_real_time_with_its_rewards_and_holds_the_period() -> None:
    env = make_realtime_gym_env(lambda: gym.make("Pendulum-v1"), STEP_MS)
    twin = gym.make("Pendulum-v1")  # fast: stepped with the action in force at each capture
    idle = gym.make("Pendulum-v1")  # fast, no torque
    try:
        assert set(env.observation_space.keys()) == {"obs", "prev_actions"}  # type: ignore[attr-defined]
        obs, _ = env.reset(seed=3)
        np.testing.assert_allclose(obs["obs"], twin.reset(seed=3)[0])
        idle.reset(seed=3)
        np.testing.assert_array_equal(obs["prev_actions"], np.zeros((1, 1), np.float32))
        in_force = np.zeros(1, np.float32)  # the default action applies during the 1st step
        returns = []
        for k in range(100):
            action = np.array([2.0 * np.sin(k / 6.0)], np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns.append(time.perf_counter())
            twin_obs, twin_reward = twin.step(in_force)[:2]
            in_force = action
            np.testing.assert_allclose(obs["obs"], twin_obs, rtol=1e-5, atol=1e-6)
            assert reward == pytest.approx(float(twin_reward)) and float(reward) < 0.0
            assert not terminated and not truncated
            assert obs["prev_actions"].shape == (1, 1) and obs["prev_actions"].dtype == np.float32
            np.testing.assert_array_equal(obs["prev_actions"][0], action)
            assert env.observation_space.contains(obs)
            idle_obs = idle.step(np.zeros(1, np.float32))[0]
        assert not np.allclose(obs["obs"], idle_obs, atol=1e-2)  # the torque moved it
        intervals_ms = 1000.0 * np.diff(returns)
        period_ms = statistics.median(intervals_ms)
        p90 = np.percentile(intervals_ms, 90)
        print(f"period for {STEP_MS} ms: median {period_ms:.2f} ms, p90 {p90:.2f} ms")
        assert abs(period_ms - STEP_MS) <= 0.15 * STEP_MS
    finally:
        env.close()
        twin.close()
        idle.close()


@pytest.mark.parametrize("dim", [2, 4])
def test_box_actions_of_any_size_are_applied_and_remembered(dim: int) -> None:
    made = Made(lambda: PointEnv(dim))
    env = make_realtime_gym_env(made, STEP_MS, action_history=3)
    try:
        space = env.observation_space
        assert space["prev_actions"] == spaces.Box(-1.0, 1.0, (3, dim), np.float32)  # type: ignore[index]
        obs, info = env.reset(seed=1, options={"x": 1})
        assert made.env.reset_args == [(1, {"x": 1})] and info == {"start": True}
        sent = [np.linspace(-0.5, 1.0, dim, dtype=np.float32) * (k + 1) / 4 for k in range(4)]
        for k, action in enumerate(sent):
            obs, reward, terminated, truncated, info = env.step(action)
            assert info["steps"] == k + 1
            applied = sent[k - 1] if k else np.zeros(dim, np.float32)
            np.testing.assert_array_equal(made.env.applied[-1], applied)
            assert reward == pytest.approx(float(applied.sum()))
        np.testing.assert_allclose(obs["obs"], np.sum(sent[:3], axis=0), rtol=1e-6)
        np.testing.assert_array_equal(obs["prev_actions"], np.stack(sent[1:]))  # newest last
        assert env.observation_space.contains(obs)
        assert reward != 0.0  # the env's own reward, not the telemetry envs' 0
    finally:
        env.close()


def test_default_action_is_zero_or_the_middle_of_the_bounds() -> None:
    assert default_action(spaces.Box(-1.0, 1.0, (3,), np.float32)).tolist() == [0.0] * 3
    low = np.array([1.0, -1.0, 0.0, 1.0, -np.inf])
    box = spaces.Box(low, np.array([3.0, 1.0, np.inf, np.inf, -2.0]), dtype=np.float64)
    assert default_action(box).tolist() == [2.0, 0.0, 0.0, 1.0, -2.0]
    made = Made(lambda: PointEnv(2, low=[1.0, -1.0], high=[3.0, 1.0]))
    env = make_realtime_gym_env(made, STEP_MS)
    try:
        obs, _ = env.reset()
        np.testing.assert_array_equal(obs["prev_actions"], [[2.0, 0.0]])
        obs = env.step(np.array([10.0, -10.0], np.float32))[0]
        np.testing.assert_array_equal(made.env.applied[0], [2.0, 0.0])  # the default applied
        np.testing.assert_array_equal(obs["prev_actions"], [[3.0, -1.0]])  # clipped to bounds
    finally:
        env.close()


def test_a_dict_observation_keeps_its_keys() -> None:
    env = make_realtime_gym_env(lambda: PointEnv(2, dict_obs=True), STEP_MS)
    try:
        assert set(env.observation_space.keys()) == {"pos", "steps", "prev_actions"}  # type: ignore[attr-defined]
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"pos", "steps", "prev_actions"}
        for _ in range(3):
            obs = env.step(np.array([0.5, -0.5], np.float32))[0]
        assert obs["steps"].tolist() == [3.0] and env.observation_space.contains(obs)
        np.testing.assert_allclose(obs["pos"], [1.0, -1.0])  # two steps under [0.5, -0.5]
    finally:
        env.close()


def test_time_limit_truncation_and_termination_end_episodes_cleanly() -> None:
    made = Made(lambda: TimeLimit(PointEnv(2), max_episode_steps=5))
    env = make_realtime_gym_env(made, STEP_MS)
    try:
        for episode in range(2):
            env.reset(seed=episode)
            ends = [env.step(np.zeros(2, np.float32))[2:4] for _ in range(5)]
            assert ends == [(False, False)] * 4 + [(False, True)]
            assert made.env.unwrapped.steps == 5  # never stepped past the end
    finally:
        env.close()
    made = Made(lambda: PointEnv(2, terminate_after=3))
    env = make_realtime_gym_env(made, STEP_MS)
    try:
        env.reset()
        ends = [env.step(np.zeros(2, np.float32))[2:4] for _ in range(3)]
        assert ends == [(False, False)] * 2 + [(True, False)]
        assert made.env.steps == 3
        with pytest.raises(RuntimeError):  # rtgym: the episode is over
            env.step(np.zeros(2, np.float32))
        obs, _ = env.reset()
        assert not obs["obs"].any()
    finally:
        env.close()


def test_no_action_history_means_no_prev_actions() -> None:
    made = Made(lambda: PointEnv(2))
    env = make_realtime_gym_env(made, STEP_MS, action_history=0)
    try:
        assert set(env.observation_space.keys()) == {"obs"}  # type: ignore[attr-defined]
        obs, _ = env.reset()
        assert set(obs) == {"obs"}
        for _ in range(3):
            obs = env.step(np.array([1.0, 0.5], np.float32))[0]
        assert set(obs) == {"obs"} and env.observation_space.contains(obs)
        np.testing.assert_allclose(obs["obs"], [2.0, 1.0])
    finally:
        env.close()


def test_only_flat_box_actions_run_in_real_time() -> None:
    class Discrete(PointEnv):
        def __init__(self) -> None:
            super().__init__()
            self.action_space = spaces.Discrete(3)  # type: ignore[assignment]

    with pytest.raises(TypeError, match="1-D Box"):
        make_realtime_gym_env(Discrete, STEP_MS)
    env = make_realtime_gym_env(lambda: PointEnv(2), STEP_MS)
    try:
        with pytest.raises(NotImplementedError):  # only the simulator respawns
            env.request_respawn()  # type: ignore[attr-defined]
    finally:
        env.close()

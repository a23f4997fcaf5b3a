"""Real-time stepping of the simulator through rtgym, with the fast mode's exact contract.

In real time the world does not wait for the policy: rtgym applies each action for one time
step of wall clock (``time_step_ms``) while the next action is being computed, and captures
the observation at the end of the step. Here the "world" is a :class:`SimEnv` advanced by one
step each time rtgym captures an observation, so the car moves ``time_step_ms`` of simulated
time per ``time_step_ms`` of wall clock, under the action that was in force during that time.

The same glue runs the game through the bridge (:mod:`tmrl2.envs.trackmania.env`): anything
that implements :class:`World` (``send`` an action at a step's start, ``capture`` the
observation near its end) runs in real time through :func:`make_realtime_env`.

rtgym returns tuple observations with its action buffer appended; :class:`RealTimeDictEnv`
turns them back into the fast mode's ``Dict`` (``prev_actions`` is rtgym's buffer: the
actions sent, newest last, the newest one not applied yet), merges the simulator's own
truncation (wall, step limit) into ``truncated``, and pauses rtgym's clock at the end of
each episode so that a slow reset does not count as a missed time step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from rtgym import DEFAULT_CONFIG_DICT, RealTimeGymInterface
from rtgym.envs.real_time_env import RealTimeEnv

from tmrl2.envs.sim.env import Obs, SimEnv, SimEnvConfig

_TRUNCATED = "_sim_truncated"
"""Private info key carrying the world's truncation through rtgym (which only knows
``terminated``); :class:`RealTimeDictEnv` removes it."""

StepResult = tuple[Obs, float, bool, bool, dict[str, Any]]


class World(Protocol):
    """What runs in real time: the simulator, or the game through the bridge."""

    observation_space: spaces.Dict
    action_space: spaces.Box

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Obs, dict[str, Any]]:
        """Start an episode; returns its first observation."""
        ...

    def send(self, action: np.ndarray) -> None:
        """Apply ``action`` now, at the start of a time step."""

    def capture(self) -> StepResult:
        """The observation near the end of the time step, with its flags (reward 0: the
        reward wrapper computes it from the telemetry)."""
        ...

    def request_respawn(self) -> None:
        """Respawn the car at its last checkpoint when the next capture runs (on the capture
        thread: the world is never driven from two threads)."""

    def close(self) -> None: ...


class SimWorld:
    """The simulator as a real-time world: it advances one step when rtgym captures, under
    the action in force during that step."""

    def __init__(self, config: SimEnvConfig) -> None:
        self.sim = SimEnv(config)
        self.observation_space = self.sim.observation_space
        self.action_space = self.sim.action_space
        self._action = np.zeros(3, np.float32)

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Obs, dict[str, Any]]:
        return self.sim.reset(seed=seed, options=options)

    def send(self, action: np.ndarray) -> None:
        self._action = np.asarray(action, np.float32)

    def capture(self) -> StepResult:
        return self.sim.step(self._action)

    def request_respawn(self) -> None:
        self.sim.request_respawn()

    def close(self) -> None:
        self.sim.close()


class WorldInterface(RealTimeGymInterface):
    """rtgym's view of a :class:`World` (rtgym builds it from ``make_world``)."""

    def __init__(self, make_world: Callable[[], World]) -> None:
        self.world = make_world()
        self.keys = [key for key in self.world.observation_space if key != "prev_actions"]
        """Observation parts passed through rtgym, in order (rtgym appends the actions)."""

    def get_observation_space(self) -> spaces.Tuple:
        space = self.world.observation_space
        return spaces.Tuple(tuple(space[key] for key in self.keys))

    def get_action_space(self) -> spaces.Box:
        return self.world.action_space

    def get_default_action(self) -> np.ndarray:
        return np.zeros(3, np.float32)

    def send_control(self, control: np.ndarray | None) -> None:
        if control is not None:
            self.world.send(np.asarray(control, np.float32))

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        obs, info = self.world.reset(seed, options)
        return [obs[key] for key in self.keys], info

    def get_obs_rew_terminated_info(
        self,
    ) -> tuple[list[np.ndarray], float, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.world.capture()
        info[_TRUNCATED] = truncated
        return [obs[key] for key in self.keys], reward, terminated, info


class RealTimeDictEnv(gym.Wrapper[Obs, np.ndarray, tuple[Any, ...], np.ndarray]):
    """The rtgym env with the world's ``Dict`` observations and truncation."""

    def __init__(self, env: RealTimeEnv) -> None:
        super().__init__(env)
        self._rt = env
        self._keys: list[str] = env.interface.keys
        self.world: World = env.interface.world
        self.observation_space = self.world.observation_space
        self.action_space = self.world.action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        if self._rt.running:  # a wrapper ended the episode (a stall): pause rtgym's clock
            self._rt.wait()
        obs, info = self._rt.reset(seed=seed, options=options)
        return self._dict_obs(obs, self._keys), info

    def request_respawn(self) -> None:
        """See :meth:`World.request_respawn`."""
        self.world.request_respawn()

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._rt.step(action)
        truncated = bool(truncated or info.pop(_TRUNCATED, False)) and not terminated
        if terminated or truncated:
            self._rt.wait()
        return self._dict_obs(obs, self._keys), float(reward), bool(terminated), truncated, info

    def close(self) -> None:
        self._rt.stop()
        self.world.close()
        super().close()

    @staticmethod
    def _dict_obs(obs: tuple[Any, ...], keys: list[str]) -> Obs:
        parts, actions = obs[: len(keys)], obs[len(keys) :]
        prev_actions = np.clip(np.asarray(actions, np.float32).reshape(len(actions), 3), -1, 1)
        return {**dict(zip(keys, parts, strict=True)), "prev_actions": prev_actions}


def make_realtime_env(
    make_world: Callable[[], World],
    time_step_ms: int,
    action_history: int,
    capture_lead_ms: float = 0.0,
) -> RealTimeDictEnv:
    """A world stepped at ``1000 / time_step_ms`` Hz of wall clock: each action is applied at
    its step's start and the observation captured ``capture_lead_ms`` before its end."""
    step_s = time_step_ms / 1000.0
    rt_config = dict(DEFAULT_CONFIG_DICT)
    rt_config.update(
        interface=WorldInterface,
        interface_kwargs={"make_world": make_world},
        time_step_duration=step_s,
        start_obs_capture=max(step_s - capture_lead_ms / 1000.0, 0.0),
        time_step_timeout_factor=1.0,
        # The world counts steps and truncates itself; rtgym's limit stays off.
        ep_max_length=np.inf,
        act_in_obs=True,
        act_buf_len=action_history,
        reset_act_buf=True,
        wait_on_done=False,
        benchmark=False,
    )
    return RealTimeDictEnv(RealTimeEnv(rt_config))


def make_realtime_sim_env(config: SimEnvConfig) -> gym.Env[Obs, np.ndarray]:
    """The simulator stepped at ``1000 / config.time_step_ms`` Hz of wall clock (it computes
    its observation in well under a millisecond: captured at the step's end)."""
    return make_realtime_env(lambda: SimWorld(config), config.time_step_ms, config.action_history)

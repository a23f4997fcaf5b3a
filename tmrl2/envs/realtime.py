"""Real-time stepping of the simulator through rtgym, with the fast mode's exact contract.

In real time the world does not wait for the policy: rtgym applies each action for one time
step of wall clock (``time_step_ms``) while the next action is being computed, and captures
the observation at the end of the step. Here the "world" is a :class:`SimEnv` advanced by one
step each time rtgym captures an observation, so the car moves ``time_step_ms`` of simulated
time per ``time_step_ms`` of wall clock, under the action that was in force during that time.

rtgym returns tuple observations with its action buffer appended; :class:`RealTimeSimEnv`
turns them back into the fast mode's ``Dict`` (``prev_actions`` is rtgym's buffer: the
actions sent, newest last, the newest one not applied yet), merges the simulator's own
truncation (stuck, wall, step limit) into ``truncated``, and pauses rtgym's clock at the end of
each episode so that a slow reset does not count as a missed time step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from rtgym import DEFAULT_CONFIG_DICT, RealTimeGymInterface
from rtgym.envs.real_time_env import RealTimeEnv

from tmrl2.envs.sim.env import Obs, SimEnv, SimEnvConfig
from tmrl2.rewards.base import Reward

_TRUNCATED = "_sim_truncated"
"""Private info key carrying the simulator's truncation through rtgym (which only knows
``terminated``); :class:`RealTimeSimEnv` removes it."""


class SimInterface(RealTimeGymInterface):
    """rtgym's view of the simulator: the sim steps when rtgym captures an observation."""

    def __init__(self, config: SimEnvConfig, reward: Reward | None = None) -> None:
        self.sim = SimEnv(config, reward)
        self._action = np.zeros(3, np.float32)
        self.keys = [key for key in self.sim.observation_space if key != "prev_actions"]
        """Observation parts passed through rtgym, in order (rtgym appends the actions)."""

    def get_observation_space(self) -> spaces.Tuple:
        space = self.sim.observation_space
        return spaces.Tuple(tuple(space[key] for key in self.keys))

    def get_action_space(self) -> spaces.Box:
        return self.sim.action_space

    def get_default_action(self) -> np.ndarray:
        return np.zeros(3, np.float32)

    def send_control(self, control: np.ndarray | None) -> None:
        if control is not None:
            self._action = np.asarray(control, np.float32)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[np.ndarray], dict[str, Any]]:
        obs, info = self.sim.reset(seed=seed, options=options)
        return [obs[key] for key in self.keys], info

    def get_obs_rew_terminated_info(
        self,
    ) -> tuple[list[np.ndarray], float, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.sim.step(self._action)
        info[_TRUNCATED] = truncated
        return [obs[key] for key in self.keys], reward, terminated, info


class RealTimeSimEnv(gym.Wrapper[Obs, np.ndarray, tuple[Any, ...], np.ndarray]):
    """The rtgym env with the simulator's ``Dict`` observations and truncation."""

    def __init__(self, env: RealTimeEnv) -> None:
        super().__init__(env)
        self._rt = env
        self._keys: list[str] = env.interface.keys
        self.observation_space = env.interface.sim.observation_space
        self.action_space = env.interface.sim.action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        obs, info = self._rt.reset(seed=seed, options=options)
        return self._dict_obs(obs, self._keys), info

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._rt.step(action)
        truncated = bool(truncated or info.pop(_TRUNCATED, False)) and not terminated
        if terminated or truncated:
            self._rt.wait()
        return self._dict_obs(obs, self._keys), float(reward), bool(terminated), truncated, info

    def close(self) -> None:
        self._rt.stop()
        super().close()

    @staticmethod
    def _dict_obs(obs: tuple[Any, ...], keys: list[str]) -> Obs:
        parts, actions = obs[: len(keys)], obs[len(keys) :]
        prev_actions = np.clip(np.asarray(actions, np.float32).reshape(len(actions), 3), -1, 1)
        return {**dict(zip(keys, parts, strict=True)), "prev_actions": prev_actions}


def make_realtime_sim_env(
    config: SimEnvConfig, reward: Reward | None = None
) -> gym.Env[Obs, np.ndarray]:
    """The simulator stepped at ``1000 / config.time_step_ms`` Hz of wall clock."""
    step_s = config.time_step_ms / 1000.0
    rt_config = dict(DEFAULT_CONFIG_DICT)
    rt_config.update(
        interface=SimInterface,
        interface_kwargs={"config": config, "reward": reward},
        time_step_duration=step_s,
        # The sim computes its observation in well under a millisecond: capture at the end.
        start_obs_capture=step_s,
        time_step_timeout_factor=1.0,
        # The sim counts steps and truncates itself; rtgym's limit stays off.
        ep_max_length=np.inf,
        act_in_obs=True,
        act_buf_len=config.action_history,
        reset_act_buf=True,
        wait_on_done=False,
        benchmark=False,
    )
    return RealTimeSimEnv(RealTimeEnv(rt_config))

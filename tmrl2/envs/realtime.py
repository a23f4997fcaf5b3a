"""Real-time stepping of the simulator through rtgym, with the fast mode's exact contract.

In real time the world does not wait for the policy: rtgym applies each action for one time
step of wall clock (``time_step_ms``) while the next action is being computed, and captures
the observation at the end of the step. Here the "world" is a :class:`SimEnv` advanced by one
step each time rtgym captures an observation, so the car moves ``time_step_ms`` of simulated
time per ``time_step_ms`` of wall clock, under the action that was in force during that time.

The simulator, the game through the bridge (:mod:`tmrl2.envs.trackmania.env`) and any
Gymnasium env (:func:`make_realtime_gym_env`) share one path, :mod:`tmrl2.envs.realtime_gym`:
anything that implements :class:`World` (``send`` an action at a step's start, ``capture`` the
observation near its end) runs in real time through :func:`make_realtime_env`; the simulator
is a :class:`GymWorld` around :class:`SimEnv`, as any other env.

rtgym returns tuple observations with its action buffer appended; :class:`RealTimeDictEnv`
turns them back into the fast mode's ``Dict`` (``prev_actions`` is rtgym's buffer: the
actions sent, newest last, the newest one not applied yet), merges the simulator's own
truncation (wall, step limit) into ``truncated``, and pauses rtgym's clock at the end of
each episode so that a slow reset does not count as a missed time step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from tmrl2.envs.realtime_gym import (
    GymWorld,
    RealTimeDictEnv,
    StepResult,
    World,
    WorldInterface,
    default_action,
    make_realtime_env,
    make_realtime_gym_env,
)
from tmrl2.envs.sim.env import Obs, SimEnv, SimEnvConfig

__all__ = [
    "GymWorld",
    "RealTimeDictEnv",
    "SimWorld",
    "StepResult",
    "World",
    "WorldInterface",
    "default_action",
    "make_realtime_env",
    "make_realtime_gym_env",
    "make_realtime_sim_env",
]


class SimWorld(GymWorld):
    """The simulator as a real-time world: it advances one step when rtgym captures, under
    the action in force during that step (``request_respawn`` is the simulator's)."""

    def __init__(self, config: SimEnvConfig) -> None:
        self.sim = SimEnv(config)
        super().__init__(self.sim)


def make_realtime_sim_env(config: SimEnvConfig) -> gym.Env[Obs, np.ndarray]:
    """The simulator stepped at ``1000 / config.time_step_ms`` Hz of wall clock (it computes
    its observation in well under a millisecond: captured at the step's end)."""
    return make_realtime_env(lambda: SimWorld(config), config.time_step_ms, config.action_history)

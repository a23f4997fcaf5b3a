"""Real time for any world, through rtgym: the simulator, the game, any Gymnasium env.

In real time the world does not wait for the policy: rtgym applies each action for one time
step of wall clock (``time_step_ms``) while the next action is being computed, and captures
the observation ``capture_lead_ms`` before the step's end. Anything that implements
:class:`World` (``send`` an action at a step's start, ``capture`` the observation near its end)
runs this way through :func:`make_realtime_env`. :class:`GymWorld` makes any Gymnasium env a
world: it advances its env by one ``step`` per capture, under the action in force during the
time step (a simulated robot moves one control period per period of wall clock; a real
device's env reads its sensors in ``step``). The simulator is a :class:`GymWorld` around
:class:`~tmrl2.envs.sim.env.SimEnv` (:mod:`tmrl2.envs.realtime`); the game has its own world
(:mod:`tmrl2.envs.trackmania.env`); :func:`make_realtime_gym_env` runs any other env.

rtgym returns tuple observations with its action buffer appended; :class:`RealTimeDictEnv`
turns them back into the world's ``Dict`` with ``prev_actions`` (``action_history``,
``act_dim``) float32: rtgym's buffer, the actions sent, newest last, the newest one not
applied yet, clipped to the action bounds (a ``prev_actions`` of the world's own is replaced
by it). It returns the world's reward and its truncation, ends rtgym's episode on either flag
(the world is never stepped past its end), and pauses rtgym's clock at the end of each episode
so that a slow reset does not count as a missed time step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from rtgym import DEFAULT_CONFIG_DICT, RealTimeGymInterface
from rtgym.envs.real_time_env import RealTimeEnv

__all__ = [
    "GymWorld",
    "RealTimeDictEnv",
    "StepResult",
    "World",
    "WorldInterface",
    "default_action",
    "make_realtime_env",
    "make_realtime_gym_env",
]

Obs = dict[str, Any]
StepResult = tuple[Obs, float, bool, bool, dict[str, Any]]

PREV_ACTIONS = "prev_actions"
"""The observation key of the actions sent (rtgym's buffer)."""
BOX_KEY = "obs"
"""The observation key of a world whose env observes a single space (not a ``Dict``)."""
_TERMINATED = "_rt_terminated"
_TRUNCATED = "_rt_truncated"
"""Private info keys carrying the world's flags through rtgym (which only knows one ``done``
flag, there ``terminated``); :class:`RealTimeDictEnv` removes them."""


class World(Protocol):
    """What runs in real time: the simulator, the game through the bridge, any Gymnasium env
    (:class:`GymWorld`). Its action space is a 1-D ``Box``."""

    observation_space: spaces.Dict
    action_space: spaces.Box

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Obs, dict[str, Any]]:
        """Start an episode; returns its first observation."""
        ...

    def send(self, action: np.ndarray) -> None:
        """Apply ``action`` now, at the start of a time step."""

    def capture(self) -> StepResult:
        """The observation near the end of the time step, with its reward (0 for the
        simulator and the game: the reward wrapper computes it from the telemetry) and flags."""
        ...

    def request_respawn(self) -> None:
        """Respawn the car at its last checkpoint when the next capture runs (on the capture
        thread: the world is never driven from two threads)."""

    def close(self) -> None: ...


def _box_1d(space: spaces.Space[Any]) -> spaces.Box:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise TypeError(f"real time needs a 1-D Box action space, got {space}")
    return space


def default_action(space: spaces.Box) -> np.ndarray:
    """The action at each episode's start and in the initial buffer: zeros, or the middle of
    the bounds where 0 lies outside them (the finite bound where the other one is infinite)."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    action = np.clip(np.zeros(space.shape), low, high)
    outside = ((low > 0) | (high < 0)) & np.isfinite(low) & np.isfinite(high)
    action[outside] = (low[outside] + high[outside]) / 2.0
    return action.astype(space.dtype)


class GymWorld:
    """A Gymnasium env as a real-time world: ``send`` stores the action, ``capture`` steps the
    env once under it and returns the env's own observation, reward and flags.

    The observation is the env's ``Dict``, or ``{"obs": observation}`` for any other space.
    ``request_respawn`` is the env's own (the simulator's), which must only flag the respawn
    for its next ``step``.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.env = env
        self.action_space = _box_1d(env.action_space)
        inner = env.observation_space
        self._wrap = not isinstance(inner, spaces.Dict)
        self.observation_space = (
            inner if isinstance(inner, spaces.Dict) else spaces.Dict({BOX_KEY: inner})
        )
        self._action = default_action(self.action_space)

    def _obs(self, obs: Any) -> Obs:
        return {BOX_KEY: obs} if self._wrap else dict(obs)

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Obs, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._obs(obs), info

    def send(self, action: np.ndarray) -> None:
        self._action = action

    def capture(self) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(self._action)
        return self._obs(obs), float(reward), bool(terminated), bool(truncated), dict(info)

    def request_respawn(self) -> None:
        respawn = getattr(self.env.unwrapped, "request_respawn", None)
        if respawn is None:
            raise NotImplementedError(f"{self.env} has no request_respawn")
        respawn()

    def close(self) -> None:
        self.env.close()


class WorldInterface(RealTimeGymInterface):
    """rtgym's view of a :class:`World` (rtgym builds it from ``make_world``)."""

    def __init__(self, make_world: Callable[[], World], action_history: int) -> None:
        self.world = make_world()
        _box_1d(self.world.action_space)
        replaced = {PREV_ACTIONS} if action_history > 0 else set()
        self.keys = [key for key in self.world.observation_space if key not in replaced]
        """Observation parts passed through rtgym, in order (rtgym appends the actions)."""

    def get_observation_space(self) -> spaces.Tuple:
        space = self.world.observation_space
        return spaces.Tuple(tuple(space[key] for key in self.keys))

    def get_action_space(self) -> spaces.Box:
        return self.world.action_space

    def get_default_action(self) -> np.ndarray:
        return default_action(self.world.action_space)

    def send_control(self, control: np.ndarray | None) -> None:
        if control is not None:
            self.world.send(np.asarray(control, self.world.action_space.dtype))

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Any], dict[str, Any]]:
        obs, info = self.world.reset(seed, options)
        return [obs[key] for key in self.keys], info

    def get_obs_rew_terminated_info(self) -> tuple[list[Any], float, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.world.capture()
        info[_TERMINATED], info[_TRUNCATED] = terminated, truncated
        return [obs[key] for key in self.keys], reward, terminated or truncated, info


class RealTimeDictEnv(gym.Wrapper[Obs, np.ndarray, tuple[Any, ...], np.ndarray]):
    """The rtgym env with the world's ``Dict`` observations, reward and flags."""

    def __init__(self, env: RealTimeEnv, action_history: int) -> None:
        super().__init__(env)
        self._rt = env
        self._keys: list[str] = env.interface.keys
        self.world: World = env.interface.world
        self.action_space = space = self.world.action_space
        self._history = action_history
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)
        parts = {key: self.world.observation_space[key] for key in self._keys}
        if action_history > 0:
            rows = (action_history, 1)
            low, high = np.tile(self._low, rows), np.tile(self._high, rows)
            parts[PREV_ACTIONS] = spaces.Box(low, high, low.shape, np.float32)
        self.observation_space = spaces.Dict(parts)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, dict[str, Any]]:
        if self._rt.running:  # a wrapper ended the episode (a stall): pause rtgym's clock
            self._rt.wait()
        obs, info = self._rt.reset(seed=seed, options=options)
        return self._dict_obs(obs), info

    def request_respawn(self) -> None:
        """See :meth:`World.request_respawn`."""
        self.world.request_respawn()

    def step(self, action: np.ndarray) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        obs, reward, _, rt_truncated, info = self._rt.step(action)
        terminated = bool(info.pop(_TERMINATED, False))
        truncated = bool(rt_truncated or info.pop(_TRUNCATED, False)) and not terminated
        if terminated or truncated:
            self._rt.wait()
        return self._dict_obs(obs), float(reward), terminated, truncated, info

    def close(self) -> None:
        self._rt.stop()
        self.world.close()
        super().close()

    def _dict_obs(self, obs: tuple[Any, ...]) -> Obs:
        n = len(self._keys)
        parts = dict(zip(self._keys, obs[:n], strict=True))
        if self._history > 0:
            actions = np.asarray(obs[n:], np.float32).reshape(self._history, -1)
            parts[PREV_ACTIONS] = np.clip(actions, self._low, self._high)
        return parts


def make_realtime_env(
    make_world: Callable[[], World],
    time_step_ms: int,
    action_history: int,
    capture_lead_ms: float = 0.0,
) -> RealTimeDictEnv:
    """A world stepped at ``1000 / time_step_ms`` Hz of wall clock: each action is applied at
    its step's start and the observation captured ``capture_lead_ms`` before its end; the
    last ``action_history`` actions sent are the observation's ``prev_actions`` (none at 0)."""
    if action_history < 0:
        raise ValueError(f"action_history must be >= 0, got {action_history}")
    step_s = time_step_ms / 1000.0
    rt_config = dict(DEFAULT_CONFIG_DICT)
    rt_config.update(
        interface=WorldInterface,
        interface_kwargs={"make_world": make_world, "action_history": action_history},
        time_step_duration=step_s,
        start_obs_capture=max(step_s - capture_lead_ms / 1000.0, 0.0),
        time_step_timeout_factor=1.0,
        # The world counts steps and truncates itself; rtgym's limit stays off.
        ep_max_length=np.inf,
        # rtgym applies the newest action of its buffer at reset: it keeps one, unseen at 0.
        act_in_obs=action_history > 0,
        act_buf_len=max(action_history, 1),
        reset_act_buf=True,
        wait_on_done=False,
        benchmark=False,
    )
    return RealTimeDictEnv(RealTimeEnv(rt_config), action_history)


def make_realtime_gym_env(
    make_env: Callable[[], gym.Env[Any, Any]],
    time_step_ms: int,
    action_history: int = 1,
    capture_lead_ms: float = 0.0,
) -> gym.Env[Any, Any]:
    """Any Gymnasium env with a 1-D ``Box`` action space in real time (:class:`GymWorld`):
    one ``step`` of the env per ``time_step_ms`` of wall clock. Observations are a ``Dict``:
    the env's keys (``{"obs": ...}`` for a non-``Dict`` env) plus ``prev_actions``
    (``action_history``, ``act_dim``) float32 when ``action_history > 0``; rewards and flags
    are the env's (a ``TimeLimit`` inside it comes through as ``truncated``)."""
    return make_realtime_env(
        lambda: GymWorld(make_env()), time_step_ms, action_history, capture_lead_ms
    )

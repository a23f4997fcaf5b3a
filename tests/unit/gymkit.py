"""Tiny Gymnasium envs for ``env.kind: gym`` tests (no Box2D, no MuJoCo), registered on import,
and custom env classes that keep or break the constructor contract."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

DICT_ID = "Tmrl2Test/Dict-v0"
IMAGE_ID = "Tmrl2Test/Image-v0"
RENDER_ID = "Tmrl2Test/Render-v0"


class DictEnv(gym.Env[Any, np.ndarray]):
    """Dict observation (a float64 vector and a 2x2 grid), a (2, 2) action; reward -|a|^2."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict(
            {
                "pos": spaces.Box(-10.0, 10.0, (2,), np.float64),
                "grid": spaces.Box(0.0, 1.0, (2, 2), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2, 2), np.float32)
        self.t = 0
        self.last_action: np.ndarray | None = None

    def _obs(self) -> dict[str, np.ndarray]:
        grid = np.full((2, 2), self.t / 10, np.float32)
        return {"pos": np.array([self.t, -self.t], np.float64), "grid": grid}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.last_action = np.array(action)
        self.t += 1
        return self._obs(), -float(np.sum(np.square(action))), self.t >= 10, False, {}


class ImageEnv(gym.Env[np.ndarray, np.ndarray]):
    """A (12, 16, 3) uint8 image observation whose pixels all equal the step count x 10 (red
    channel), 0 (green), 255 (blue); render returns the same image."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (12, 16, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def _image(self) -> np.ndarray:
        image = np.zeros((12, 16, 3), np.uint8)
        image[..., 0] = self.t * 10
        image[..., 2] = 255
        return image

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._image(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._image(), 1.0, False, False, {}

    def render(self) -> np.ndarray:  # type: ignore[override]
        return self._image()


class RenderEnv(ImageEnv):
    """A vector observation; its ``rgb_array`` render is :class:`ImageEnv`'s image."""

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)  # type: ignore[assignment]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        _, reward, terminated, truncated, info = super().step(action)
        return np.zeros(2, np.float32), reward, terminated, truncated, info


for _id, _cls in ((DICT_ID, DictEnv), (IMAGE_ID, ImageEnv), (RENDER_ID, RenderEnv)):
    if _id not in gym.envs.registry:
        gym.register(_id, entry_point=f"{__name__}:{_cls.__name__}", max_episode_steps=50)


class BadCtorEnv(gym.Env[np.ndarray, np.ndarray]):
    """Breaks the contract: EVO RL calls ``BadCtorEnv(env_config, reward=reward)``."""

    def __init__(self, foo: int, bar: int) -> None:
        self.foo, self.bar = foo, bar


class RewardedEnv(gym.Env[np.ndarray, np.ndarray]):
    """Keeps the contract of an env rewarded by the reward section."""

    def __init__(self, config: Any, reward: Any) -> None:
        self.config, self.reward = config, reward


class OwnRewardEnv(gym.Env[np.ndarray, np.ndarray]):
    """Brings its own reward: built as ``OwnRewardEnv(env_config)``."""

    provides_reward = True

    def __init__(self, config: Any) -> None:
        self.config = config
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)


class OwnRewardWithTwoArgs(OwnRewardEnv):
    """Says it brings its reward but still wants one."""

    def __init__(self, config: Any, reward: Any) -> None:
        super().__init__(config)

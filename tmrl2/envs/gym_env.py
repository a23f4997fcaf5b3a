"""Any Gymnasium env as an EVO RL env: ``env.kind: gym`` with ``env.id`` (docs/envs.md).

The env is made with ``gymnasium.make(id, **kwargs)`` (after importing the modules of
``env.import``, so that their ids are registered) and adapted to what the learners take:

- actions: a continuous ``Box`` of any shape, seen as a 1-D float32 ``Box`` (clipped to the
  bounds and reshaped on the way in); ``Discrete`` and other spaces are refused, SAC acts in
  continuous spaces;
- observations: a ``Box`` or a ``Dict`` of ``Box``; non-image parts are flattened to 1-D
  float32, uint8 images kept as they are; ``frame_stack: k`` stacks the last ``k``
  observations (oldest first, the first one repeated after a reset);
- ``pixels: true``: the CNN agent's ``{"image": (k, H, W)}`` uint8 grey (or ``(k, H, W, 3)``)
  from the env's image observation, or from its ``rgb_array`` render when it observes no image;
- ``realtime: true``: stepped at ``1000 / time_step_ms`` Hz of wall clock through
  :func:`tmrl2.envs.realtime.make_realtime_gym_env` (previous actions in the observation).

The env brings its own reward (``provides_reward``): no racing reward is built for it.
"""

from __future__ import annotations

import difflib
import importlib
import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import find_highest_version, parse_env_id
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from tmrl2.config import registry
from tmrl2.config.base import ComponentConfig
from tmrl2.config.load import ConfigError

IMAGE_KEY = "image"
"""The observation key of ``pixels: true`` (the CNN agent's ``model.image_key`` default)."""

GREY = np.array([0.299, 0.587, 0.114], np.float32)
"""Luma weights of the RGB to grey conversion (ITU-R BT.601)."""


class GymEnvConfig(ComponentConfig):
    """A registered Gymnasium env, adapted to the learners (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    kind: str = "gym"
    """``gym``: an env made by ``gymnasium.make``."""
    imports: list[str] = Field(default=[], alias="import")
    """Modules imported before ``gymnasium.make`` so that the ids they register exist (YAML
    key ``import``; one name or a list), e.g. ``import: my_pkg.envs``."""
    id: str
    """A registered Gymnasium id, e.g. ``Pendulum-v1``, ``CarRacing-v3`` (or ``module:Id``,
    gymnasium's own form, which imports ``module`` first)."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments of ``gymnasium.make``, e.g. ``{continuous: true}``."""
    max_episode_steps: int | None = Field(default=None, gt=0)
    """Truncate episodes after this many steps; null: the id's own limit."""
    action_repeat: int = Field(default=1, ge=1)
    """Each action is applied for this many env steps, their rewards summed, the last
    observation kept (stops early at an episode end): fewer, longer decisions (e.g. 2 for
    CarRacing, as rl-baselines3-zoo). The env's time limit still counts its own steps."""
    frame_stack: int = Field(default=1, ge=1)
    """Observations stacked, oldest first: each part gets a leading axis of this size (1: the
    observation as it is, no stacking axis, except the ``image`` of ``pixels``)."""
    pixels: bool = False
    """Observe pixels (for ``model.kind: cnn``): ``{"image": (frame_stack, H, W)}`` uint8, from
    the env's own image observation (an ``(H, W, 3)`` uint8 Box, e.g. CarRacing's) or else
    from its ``rgb_array`` render."""
    grayscale: bool = True
    """Grey frames ``(H, W)``; false: colour ``(H, W, 3)`` (``pixels`` only)."""
    resize: tuple[int, int] | None = None
    """``[H, W]`` of the frames (area averaging), e.g. ``[64, 64]``; null: the env's size
    (``pixels`` only)."""
    realtime: bool = False
    """Step at ``1000 / time_step_ms`` Hz of wall clock (the env does not wait for the policy);
    the observation becomes a Dict with ``prev_actions`` (and ``obs`` for a Box env)."""
    time_step_ms: int = Field(default=50, gt=0)
    """Wall-clock time per step in real time."""
    action_history: int = Field(default=1, ge=0)
    """Real time only: previous actions in the observation (``prev_actions``, newest last; the
    actions in flight are part of the state)."""

    @field_validator("imports", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("imports")
    @classmethod
    def _import_modules(cls, value: list[str]) -> list[str]:
        for name in value:
            import_module(name, "env.import")
        return value

    @field_validator("id")
    @classmethod
    def _registered(cls, value: str, info: ValidationInfo) -> str:
        if "imports" in info.data:  # else the imports failed: that is the error to read
            check_id(value)
        return value

    @field_validator("resize")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"expected [height, width] in pixels, both at least 1, got {value}")
        return value


def import_module(name: str, where: str) -> None:
    """Import ``name`` for its registrations; refused for a config from a checkpoint that is
    not trusted (importing runs the module's code)."""
    if not registry.imports_trusted():
        raise ValueError(
            f"{where} names the module {name!r}: this config comes from a checkpoint, and "
            "importing it would run that module's code. If you trust where the checkpoint came "
            "from, pass --trust-config"
        )
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import module {name!r} ({exc}); install it or fix the name"
        ) from None


def check_id(env_id: str) -> None:
    """Raise a ``ValueError`` with the closest registered ids unless ``env_id`` is made by
    ``gymnasium.make`` (a registered id, or a versionless name of one)."""
    module, _, name = env_id.rpartition(":")
    if module:
        import_module(module, "env.id")
    if name in gym.envs.registry:
        return
    namespace, base, version = parse_env_id(name)
    if version is None and find_highest_version(namespace, base) is not None:
        return
    close = difflib.get_close_matches(name, list(gym.envs.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown Gymnasium id {name!r}{hint} Name the module that registers it in env.import, "
        "or see gymnasium.pprint_registry()"
    )


class GymEnv(gym.Wrapper[Any, np.ndarray, Any, Any]):
    """The env of an ``env.kind: gym`` config, adapted (module docstring)."""

    Config = GymEnvConfig
    provides_reward = True
    """Its rewards are the env's own: no ``reward`` section."""

    def __init__(self, config: GymEnvConfig) -> None:
        if config.realtime:
            from tmrl2.envs.realtime import make_realtime_gym_env  # rtgym, threads: only then

            env = make_realtime_gym_env(
                lambda: make_adapted_env(config), config.time_step_ms, config.action_history
            )
        else:
            env = make_adapted_env(config)
        super().__init__(env)


def make_adapted_env(config: GymEnvConfig) -> gym.Env[Any, np.ndarray]:
    """``gymnasium.make`` of the config, with its actions and observations adapted."""
    for name in config.imports:
        importlib.import_module(name)
    kwargs = dict(config.kwargs)
    if config.pixels:
        kwargs.setdefault("render_mode", "rgb_array")
    env = gym.make(config.id, max_episode_steps=config.max_episode_steps, **kwargs)
    try:
        return Adapter(env, config)
    except Exception:
        env.close()
        raise


class Adapter(gym.Wrapper[Any, np.ndarray, Any, Any]):
    """A 1-D float32 action ``Box``; observations flattened, stacked, or made pixels."""

    def __init__(self, env: gym.Env[Any, Any], config: GymEnvConfig) -> None:
        super().__init__(env)
        self._inner_actions = _continuous(env.action_space, config.id)
        low, high = (
            np.asarray(b, np.float32).reshape(-1)
            for b in (self._inner_actions.low, self._inner_actions.high)
        )
        self._actions = spaces.Box(low, high, dtype=np.float32)
        self.action_space = self._actions
        self._stack = config.frame_stack
        self._repeat = config.action_repeat
        self._pixels: tuple[bool, tuple[int, int] | None] | None = None
        if config.pixels:
            from_render = not is_image(env.observation_space)
            if from_render and env.render_mode != "rgb_array":
                raise ConfigError(
                    f"env.pixels: {config.id} observes no image, so its render is used: leave "
                    f"env.kwargs.render_mode out or set it to rgb_array (got {env.render_mode!r})"
                )
            self._pixels = (from_render, config.resize)
            self._grey = config.grayscale
            shape = env.observation_space.shape or ()  # an image's, unless from_render
            first = self._source_image(env.reset()[0]) if from_render else np.zeros(shape)
            parts: dict[str, spaces.Box[Any]] = {
                IMAGE_KEY: spaces.Box(0, 255, self._frame(first).shape, np.uint8)
            }
            self._box_key: str | None = None
        else:
            parts, self._box_key = _parts(env.observation_space, config.id)
        self._parts = parts
        stacked: dict[str, gym.Space[Any]] = {
            key: _stacked(box, self._stack, key == IMAGE_KEY and config.pixels)
            for key, box in parts.items()
        }
        self.observation_space = (
            stacked[self._box_key] if self._box_key is not None else spaces.Dict(stacked)
        )
        self._history: dict[str, list[np.ndarray]] = {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        now = self._read(obs)
        self._history = {key: [part] * self._stack for key, part in now.items()}
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        inner = self._inner_actions
        flat = np.clip(
            np.asarray(action, np.float32).reshape(-1),
            self._actions.low,
            self._actions.high,
        )
        applied = flat.reshape(inner.shape).astype(inner.dtype)
        total = 0.0
        for _ in range(self._repeat):
            obs, reward, terminated, truncated, info = self.env.step(applied)
            total += float(reward)
            if terminated or truncated:
                break
        for key, part in self._read(obs).items():
            self._history[key] = [*self._history[key][1:], part]
        return self._observation(), total, terminated, truncated, info

    def _read(self, obs: Any) -> dict[str, np.ndarray]:
        if self._pixels is not None:
            return {IMAGE_KEY: self._frame(self._source_image(obs))}
        if self._box_key is not None:
            obs = {self._box_key: obs}
        out = {}
        for key, box in self._parts.items():
            out[key] = np.asarray(obs[key], box.dtype).reshape(box.shape)
        return out

    def _observation(self) -> Any:
        image = self._pixels is not None
        out = {
            key: frames[-1] if self._stack == 1 and not image else np.stack(frames)
            for key, frames in self._history.items()
        }
        return out[self._box_key] if self._box_key is not None else out

    def _source_image(self, obs: Any) -> np.ndarray:
        assert self._pixels is not None
        if self._pixels[0]:
            obs = self.env.render()
        return np.asarray(obs)

    def _frame(self, image: np.ndarray) -> np.ndarray:
        assert self._pixels is not None
        return to_frame(image, self._grey, self._pixels[1])


def _continuous(space: gym.Space[Any], env_id: str) -> spaces.Box:
    if not isinstance(space, spaces.Box):
        raise ConfigError(
            f"env.id: {env_id} acts in a {type(space).__name__} space; EVO RL's learners (SAC, "
            "REDQ) act in a continuous Box: pick a continuous env or variant (e.g. "
            "MountainCarContinuous-v0, LunarLander-v3 with env.kwargs: {continuous: true})"
        )
    if not space.is_bounded("both"):
        raise ConfigError(
            f"env.id: {env_id} has unbounded actions ({space}); the policy squashes its "
            "actions into the Box's bounds: wrap the env with finite bounds"
        )
    return space


def is_image(space: gym.Space[Any]) -> bool:
    """Whether ``space`` is a uint8 frame ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3|4)``."""
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))


def _parts(space: gym.Space[Any], env_id: str) -> tuple[dict[str, spaces.Box], str | None]:
    """The parts the learner sees, and the one key of a ``Box`` observation (None: Dict)."""
    if isinstance(space, spaces.Box):
        return {"obs": _part(space)}, "obs"
    if isinstance(space, spaces.Dict) and all(isinstance(s, spaces.Box) for s in space.values()):
        return {key: _part(box) for key, box in space.items()}, None  # type: ignore[arg-type]
    raise ConfigError(
        f"env.id: {env_id} observes a {type(space).__name__} space ({space}); EVO RL takes a "
        "Box or a Dict of Box observation (or set env.pixels: true to observe its render)"
    )


def _part(box: spaces.Box) -> spaces.Box:
    """A uint8 image as it is; anything else flattened to 1-D float32."""
    if is_image(box):
        return box
    size = math.prod(box.shape)
    with np.errstate(over="ignore"):
        low, high = (np.asarray(b, np.float32).reshape(size) for b in (box.low, box.high))
    return spaces.Box(low, high, (size,), np.float32)


def _stacked(box: spaces.Box, k: int, always: bool) -> spaces.Box:
    if k == 1 and not always:
        return box
    low, high = (np.repeat(b[None], k, axis=0) for b in (box.low, box.high))
    return spaces.Box(low, high, (k, *box.shape), box.dtype)  # type: ignore[arg-type]


def to_frame(image: np.ndarray, grey: bool, size: tuple[int, int] | None) -> np.ndarray:
    """An RGB(A) or grey uint8 image as a grey ``(H, W)`` or colour ``(H, W, 3)`` frame,
    resized to ``size`` (area averaging down, nearest pixel up)."""
    pixels = np.asarray(image, np.float32)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3:
        pixels = pixels[..., :3] @ GREY if grey else pixels[..., :3]
    elif not grey:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    if size is not None:
        pixels = _resize_axis(_resize_axis(pixels, size[0], 0), size[1], 1)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _resize_axis(pixels: np.ndarray, n: int, axis: int) -> np.ndarray:
    size = pixels.shape[axis]
    if n == size:
        return pixels
    starts = (np.arange(n) * size) // n
    if n > size:
        return np.take(pixels, starts, axis=axis)
    counts = np.diff(np.append(starts, size)).astype(np.float32)
    shape = [1] * pixels.ndim
    shape[axis] = n
    return np.add.reduceat(pixels, starts, axis=axis) / counts.reshape(shape)

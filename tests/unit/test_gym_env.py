"""``env.kind: gym``: any Gymnasium env, adapted to the learners, with its own reward; and the
custom-env constructor contract checked when the config loads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymkit import DICT_ID, IMAGE_ID, RENDER_ID, DictEnv

from tmrl2.config.load import ConfigError, config_hash, dump_config, load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.gym_env import GymEnv, to_frame

PENDULUM = ["env.kind=gym", "env.id=Pendulum-v1"]


def _gym(env_id: str, *more: str) -> gym.Env[Any, Any]:
    return build_env(load_config(None, ["env.kind=gym", f"env.id={env_id}", *more]))


def _error(overrides: list[str], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides, **kwargs)
    return str(info.value)


def test_pendulum_keeps_its_spaces_and_its_own_rewards() -> None:
    config = load_config(None, [*PENDULUM, "env.max_episode_steps=7"])
    assert config.reward is None  # no racing reward configured, built or hashed
    assert dump_config(config)["reward"] is None and config_hash(config)
    env = build_env(config)
    reference = gym.make("Pendulum-v1", max_episode_steps=7)
    try:
        assert isinstance(env, GymEnv)
        assert env.observation_space == reference.observation_space
        assert env.action_space == reference.action_space
        obs, _ = env.reset(seed=3)
        ref_obs, _ = reference.reset(seed=3)
        np.testing.assert_array_equal(obs, ref_obs)
        for t in range(7):
            action = np.array([np.sin(t)], np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            ref_obs, ref_reward, _, ref_truncated, _ = reference.step(action)
            np.testing.assert_array_equal(obs, ref_obs)
            assert reward == ref_reward and not terminated
        assert truncated and ref_truncated  # env.max_episode_steps
    finally:
        env.close()
        reference.close()


def test_action_repeat_sums_the_rewards_of_the_repeated_steps() -> None:
    env = _gym("Pendulum-v1", "env.action_repeat=3", "env.max_episode_steps=7")
    reference = gym.make("Pendulum-v1", max_episode_steps=7)
    try:
        obs, _ = env.reset(seed=5)
        reference.reset(seed=5)
        action = np.array([0.7], np.float32)
        for repeats in (3, 3, 1):  # 7 steps: the last decision is cut by the time limit
            obs, reward, _, truncated, _ = env.step(action)
            rewards = [float(reference.step(action)[1]) for _ in range(repeats)]
            assert reward == pytest.approx(sum(rewards))
        assert truncated
        np.testing.assert_allclose(obs, reference.unwrapped._get_obs(), rtol=1e-6)  # type: ignore[attr-defined]
    finally:
        env.close()
        reference.close()


def test_a_resolved_gym_config_reloads_as_it_was() -> None:
    config = load_config(None, [*PENDULUM, "env.import=gymkit", "env.frame_stack=2"])
    data = dump_config(config)
    again = load_config(data=data)
    assert again == config and config_hash(again) == config_hash(config)
    assert again.env.imports == ["gymkit"]  # type: ignore[attr-defined]


def test_a_dict_env_is_flattened_per_part_and_its_actions_reshaped() -> None:
    env = _gym(DICT_ID)
    try:
        space = env.observation_space
        assert isinstance(space, gym.spaces.Dict)
        assert space["pos"].shape == (2,) and space["pos"].dtype == np.float32
        assert space["grid"].shape == (4,)
        assert env.action_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        obs, _ = env.reset(seed=0)
        assert space.contains(obs)
        obs, reward, *_ = env.step(np.array([0.5, 0.5, 0.0, 2.0], np.float32))
        assert reward == pytest.approx(-1.5)  # the last action clipped to 1
        inner = env.unwrapped
        assert isinstance(inner, DictEnv) and inner.last_action is not None
        assert inner.last_action.shape == (2, 2)
        np.testing.assert_array_equal(obs["pos"], [1.0, -1.0])
    finally:
        env.close()


def test_frame_stack_keeps_the_last_observations_oldest_first() -> None:
    env = _gym(DICT_ID, "env.frame_stack=3")
    try:
        assert env.observation_space["pos"].shape == (3, 2)  # type: ignore[index]
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs["pos"], np.zeros((3, 2)))  # the first, repeated
        for _ in range(2):
            obs, *_ = env.step(np.zeros(4, np.float32))
        np.testing.assert_array_equal(obs["pos"], [[0, 0], [1, -1], [2, -2]])
        assert env.observation_space.contains(obs)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", [IMAGE_ID, RENDER_ID], ids=["image-obs", "render"])
def test_pixels_give_the_cnn_its_grey_frame_history(env_id: str) -> None:
    from tmrl2.roles.components import build_model

    config = load_config(
        None,
        ["env.kind=gym", f"env.id={env_id}", "env.pixels=true", "env.frame_stack=4"]
        + ["env.resize=[64, 64]", "model.kind=cnn"],
    )
    env = build_env(config)
    try:
        space = env.observation_space
        assert isinstance(space, gym.spaces.Dict) and list(space) == ["image"]
        assert space["image"].shape == (4, 64, 64) and space["image"].dtype == np.uint8
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(np.zeros(1, np.float32))
        grey_of = [round(0.299 * 10 * t + 0.114 * 255) for t in (0, 0, 0, 1)]
        assert [int(frame[0, 0]) for frame in obs["image"]] == grey_of
        assert space.contains(obs)
        build_model(config, space, env.action_space)  # the CNN agent takes it
    finally:
        env.close()


def test_pixels_in_colour_without_resize_and_without_stacking() -> None:
    env = _gym(IMAGE_ID, "env.pixels=true", "env.grayscale=false")
    try:
        assert env.observation_space["image"].shape == (1, 12, 16, 3)  # type: ignore[index]
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs["image"][0, 0, 0], [0, 0, 255])
    finally:
        env.close()


def test_frames_are_resized_by_area_averaging() -> None:
    image = np.zeros((4, 4), np.uint8)
    image[:2, :2] = 200
    np.testing.assert_array_equal(to_frame(image, True, (2, 2)), [[200, 0], [0, 0]])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 100
    assert to_frame(rgb, True, None).tolist() == [[59, 59], [59, 59]]
    assert to_frame(rgb, False, (4, 4)).shape == (4, 4, 3)


def test_a_discrete_env_is_refused_with_the_continuous_way_out() -> None:
    with pytest.raises(ConfigError) as info:
        _gym("CartPole-v1")
    message = str(info.value)
    assert "env.id: CartPole-v1 acts in a Discrete space" in message
    assert "continuous" in message


def test_an_unknown_id_is_refused_at_config_time_with_close_matches() -> None:
    message = _error(["env.kind=gym", "env.id=Pendulm-v1"])
    assert "env.id: unknown Gymnasium id 'Pendulm-v1'; did you mean 'Pendulum-v1'" in message
    assert "env.import" in message and "\n" not in message


def test_a_missing_id_says_it_is_required() -> None:
    assert _error(["env.kind=gym"]) == "invalid config: env.id: required (str), and not set"


def test_env_import_registers_ids_and_names_a_missing_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tmrl2_gym_reg.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('Tmrl2Tmp/Pend-v0', entry_point="
        "'gymnasium.envs.classic_control.pendulum:PendulumEnv', max_episode_steps=5)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = ["env.kind=gym", "env.id=Tmrl2Tmp/Pend-v0"]
    assert "unknown Gymnasium id 'Tmrl2Tmp/Pend-v0'" in _error(overrides)
    env = build_env(load_config(None, [*overrides, "env.import=tmrl2_gym_reg"]))
    try:
        env.reset(seed=0)
        assert env.action_space.shape == (1,)
    finally:
        env.close()
        gym.envs.registry.pop("Tmrl2Tmp/Pend-v0", None)
        sys.modules.pop("tmrl2_gym_reg", None)
    message = _error([*overrides, "env.import=[tmrl2_no_such_module]"])
    assert "env.import: cannot import module 'tmrl2_no_such_module'" in message


def test_an_untrusted_config_imports_no_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tmrl2_gym_side.py").write_text(
        "from pathlib import Path\nPath(__file__).with_suffix('.ran').write_text('x')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for env_section in (
        {"kind": "gym", "id": "Pendulum-v1", "import": "tmrl2_gym_side"},
        {"kind": "gym", "id": "tmrl2_gym_side:Pendulum-v1"},
    ):
        data = {"env": env_section}
        message = _error([], data=data, trust_imports=False)
        assert "names the module 'tmrl2_gym_side'" in message and "--trust-config" in message
    assert not (tmp_path / "tmrl2_gym_side.ran").exists()
    assert load_config(data={"env": {"kind": "gym", "id": "Pendulum-v1"}}, trust_imports=False)


def test_a_reward_section_for_an_env_with_its_own_reward_is_refused() -> None:
    message = _error([*PENDULUM, "reward.kind=terms"])
    assert "reward: env.kind gym brings its own reward" in message and "remove it" in message
    assert load_config(data={"env": {"kind": "gym", "id": "Pendulum-v1"}, "reward": None})


def test_a_bad_custom_constructor_is_refused_at_config_time_with_the_expected_signature() -> None:
    message = _error(["env.kind=gymkit:BadCtorEnv"])
    assert message == (
        "invalid config: env.kind: gymkit:BadCtorEnv cannot be built: its constructor takes "
        "(self, foo, bar) but EVO RL calls BadCtorEnv(env_config, reward=reward): "
        "define __init__(self, config, reward) (or set provides_reward = True and take "
        "(self, config))"
    )
    message = _error(["env.kind=gymkit:OwnRewardWithTwoArgs"])
    assert "calls OwnRewardWithTwoArgs(env_config): define __init__(self, config)" in message


def test_custom_envs_that_keep_the_contract_load_and_build() -> None:
    config = load_config(None, ["env.kind=gymkit:RewardedEnv"])
    assert config.reward is not None
    env = build_env(config)
    assert env.reward is not None and env.config is config.env  # type: ignore[attr-defined]
    config = load_config(None, ["env.kind=gymkit:OwnRewardEnv"])
    assert config.reward is None
    assert build_env(config).config is config.env  # type: ignore[attr-defined]


def test_tmrl2_config_runs_the_constructor_check(capsys: pytest.CaptureFixture[str]) -> None:
    from tmrl2.cli import main

    assert main(["config", "--set", "env.kind=gymkit:BadCtorEnv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tmrl2: invalid config: env.kind: gymkit:BadCtorEnv cannot be built")
    assert main(["config", *(f"--set={item}" for item in PENDULUM)]) == 0
    out = capsys.readouterr().out
    assert "id: Pendulum-v1" in out and "reward: null" in out


def test_realtime_gym_env_steps_on_the_wall_clock_with_previous_actions() -> None:
    realtime = pytest.importorskip("tmrl2.envs.realtime")
    if not hasattr(realtime, "make_realtime_gym_env"):
        pytest.skip("tmrl2.envs.realtime.make_realtime_gym_env is not there yet")
    env = _gym("Pendulum-v1", "env.realtime=true", "env.time_step_ms=20", "env.action_history=2")
    try:
        space = env.observation_space
        assert isinstance(space, gym.spaces.Dict)
        assert space["obs"].shape == (3,) and space["prev_actions"].shape == (2, 1)
        obs, _ = env.reset(seed=0)
        rewards = []
        for _ in range(3):
            obs, reward, *_ = env.step(np.array([0.5], np.float32))
            rewards.append(float(reward))
        assert space.contains(obs) and all(r <= 0 for r in rewards)  # Pendulum's own costs
    finally:
        env.close()


def test_the_custom_env_example_of_docs_envs_md_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (Path(__file__).parents[2] / "docs" / "envs.md").read_text(encoding="utf-8")
    code = text.split("```python\n# my_envs/reach.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_envs").mkdir()
    (tmp_path / "my_envs" / "__init__.py").write_text("")
    (tmp_path / "my_envs" / "reach.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        config = load_config(None, ["env.kind=my_envs.reach:ReachEnv", "env.dims=3"])
        assert config.reward is None and config.env.dims == 3  # type: ignore[attr-defined]
        assert "env.dimz: unknown key; did you mean 'dims'?" in _error(
            ["env.kind=my_envs.reach:ReachEnv", "env.dimz=3"]
        )
        env = build_env(config)
        obs, _ = env.reset(seed=0)
        obs, reward, *_ = env.step(np.zeros(3, np.float32))
        assert obs.shape == (3,) and reward == pytest.approx(-float(np.linalg.norm(obs)))
    finally:
        for name in ("my_envs.reach", "my_envs"):
            sys.modules.pop(name, None)

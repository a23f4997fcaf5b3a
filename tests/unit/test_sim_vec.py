"""The vectorized batch of cars: the single car's physics, LIDAR, telemetry and episodes, N at
a time."""

from __future__ import annotations

import numpy as np
import pytest

from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.randomize import DomainRandomization
from tmrl2.envs.sim.vec import SimBatch


@pytest.mark.parametrize("track", ["default", "alpine"])
def test_each_car_follows_the_single_car_model(track: str) -> None:
    """Same controls, same trajectories and LIDAR (to rounding), over 300 steps (15 s)."""
    cfg = SimEnvConfig(track=track, max_episode_steps=10**6, stuck_steps=10**6)
    envs = [SimEnv(cfg) for _ in range(3)]
    batch = SimBatch(3, cfg)
    batch.reset()
    for i, env in enumerate(envs):
        env.reset(seed=i)
        batch.set_car(i, env.car.state)
    pilot = Autopilot(envs[0].track)
    rng = np.random.default_rng(0)
    worst_pos = worst_lidar = 0.0
    for _ in range(300):
        # the autopilot's controls plus noise per car: walls stay untouched (a car exactly on
        # a wall can round to either side, and the two models then part ways)
        actions = np.stack([pilot.act(env.car.state) for env in envs])
        actions[:, 2] += rng.normal(0.0, 0.05, 3)
        obs, terminated, truncated, _ = batch.step(actions)
        assert not (terminated.any() or truncated.any())
        for i, env in enumerate(envs):
            single, *_ = env.step(actions[i])
            st = env.car.state
            worst_pos = max(
                worst_pos,
                abs(st.x - batch.state["x"][i]),
                abs(st.z - batch.state["z"][i]),
                abs(st.y - batch.state["y"][i]),
            )
            assert batch.state["gear"][i] == st.gear
            worst_lidar = max(worst_lidar, float(np.abs(single["lidar"] - obs["lidar"][i]).max()))
    assert worst_pos < 1e-6 and worst_lidar < 1e-4
    assert batch.progress.min() > 300.0  # the cars really drove


KNOBS = DomainRandomization(
    grip_frac=0.2,
    mass_frac=0.1,
    engine_frac=0.1,
    steer_gain_frac=0.3,
    steer_lag_s=0.2,
    action_latency_steps=2,
    lidar_noise_std=0.02,
    speed_noise_std=0.01,
    time_step_jitter_frac=0.2,
    start_anywhere_frac=0.5,
)


@pytest.mark.parametrize(
    ("knobs", "end_on_wall"),
    [(DomainRandomization(), False), (KNOBS, False), (DomainRandomization(), True)],
    ids=["plain", "randomized", "end_on_wall"],
)
def test_cars_drive_the_episodes_of_simenvs_seeded_alike(
    knobs: DomainRandomization, end_on_wall: bool
) -> None:
    """Car i seeded s_i: the observations, ends, lap times and telemetry of a SimEnv reset
    with seed s_i, episode after episode (tracks drawn, randomization drawn per episode)."""
    cfg = SimEnvConfig(
        tracks=["ring", "gen:3"],
        track_id_input=True,
        preview_points=4,
        max_episode_steps=60,
        randomization=knobs,
        end_on_wall=end_on_wall,
    )
    seeds = [11, 12, 13, 14]
    batch = SimBatch(len(seeds), cfg, seeds)
    envs = [SimEnv(cfg) for _ in seeds]
    obs = batch.reset()
    singles = [env.reset(seed=s) for env, s in zip(envs, seeds, strict=True)]
    rng = np.random.default_rng(5)
    ends = 0
    driven = set(batch.track_index.tolist())
    for _ in range(200):
        for i, (single, _info) in enumerate(singles):
            for key, value in single.items():
                np.testing.assert_array_equal(obs[key][i], value, err_msg=key)
        actions = rng.uniform(-1.0, 1.0, (len(seeds), 3)).astype(np.float32)
        actions[:, 0] = 1.0
        obs, terminated, truncated, lap = batch.step(actions)
        infos = batch.infos()
        singles = []
        for i, env in enumerate(envs):
            single, _, term, trunc, info = env.step(actions[i])
            assert (term, trunc) == (terminated[i], truncated[i])
            assert info.pop("lap_time_s", np.nan) == pytest.approx(lap[i], nan_ok=True, rel=0)
            assert infos[i] == info
            for key, value in single.items():
                np.testing.assert_array_equal(obs[key][i], value, err_msg=key)
            singles.append((single, info))
        done = np.flatnonzero(terminated | truncated)
        if len(done):
            ends += len(done)
            obs = batch.reset(done)
            driven |= set(batch.track_index.tolist())
            for i in done.tolist():
                singles[i] = envs[i].reset()
    assert ends >= 8
    assert driven == {0, 1}


def test_shapes_caps_and_resets_of_some_cars() -> None:
    cfg = SimEnvConfig(max_episode_steps=20)
    batch = SimBatch(5, cfg, seeds=1)
    obs = batch.reset()
    assert obs["lidar"].shape == (5, 1, 19) and obs["speed"].shape == (5, 1)
    assert obs["prev_actions"].shape == (5, 2, 3)
    full_gas = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), (5, 1))
    for t in range(20):
        obs, terminated, truncated, _ = batch.step(full_gas)
        assert truncated.all() == (t == 19) and not terminated.any()
    assert (batch.progress > 5.0).all()
    obs = batch.reset([1, 3])  # only these start over
    assert batch.steps.tolist() == [20, 0, 20, 0, 20]
    assert (obs["prev_actions"][[1, 3]] == 0).all() and (obs["prev_actions"][0] != 0).any()
    with pytest.raises(ValueError, match="at least one car"):
        SimBatch(0)
    with pytest.raises(ValueError, match="env.image"):
        SimBatch(2, SimEnvConfig(image=True))


def test_threads_split_the_cars_and_change_no_number() -> None:
    """``threads=2`` (``worker.sim_threads``) steps the cars in parallel with the very numbers
    of one thread: observations, ends, laps and states, through resets, with random actions."""
    cfg = SimEnvConfig(max_episode_steps=60)
    one, two = SimBatch(9, cfg, seeds=3), SimBatch(9, cfg, seeds=3, threads=2)
    assert two.threads >= 1 and one.threads == 1
    a, b = one.reset(), two.reset()
    rng = np.random.default_rng(5)
    ends = 0
    for _ in range(150):
        actions = rng.uniform(-1.0, 1.0, (9, 3)).astype(np.float32)
        actions[:, 0] = np.abs(actions[:, 0])
        (a, *rest_a), (b, *rest_b) = one.step(actions), two.step(actions)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        for x, y in zip(rest_a, rest_b, strict=True):
            np.testing.assert_array_equal(x, y)
        ended = np.flatnonzero(rest_a[0] | rest_a[1])
        ends += len(ended)
        if len(ended):
            one.reset(ended), two.reset(ended)
    np.testing.assert_array_equal(one.states, two.states)
    assert ends >= 9  # every car's first episode hit the cap: resets were compared too
    with pytest.raises(ValueError, match="at least one thread"):
        SimBatch(2, cfg, threads=0)

"""Multi-track training on the simulator: track specs, the per-episode draw, the adaptive
sampler, the derived episode cap, domain randomization, and the per-track evaluation."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tmrl2.config.load import ConfigError, load_config
from tmrl2.envs.factory import build_env
from tmrl2.envs.sim.car import CarParams
from tmrl2.envs.sim.env import SimEnv, SimEnvConfig
from tmrl2.envs.sim.randomize import Controls, DomainRandomization, Draw, draw_randomization
from tmrl2.envs.sim.tracklist import (
    TrackSampler,
    TrackSet,
    episode_cap_steps,
    expand_tracks,
)
from tmrl2.roles.evaluate import evaluate, summarize, summary_line, track_table
from tmrl2.telemetry.episodes import TrackStats, episode_record

THREE = ["default", "ring", "gen:3"]


# ----------------------------------------------------------------- specs
def test_generated_ranges_expand_and_duplicates_collapse() -> None:
    assert expand_tracks(["generated:3-5", "default", "gen:4", "generated:7"]) == [
        "gen:3",
        "gen:4",
        "gen:5",
        "default",
        "gen:7",
    ]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nowhere", "known tracks: "),
        ("generated:5-2", "must go up"),
        ("generated:x", "generated:A-B"),
        ("missing_map.yaml", "'missing_map.yaml' does not exist"),
        ("missing_line.npy", "'missing_line.npy' does not exist"),
    ],
)
def test_bad_specs_fail_in_one_line_naming_them(spec: str, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        expand_tracks(["default", spec])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_recorded_line_is_checked_and_imported(tmp_path: Path) -> None:
    bad = tmp_path / "flat.npy"
    np.save(bad, np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"shape \(10, 2\); expected \(N >= 3, 3\)"):
        expand_tracks([str(bad)])
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        expand_tracks([str(nan)])
    good = tmp_path / "line.npy"
    s = np.linspace(0.0, 400.0, 200)
    np.save(good, np.stack([s, np.zeros_like(s), 30.0 * np.sin(s / 60.0)], 1))
    tracks = TrackSet(expand_tracks([str(good)]))
    assert tracks.track(0).name == "line" and tracks.track(0).length_m > 390.0
    assert tracks.reference_s(0) > 0.0


def test_a_bad_track_list_fails_when_the_config_loads_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"env\.tracks.*unknown track 'nowhere'"):
        load_config(overrides=["env.tracks=[default,nowhere]"])
    with pytest.raises(ConfigError, match=r"env\.eval_tracks.*does not exist"):
        load_config(overrides=["env.eval_tracks=[no_such.yaml]"])
    with pytest.raises(ConfigError, match=r"env\.car.*known cars"):
        load_config(overrides=["env.car=truck"])


# ----------------------------------------------------------------- the draw
def _tracks_drawn(seed: int, episodes: int, **kw: object) -> list[str]:
    env = SimEnv(SimEnvConfig(tracks=THREE, **kw))  # type: ignore[arg-type]
    names = [env.reset(seed=seed)[1]["track"]]
    names += [env.reset()[1]["track"] for _ in range(episodes - 1)]
    return names


def test_track_draws_are_seeded_and_cover_every_track() -> None:
    first, again, other = _tracks_drawn(1, 30), _tracks_drawn(1, 30), _tracks_drawn(2, 30)
    assert first == again and first != other
    assert set(first) == set(THREE)


def test_the_episode_plays_on_the_drawn_track() -> None:
    env = SimEnv(SimEnvConfig(tracks=THREE))
    env.reset(seed=0)
    for _ in range(6):
        _, info = env.reset()
        assert env.track.length_m == pytest.approx(info["track_length_m"])
        assert info["track"] == env.tracks.names[env.track_index]
        assert info["reference_lap_s"] == pytest.approx(env.tracks.reference_s(env.track_index))


def test_a_single_track_draws_nothing_from_the_random_stream() -> None:
    one = SimEnv(SimEnvConfig(track="default"))
    listed = SimEnv(SimEnvConfig(tracks=["default"]))
    a, _ = one.reset(seed=5)
    b, _ = listed.reset(seed=5)
    np.testing.assert_array_equal(a["lidar"], b["lidar"])
    assert one.car.state == listed.car.state


def test_track_id_is_a_one_hot_of_the_training_tracks_only() -> None:
    env = SimEnv(SimEnvConfig(tracks=THREE, track_id_input=True))
    obs, info = env.reset(seed=0, options={"track": "ring"})
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["track_id"], [0.0, 1.0, 0.0])
    obs, info = env.reset(options={"track": "alpine"})  # held out: no id
    assert info["track"] == "alpine" and not obs["track_id"].any()
    assert env.observation_space.contains(obs)


def test_adaptive_sampling_favours_failing_tracks_and_starves_none() -> None:
    sampler = TrackSampler(4, "adaptive")
    rng = np.random.default_rng(0)
    counts: Counter[int] = Counter()
    for _ in range(8000):
        i = sampler.draw(rng)
        counts[i] += 1
        if i == 0:
            sampler.record(0, False, None)  # never finishes
        elif i == 1:
            sampler.record(1, True, 1.5)  # finishes, slowly
        else:
            sampler.record(i, True, 1.0)  # at the reference
    share = np.array([counts[i] for i in range(4)]) / 8000
    # probabilities: 0.5 * 1/4 + 0.5 * need / sum(need), needs 1, 0.5, 0, 0
    np.testing.assert_allclose(share, [0.458, 0.292, 0.125, 0.125], atol=0.03)
    assert share.min() >= 0.5 / 4 - 0.03  # at least half a uniform share


def test_uniform_sampling_ignores_outcomes() -> None:
    sampler = TrackSampler(3, "uniform")
    sampler.record(0, False, None)
    np.testing.assert_allclose(sampler.probabilities(), [1 / 3] * 3)


def test_the_env_feeds_its_sampler_with_episode_outcomes() -> None:
    env = SimEnv(SimEnvConfig(tracks=["default", "ring"], track_sampling="adaptive"))
    env.reset(seed=0)
    first = env.track_index
    for _ in range(3):
        env.step(np.zeros(3, np.float32))
    env.reset()  # the first episode ended unfinished: its track's need is 1
    assert env.sampler.needs()[first] == 1.0
    assert len(env.sampler._history[first]) == 1


# ----------------------------------------------------------------- the cap
def test_the_episode_cap_derives_from_the_reference_lap() -> None:
    env = SimEnv(SimEnvConfig())
    env.reset(seed=0)
    assert env._cap == math.ceil(2.5 * env.reference_lap_s / 0.05)
    assert episode_cap_steps(500, 100.0, 50) == 500


def test_a_cap_shorter_than_the_reference_lap_warns(caplog: pytest.LogCaptureFixture) -> None:
    env = SimEnv(SimEnvConfig(max_episode_steps=100))
    with caplog.at_level(logging.WARNING):
        env.reset(seed=0)
        env.reset()
    warnings = [r for r in caplog.records if "shorter than the reference lap" in r.message]
    assert len(warnings) == 1 and "'default'" in warnings[0].message


# ----------------------------------------------------------------- randomization
KNOBS = DomainRandomization(
    grip_frac=0.2,
    mass_frac=0.1,
    engine_frac=0.1,
    steer_gain_frac=0.2,
    steer_lag_s=0.2,
    action_latency_steps=2,
    lidar_noise_std=0.02,
    speed_noise_std=0.01,
)


def test_randomization_differs_per_episode_and_is_seeded() -> None:
    def draws(seed: int) -> list[tuple[float, float, int]]:
        env = SimEnv(SimEnvConfig(randomization=KNOBS))
        env.reset(seed=seed)
        out = []
        for _ in range(8):
            d = env._draw
            out.append((d.params.grip_ms2, d.steer_gain, d.latency))
            env.reset()
        return out

    a, b, c = draws(3), draws(3), draws(4)
    assert a == b and a != c
    assert len({grip for grip, _, _ in a}) == 8
    assert {lat for _, _, lat in a} <= {0, 1, 2} and len({lat for _, _, lat in a}) > 1


def test_off_knobs_give_the_identity_without_touching_the_generator() -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    draw = draw_randomization(DomainRandomization(), CarParams(), rng)
    assert draw == Draw(CarParams()) and rng.bit_generator.state == state


def test_action_latency_delays_the_controls() -> None:
    controls = Controls(Draw(CarParams(), latency=2), dt_s=0.05)
    gas = np.array([1.0, 0.0, 0.5], np.float32)
    assert controls.apply(gas) == (0.0, 0.0, 0.0)
    assert controls.apply(gas) == (0.0, 0.0, 0.0)
    assert controls.apply(gas) == (1.0, 0.0, 0.5)


def test_steering_gain_and_lag_shape_the_steering() -> None:
    right = np.array([0.0, 0.0, 0.5], np.float32)
    assert Controls(Draw(CarParams(), steer_gain=1.5), 0.05).apply(right)[2] == 0.75
    lagged = Controls(Draw(CarParams(), steer_lag_s=0.1), 0.05)
    steps = [lagged.apply(right)[2] for _ in range(4)]
    assert steps[0] == pytest.approx(0.25) and steps == sorted(steps) and steps[-1] < 0.5


def test_observation_noise_and_jitter_change_what_the_policy_sees() -> None:
    plain = SimEnv(SimEnvConfig())
    noisy = SimEnv(SimEnvConfig(randomization=DomainRandomization(lidar_noise_std=0.05)))
    a, _ = plain.reset(seed=0)
    b, _ = noisy.reset(seed=0)
    assert not np.array_equal(a["lidar"], b["lidar"])
    assert np.all((b["lidar"] >= 0.0) & (b["lidar"] <= 1.0))
    jitter = SimEnv(SimEnvConfig(randomization=DomainRandomization(time_step_jitter_frac=0.3)))
    jitter.reset(seed=0)
    times = [
        jitter.step(np.array([1.0, 0.0, 0.0], np.float32))[4]["race_time_ms"] for _ in range(5)
    ]
    steps = np.diff([0, *times])
    assert len(set(steps.tolist())) > 1 and np.all((steps >= 35) & (steps <= 65))


# ----------------------------------------------------------------- evaluation and stats
class _Full:
    """A deterministic 'policy': full gas, steering from the centre LIDAR beams."""

    def __call__(self, batch, deterministic=True, with_logprob=False):  # type: ignore[no-untyped-def]
        import torch

        lidar = batch["lidar"][:, -1]
        n = lidar.shape[-1]
        steer = (lidar[:, n // 2 + 2 :].mean(1) - lidar[:, : n // 2 - 1].mean(1)) * 3.0
        act = torch.stack([torch.ones_like(steer), torch.zeros_like(steer), steer.clamp(-1, 1)], 1)
        return act, None

    def eval(self) -> _Full:
        return self


def test_evaluation_drives_each_track_without_randomization() -> None:
    config = load_config(overrides=["env.tracks=[default,ring]", "env.stuck_steps=40"])
    knobs = load_config(
        overrides=[
            "env.tracks=[default,ring]",
            "env.stuck_steps=40",
            "env.randomization.grip_frac=0.5",
            "env.randomization.action_latency_steps=2",
        ]
    )
    actor = _Full()
    plain = evaluate(config, actor, 1, tracks=["default", "ring"])  # type: ignore[arg-type]
    off = evaluate(knobs, actor, 1, tracks=["default", "ring"])  # type: ignore[arg-type]
    on = evaluate(knobs, actor, 1, tracks=["default", "ring"], randomize=True)  # type: ignore[arg-type]
    assert [r.track for r in plain] == ["default", "ring"]
    assert plain == off and plain != on
    table = track_table(plain)
    assert table[0].split()[:3] == ["track", "finished", "lap"] and len(table) == 3
    line = summary_line(plain)
    assert line.startswith(f"finished {sum(r.finished for r in plain)}/2")
    s = summarize(plain)
    assert s["episodes"] == 2 and 0.0 <= s["mean_progress"] <= 1.0


def test_track_stats_fold_episode_records() -> None:
    stats = TrackStats()
    info = {"finished": True, "lap_time_s": 50.0, "track": "a", "reference_lap_s": 40.0}
    info["progress_frac"] = 1.0  # a telemetry env's record
    stats.add(episode_record(1.0, 10, info, {}))
    stats.add(episode_record(1.0, 10, {**info, "lap_time_s": 44.0}, {}))
    stats.add(episode_record(1.0, 10, {"finished": False, "track": "b", "progress_frac": 0.5}, {}))
    rows = stats.as_dict()
    assert rows["a"]["finish_rate"] == 1.0 and rows["a"]["lap_ratio"] == pytest.approx(1.1)
    assert rows["b"]["finishes"] == 0 and rows["b"]["mean_progress"] == 0.5


def test_build_env_wraps_a_multi_track_sim() -> None:
    env = build_env(load_config(overrides=["env.tracks=[default,gen:2]"]))
    _, info = env.reset(seed=0)
    assert info["track"] in {"default", "gen:2"}


def test_track_stats_survive_a_checkpoint(tmp_path: Path) -> None:
    import torch

    stats = TrackStats()
    lap = {"finished": True, "lap_time_s": 30.0, "track": "a", "progress_frac": 1.0}
    stats.add(episode_record(1.0, 10, lap, {}))
    stats.add(episode_record(1.0, 10, {"finished": False, "track": "b", "progress_frac": 0.2}, {}))
    torch.save({"tracks": stats.state()}, tmp_path / "c.pt")
    again = TrackStats()
    again.restore(torch.load(tmp_path / "c.pt", weights_only=True)["tracks"])
    assert again.as_dict() == stats.as_dict()
    again.restore({"x": {"episodes": "many"}, "y": 3})  # malformed rows are skipped
    assert set(again.rows) == {"a", "b"}


def test_starting_anywhere_times_no_lap_and_feeds_no_outcome() -> None:
    knobs = DomainRandomization(start_anywhere_frac=1.0)
    env = SimEnv(SimEnvConfig(tracks=["default", "ring"], randomization=knobs))
    _, info = env.reset(seed=0)
    starts = [info["progress_m"]] + [env.reset()[1]["progress_m"] for _ in range(9)]
    assert len(set(starts)) == 10 and min(starts) > 0.0 and max(starts) < 0.9 * 1200
    # drive one episode to its end: a finish from mid-track is no lap
    env.reset(seed=3)
    env._draw = replace(env._draw, start_frac=0.95)
    env.car.reset(s=0.95 * env.track.length_m)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
        done = terminated or truncated
    assert info["finished"] and "lap_time_s" not in info
    env.reset()
    assert all(not h for h in env.sampler._history)
    plain = SimEnv(SimEnvConfig(randomization=DomainRandomization(start_anywhere_frac=0.0)))
    assert plain.reset(seed=0)[1]["progress_m"] == 0.0

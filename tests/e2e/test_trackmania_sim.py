"""End to end: the TrackMania env, through protocol v1, against ``tmrl2 sim serve``.

Controls go through SET_INPUT and LIDAR is computed from FRAME images, as it would be from the
game's screen: the whole worker-side bridge runs without the game.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tmrl2.config.load import load_config
from tmrl2.envs.factory import build_env
from tmrl2.roles.launcher import launch_all

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sim_server() -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmrl2", "sim", "serve", "--lockstep", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"sim server did not start: {proc.communicate()[0]}")
    yield port
    proc.terminate()
    proc.wait(10)


def _tm(port: int) -> list[str]:
    return ["env.kind=trackmania", f"env.port={port}", "env.clock=lockstep"]


def test_gas_moves_the_car_and_episodes_restart(sim_server: int) -> None:
    config = load_config(None, [*_tm(sim_server), "env.max_episode_steps=60"])
    env = build_env(config)
    obs, info = env.reset(seed=0)
    assert obs["lidar"].shape == (1, 19) and info["map"] == "default"
    first_episode = info["episode"]
    total, progress = 0.0, []
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
        total += float(reward)
        progress.append(info["progress_m"])
    assert truncated and not terminated
    assert progress[-1] > 30.0 and total > 0.0
    assert info["race_time_ms"] == 60 * 50
    assert float(obs["lidar"].min()) > 0.0 and float(obs["lidar"].max()) <= 1.0
    _, info = env.reset(seed=1)
    assert info["episode"] == first_episode + 1 and info["progress_m"] < 5.0
    env.close()


def test_train_through_the_bridge(sim_server: int, tmp_path: Path) -> None:
    overrides = [
        *_tm(sim_server), "run.eval_episodes=0", "run.steps=1500", "run.minutes=2",
        f"run.dir={tmp_path}", "trainer.start_samples=300", "worker.random_steps=300",
        "trainer.publish_every_updates=50", "memory.capacity=5000", "algorithm.batch_size=32",
        "model.hidden_sizes=[32, 32]",
    ]  # fmt: skip
    run = launch_all(load_config(None, overrides), tmp_path / "run")
    run.wait()
    assert all(code == 0 for code in run.exit_codes().values()), run.exit_codes()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["samples"] >= 1500 and summary["updates"] > 0
    assert summary["worker_policy_version"] >= 1
    assert "kind: trackmania" in (tmp_path / "run" / "config.yaml").read_text()


def test_realtime_clock_through_rtgym() -> None:
    """The game's path: the server runs on its own clock, rtgym paces the steps at 20 Hz."""
    from tmrl2.envs.sim.serve import ServeOptions, serve_in_thread

    server, thread = serve_in_thread(ServeOptions(port=0, fps=100.0))
    try:
        config = load_config(None, ["env.kind=trackmania", f"env.port={server.port}"])
        env = build_env(config)
        obs, info = env.reset(seed=0)
        start = time.monotonic()
        for _ in range(40):
            obs, reward, terminated, truncated, info = env.step(
                np.array([1.0, 0.0, 0.0], np.float32)
            )
        elapsed = time.monotonic() - start
        assert 1.8 < elapsed < 3.0, elapsed  # 40 steps of 50 ms of wall clock
        assert 1500 < info["race_time_ms"] < 3000
        assert info["progress_m"] > 10.0 and info["speed_ms"] > 5.0
        assert obs["prev_actions"].shape == (2, 3)
        env.close()
    finally:
        server.stop()
        thread.join(5)


def test_maps_cycle_between_episodes(sim_server: int) -> None:
    config = load_config(None, [*_tm(sim_server), "env.maps=[ring, alpine]"])
    env = build_env(config)
    seen = []
    for seed in range(3):
        _, info = env.reset(seed=seed)
        env.step(np.array([1.0, 0.0, 0.0], np.float32))
        seen.append(info["map"])
    assert seen == ["ring", "alpine", "ring"]
    assert info["track_length_m"] > 100.0  # each map's own centerline is the reference
    env.close()


def test_a_policy_trained_in_the_simulator_acts_in_the_game(
    sim_server: int, tmp_path: Path
) -> None:
    """The shared observation config: the simulator's actor checkpoint loads (strictly) into
    the game env's model and drives it, under the same reward and stall wrappers."""
    import torch

    from tmrl2.algos.policy import actor_act
    from tmrl2.checkpoint import load_checkpoint, save_checkpoint
    from tmrl2.roles.components import build_model

    shared = [
        "env.lidar_history=2", "env.action_history=3", "env.preview_points=4",
        "model.hidden_sizes=[32, 32]", "reward.terms.steering.weight=1.0",
        "reward.terms.progress.weight=1.0",
    ]  # fmt: skip
    sim_config = load_config(None, shared)
    sim_env = build_env(sim_config)
    torch.manual_seed(0)
    sim_model = build_model(sim_config, sim_env.observation_space, sim_env.action_space)
    sim_env.close()
    save_checkpoint(tmp_path / "sim.pt", {"actor": sim_model.actor.state_dict()})

    game_config = load_config(None, [*_tm(sim_server), *shared])
    game = build_env(game_config)
    assert game.observation_space == sim_env.observation_space
    model = build_model(game_config, game.observation_space, game.action_space)
    model.actor.load_state_dict(load_checkpoint(tmp_path / "sim.pt")["actor"])  # strict
    model.actor.eval()
    sim_model.actor.eval()
    obs, _ = game.reset(seed=0)
    for _ in range(30):
        action = actor_act(model.actor, obs, deterministic=True)
        np.testing.assert_allclose(action, actor_act(sim_model.actor, obs, deterministic=True))
        assert game.action_space.contains(action)
        obs, reward, terminated, truncated, info = game.step(action)
        assert game.observation_space.contains(obs) and np.isfinite(float(reward))
        assert set(info["reward_terms"]) == {"progress", "steering"}
        if terminated or truncated:
            obs, _ = game.reset()
    game.close()


def test_one_reference_per_map_is_checked() -> None:
    from tmrl2.config.load import ConfigError

    with pytest.raises(ConfigError, match="one recorded lap per map"):
        load_config(None, ["env.kind=trackmania", "env.maps=[a, b]", "env.references=[x.npy]"])

"""Ingestion is never fatal: bad chunks and impossible episode records are dropped and
counted; losses are accounted per worker session (issue 14)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from rolekit import FakeHub, box_chunk, make_trainer, tiny_config

from tmrl2.net.codec import Message
from tmrl2.roles.chunks import ChunkBuilder, wire_spec
from tmrl2.roles.ingest import Ingest, check_episode


def _deliver(trainer: object, *msgs: Message) -> None:
    client = trainer.client  # type: ignore[attr-defined]
    client.inbox.extend(msgs)
    trainer.step()  # type: ignore[attr-defined]


def test_a_chunk_with_a_wrong_shape_and_a_nan_chunk_are_dropped_and_counted() -> None:
    trainer = make_trainer(tiny_config(), FakeHub())
    trainer.start()
    wrong = box_chunk()
    wrong.arrays["obs"] = np.zeros((10, 5), np.float32)
    poisoned = box_chunk()
    poisoned.arrays["reward"][3] = np.nan
    infinite = box_chunk()
    infinite.arrays["next_obs"][0, 0] = np.inf
    wrong_dtype = box_chunk()
    wrong_dtype.arrays["action"] = wrong_dtype.arrays["action"].astype(np.float64)
    bad_n = box_chunk()
    bad_n.meta["n"] = 7
    _deliver(trainer, wrong, poisoned, infinite, wrong_dtype, bad_n, Message("chunk", {}, {}))
    assert trainer.ingest.rejected_chunks == 6
    assert len(trainer.memory) == 0 and trainer.counters["samples"] == 0
    _deliver(trainer, box_chunk())  # and the trainer goes on
    assert len(trainer.memory) == 10 and trainer.metrics()["rejected_chunks"] == 6


def test_fake_episode_stats_do_not_set_the_best_lap() -> None:
    trainer = make_trainer(tiny_config(), FakeHub())
    trainer.start()
    good = {"return": 3.0, "steps": 15, "finished": True, "lap_time_s": 31.5, "progress_frac": 1.0}
    fakes = [
        {**good, "lap_time_s": -1.0},
        {**good, "lap_time_s": float("nan")},
        {**good, "return": float("inf")},
        {**good, "steps": -3},
        {**good, "progress_frac": 7.0},
        "not a record",
    ]
    _deliver(trainer, box_chunk(episodes=fakes))
    assert trainer.best_lap_s is None and trainer.counters["finishes"] == 0
    assert trainer.ingest.rejected_episodes == len(fakes)
    assert trainer.counters["samples"] == 10  # the transitions themselves were fine
    _deliver(trainer, box_chunk(episodes=[good]))
    assert trainer.best_lap_s == 31.5 and trainer.metrics()["rejected_episodes"] == len(fakes)


def test_episode_checks() -> None:
    record = {"return": 1.0, "steps": 0, "lap_time_s": None, "progress_frac": 0.0}
    assert check_episode(record) is None
    assert check_episode({**record, "lap_time_s": 0.0}) is not None
    assert check_episode({**record, "terms": {"speed": float("nan")}}) is not None
    assert check_episode({"steps": 1}) is not None


def test_losses_are_counted_per_worker_session_from_seq_and_sent() -> None:
    trainer = make_trainer(tiny_config(), FakeHub())
    ingest: Ingest = trainer.ingest
    arrays = box_chunk().arrays
    take = lambda **meta: ingest.take({"worker": "w", "n": 10, **meta}, arrays)  # noqa: E731
    take(session="s1", seq=1, sent=10)
    take(session="s1", seq=3, sent=30)  # seq 2 never came
    assert ingest.samples_lost == 10
    take(session="s2", seq=1, sent=20)  # a restarted worker whose first chunk was lost
    assert ingest.samples_lost == 20
    take(session="s3", seq=40, sent=400)  # first seen mid-session: the trainer restarted
    take(session="s3", seq=41, sent=410)
    assert ingest.samples_lost == 20
    bad = dict(arrays, reward=np.full(10, np.nan, np.float32))
    ingest.take({"worker": "w", "n": 10, "session": "s3", "seq": 42, "sent": 420}, bad)
    take(session="s3", seq=43, sent=430)
    assert ingest.samples_lost == 20 and ingest.rejected_chunks == 1  # rejected, not lost


def test_compact_image_chunks_are_checked_in_their_wire_layout() -> None:
    obs_space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (4, 8, 8), np.uint8),
            "speed": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        }
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    spec = wire_spec(obs_space, action_space, compact=True)
    assert spec["frames/image"] == ((8, 8), np.dtype(np.uint8))
    assert spec["obs_index/image"] == ((4,), np.dtype(np.int32))
    builder = ChunkBuilder(obs_space, action_space, 5, compact=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = {k: s.sample() for k, s in obs_space.spaces.items()}
        builder.add(obs, action_space.sample(), 0.0, False, False, obs)
    arrays = builder.take()
    ingest = Ingest(spec)
    accepted = ingest.take({"worker": "w", "n": 5}, arrays)
    assert accepted is not None and accepted.arrays["obs/image"].shape == (5, 4, 8, 8)
    arrays["obs_index/image"][0, 0] = 10_000  # points outside its frames
    assert ingest.take({"worker": "w", "n": 5}, arrays) is None
    assert ingest.rejected_chunks == 1 and rng is not None

"""The vectorized worker (``worker.envs: N``): per-car chunks equal to plain workers' chunks,
chunks of several cars through the trainer's ingestion, start-up errors (issue 15)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from netkit import FakeServerTransport
from netkit import box_chunk as net_chunk
from rolekit import (
    FakeClock,
    FakeHub,
    FakeLearner,
    TinyEnv,
    box_chunk,
    run_together,
    tiny_config,
)

from tmrl2.config.schema import Config, ServerConfig
from tmrl2.envs.factory import build_env
from tmrl2.envs.sim.autopilot import Autopilot
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.roles.chunk_checks import chunk_cars
from tmrl2.roles.chunks import wire_spec
from tmrl2.roles.components import build_memory, build_model
from tmrl2.roles.ingest import Ingest
from tmrl2.roles.server import Server
from tmrl2.roles.trainer import Trainer
from tmrl2.roles.vec_worker import SEED_STRIDE, CarBatch, VecWorker, check_worker_envs
from tmrl2.roles.worker import Worker, build_worker

CARS = 3
STEPS = 400
NOISE = (0.0, 0.3, 0.1)
"""Steering noise per car around the autopilot (car 2 also stops after 40 steps: it stalls)."""


TRACKS = {
    "hill": "centerline: [[0, 0, 0], [120, 0, 0], [180, 6, 60], [195, 0, 60], [270, 0, 60]]\n"
    "width_m: 14\ncheckpoint_spacing_m: 80\nresample_m: 2.0\nsmooth_m: 0.0\n"
    "surfaces: [{from_m: 90, to_m: 140, surface: dirt}]\n",
    "zigzag": "centerline: [[0, 0, 0], [80, 0, -40], [160, -2, 0], [240, 0, -30], [300, 0, 0]]\n"
    "width_m: 12\ncheckpoint_spacing_m: 100\nresample_m: 2.0\nsmooth_m: 10.0\n",
}
"""Two short tracks (a lap in about 10 s): finishes within a short test."""


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("tracks")
    paths = {}
    for name, body in TRACKS.items():
        path = folder / f"{name}.yaml"
        path.write_text(f"format: tmrl2-track/1\nname: {name}\n{body}")
        paths[name] = str(path)
    return paths


def _config(*sets: str) -> Config:
    return tiny_config(
        "worker.chunk_steps=40",
        "env.stuck_steps=30",
        "env.preview_points=3",
        *sets,
    )


def _autopilot_actions(worker: Worker, car: int, steps: int) -> np.ndarray:
    """Run a plain worker whose actions are the autopilot's (plus car ``car``'s noise) and
    return them: the action table its vectorized twin replays."""
    rng = np.random.default_rng(100 + car)
    actions: list[np.ndarray] = []
    sim = worker.env.unwrapped
    pilots: dict[int, Autopilot] = {}

    def act(obs: Any) -> np.ndarray:
        pilot = pilots.setdefault(id(sim.track), Autopilot(sim.track))
        action = pilot.act(sim.car.state).astype(np.float32)
        action[2] = np.clip(action[2] + rng.normal(0.0, NOISE[car]), -1.0, 1.0)
        if car == 1 and sim._steps % 50 >= 40:
            action[2] = 1.0  # hard right now and then: into the wall
        if car == 2 and sim._steps >= 40:
            action[:2] = (0.0, 1.0)  # brake: no more progress, the stall detector ends it
        actions.append(action)
        return action

    worker._act = act  # type: ignore[method-assign]
    worker.start()
    for _ in range(steps):
        assert worker.step(wait_ms=0)
    worker.finish()
    return np.stack(actions)


def _plain(config: Config, hub: FakeHub, car: int) -> tuple[Worker, np.ndarray]:
    env = build_env(config)
    actor = build_model(config, env.observation_space, env.action_space).actor
    worker = Worker(
        config,
        env=env,
        actor=actor,
        connect=hub.connector("worker", f"plain{car}"),
        name=f"plain{car}",
        seed=7 + car * SEED_STRIDE,
        clock=FakeClock(),
    )
    return worker, _autopilot_actions(worker, car, STEPS)


def _vectorized(config: Config, hub: FakeHub, table: np.ndarray) -> VecWorker:
    cars = CarBatch(config, CARS, [7 + i * SEED_STRIDE for i in range(CARS)])
    actor = build_model(config, cars.observation_space, cars.action_space).actor
    worker = VecWorker(
        config, env=cars, actor=actor, connect=hub.connector("worker", "vec"), name="vec", seed=7
    )
    step = iter(range(STEPS))
    worker._act = lambda obs: table[:, next(step)]  # type: ignore[method-assign]
    worker.start()
    for _ in range(STEPS):
        assert worker.step(wait_ms=0)
    worker.finish()
    return worker


def _split(msg: Message) -> list[dict[str, np.ndarray]]:
    cars, n = msg.meta["cars"], msg.meta["n"]
    rows = n // cars
    return [{k: a[i * rows : (i + 1) * rows] for k, a in msg.arrays.items()} for i in range(cars)]


ALL_TERMS = (
    "reward.terms.progress.weight=0.5",
    "reward.terms.checkpoint.per_checkpoint=0.3",
    "reward.terms.speed.scale=0.01",
    "reward.terms.off_track.penalty=0.2",
    "reward.terms.wall.penalty=0.7",
    "reward.terms.steering.scale=0.1",
    "reward.terms.air_time.scale=2.0",
    "reward.terms.time.penalty=0.01",
    "reward.terms.finish.bonus=5.0",
)


def slow_down(info: dict[str, Any]) -> float:
    """A custom reward term (by import path): the reward objects' path, car by car."""
    return -0.01 * float(info["speed_ms"]) * float(info["action"][1])


@pytest.mark.parametrize(
    "case", ["hill", "zigzag", "two-tracks", "all-terms", "custom-term", "no-progress"]
)
def test_simbatch_worker_chunks_equal_single_car_chunks_for_the_same_actions(
    case: str, tracks: dict[str, str]
) -> None:
    """SimBatch worker chunks equal single-car chunks for the same actions: observations,
    rewards (the vectorized built-in terms, or reward objects car by car), terminated and
    truncated (finish, cap, stall), chunk boundaries, episode records with their terms."""
    if case == "two-tracks":
        sets = (f"env.tracks=[{tracks['hill']}, {tracks['zigzag']}]", "env.track_id_input=true")
    elif case == "zigzag":  # episodes capped before a lap
        sets = (f"env.track={tracks[case]}", "env.max_episode_steps=120")
    elif case == "all-terms":
        sets = (f"env.track={tracks['hill']}", *ALL_TERMS)
    elif case == "custom-term":
        sets = (
            f"env.track={tracks['zigzag']}",
            "reward.custom=[{kind: 'test_vec_worker:slow_down'}]",
        )
    elif case == "no-progress":  # reward.no_progress's stall rule, with a grace period
        sets = (
            f"env.track={tracks['zigzag']}",
            "reward.no_progress.grace_steps=60",
            "reward.no_progress.patience_steps=15",
            "reward.no_progress.min_progress_m=2.0",
        )
    else:
        sets = (f"env.track={tracks[case]}",)
    config = _config(*sets)
    hub = FakeHub(worker_credit=10_000)
    plains, tables = zip(*(_plain(config, hub, car) for car in range(CARS)), strict=True)
    vec = _vectorized(config, hub, np.stack(tables))
    assert (vec.batch.vec_reward is None) == (case == "custom-term")
    vec_msgs = vec.client.of_kind("chunk")  # type: ignore[union-attr]
    assert {m.meta["cars"] for m in vec_msgs} == {CARS}
    ends = {"finished": 0, "capped": 0, "stalled": 0}
    for car, plain in enumerate(plains):
        mine = plain.client.of_kind("chunk")  # type: ignore[union-attr]
        assert len(mine) == len(vec_msgs) == -(-STEPS // 40)
        for single, batch in zip(mine, vec_msgs, strict=True):
            part = _split(batch)[car]
            assert part.keys() == single.arrays.keys()
            for key, array in single.arrays.items():
                np.testing.assert_array_equal(part[key], array, err_msg=f"car {car} {key}")
        records = [r for m in mine for r in m.meta["episodes"]]
        vec_records = [
            {k: v for k, v in r.items() if k != "car"}
            for m in vec_msgs
            for r in m.meta["episodes"]
            if r["car"] == car
        ]
        assert vec_records == records and records
        for record in records:
            capped = record["steps"] == 120
            end = "finished" if record["finished"] else "capped" if capped else "stalled"
            ends[end] += 1
    # every kind of episode end was compared
    assert ends["stalled"] >= 1 and ends["capped" if case == "zigzag" else "finished"] >= 1
    if case == "all-terms":  # every vectorized term was exercised (walls, dirt, a jump...)
        paid = {
            name
            for m in vec_msgs
            for r in m.meta["episodes"]
            for name, v in r["terms"].items()
            if v
        }
        assert len(paid) == len(ALL_TERMS)
    if case == "two-tracks":
        driven = {r["track"] for m in vec_msgs for r in m.meta["episodes"]}
        assert driven == {tracks["hill"], tracks["zigzag"]}


def test_a_vectorized_worker_feeds_a_trainer_whose_memory_gets_per_car_chunks() -> None:
    """A VecWorker of 4 cars and a Trainer (in-process, fake server): the trainer counts every
    transition and episode, loses none, and its replay memory (3-step returns) holds exactly
    what appending each car's sub-chunk on its own gives (appending whole chunks would not)."""
    config = _config("worker.envs=4", "worker.chunk_steps=10", "memory.n_step=3")
    hub = FakeHub()
    cars = CarBatch(config, 4, [3, 4, 5, 6])
    torch.manual_seed(0)
    model = build_model(config, cars.observation_space, cars.action_space)
    device = torch.device("cpu")
    trainer = Trainer(
        config,
        memory=build_memory(config, cars.observation_space, cars.action_space, device),
        learner=FakeLearner(model),
        model=model,
        spec=wire_spec(cars.observation_space, cars.action_space, compact=False),
        connect=hub.connector("trainer", "trainer"),
        live=False,
        clock=FakeClock(),
    )
    worker = VecWorker(
        config,
        env=cars,
        actor=build_model(config, cars.observation_space, cars.action_space).actor,
        connect=hub.connector("worker", "vec"),
        name="vec",
        seed=3,
        clock=FakeClock(),
    )
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 400)
    for _ in range(5):
        trainer.step()
    sent = worker.client.of_kind("chunk")  # type: ignore[union-attr]
    assert trainer.counters["samples"] == worker.sent == sum(m.meta["n"] for m in sent) > 400
    assert worker.steps - worker.sent == 4 * worker.chunk.count  # the partial chunk
    assert trainer.ingest.samples_lost == 0 and trainer.counters["updates"] > 0
    episodes = [r for m in sent for r in m.meta["episodes"]]
    assert trainer.counters["episodes"] == len(episodes) > 0
    assert {r["car"] for r in episodes} == {0, 1, 2, 3}
    per_car = build_memory(config, cars.observation_space, cars.action_space, device)
    whole = build_memory(config, cars.observation_space, cars.action_space, device)
    for msg in sent:
        for part in _split(msg):
            per_car.append(part)
        whole.append(msg.arrays)
    got = trainer.memory.state_dict()["arrays"]
    for key, array in per_car.state_dict()["arrays"].items():
        np.testing.assert_array_equal(got[key], array, err_msg=key)
    assert not np.array_equal(got["reward"], whole.state_dict()["arrays"]["reward"])


def test_chunks_of_several_cars_are_split_per_car_and_a_bad_cars_is_rejected() -> None:
    env = TinyEnv()
    ingest = Ingest(wire_spec(env.observation_space, env.action_space, compact=False))
    old = box_chunk(n=10)  # a single car's chunk, as ever
    assert [source for source, _ in ingest.take(old.meta, old.arrays).parts()] == ["evil"]  # type: ignore[union-attr]
    msg = box_chunk(n=10, cars=2)
    msg.arrays["reward"] = np.arange(10, dtype=np.float32)
    accepted = ingest.take(msg.meta, msg.arrays)
    assert accepted is not None and accepted.n == 10 and accepted.cars == 2
    parts = accepted.parts()
    assert [source for source, _ in parts] == ["evil/car0", "evil/car1"]
    assert parts[1][1]["reward"].tolist() == [5, 6, 7, 8, 9]  # car-major
    for cars in (3, 0, True, "2"):
        bad = box_chunk(n=10, cars=cars)
        assert ingest.take(bad.meta, bad.arrays) is None
    assert ingest.rejected_chunks == 4
    with pytest.raises(ValueError, match="does not divide"):
        chunk_cars({"cars": 4}, 10)  # the server's check too


def test_configs_the_batch_cannot_run_fail_at_start_up_in_one_line() -> None:
    check_worker_envs(tiny_config("worker.envs=4"))
    for sets, key in [
        (["env.kind=trackmania"], "env.kind"),
        (["env.image=true"], "env.image"),
        (["env.realtime=true"], "env.realtime"),
        (["env.on_stuck=respawn"], "env.on_stuck"),
    ]:
        with pytest.raises(ValueError, match=key) as info:
            check_worker_envs(tiny_config("worker.envs=4", *sets))
        assert "worker.envs" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="env.image"):  # the worker process checks it too
        build_worker(tiny_config("worker.envs=4", "env.image=true"), "tcp://127.0.0.1:9")
    check_worker_envs(tiny_config("worker.envs=4", "worker.sim_threads=2"))
    with pytest.raises(ValueError, match="worker.sim_threads: 2") as info:  # nothing to split
        check_worker_envs(tiny_config("worker.sim_threads=2"))
    assert "worker.envs" in str(info.value) and "\n" not in str(info.value)


def test_build_worker_makes_a_vectorized_worker_for_worker_envs() -> None:
    """What `tmrl2 train` starts in each worker process (the launcher is unchanged)."""
    worker = build_worker(tiny_config("worker.envs=5", "run.seed=3"), "tcp://127.0.0.1:9", index=1)
    assert isinstance(worker, VecWorker) and worker.cars == 5
    assert worker.seed == 1003 and worker.pacer.slack == 2 * 10 * 5
    assert worker.batch.sim.rngs[1].random() == np.random.default_rng(1003 + SEED_STRIDE).random()
    plain = build_worker(tiny_config(), "tcp://127.0.0.1:9")
    assert type(plain) is Worker
    with pytest.raises(ValueError, match="over server.max_message_bytes"):
        build_worker(tiny_config("worker.envs=50", "server.max_message_bytes=100000"), "x")


def test_the_server_forwards_a_chunk_of_several_cars_as_one_and_rejects_a_bad_cars() -> None:
    fake = FakeServerTransport()
    server = Server(ServerConfig(port=0), transport=fake)

    def hello(role: str, name: str) -> Message:
        return Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION})

    def serve(*items: tuple[bytes, Message]) -> None:
        for identity, msg in items:
            fake.push(identity, msg)
        server.serve_once(0)

    serve((b"t", hello("trainer", "t")), (b"t", Message("credit", {"n": 10})))
    serve((b"w", hello("worker", "w")))
    good, bad = net_chunk(1.0, n=6), net_chunk(2.0, n=6)
    good.meta["cars"], bad.meta["cars"] = 3, 4
    serve((b"w", good), (b"w", bad), (b"w", net_chunk(3.0, n=6)))
    got = fake.to(b"t", "chunk")
    assert [(m.meta.get("cars"), float(m.arrays["reward"][0])) for m in got] == [
        (3, 1.0),
        (None, 3.0),
    ]
    assert server.stats.rejected == 1 and server.stats.samples_in == 18
    server.close()

"""Restarts without deadlock: workers pace on the trainer's state, counted from an anchor;
counters and weight versions only go up across restarts (issue 14)."""

from __future__ import annotations

from pathlib import Path

from rolekit import FakeClock, FakeHub, make_trainer, make_worker, run_together, tiny_config

from tmrl2.roles.pacing import Pacer, TrainerState


def _state(session: str, updates: int, ready: bool, ahead: float = 0.0) -> TrainerState:
    return TrainerState(
        session,
        updates,
        samples=0,
        ready=ready,
        weights_version=0,
        updates_per_step=0.5,
        ahead=ahead,
    )


def test_pacer_never_waits_without_a_ready_state_and_counts_from_its_anchor() -> None:
    pacer = Pacer(chunk_steps=10, enabled=True)
    assert not pacer.must_wait(10**6)  # no state yet
    pacer.on_state(_state("a", 70_000, ready=False), steps=500)
    assert not pacer.must_wait(10**6)  # not ready: the trainer needs samples
    pacer.on_state(_state("a", 70_000, ready=True), steps=500)
    assert not pacer.must_wait(519) and pacer.must_wait(520)  # slack: 2 chunks
    pacer.on_state(_state("a", 70_010, ready=True), steps=520)
    assert not pacer.must_wait(539) and pacer.must_wait(540)  # + 2 steps per update
    # a new trainer session: no waiting until it is ready, then a new anchor
    pacer.on_state(_state("b", 0, ready=False), steps=540)
    assert not pacer.must_wait(10**6)
    pacer.on_state(_state("b", 3, ready=True), steps=900)
    assert not pacer.must_wait(919) and pacer.must_wait(920)
    # the trainer holds 2 x slack samples beyond its ratio: wait, whatever the own count
    pacer.on_state(_state("b", 3, ready=True, ahead=40), steps=900)
    assert pacer.must_wait(900)
    pacer.on_state(_state("b", 3, ready=True, ahead=39), steps=900)
    assert not pacer.must_wait(900)
    disabled = Pacer(10, enabled=False)  # real time, or worker.pace: false
    disabled.on_state(_state("c", 0, ready=True), steps=0)
    assert not disabled.must_wait(10**9)


def test_worker_far_ahead_keeps_sending_to_a_new_trainer_with_an_empty_memory() -> None:
    """The deadlock of issue 14: a worker at 100k steps, a restarted trainer waiting for
    start_samples in its empty memory."""
    config = tiny_config()
    hub = FakeHub()
    old = make_trainer(config, hub)
    worker = make_worker(config, hub)
    old.start()
    worker.start()
    run_together(old, [worker], 150)
    assert old.counters["updates"] > 0 and worker.pacer.anchor is not None
    worker.steps += 100_000  # it has been running for long
    new = make_trainer(config, hub)  # killed and restarted: new session, empty memory
    new.start()
    run_together(new, [worker], 300)
    assert new.counters["samples"] >= config.trainer.start_samples
    assert new.counters["updates"] > 0
    assert worker.pacer.session == new.session


def test_resume_cannot_let_workers_run_ahead_by_the_restored_update_count(
    tmp_path: Path,
) -> None:
    config = tiny_config()
    first = make_trainer(config, FakeHub(), run_dir=tmp_path)
    first.counters.update(samples=70_000, updates=70_000, weights_version=5)
    first.save()
    hub = FakeHub(weights_version=9)  # the server saw newer weights than the checkpoint
    trainer = make_trainer(config, hub, run_dir=tmp_path, resume=True)
    assert trainer.counters["updates"] == 70_000
    worker = make_worker(config, hub)  # a fresh worker: its steps start at 0
    trainer.start()
    worker.start()
    while not worker.pacer.ready:
        run_together(trainer, [worker], 10)
    steps0, updates0 = worker.pacer.anchor or (0, 0)
    for _ in range(500):  # the trainer makes no progress: the worker must stop soon
        worker.step(wait_ms=0)
    limit = 2 * config.worker.chunk_steps + 2 * (worker.pacer.updates - updates0)
    assert worker.steps - steps0 <= limit < 1000
    # counters continue from the checkpoint; versions above both the checkpoint and server
    run_together(trainer, [worker], 100)
    assert trainer.counters["samples"] > 70_000 and trainer.counters["updates"] > 70_000
    versions = [m.meta["version"] for m in trainer.client.of_kind("weights")]  # type: ignore[union-attr]
    assert versions[0] == 10 and versions == sorted(set(versions))


def test_state_goes_out_on_connect_when_ready_flips_and_at_most_every_half_second() -> None:
    config = tiny_config()
    hub, clock = FakeHub(), FakeClock()
    trainer = make_trainer(config, hub, clock=clock)
    worker = make_worker(config, hub, clock=clock)
    trainer.start()
    worker.start()
    states = trainer.client.of_kind  # type: ignore[union-attr]
    assert [m.meta["ready"] for m in states("state")] == [False]
    for _ in range(20):
        trainer.step()
    assert len(states("state")) == 1  # the clock stood still: no periodic state
    while not trainer._ready:
        run_together(trainer, [worker], 10)
    assert states("state")[-1].meta["ready"] is True  # at once when ready flipped
    count = len(states("state"))
    clock.advance(0.6)
    trainer.step()
    assert len(states("state")) == count + 1

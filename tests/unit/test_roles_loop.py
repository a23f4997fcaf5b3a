"""The trainer and workers in one process, wired to an in-memory server (rolekit)."""

from __future__ import annotations

from rolekit import FakeHub, make_trainer, make_worker, run_together, tiny_config


def test_trainer_ingests_chunks_and_publishes_weights_that_workers_take() -> None:
    config = tiny_config()
    hub = FakeHub()
    trainer = make_trainer(config, hub, real_learner=True)  # SAC, held to the Learner contract
    workers = [make_worker(config, hub, f"w{i}") for i in range(2)]
    trainer.start()
    for worker in workers:
        worker.start()
    run_together(trainer, workers, 200)
    assert trainer.counters["samples"] >= 200 and trainer.counters["chunks"] >= 20
    assert trainer.counters["updates"] > 0
    assert trainer.counters["episodes"] >= 10 and trainer.best_lap_s == 1.5
    assert trainer.counters["weights_version"] >= 1
    assert all(w.policy_version >= 1 for w in workers)
    assert trainer.counters["worker_policy_version"] >= 1
    assert trainer.ingest.counters() == {
        "rejected_chunks": 0,
        "rejected_episodes": 0,
        "samples_lost": 0,
    }
    # every chunk carries the worker's session and numbering for loss accounting
    chunks = workers[0].client.of_kind("chunk")  # type: ignore[union-attr]
    assert [c.meta["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert chunks[-1].meta["sent"] == sum(c.meta["n"] for c in chunks)
    trainer.finish()
    for worker in workers:
        worker.finish()


def test_hellos_carry_session_spec_and_weights_version() -> None:
    config = tiny_config()
    hub = FakeHub()
    trainer = make_trainer(config, hub)
    workers = [make_worker(config, hub, "a"), make_worker(config, hub, "b")]
    trainer.start()
    for worker in workers:
        worker.start()
    trainer_hello, *worker_hellos = hub.hellos
    assert trainer_hello["spec"]["obs"] == ["<f4", [3]]
    assert trainer_hello["spec"]["terminated"] == ["|b1", []]
    assert set(trainer_hello["spec"]) == {
        "obs",
        "next_obs",
        "action",
        "reward",
        "terminated",
        "truncated",
    }
    sessions = {hello["session"] for hello in hub.hellos}
    assert len(sessions) == 3 and all(len(s) == 16 for s in sessions)
    assert all(hello["weights_version"] == 0 for hello in worker_hellos)
    # the trainer said its state right after connecting: not ready (empty memory)
    assert hub.state is not None and hub.state.meta["ready"] is False
    assert hub.state.meta["session"] == trainer.session


def test_a_stopping_worker_sends_its_partial_chunk_and_lingers() -> None:
    """A clean stop loses no transition: the rows of the unfinished chunk go out with bye."""
    config = tiny_config()
    hub = FakeHub()
    worker = make_worker(config, hub, "w")
    worker.start()
    for _ in range(config.worker.chunk_steps + 3):
        worker.step(wait_ms=0)
    assert worker.chunk.count == 3
    worker.finish()
    client = worker.client
    assert client is not None and client.closed
    chunks = client.of_kind("chunk")  # type: ignore[attr-defined]
    assert [c.meta["n"] for c in chunks] == [config.worker.chunk_steps, 3]
    assert chunks[-1].meta["sent"] == worker.steps
    assert client.sent[-1].kind == "bye"  # type: ignore[attr-defined]

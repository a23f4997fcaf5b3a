"""The trainer survives a server outage of any length: sends never block, the latest weights
wait (coalesced), and a restarted server gets credit, state and weights again (issue 14)."""

from __future__ import annotations

from rolekit import FakeHub, make_trainer, make_worker, run_together, tiny_config


def test_trainer_trains_through_an_outage_and_resends_the_latest_weights() -> None:
    config = tiny_config("trainer.updates_per_step=1000", "worker.pace=false")
    hub = FakeHub()
    trainer = make_trainer(config, hub)
    worker = make_worker(config, hub)
    trainer.start()
    worker.start()
    run_together(trainer, [worker], 150)
    assert trainer.counters["updates"] > 0
    client = trainer.client
    assert client is not None
    sent_before = len(client.of_kind("weights"))  # type: ignore[attr-defined]
    hub.outage()
    updates, version = trainer.counters["updates"], trainer.counters["weights_version"]
    run_together(trainer, [worker], 300)  # any number of publishes: nothing blocks or raises
    assert trainer.counters["updates"] > updates
    assert trainer.counters["weights_version"] > version + 3
    assert worker.dropped > 0  # its chunks could not go either
    assert len(client.of_kind("weights")) == sent_before  # type: ignore[attr-defined]
    hub.restart()
    samples = trainer.counters["samples"]
    trainer.step()  # takes the welcome: credit, state and the latest weights, once
    weights = client.of_kind("weights")[sent_before:]  # type: ignore[attr-defined]
    assert len(weights) == 1
    assert weights[0].meta["version"] == trainer.counters["weights_version"]
    assert hub.trainer_credit + len(client.inbox) >= config.trainer.credit  # type: ignore[attr-defined]
    assert hub.state is not None and hub.state.meta["session"] == trainer.session
    run_together(trainer, [worker], 150)
    assert trainer.counters["samples"] > samples  # training goes on after the restart
    # the chunks dropped during the outage are accounted as lost, not silently missing
    assert trainer.ingest.samples_lost > 0
    assert trainer.counters["samples"] + trainer.ingest.samples_lost <= worker.sent

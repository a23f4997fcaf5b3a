"""Server authority (issue 14), on an in-memory transport: the run token, the trainer's spec
and finite values, unique worker names, enforced credit, weights only when newer, the
trainer's state, hello rates, bounded per-peer records, samples_lost not inflatable."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from netkit import FakeServerTransport, box_chunk

from tmrl2.config.schema import ServerConfig
from tmrl2.net.codec import PROTOCOL_VERSION, Message
from tmrl2.net.transport import SendResult
from tmrl2.roles.server import Server

SPEC = {
    "obs": ["<f4", [2]],
    "next_obs": ["<f4", [2]],
    "action": ["<f4", [3]],
    "reward": ["<f4", []],
    "terminated": ["|b1", []],
    "truncated": ["|b1", []],
}
"""The spec of :func:`netkit.box_chunk`."""


def hello(role: str, name: str, **extra: Any) -> Message:
    return Message("hello", {"role": role, "name": name, "protocol": PROTOCOL_VERSION, **extra})


def make(**config: Any) -> tuple[Server, FakeServerTransport]:
    fake = FakeServerTransport()
    return Server(ServerConfig(port=0, **config), transport=fake), fake


def serve(server: Server, fake: FakeServerTransport, *items: tuple[bytes, Message]) -> None:
    for identity, msg in items:
        fake.push(identity, msg)
    server.serve_once(0)


def refusal(fake: FakeServerTransport, identity: bytes) -> Message:
    refused = fake.to(identity, "refused")
    assert refused, fake.to(identity)
    return refused[-1]


def weights(version: int) -> Message:
    return Message("weights", {"version": version, "updates": 0}, {"w": np.ones(2, np.float32)})


def state(updates: int, ready: bool = True) -> Message:
    meta = {"session": "t1", "updates": updates, "samples": 10, "ready": ready}
    return Message("state", {**meta, "weights_version": 1})


# ---------------------------------------------------------------------- run token
def test_a_server_with_a_run_token_refuses_other_runs_clients() -> None:
    server, fake = make(run_token="run-a")
    serve(
        server,
        fake,
        (b"w1", hello("worker", "w1", run_token="run-b")),
        (b"w2", hello("worker", "w2")),
    )
    for identity in (b"w1", b"w2"):
        refused = refusal(fake, identity)
        assert refused.meta["code"] == "token"
        assert "another run's server" in refused.meta["reason"]
    serve(server, fake, (b"w3", hello("worker", "w3", run_token="run-a")))
    assert fake.to(b"w3", "welcome") and server.stats.refused_codes == {"token": 2}


def test_the_run_token_argument_overrides_the_config() -> None:
    fake = FakeServerTransport()
    server = Server(ServerConfig(port=0), transport=fake, run_token="tok")
    serve(server, fake, (b"w", hello("worker", "w")))
    assert refusal(fake, b"w").meta["code"] == "token"


# ---------------------------------------------------------------------- spec and values
def trainer(server: Server, fake: FakeServerTransport, credit: int = 100, **extra: Any) -> None:
    serve(
        server,
        fake,
        (b"t", hello("trainer", "t", **extra)),
        (b"t", Message("credit", {"n": credit})),
    )


def test_chunks_unlike_the_trainers_spec_are_rejected_and_counted_per_worker() -> None:
    server, fake = make()
    trainer(server, fake, spec=SPEC)
    serve(server, fake, (b"w", hello("worker", "w")))
    wrong_shape = box_chunk(1.0, obs=np.zeros((5, 3), np.float32))
    wrong_dtype = box_chunk(2.0, obs=np.zeros((5, 2), np.float64))
    serve(server, fake, (b"w", wrong_shape), (b"w", wrong_dtype), (b"w", box_chunk(3.0)))
    got = fake.to(b"t", "chunk")
    assert [float(m.arrays["reward"][0]) for m in got] == [3.0]
    assert server.stats.rejected == 2 and server.stats.workers["w"].rejected == 2
    assert server.stats.errors == 0


def test_non_finite_values_are_rejected_even_without_a_spec() -> None:
    server, fake = make()
    trainer(server, fake)  # an older trainer: no spec
    serve(server, fake, (b"w", hello("worker", "w")))
    bad = box_chunk(1.0)
    bad.arrays["reward"] = np.array([0, 0, np.nan, 0, 0], np.float32)
    inf = box_chunk(2.0, obs=np.full((5, 2), np.inf, np.float32))
    serve(server, fake, (b"w", bad), (b"w", inf), (b"w", box_chunk(3.0)))
    assert [float(m.arrays["reward"][0]) for m in fake.to(b"t", "chunk")] == [3.0]
    assert server.stats.rejected == 2


def test_rejected_chunks_give_their_credit_back() -> None:
    server, fake = make(worker_credit=2)
    trainer(server, fake, spec=SPEC)
    serve(server, fake, (b"w", hello("worker", "w")))
    bad = box_chunk(1.0, obs=np.zeros((5, 7), np.float32))
    serve(server, fake, *[(b"w", bad)] * 2)
    assert sum(m.meta["n"] for m in fake.to(b"w", "credit")) == 2
    assert server.stats.over_credit == 0


def test_chunks_queued_before_the_spec_are_checked_when_it_arrives() -> None:
    server, fake = make()
    serve(server, fake, (b"w", hello("worker", "w")))
    serve(
        server,
        fake,
        (b"w", box_chunk(1.0, obs=np.zeros((5, 4), np.float32))),
        (b"w", box_chunk(2.0)),
    )
    assert server.queued_chunks == 2 and server.stats.rejected == 0
    trainer(server, fake, spec=SPEC)
    assert [float(m.arrays["reward"][0]) for m in fake.to(b"t", "chunk")] == [2.0]
    assert server.stats.rejected == 1 and server.stats.workers["w"].rejected == 1
    stats = server.stats
    assert stats.chunks_in == stats.chunks_forwarded + stats.rejected + server.queued_chunks


def test_a_spec_with_an_unknown_dtype_refuses_the_trainer() -> None:
    server, fake = make()
    serve(server, fake, (b"t", hello("trainer", "t", spec={"obs": ["<q9", [1]]})))
    assert refusal(fake, b"t").meta["code"] == "config"


# ---------------------------------------------------------------------- welcome, weights, state
def test_welcome_carries_the_weights_version_and_the_server_session() -> None:
    server, fake = make()
    trainer(server, fake)
    serve(server, fake, (b"t", weights(7)), (b"w", hello("worker", "w")))
    welcome = fake.to(b"w", "welcome")[0]
    assert welcome.meta["weights_version"] == 7
    assert welcome.meta["session"] == server.session and len(server.session) == 16
    assert Server(ServerConfig(port=0), transport=FakeServerTransport()).session != server.session


def test_weights_follow_a_hello_only_when_newer_than_the_workers() -> None:
    server, fake = make()
    trainer(server, fake)
    serve(server, fake, (b"t", weights(5)))
    serve(
        server,
        fake,
        (b"up-to-date", hello("worker", "a", weights_version=5)),
        (b"stale", hello("worker", "b", weights_version=4)),
        (b"old-client", hello("worker", "c")),
    )
    assert fake.to(b"up-to-date", "weights") == []
    assert [m.meta["version"] for m in fake.to(b"stale", "weights")] == [5]
    assert [m.meta["version"] for m in fake.to(b"old-client", "weights")] == [5]
    serve(server, fake, (b"t", weights(6)))
    assert [m.meta["version"] for m in fake.to(b"up-to-date", "weights")] == [6]


def test_state_is_coalesced_and_reaches_every_worker_new_ones_after_welcome() -> None:
    server, fake = make()
    trainer(server, fake)
    serve(server, fake, (b"w1", hello("worker", "w1")))
    fake.results[b"w1"] = SendResult.BUSY  # w1 reads slowly: states pile up at the server
    serve(server, fake, (b"t", state(1)), (b"t", state(2)), (b"t", state(3)))
    assert fake.to(b"w1", "state") == []
    del fake.results[b"w1"]
    serve(server, fake)
    assert [m.meta["updates"] for m in fake.to(b"w1", "state")] == [3]  # the latest only
    serve(server, fake, (b"w2", hello("worker", "w2")))
    kinds = [m.kind for m in fake.to(b"w2")]
    assert kinds[:2] == ["welcome", "state"]
    assert server.stats.trainer_state["updates"] == 3 and server.stats.states_sent == 2


def test_a_gone_trainers_state_is_not_given_to_new_workers() -> None:
    server, fake = make()
    trainer(server, fake)
    serve(server, fake, (b"t", state(4)), (b"t", Message("bye")), (b"w", hello("worker", "w")))
    assert fake.to(b"w", "state") == []


def test_workers_may_not_send_state() -> None:
    server, fake = make()
    serve(server, fake, (b"w", hello("worker", "w")), (b"w", state(1)))
    assert server.stats.malformed == 1 and server.stats.trainer_state == {}


# ---------------------------------------------------------------------- names
def test_a_second_live_worker_with_a_taken_name_is_refused_clearly() -> None:
    server, fake = make()
    serve(server, fake, (b"worker-w-aaaa", hello("worker", "w", session="aaaa")))
    serve(server, fake, (b"worker-w-bbbb", hello("worker", "w", session="bbbb")))
    refused = refusal(fake, b"worker-w-bbbb")
    assert refused.meta["code"] == "name_taken"
    assert "unique worker.name" in refused.meta["reason"]
    # the first one keeps its session: its chunks still flow
    trainer(server, fake)
    serve(server, fake, (b"worker-w-aaaa", box_chunk(1.0)))
    assert len(fake.to(b"t", "chunk")) == 1 and server.stats.malformed == 0


def test_a_gone_name_holder_is_replaced() -> None:
    server, fake = make()
    serve(server, fake, (b"worker-w-aaaa", hello("worker", "w", session="aaaa")))
    fake.results[b"worker-w-aaaa"] = SendResult.GONE  # killed: the probe finds it gone
    serve(server, fake, (b"worker-w-bbbb", hello("worker", "w", session="bbbb")))
    assert fake.to(b"worker-w-bbbb", "welcome") and server.stats.workers_connected == 1


def test_the_same_identity_may_say_hello_again() -> None:
    server, fake = make()
    serve(server, fake, (b"worker-w", hello("worker", "w")), (b"worker-w", hello("worker", "w")))
    assert len(fake.to(b"worker-w", "welcome")) == 2 and server.stats.refused == 0


# ---------------------------------------------------------------------- credit
def test_a_greedy_worker_cannot_make_the_server_drop_an_honest_workers_chunks() -> None:
    server, fake = make(worker_credit=4, max_queued_chunks=8)
    serve(
        server, fake, (b"greedy", hello("worker", "greedy")), (b"honest", hello("worker", "honest"))
    )
    serve(server, fake, *[(b"greedy", box_chunk(9.0))] * 200)  # ignores its credit
    serve(server, fake, *[(b"honest", box_chunk(1.0))] * 4)  # within its credit
    trainer(server, fake, credit=1000)
    got = [float(m.arrays["reward"][0]) for m in fake.to(b"t", "chunk")]
    assert got.count(1.0) == 4 and got.count(9.0) == 4
    stats = server.stats
    assert stats.chunks_dropped == 0 and stats.over_credit == 196
    assert stats.workers["greedy"].over_credit == 196 and stats.workers["honest"].over_credit == 0


def test_credit_comes_back_as_chunks_leave_and_an_honest_worker_never_exceeds_it() -> None:
    server, fake = make(worker_credit=2)
    trainer(server, fake, credit=1000)
    serve(server, fake, (b"w", hello("worker", "w")))
    granted = 2
    sent = 0
    for _ in range(20):  # an honest worker: sends exactly what it was granted
        batch = granted - sent
        serve(server, fake, *[(b"w", box_chunk(1.0))] * batch)
        sent += batch
        granted = 2 + sum(m.meta["n"] for m in fake.to(b"w", "credit"))
    assert sent >= 20 and server.stats.over_credit == 0


def test_a_repeated_hello_of_the_same_session_grants_what_is_left() -> None:
    """A client that said hello twice (its first welcome late) takes the grant of each welcome
    as its credit: the second grant is what the session may still have in flight."""
    server, fake = make(worker_credit=3)
    serve(server, fake, (b"w", hello("worker", "w", session="s")))
    serve(server, fake, *[(b"w", box_chunk(1.0))] * 2)  # sent after the first welcome
    serve(server, fake, (b"w", hello("worker", "w", session="s")))  # then the second arrives
    grants = [m.meta["chunk_credit"] for m in fake.to(b"w", "welcome")]
    assert grants == [3, 1]
    serve(server, fake, (b"w", box_chunk(1.0)))  # the client's credit is 1: it sends one
    assert server.stats.over_credit == 0 and server.queued_chunks == 3


def test_hellos_in_a_loop_add_no_credit() -> None:
    """A greedy peer re-sending its hello (seen in benchmarks/bench_chaos.py: 20 hellos, then
    20 chunks) must not collect a grant per hello: it keeps ``worker_credit`` in flight."""
    server, fake = make(worker_credit=3)
    serve(server, fake, *[(b"g", hello("worker", "g", session="s"))] * 10)
    serve(server, fake, *[(b"g", box_chunk(1.0))] * 20)
    assert server.queued_chunks == 3 and server.stats.over_credit == 17
    serve(server, fake, *[(b"g", hello("worker", "g", session="s"))] * 5)
    assert fake.to(b"g", "welcome")[-1].meta["chunk_credit"] == 0
    serve(server, fake, (b"g", box_chunk(1.0)))
    assert server.queued_chunks == 3 and server.stats.over_credit == 18
    trainer(server, fake)  # the trainer takes them: the credit comes back, once
    assert sum(m.meta["n"] for m in fake.to(b"g", "credit")) == 3


def test_credit_of_a_chunk_from_an_old_session_does_not_go_to_the_new_one() -> None:
    server, fake = make(worker_credit=2)
    serve(server, fake, (b"w", hello("worker", "w", session="old")), (b"w", box_chunk(1.0)))
    serve(server, fake, (b"w", hello("worker", "w", session="new")))
    trainer(server, fake)
    assert len(fake.to(b"t", "chunk")) == 1
    assert fake.to(b"w", "credit") == []  # the new session starts with its own grant only


# ---------------------------------------------------------------------- rates and records
def test_hellos_beyond_the_rate_are_refused() -> None:
    server, fake = make(hello_burst=3, hello_rate_per_s=0.001)
    serve(server, fake, *[(b"w", hello("worker", "w"))] * 5)
    assert len(fake.to(b"w", "welcome")) == 3
    assert refusal(fake, b"w").meta["code"] == "rate"
    serve(server, fake, (b"other", hello("worker", "other")))  # per identity
    assert fake.to(b"other", "welcome")


def test_per_worker_records_are_pruned_after_the_ttl_and_bounded() -> None:
    server, fake = make(peer_ttl_s=60, max_peers=3)
    for i in range(5):
        serve(server, fake, (f"w{i}".encode(), hello("worker", f"w{i}")))
    serve(server, fake, *[(f"w{i}".encode(), Message("bye")) for i in range(4)])
    server.prune(time.monotonic())  # serve_once does it every second
    assert len(server.stats.workers) == 3  # bounded: the longest unseen went
    serve(server, fake, (b"w5", hello("worker", "w5")))  # a new name: bounded at once
    assert len(server.stats.workers) == 3 and "w5" in server.stats.workers
    assert "w4" in server.stats.workers  # a live worker is kept
    last = max(w.last_seen_s for w in server.stats.workers.values())
    server.prune(last + 61)
    assert sorted(server.stats.workers) == ["w4", "w5"]


def test_strangers_cannot_inflate_samples_lost() -> None:
    server, fake = make()
    serve(server, fake, *[(f"x{i}".encode(), box_chunk(1.0, n=50)) for i in range(20)])
    assert server.stats.unregistered == 20 and server.stats.samples_lost == 0
    # a peer that held a session lately (the server forgot it) does count
    serve(
        server, fake, (b"w", hello("worker", "w")), (b"w", Message("bye")), (b"w", box_chunk(1.0))
    )
    assert server.stats.samples_lost == 5
    # and so does one that opens a session after its chunks (the server had restarted)
    serve(server, fake, (b"x3", hello("worker", "x3")))
    assert server.stats.samples_lost == 55


def test_per_identity_tables_stay_bounded_under_random_identities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tmrl2.roles import server as server_module

    monkeypatch.setattr(server_module, "MAX_IDENTITIES", 50)
    server, fake = make()
    serve(server, fake, *[(f"r{i}".encode(), box_chunk(1.0)) for i in range(300)])
    serve(server, fake, *[(f"h{i}".encode(), hello("worker", "same")) for i in range(300)])
    server.prune(0.0)
    assert len(server._pending_lost) <= 51 and len(server._rejoin_asked) <= 51
    assert len(server._recent) <= 51

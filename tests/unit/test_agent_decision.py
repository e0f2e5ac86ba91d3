"""The database agent's decision (agent/decision.py), table by table: every action, every guard
of a promotion failing on its own, and the invariant that matters most, checked over many
generated pairs of nodes: never two nodes allowed to write at once.

The lab's names: db-01 was the initial primary, db-02 its synchronous standby. Times are in
seconds; the policy is the default one (lease 5 s, fence margin 2 s, silence 2 s, anti-flap 1 h).
"""

import dataclasses
import itertools
import random

import pytest

from agent.decision import Action, Decision, Observation, Policy, decide

POLICY = Policy()
NOW = 1_800_000_000.0
A, B = "db-01", "db-02"
POS = "0-1-100"  # a GTID position both nodes share
AHEAD = "0-1-105"  # the same history, five transactions further

CLUSTER = dict(now=NOW, etcd_ok=True, database_members=frozenset({A, B}), initial_primary=A,
               cluster_initialized=True, sync_standby=B, degraded=False, last_failover_at=None,
               cold_start=False, published_gtids={A: POS, B: POS}, gtid=POS)


def primary(**changes) -> Observation:
    """db-01, the writable holder of the leader key with a fresh lease."""
    facts = dict(me=A, leader=A, lease_left=4.5, running=True, read_only=False,
                 replicating_from=None, io_connected=False, stream_silence=None,
                 relay_applied=True, history_is_prefix=None)
    return Observation(**{**CLUSTER, **facts, **changes})


def standby(**changes) -> Observation:
    """db-02, the synchronous standby, streaming from db-01."""
    facts = dict(me=B, leader=A, lease_left=None, running=True, read_only=True,
                 replicating_from=A, io_connected=True, stream_silence=0.3, relay_applied=True,
                 history_is_prefix=True)
    return Observation(**{**CLUSTER, **facts, **changes})


def ready_to_promote(**changes) -> Observation:
    """db-02 after db-01 died: the key is gone, the stream silent, all applied. PROMOTE."""
    return standby(**{"leader": None, "io_connected": False, "stream_silence": 5.0, **changes})


def old_primary(**changes) -> Observation:
    """db-01 back after db-02 took over: started read-only, replicating from nobody."""
    return primary(**{"leader": B, "lease_left": None, "read_only": True, "sync_standby": None,
                      "history_is_prefix": True, **changes})


def cold(obs: Observation, **changes) -> Observation:
    """All databases went down: the key expired and the standby lost its stream."""
    return dataclasses.replace(obs, leader=None, lease_left=None, cold_start=True,
                               replicating_from=None, io_connected=False, stream_silence=None,
                               **changes)


TABLE = [
    # The primary
    pytest.param(primary(), Action.RENEW, id="a primary holding the key with a fresh lease renews"),
    pytest.param(primary(read_only=True), Action.RENEW,
                 id="a read-only holder of the key renews and takes the primary role"),
    pytest.param(primary(lease_left=2.0), Action.FENCE,
                 id="a primary whose lease is down to the fence margin fences"),
    pytest.param(primary(lease_left=None), Action.FENCE,
                 id="a primary that cannot vouch for its lease fences"),
    pytest.param(primary(running=False), Action.FENCE,
                 id="a holder whose mariadbd is down steps down"),
    pytest.param(primary(etcd_ok=False, lease_left=3.0), Action.RENEW,
                 id="etcd unreachable, lease still above the margin: the primary keeps writing"),
    pytest.param(primary(etcd_ok=False, lease_left=1.9), Action.FENCE,
                 id="etcd unreachable on a primary: it fences before the lease can run out"),
    pytest.param(primary(etcd_ok=False, lease_left=None), Action.FENCE,
                 id="etcd unreachable on a writable node without a lease: it fences"),
    pytest.param(primary(leader=B, lease_left=None), Action.FENCE,
                 id="a writable node whose key another holds fences"),
    pytest.param(primary(leader=None, lease_left=None), Action.FENCE,
                 id="a writable node whose key expired fences and does not take it back"),
    # Bootstrap: a cluster never initialised
    pytest.param(primary(leader=None, lease_left=None, read_only=True, cluster_initialized=False),
                 Action.ACQUIRE, id="at bootstrap the initial primary acquires the free key"),
    pytest.param(standby(leader=None, replicating_from=None, cluster_initialized=False),
                 Action.WAIT, id="at bootstrap any other node waits for the initial primary"),
    pytest.param(primary(leader=None, lease_left=None, read_only=True, cluster_initialized=False,
                         published_gtids={A: POS, B: AHEAD}),
                 Action.NEEDS_HUMAN, id="bootstrap is refused when a peer holds more transactions"),
    pytest.param(primary(leader=None, lease_left=None, running=False, cluster_initialized=False),
                 Action.WAIT, id="at bootstrap an initial primary that is not running waits"),
    # Replicas
    pytest.param(standby(), Action.FOLLOW, id="a replica streaming from the leader follows"),
    pytest.param(standby(io_connected=False), Action.WAIT,
                 id="a replica whose IO thread lost the leader waits, the key being held"),
    pytest.param(standby(stream_silence=5.0), Action.WAIT,
                 id="a replica whose stream is silent waits while the key is held"),
    pytest.param(standby(running=False), Action.WAIT, id="a replica that is not running waits"),
    pytest.param(standby(etcd_ok=False), Action.WAIT,
                 id="etcd unreachable on a replica: it waits and never promotes"),
    pytest.param(standby(leader=None, etcd_ok=False, io_connected=False, stream_silence=9.0),
                 Action.WAIT, id="etcd unreachable hides a free key: no promotion"),
    # Failover
    pytest.param(ready_to_promote(), Action.PROMOTE,
                 id="the standby promotes when every precondition holds"),
    pytest.param(ready_to_promote(last_failover_at=NOW - 2 * 3600), Action.PROMOTE,
                 id="a failover outside the anti-flap window does not block a promotion"),
    pytest.param(ready_to_promote(stream_silence=None), Action.PROMOTE,
                 id="a stream that delivered nothing since mariadbd started counts as silent"),
    pytest.param(ready_to_promote(stream_silence=0.3, receiving_stopped=True), Action.PROMOTE,
                 id="a stream the standby stopped itself is over, however recently it spoke"),
    pytest.param(ready_to_promote(stream_silence=0.3, receiving_stopped=True, relay_applied=False),
                 Action.WAIT, id="a stopped stream still waits for the relay log to be applied"),
    pytest.param(standby(receiving_stopped=True), Action.WAIT,
                 id="a stopped stream with the key held: the replica waits (and restarts it)"),
    pytest.param(ready_to_promote(me=A, sync_standby=B, replicating_from=B), Action.WAIT,
                 id="a node that is not the synchronous standby waits for it"),
    # Planned switchover
    pytest.param(primary(switchover_to=B), Action.HAND_OVER,
                 id="the primary hands over to the synchronous standby when asked"),
    pytest.param(primary(switchover_to="db-03"), Action.RENEW,
                 id="a switchover to a node that is not the standby is refused"),
    pytest.param(primary(switchover_to=B, degraded=True), Action.RENEW,
                 id="a switchover while degraded is refused"),
    pytest.param(primary(switchover_to=B, lease_left=1.0), Action.FENCE,
                 id="a switchover never keeps a holder past its fence margin"),
    pytest.param(primary(switchover_to=A), Action.RENEW,
                 id="a switchover to the primary itself changes nothing"),
    pytest.param(ready_to_promote(switchover_to=B, last_failover_at=NOW - 60), Action.PROMOTE,
                 id="a planned switchover is not held back by the anti-flap window"),
    pytest.param(ready_to_promote(switchover_to=B, stream_silence=0.3), Action.WAIT,
                 id="a planned switchover still waits for the old primary's stream to end"),
    pytest.param(ready_to_promote(switchover_to=B, relay_applied=False), Action.WAIT,
                 id="a planned switchover still waits for the relay log"),
    pytest.param(ready_to_promote(switchover_to=B, degraded=True), Action.NEEDS_HUMAN,
                 id="a switchover never promotes a degraded cluster's standby"),
    # Degraded and anti-flap
    pytest.param(ready_to_promote(degraded=True), Action.NEEDS_HUMAN,
                 id="a degraded cluster that lost its primary needs a human"),
    pytest.param(ready_to_promote(me=A, degraded=True), Action.NEEDS_HUMAN,
                 id="a degraded cluster that lost its primary alerts on every node"),
    pytest.param(ready_to_promote(last_failover_at=NOW - 600), Action.NEEDS_HUMAN,
                 id="a second failover within the anti-flap window needs a human"),
    pytest.param(ready_to_promote(sync_standby=None), Action.NEEDS_HUMAN,
                 id="a lost primary without a recorded synchronous standby needs a human"),
    # The old primary comes back
    pytest.param(old_primary(), Action.REJOIN,
                 id="an old primary whose history is a prefix of the new one rejoins"),
    pytest.param(old_primary(history_is_prefix=False), Action.STAY_FENCED,
                 id="an old primary whose history diverged stays fenced"),
    pytest.param(old_primary(history_is_prefix=None), Action.WAIT,
                 id="an old primary waits until the prefix check has an answer"),
    pytest.param(old_primary(running=False), Action.WAIT,
                 id="an old primary whose mariadbd is down waits"),
    pytest.param(old_primary(read_only=False), Action.FENCE,
                 id="an old primary that came back writable fences at once"),
    pytest.param(old_primary(leader=None, sync_standby=B), Action.WAIT,
                 id="an old primary never takes back a free key: it waits for the standby"),
    pytest.param(standby(replicating_from=None, leader=A), Action.REJOIN,
                 id="a replica replicating from nobody rejoins the leader"),
    # Cold start
    pytest.param(cold(primary(read_only=True), published_gtids={A: AHEAD, B: POS}, gtid=AHEAD),
                 Action.ACQUIRE, id="at cold start the member holding every GTID acquires"),
    pytest.param(cold(standby(), published_gtids={A: AHEAD, B: POS}), Action.WAIT,
                 id="at cold start a member the GTIDs do not elect waits"),
    pytest.param(cold(primary(read_only=True)), Action.ACQUIRE,
                 id="at cold start equal positions elect the first name"),
    pytest.param(cold(standby()), Action.WAIT,
                 id="at cold start equal positions leave the second name waiting"),
    pytest.param(cold(primary(read_only=True), published_gtids={A: POS}), Action.NEEDS_HUMAN,
                 id="cold start without every member's GTIDs needs a human"),
    pytest.param(cold(primary(read_only=True), published_gtids={A: "0-1-100", B: "0-2-100"}),
                 Action.NEEDS_HUMAN, id="cold start with diverged positions needs a human"),
    pytest.param(cold(primary(read_only=True), published_gtids={A: "0-1-100,1-1-5",
                                                                B: "0-1-101"}),
                 Action.NEEDS_HUMAN, id="cold start where each member lacks some domain needs a "
                                        "human"),
    pytest.param(cold(primary(read_only=True), published_gtids={A: "garbage", B: POS}),
                 Action.NEEDS_HUMAN, id="a malformed published position gives no verdict"),
    pytest.param(cold(primary(read_only=True), gtid=AHEAD), Action.WAIT,
                 id="at cold start the winner waits until its live position is the published one"),
    pytest.param(cold(primary(read_only=True), running=False), Action.WAIT,
                 id="at cold start the winner waits for its mariadbd"),
    pytest.param(cold(ready_to_promote(), degraded=True), Action.NEEDS_HUMAN,
                 id="a degraded cold start needs a human"),
]


@pytest.mark.parametrize(("obs", "expected"), TABLE)
def test_decide(obs, expected):
    decision = decide(obs, POLICY)
    assert decision.action == expected, decision.reason
    assert decision.reason


# Each promotion precondition, broken on its own, must prevent PROMOTE.
GUARDS = [
    pytest.param({"leader": A, "replicating_from": A}, id="the leader key is still held"),
    pytest.param({"sync_standby": "db-03"}, id="I am not the recorded synchronous standby"),
    pytest.param({"stream_silence": 1.0}, id="the replication stream still speaks"),
    pytest.param({"stream_silence": 2.0}, id="the stream is silent for the threshold, not longer"),
    pytest.param({"relay_applied": False}, id="the relay log is not fully applied"),
    pytest.param({"degraded": True}, id="the cluster is degraded"),
    pytest.param({"last_failover_at": NOW - 60}, id="a failover happened within the window"),
    pytest.param({"etcd_ok": False}, id="etcd does not answer"),
    pytest.param({"running": False}, id="my mariadbd is not running"),
    pytest.param({"cold_start": True}, id="it is a cold start, for the GTIDs to decide"),
    pytest.param({"cluster_initialized": False}, id="the cluster was never initialised"),
]


@pytest.mark.parametrize("broken", GUARDS)
def test_each_promotion_guard_alone_prevents_promote(broken):
    assert decide(ready_to_promote(), POLICY).action == Action.PROMOTE
    decision = decide(ready_to_promote(**broken), POLICY)
    assert decision.action != Action.PROMOTE, decision.reason


def test_one_etcd_member_lost_is_not_visible_here():
    """With two of three etcd members, quorum reads and keepalives still succeed: the agent's
    observation is exactly a healthy one, so nothing changes. The Observation has no field for
    etcd's membership on purpose; quorum at risk is the monitoring's alert."""
    assert not any("member" in f.name and "etcd" in f.name
                   for f in dataclasses.fields(Observation))
    assert decide(primary(), POLICY).action == Action.RENEW
    assert decide(standby(), POLICY).action == Action.FOLLOW


@pytest.mark.parametrize(("thresholds", "message"), [
    pytest.param({"fence_margin": 5.0}, "fence_margin", id="a margin of the whole ttl"),
    pytest.param({"fence_margin": 0.0}, "fence_margin", id="no margin at all"),
    pytest.param({"replication_silence": 0.0}, "replication_silence", id="no silence threshold"),
    pytest.param({"anti_flap_window": -1.0}, "anti_flap_window", id="a negative window"),
])
def test_a_policy_that_cannot_keep_the_invariants_is_refused(thresholds, message):
    with pytest.raises(ValueError, match=message):
        Policy(**thresholds)


def test_writable_actions_are_exactly_renew_acquire_promote():
    assert {a for a in Action if a.writable} == {Action.RENEW, Action.ACQUIRE, Action.PROMOTE}


# Property: two nodes reading the same etcd state are never both allowed to write.
# The one assumption the generator encodes (invariant 2): only the key's holder can have a lease
# its agent believes alive; any other node's estimate ran out before etcd let the key go.
GTIDS = ["0-1-100", "0-1-105", "0-2-100", "0-1-100,1-2-3", ""]


def shared_etcd_state(rng: random.Random) -> dict:
    return dict(now=NOW, database_members=frozenset({A, B}), initial_primary=A,
                leader=rng.choice([None, A, B]),
                cluster_initialized=rng.random() < 0.8,
                sync_standby=rng.choice([None, A, B]),
                switchover_to=rng.choice([None, None, A, B]),
                degraded=rng.random() < 0.2,
                last_failover_at=rng.choice([None, NOW - 60, NOW - 7200]),
                cold_start=rng.random() < 0.3,
                published_gtids={name: rng.choice(GTIDS) for name in (A, B)
                                 if rng.random() < 0.85})


def node(rng: random.Random, me: str, etcd: dict) -> Observation:
    holder = etcd["leader"] == me
    published = etcd["published_gtids"].get(me)
    return Observation(
        **etcd, me=me,
        etcd_ok=rng.random() < 0.8,
        lease_left=rng.choice([None, 0.0, 1.0, 2.0, 2.5, 5.0]) if holder else None,
        running=rng.random() < 0.85,
        read_only=rng.random() < 0.5,
        replicating_from=rng.choice([None, A, B]),
        io_connected=rng.random() < 0.5,
        stream_silence=rng.choice([None, 0.1, 2.0, 9.0]),
        receiving_stopped=rng.random() < 0.2,
        relay_applied=rng.random() < 0.8,
        gtid=published if published is not None and rng.random() < 0.9 else rng.choice(GTIDS),
        history_is_prefix=rng.choice([None, True, False]),
    )


def generated_pairs(count: int = 20_000):
    rng = random.Random(15)  # fixed: a failure reproduces
    for _ in range(count):
        etcd = shared_etcd_state(rng)
        yield node(rng, A, etcd), node(rng, B, etcd)


def test_never_two_nodes_allowed_to_write_at_once():
    seen = set()
    for a, b in generated_pairs():
        decisions = [decide(a, POLICY), decide(b, POLICY)]
        writers = [d for d in decisions if d.action.writable]
        assert len(writers) <= 1, (a, b, decisions)
        seen.update(d.action for d in decisions)
    assert seen == set(Action), f"the generator never reached {set(Action) - seen}"


def test_a_writable_node_not_allowed_to_write_always_fences():
    for obs in itertools.chain.from_iterable(generated_pairs(5_000)):
        decision = decide(obs, POLICY)
        if obs.running and not obs.read_only and not decision.action.writable:
            # HAND_OVER: the holder's own, graceful way to stop writing (invariant 8).
            assert decision.action in (Action.FENCE, Action.HAND_OVER), (obs, decision)


def test_only_the_holder_renews_and_only_a_free_key_is_taken():
    for obs in itertools.chain.from_iterable(generated_pairs(5_000)):
        decision = decide(obs, POLICY)
        if decision.action in (Action.ACQUIRE, Action.PROMOTE):
            assert obs.etcd_ok and obs.leader is None, (obs, decision)
        if decision.action == Action.RENEW:
            assert obs.leader == obs.me and obs.lease_left > POLICY.fence_margin, (obs, decision)


def test_a_decision_is_an_action_and_a_reason():
    decision = decide(primary(), POLICY)
    assert isinstance(decision, Decision) and decision.reason.startswith("primary")

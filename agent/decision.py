"""What the database agent does on one tick: a pure function of what that tick observed.

`decide(obs, policy)` reads an `Observation` (the etcd state this agent saw, its own lease and its
own MariaDB's facts) and a `Policy` (thresholds) and returns a `Decision`: one `Action` and a
reason for logs and metrics. It performs no I/O and keeps no memory between ticks; the service
around it (agent/service.py) gathers the observation, carries out the action and asks again on
the next tick. NEEDS_HUMAN and STAY_FENCED change nothing but raise an alert, so a
condition that clears (a peer publishes its GTIDs, the anti-flap window passes) clears them too.

Invariants (why there are never two writable nodes and no acknowledged write is lost):

1. Only the holder of the leader key may be writable. Whatever etcd says, a node that is
   writable without holding the key fences itself at once. mariadbd always starts read-only
   (its config says so); only RENEW lifts read_only, and only on the key's holder.
2. The holder stops writing before its lease can expire anywhere else. `lease_left` is the
   agent's own, conservative estimate: measured from when the last successful keepalive was
   *sent*, so etcd's expiry (counted from when it arrived) is later still. When it drops to the
   fence margin, or cannot be vouched for at all, the holder fences, whether or not etcd answers.
   The margin is the time a fence may take (read-only, clients cut, mariadbd killed and started
   read-only) plus the clock-rate drift tolerated between hosts.
3. The leader key is taken only by a compare-and-swap that succeeds while it is absent (the
   service's job), and `decide` lets at most one node of a cluster try: the initial primary at
   bootstrap, the single recorded synchronous standby on failover, the single GTID winner on a
   cold start. These three are mutually exclusive (cluster not yet initialised; initialised and
   not a cold start; initialised and a cold start).
4. A former leader never takes a free key back (Patroni's "happily acquires the leader lock" case):
   a writable node without the key fences; a read-only one waits for the failover or the verdict.
5. Promotion needs, each on its own: the key gone (the old lease expired or was released), being
   the recorded synchronous standby (with AFTER_SYNC, every acknowledged commit reached its relay
   log), a silent replication stream (the old primary is no longer sending, so not writing) or
   one this standby stopped receiving itself (`receiving_stopped`: the service does so only with
   the key gone and the source read-only or not answering; without the standby's
   acknowledgements the source cannot acknowledge one commit more), the relay log fully
   applied, a cluster not degraded (semi-sync relaxed: acknowledged writes may exist only on
   the lost primary), and no automatic failover within the anti-flap window.
6. A node rejoins as a replica only when its GTID history is a prefix of the leader's; otherwise
   it stays fenced for a human to rebuild. There is no automatic fail-back.
7. Without etcd nothing changes role except towards safety: a replica waits, a holder keeps
   writing only while its lease is certainly alive, then fences.
8. A planned switchover (HAND_OVER) goes only to the recorded synchronous standby of a cluster
   that is not degraded: the holder turns read-only, gives the key up only once the standby has
   applied all it wrote, and the standby promotes by the ordinary path (5), except that the
   anti-flap window, which counts automatic failovers, does not apply.

What this function cannot see: `etcd_ok` means a quorum (linearizable) read and, for the holder,
keepalives succeeded. Losing one of three etcd members changes neither, so it is invisible here,
by design: only the loss of quorum shows, as `etcd_ok=False`. Quorum at risk is the monitoring's
alert, not a role change.

Borrowed from Patroni (github:patroni/patroni, patroni/ha.py at de6b22c8): the leader that fails
to update its lock demotes itself (`process_healthy_cluster`, `_handle_dcs_error`); in synchronous
mode only a synchronous standby races for the key, and a node refuses to promote while it sees the
primary still alive (`is_healthiest_node`, `_is_healthiest_node`); a lock holder that is not yet
primary takes the role (`enforce_primary_role`); a former primary does not re-acquire a free key
behind a newer one's back (the timeline comment in `is_healthiest_node`). Unlike Patroni, the
decision here is separated from the I/O, and the liveness of the old primary is read from the
replication stream rather than from its REST API.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from agent.gtid import covers, position


class Action(StrEnum):
    RENEW = "renew"  # I hold the key: renew the lease, be (or become) the writable primary
    ACQUIRE = "acquire"  # take the free key (CAS): bootstrap, or the cold-start GTID winner
    FENCE = "fence"  # read-only now, cut clients, restart read-only, give the key up
    HAND_OVER = "hand_over"  # planned switchover: read-only, the standby catches up, key given up
    PROMOTE = "promote"  # take the free key (CAS), record the failover, stop replicating, write
    FOLLOW = "follow"  # healthy replica of the leader: nothing to do
    REJOIN = "rejoin"  # replicate from the leader: my history is a prefix of its history
    STAY_FENCED = "stay_fenced"  # my history diverged from the leader's: a human rebuilds me
    NEEDS_HUMAN = "needs_human"  # automation may not choose safely: alert, change nothing
    WAIT = "wait"  # nothing safe to do yet: ask again on the next tick

    @property
    def writable(self) -> bool:
        """Whether this action lets the node be (or become) the writable primary."""
        return self in (Action.RENEW, Action.ACQUIRE, Action.PROMOTE)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Thresholds, in seconds. The defaults are starting points for the drills of issue #15."""

    lease_ttl: float = 5.0
    fence_margin: float = 2.0  # fence when the lease has this little left: a fence fits in it
    replication_silence: float = 2.0  # no event nor heartbeat for this long: the source is gone
    anti_flap_window: float = 3600.0  # a second automatic failover within it needs a human

    def __post_init__(self):
        # A margin of the whole ttl would fence on every tick; none would fence too late.
        if not 0 < self.fence_margin < self.lease_ttl:
            raise ValueError(f"fence_margin must be in (0, lease_ttl={self.lease_ttl})")
        if self.replication_silence <= 0:
            raise ValueError("replication_silence must be positive")
        if self.anti_flap_window < 0:
            raise ValueError("anti_flap_window must not be negative")


@dataclass(frozen=True, kw_only=True)
class Observation:
    """Everything one tick knows. etcd facts are the last read; ignored when `etcd_ok` is False."""

    me: str
    now: float  # wall clock (epoch s): anti-flap compares it with a time other hosts wrote
    # etcd
    etcd_ok: bool  # this tick's quorum read (and, on the holder, keepalive) succeeded
    leader: str | None  # the leader key's holder; None: the key is absent
    lease_left: float | None  # my lease's seconds left, my conservative estimate; None: no lease
    database_members: frozenset[str]  # every database host of the cluster, me included
    initial_primary: str  # the inventory's db_primary: the first primary, at bootstrap only
    cluster_initialized: bool  # etcd records that a primary was elected once
    sync_standby: str | None  # the recorded synchronous standby
    degraded: bool  # semi-sync relaxed (recorded in etcd before it was relaxed)
    last_failover_at: float | None  # epoch s of the last automatic failover
    # The standby published that it restarted since it last heard a primary, so no node can vouch
    # for the acknowledged writes; read from etcd, so every node agrees on it.
    cold_start: bool
    published_gtids: Mapping[str, str]  # GTID positions members published in etcd, mine too
    # my MariaDB
    running: bool
    read_only: bool
    replicating_from: str | None
    io_connected: bool
    stream_silence: float | None  # s since the stream delivered anything; None: nothing yet
    # A planned switchover asks the key's holder to hand over to this member (etcd's
    # `switchover`, written by `python3 -m agent.switchover`); None: nobody asked.
    switchover_to: str | None = None
    # I stopped receiving from my source myself, the key gone and the source read-only or silent
    # (agent/service.py's _while_waiting): the stream is over, however recently it spoke.
    receiving_stopped: bool = False
    relay_applied: bool  # the SQL thread applied everything the IO thread received
    gtid: str  # my gtid_current_pos, read this tick
    history_is_prefix: bool | None  # my GTID history vs the leader's; None: not known yet


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(obs: Observation, policy: Policy) -> Decision:
    """The one action for this tick; see the module docstring for the invariants it keeps."""
    if not obs.etcd_ok:
        return _without_etcd(obs, policy)
    if obs.leader == obs.me:
        return _as_leader(obs, policy)
    if _writable(obs):  # invariant 1, before anything else is looked at
        holder = obs.leader or "nobody"
        return Decision(Action.FENCE, f"writable but the leader key is held by {holder}")
    if obs.leader is not None:
        return _as_follower(obs, policy)
    return _without_leader(obs, policy)


def _writable(obs: Observation) -> bool:
    return obs.running and not obs.read_only


def _lease_safe(obs: Observation, policy: Policy) -> bool:
    # Unknown counts as unsafe: a holder that cannot vouch for its lease must not write.
    return obs.lease_left is not None and obs.lease_left > policy.fence_margin


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}s"


def _silent(obs: Observation, policy: Policy) -> bool:
    return (obs.receiving_stopped or obs.stream_silence is None
            or obs.stream_silence > policy.replication_silence)


def _without_etcd(obs: Observation, policy: Policy) -> Decision:
    if not _writable(obs):
        return Decision(Action.WAIT, "etcd unreachable: no role changes without etcd")
    if _lease_safe(obs, policy):
        # The lease cannot have expired in etcd yet, so no one else can hold the key.
        return Decision(Action.RENEW, f"etcd unreachable, lease still {obs.lease_left:.1f}s: "
                                      "keep writing and retry the renewal")
    return Decision(Action.FENCE, f"etcd unreachable and lease left {_seconds(obs.lease_left)} "
                                  f"is within the {policy.fence_margin}s fence margin")


def _as_leader(obs: Observation, policy: Policy) -> Decision:
    if not _lease_safe(obs, policy):
        return Decision(Action.FENCE, f"holding the leader key but lease left "
                                      f"{_seconds(obs.lease_left)} is within the "
                                      f"{policy.fence_margin}s fence margin")
    if not obs.running:
        # Give the key up now rather than when the lease runs out: the standby takes over sooner.
        return Decision(Action.FENCE, "mariadbd is down while I hold the leader key: step down")
    if (to := obs.switchover_to) and to != obs.me:
        # Only to the synchronous standby, with semi-sync on: it has every acknowledged write.
        if to == obs.sync_standby and not obs.degraded:
            return Decision(Action.HAND_OVER, f"planned switchover to {to}, the synchronous "
                                              "standby")
        why = "the cluster is degraded" if obs.degraded else (
            f"it is not the synchronous standby ({obs.sync_standby or 'none recorded'} is)")
        return Decision(Action.RENEW, f"switchover to {to} refused: {why}; still the primary")
    if obs.read_only:
        return Decision(Action.RENEW, "holding the leader key while read-only: take the role")
    return Decision(Action.RENEW, f"primary with the leader key, lease {obs.lease_left:.1f}s left")


def _as_follower(obs: Observation, policy: Policy) -> Decision:
    leader = obs.leader
    if not obs.running:
        return Decision(Action.WAIT, f"mariadbd is not running; {leader} is the primary")
    if obs.replicating_from == leader:
        if obs.io_connected and not _silent(obs, policy):
            return Decision(Action.FOLLOW, f"healthy replica of {leader}")
        # The primary's agent decides about semi-sync; a replica cannot fix its source.
        return Decision(Action.WAIT, f"replicating from {leader} but the stream is down or silent")
    if obs.history_is_prefix is None:
        return Decision(Action.WAIT, f"not yet known whether my GTID history is a prefix of "
                                     f"{leader}'s")
    if obs.history_is_prefix:
        return Decision(Action.REJOIN, f"my GTID history is a prefix of {leader}'s: replicate "
                                       "from it")
    return Decision(Action.STAY_FENCED, f"my GTID history diverged from {leader}'s: rebuild me "
                                        "(runbook)")


def _without_leader(obs: Observation, policy: Policy) -> Decision:
    if not obs.cluster_initialized:
        return _bootstrap(obs)
    if obs.degraded:
        return Decision(Action.NEEDS_HUMAN, "the primary is gone while the cluster is degraded "
                                            "(semi-sync relaxed): no copy is known to be complete")
    if obs.cold_start:
        return _cold_start(obs)
    if obs.sync_standby is None:
        return Decision(Action.NEEDS_HUMAN, "the primary is gone and no synchronous standby is "
                                            "recorded")
    if obs.sync_standby != obs.me:
        return Decision(Action.WAIT, f"the primary is gone: the synchronous standby "
                                     f"{obs.sync_standby} takes over")
    return _promotion(obs, policy)


def _promotion(obs: Observation, policy: Policy) -> Decision:
    if not obs.running:
        return Decision(Action.WAIT, "synchronous standby, but mariadbd is not running")
    if not _silent(obs, policy):
        # Patroni's "Primary is still alive": events still arrive, so the old primary may write.
        return Decision(Action.WAIT, f"the replication stream spoke {obs.stream_silence:.1f}s "
                                     "ago: the old primary may still be writing")
    if not obs.relay_applied:
        return Decision(Action.WAIT, "relay log not fully applied yet")
    # A planned switchover is no automatic failover: the window does not apply to it.
    if obs.switchover_to != obs.me and _within_anti_flap(obs, policy):
        return Decision(Action.NEEDS_HUMAN, f"an automatic failover happened "
                                            f"{obs.now - obs.last_failover_at:.0f}s ago, within "
                                            f"the {policy.anti_flap_window:.0f}s anti-flap window")
    if obs.switchover_to == obs.me:
        return Decision(Action.PROMOTE, "planned switchover to me: the old primary handed the "
                                        "key over and everything received is applied")
    return Decision(Action.PROMOTE, "leader key gone, I am the synchronous standby, the stream "
                                    "is silent and everything received is applied")


def _within_anti_flap(obs: Observation, policy: Policy) -> bool:
    # Wall clocks of different hosts: fine for a window of minutes, not for the lease.
    last = obs.last_failover_at
    return last is not None and obs.now - last < policy.anti_flap_window


def _bootstrap(obs: Observation) -> Decision:
    if obs.me != obs.initial_primary:
        return Decision(Action.WAIT, f"cluster not initialised: {obs.initial_primary}, the "
                                     "initial primary, takes the key")
    if not obs.running:
        return Decision(Action.WAIT, "initial primary, but mariadbd is not running")
    # An etcd rebuilt from nothing must not crown a stale copy: no published peer may be ahead.
    mine = position(obs.gtid)
    ahead = sorted(name for name, gtid in obs.published_gtids.items()
                   if name != obs.me and not covers(mine, position(gtid)))
    if ahead:
        return Decision(Action.NEEDS_HUMAN, f"bootstrap refused: {', '.join(ahead)} hold "
                                            "transactions I lack")
    return Decision(Action.ACQUIRE, "cluster not initialised and I am the initial primary")


def _cold_start(obs: Observation) -> Decision:
    missing = sorted(obs.database_members - set(obs.published_gtids))
    if missing:
        return Decision(Action.NEEDS_HUMAN, f"cold start: no GTID verdict without "
                                            f"{', '.join(missing)}")
    winner = _gtid_winner({name: obs.published_gtids[name] for name in obs.database_members})
    if winner is None:
        return Decision(Action.NEEDS_HUMAN, "cold start: no member's GTID position holds every "
                                            "other's")
    if winner != obs.me:
        return Decision(Action.WAIT, f"cold start: the GTIDs elect {winner}")
    if not obs.running:
        return Decision(Action.WAIT, "cold start: elected, but mariadbd is not running")
    if obs.gtid != obs.published_gtids[obs.me]:
        # The verdict is on what I published; it holds only while that is still my position.
        return Decision(Action.WAIT, "cold start: elected, but my live GTID position is not the "
                                     "one I published")
    return Decision(Action.ACQUIRE, "cold start: my GTID position holds every other member's")


def _gtid_winner(positions: Mapping[str, str]) -> str | None:
    """The member whose position covers every other's; ties go to the first name, so that
    every agent reading the same positions names the same winner."""
    parsed = {name: position(gtid) for name, gtid in positions.items()}
    covering = [name for name, mine in parsed.items()
                if all(covers(mine, other) for other in parsed.values())]
    return min(covering, default=None)

"""The database agent's main loop: `python3 -m agent.service --config /etc/ha-webstack/agent.json`
(`--check` only validates the configuration). Logs go to stdout, for journald.

Every tick (`policy.tick`, 0.5 s by default):

1. read the local MariaDB (`agent.mariadb.LocalMariaDB.observe`);
2. etcd: renew my lease if I hold one, then one linearizable read of the cluster's prefix;
3. build the `Observation`, ask `decide` for the action, carry it out;
4. publish my GTID position in etcd and the snapshot the HTTP endpoints answer from.

What each action does here:

- ACQUIRE (bootstrap, cold start) and PROMOTE take the leader key by create-if-absent under a
  fresh lease; a bootstrap also records `initialized`, a promotion `last_failover` (and clears
  the old `sync_standby`: the new primary records its own) and `degraded` (no replica can
  acknowledge yet). PROMOTE makes this server the primary, semi-sync relaxed, in the same tick.
- RENEW: the lease was renewed in step 2. A read-only holder takes the primary role: replication
  stopped once applied, semi-sync AFTER_SYNC on, then read_only=OFF, lifted only while the lease
  is safely above the fence margin. The holder also keeps semi-sync honest: it records as
  `sync_standby` the designated replica once that replica acknowledges, and when commits have
  been stuck for `degrade_after` seconds (no replica acknowledges) it writes `degraded` in etcd
  first, then relaxes semi-sync; it restores it, and clears `degraded`, once the standby is back
  and has everything that was acknowledged without it.
- FENCE: the local server is fenced first (read-only, clients cut, mariadbd killed when it was
  writable), then the key is released by compare-and-delete and the lease revoked.
- FOLLOW keeps the replica's semi-sync acknowledgements matching its designation; REJOIN points
  it at the leader (MASTER_USE_GTID=slave_pos); WAIT may restart a stopped IO thread, and, with
  the key gone, has the synchronous standby stop receiving from a source that says it is
  read-only or does not answer (see `_while_waiting`): that stream is over
  (`receiving_stopped`), and the next tick follows at once, so the promotion does not wait
  for `replication_silence`.

The lease guard (`LeaseGuard`) watches the lease from a thread of its own: the main loop may be
blocked in etcd calls for several timeouts, and invariant 2 (fence before the lease can expire
anywhere else) must not depend on it.

Stopping the agent changes no role and revokes nothing: the lease's id stays in the lease file
(`lease_file`), and the agent started again within the lease resumes it (`resume_lease`): a
restart of the agent on the primary is no failover. Stopped for longer, the key's lease runs
out; the other agents see the key gone but this primary's stream alive, and wait (decide's "the
old primary may still be writing"); HAProxy's /primary check fails with the agent, so the app
stops writing here. The agent started again then finds itself writable without the key and
fences: a failover follows.
"""

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql

from agent import gtid
from agent.config import Config, ConfigError, load
from agent.decision import Action, Decision, Observation, decide
from agent.etcd_client import Client, EtcdError, Lease
from agent.files import write_atomically
from agent.http import Board, Limits, Snapshot, serve
from agent.keys import Stamp
from agent.mariadb import (
    ER_SOURCE_REFUSED_POSITION,
    Facts,
    LocalMariaDB,
    MariaDBError,
    Peer,
    StreamWatch,
    ask_peer,
)

log = logging.getLogger("agent")
# How long a planned switchover waits for the standby to apply the last writes: far inside the
# lease's ttl minus the fence margin, so the holder never fences itself while it waits.
HANDOVER_WAIT = 1.5


class LeaseGuard:
    """Fences the node the moment its lease is down to the fence margin, from its own thread.

    `hold(deadline)` arms it with the lease's deadline (Lease.deadline, monotonic) after each
    successful grant or renewal; `release()` disarms it. `lease_safe()` is held while read_only
    is lifted, so a lift and a fence never interleave."""

    def __init__(self, fence: Callable[[bool], str], margin: float, period: float = 0.05):
        self._fence = fence
        self._margin = margin
        self._period = period
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="lease-guard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def hold(self, deadline: float) -> None:
        with self._lock:
            self._deadline = deadline

    def release(self) -> None:
        with self._lock:
            self._deadline = None

    @contextlib.contextmanager
    def lease_safe(self) -> Iterator[bool]:
        """Whether the lease is above the margin, the guard kept from firing meanwhile."""
        with self._lock:
            yield self._deadline is not None and time.monotonic() < self._deadline - self._margin

    def _watch(self) -> None:
        while not self._stop.wait(self._period):
            with self._lock:
                now = time.monotonic()
                if self._deadline is None or now < self._deadline - self._margin:
                    continue
                # Past the deadline itself: this process was frozen or starved through the
                # margin, and another node may already write. The fence kills mariadbd first.
                expired, self._deadline = now >= self._deadline, None
                try:
                    log.warning("lease %s: fencing (%s)",
                                "already expired" if expired else
                                f"within the {self._margin:.1f}s fence margin",
                                self._fence(expired))
                except Exception:  # the main loop fences on its next tick all the same
                    log.exception("the lease guard's fence failed")


class Agent:
    """One agent: its etcd client, its MariaDB, its board; `tick()` once per interval."""

    def __init__(self, config: Config, etcd: Client, db: LocalMariaDB, board: Board):
        self.cfg = config
        self.keys = config.keys
        self.me = config.name
        self.etcd = etcd
        self.db = db
        self.board = board
        self.guard = LeaseGuard(db.fence, config.policy.fence_margin)
        self._lease: Lease | None = None  # `lease`: kept in the lease file too
        self.kvs: dict[str, str] = {}  # the prefix as last read
        self.etcd_down = False  # the last read failed: log the change, not every tick
        self.stream = StreamWatch()
        self.started_at: float | None = None  # mariadbd's start, as last seen
        self.diverged_from: str | None = None  # a writable leader that refused my history
        self.refused_by: str | None = None  # a read-only leader that refused it (logged)
        self.published: str | None = None  # the GTID position last published
        self.stuck_since: float | None = None  # semi-sync commits stuck since (monotonic)
        self.acked = 0  # Rpl_semi_sync_master_yes_tx at the last tick
        self.restore_from: str | None = None  # my position when semi-sync came back on
        self.stopped_receiving_from: str | None = None  # a source I stopped (_while_waiting)
        self.again = False  # an action changed what the next decision sees: tick again now
        self.last: Decision | None = None

    # The lease, and resuming it after a restart

    @property
    def lease(self) -> Lease | None:
        return self._lease

    @lease.setter
    def lease(self, lease: Lease | None) -> None:
        """The lease I hold; its id is written to the lease file when it changes, and the file
        removed when I hold none, so a restarted agent can resume it (`resume_lease`)."""
        before, self._lease = self._lease, lease
        try:
            if lease is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.cfg.lease_file)
            elif before is None or before.id != lease.id:
                write_atomically(self.cfg.lease_file, f"{lease.id}\n", mode=0o600)
        except OSError as e:  # the lease itself is unaffected: only a restart would not resume it
            log.error("lease file %s: %s", self.cfg.lease_file, e)

    def resume_lease(self) -> bool:
        """At start: take back the lease an earlier run of this agent held, if it is still
        alive and still carries the leader key. Without this, restarting the agent on the
        primary is a failover: it would find itself writable without a lease, and fence.

        Safe because a lease is a capability only its holder uses: while the lease lives, the
        key attached to it is mine and nobody else's, and the keepalive sent here is timed like
        any other (the lease guard arms on its deadline). The lease file holds only the id."""
        try:
            lease_id = int(Path(self.cfg.lease_file).read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as e:
            log.warning("lease file %s unreadable, not resumed: %s", self.cfg.lease_file, e)
            self.lease = None
            return False
        try:
            lease = self.etcd.keepalive(lease_id)
            keys = self.etcd.lease_keys(lease_id) if lease.ttl > 0 else None
        except EtcdError as e:  # no lease: a writable server fences, as before
            log.warning("could not resume lease %s: %s", lease_id, e)
            return False
        if not keys or self.keys.leader not in keys or lease.left() <= 0:
            log.info("lease %s is gone or carries no leader key: not resumed", lease_id)
            self.lease = None  # removes the file
            return False
        self.lease = lease
        self.guard.hold(lease.deadline)
        log.warning("resumed lease %s: I hold the leader key (%.1fs left)", lease_id,
                    lease.left())
        return True

    # The tick

    def tick(self) -> Decision:
        facts = self.db.observe()
        etcd_ok = self._read_etcd()
        obs = self._observation(facts, etcd_ok)
        decision = decide(obs, self.cfg.policy)
        self._log(decision)
        try:
            self._keep_net_timeout(facts)
            self._act(decision, obs, facts)
            if etcd_ok and decision.action is Action.RENEW and facts.writable:
                self._keep_semisync(facts, obs)
            if etcd_ok and facts.running:
                self._publish(facts)
        except (EtcdError, MariaDBError, ConfigError, OSError, pymysql.MySQLError) as e:
            log.error("%s failed: %s", decision.action, e)  # the next tick decides afresh
        facts = self.db.observe()  # after the action: what the snapshot and recovery are about
        self._keep_crash_recovery(facts)
        self.board.publish(self._snapshot(facts, obs, decision))
        return decision

    def _keep_crash_recovery(self, facts: Facts) -> None:
        """Crash recovery truncates uncommitted binlog tails (LocalMariaDB.set_crash_recovery)
        except on the writable holder while its semi-sync is relaxed, when they may be
        acknowledged writes held nowhere else. Relaxing sets it first (`_degrade`); this puts
        it back only once semi-sync is on again, as seen after this tick's actions."""
        if not facts.running:
            return
        relaxed = self.lease is not None and facts.writable and not facts.semisync_master_enabled
        try:
            if self.db.set_crash_recovery(truncate=not relaxed):
                log.warning("crash recovery now %s uncommitted binlog tails",
                            "keeps" if relaxed else "truncates")
        except OSError as e:
            log.error("could not write %s: %s", self.db.recovery_file, e)

    def _read_etcd(self) -> bool:
        """Renew my lease (if any), then read the prefix; False if etcd did not answer. A
        failed renewal skips the read: one timeout per tick at most, the lease is running."""
        try:
            if self.lease:
                self.lease = self.etcd.keepalive(self.lease.id)
                self.guard.hold(self.lease.deadline)
            self.kvs = self.etcd.get_prefix(self.keys.prefix)
        except EtcdError as e:
            if not self.etcd_down:
                log.warning("etcd unreachable: %s", e)
            self.etcd_down = True
            return False
        if self.etcd_down:
            log.warning("etcd reachable again")
        self.etcd_down = False
        if self.lease and self.kvs.get(self.keys.leader) != self.me:
            self._drop_lease()  # the key is not mine: the lease protects nothing
        return True

    def _observation(self, facts: Facts, etcd_ok: bool) -> Observation:
        kvs, keys = self.kvs, self.keys
        leader = kvs.get(keys.leader)
        source = self.cfg.member_at(*facts.source) if facts.source else None
        holder = self.lease is not None
        restarted = self._restarted(facts) and holder
        return Observation(
            me=self.me, now=time.time(), etcd_ok=etcd_ok, leader=leader,
            lease_left=self.lease.left() if holder else None,
            database_members=frozenset(self.cfg.members),
            initial_primary=self.cfg.initial_primary,
            cluster_initialized=keys.initialized in kvs,
            sync_standby=kvs.get(keys.sync_standby), degraded=keys.degraded in kvs,
            switchover_to=kvs.get(keys.switchover),
            last_failover_at=self._last_failover(),
            cold_start=False,  # not recorded yet (agent/README.md)
            published_gtids=keys.published_gtids(kvs),
            running=facts.running and not restarted, read_only=facts.read_only,
            replicating_from=source, io_connected=facts.io_connected,
            stream_silence=self.stream.silence(facts, time.monotonic()),
            receiving_stopped=self._receiving_stopped(facts, leader, source),
            relay_applied=facts.relay_applied, gtid=facts.gtid_current,
            history_is_prefix=self._history_verdict(facts, leader, source))

    def _receiving_stopped(self, facts: Facts, leader: str | None, source: str | None) -> bool:
        """Whether the stream from my source is one I stopped myself (_while_waiting), and
        still stopped; forgotten once a leader holds the key or the source changed."""
        if leader is not None or source != self.stopped_receiving_from or facts.io_state != "No":
            self.stopped_receiving_from = None
        return self.stopped_receiving_from is not None

    def _restarted(self, facts: Facts) -> bool:
        """Whether mariadbd restarted since the last tick. A holder whose server restarted
        steps down: crash recovery may have dropped commits a replica already has."""
        if not facts.running:
            return False
        before, self.started_at = self.started_at, facts.started_at
        return before is not None and abs(facts.started_at - before) > 2

    def _last_failover(self) -> float | None:
        text = self.kvs.get(self.keys.last_failover)
        if text is None:
            return None
        try:
            return Stamp.decode(text).at
        except ValueError:
            return time.time()  # unreadable: as if just now, so anti-flap errs on safety

    def _history_verdict(self, facts: Facts, leader: str | None,
                         source: str | None) -> bool | None:
        """Whether my GTID history is a prefix of the leader's; asked of the leader itself,
        only when a rejoin is the question (read-only, not replicating from the leader)."""
        if not leader or leader == self.me or not facts.running or source == leader:
            return None
        if self.diverged_from == leader:
            return False
        peer = self._ask(leader)
        return None if peer is None else gtid.is_prefix(facts.gtid_current, peer.binlog_state)

    def _ask(self, member: str) -> Peer | None:
        """The member's MariaDB, asked directly; None if it does not answer."""
        host, port = self.cfg.members[member]
        try:
            password = self.cfg.replication_password()
        except ConfigError as e:
            log.error("%s", e)
            return None
        return ask_peer(host, port, self.cfg.replication_user, password, self.cfg.etcd.timeout)

    # Actions

    def _act(self, decision: Decision, obs: Observation, facts: Facts) -> None:
        action = decision.action
        if action is Action.RENEW and facts.running and facts.read_only:
            self._become_primary(obs.degraded)
        elif action is Action.ACQUIRE:
            self._quiet_source(facts)
            if self._take_key() and not obs.cluster_initialized:
                self.etcd.create(self.keys.initialized, Stamp(self.me, time.time()).encode())
        elif action is Action.PROMOTE:
            self._quiet_source(facts)
            if self._take_key():
                planned = obs.switchover_to == self.me
                if not planned:  # the anti-flap window counts automatic failovers only
                    self.etcd.put(self.keys.last_failover, Stamp(self.me, time.time()).encode())
                self.etcd.delete(self.keys.sync_standby)
                self._promoted_alone(facts)
                log.warning("%s: I hold the leader key, taking the primary role",
                            "planned switchover" if planned else "promoted")
                self._become_primary(degraded=True)
                if planned:
                    self.etcd.compare_and_delete(self.keys.switchover, self.me)
        elif action is Action.HAND_OVER:
            self._hand_over(obs.switchover_to)
        elif action is Action.FENCE:
            self._fence()
        elif action is Action.FOLLOW:
            self._keep_following(facts, obs)
        elif action is Action.REJOIN:
            self._replicate_from(obs.leader, obs)
        elif action is Action.WAIT:
            self._while_waiting(facts, obs)

    def _keep_net_timeout(self, facts: Facts) -> None:
        """slave_net_timeout as the policy wants it (LocalMariaDB.set_net_timeout); mariadbd
        starts with its own default, so after every start."""
        if facts.running and facts.net_timeout != self.cfg.net_timeout:
            self.db.set_net_timeout(self.cfg.net_timeout)
            log.warning("slave_net_timeout %ss (was %ss): a source lost without a word is "
                        "given up on that soon", self.cfg.net_timeout, facts.net_timeout)

    def _quiet_source(self, facts: Facts) -> None:
        """Stop receiving before taking the key. Against a host that is gone, STOP SLAVE waits
        for the IO thread's connect attempt to fail (seconds: ARP gives up after 3): that wait
        must not eat the fresh lease, or the lease guard fences the promotion half-way."""
        if facts.source is not None and facts.io_state != "No":
            self.db.stop_receiving()

    def _take_key(self) -> bool:
        """Create-if-absent of the leader key under a fresh lease; whether I hold it now."""
        self._drop_lease()
        lease = self.etcd.grant(self.cfg.lease_ttl)
        if not self.etcd.create(self.keys.leader, self.me, lease.id):
            self.etcd.revoke(lease.id)
            log.info("the leader key was taken by another agent first")
            return False
        self.lease = lease
        self.guard.hold(lease.deadline)
        self.kvs[self.keys.leader] = self.me
        log.warning("took the leader key (lease %s, ttl %ss)", lease.id, lease.ttl)
        return True

    def _drop_lease(self) -> None:
        if self.lease is None:
            return
        self.guard.release()
        lease, self.lease = self.lease, None
        with contextlib.suppress(EtcdError):
            self.etcd.revoke(lease.id)

    def _promoted_alone(self, facts: Facts) -> None:
        """Record `degraded` before the first write of a promotion. No replica can
        acknowledge yet: the others replicated from the old primary, which is dead or fenced.
        Semi-sync on would stall every write for `degrade_after` and then relax all the same;
        relaxed from the start (recorded first, as always), the writes resume at once, and
        `_restore` turns it on again once the old primary rejoins and catches up."""
        self.etcd.put(self.keys.degraded, Stamp(self.me, time.time()).encode())
        log.warning("promoted with %s connected: recorded `degraded`, semi-sync relaxed until "
                    "a replica catches up", ", ".join(sorted(facts.replicas)) or "no replica")

    def _become_primary(self, degraded: bool) -> None:
        """Take the primary role: prepared read-only, then writes, under a safe lease only."""
        self.db.prepare_primary(semisync=not degraded)
        if degraded:  # relaxed from the first write: crash recovery must keep them
            self.db.set_crash_recovery(truncate=False)
        with self.guard.lease_safe() as safe:
            if not safe:
                log.warning("lease too short to take writes: staying read-only this tick")
                return
            self.db.allow_writes()
        self.stuck_since = self.restore_from = None
        log.warning("primary: read_only=OFF, semi-sync %s",
                    "relaxed (degraded)" if degraded else "AFTER_SYNC on")

    def _fence(self) -> None:
        """Fence the server first, then give the key up: never the other way round."""
        self.guard.release()
        expired = self.lease is not None and self.lease.left() <= 0
        log.warning("fenced: %s", self.db.fence(expired))  # also a mariadbd that hangs
        self._release_key()

    def _hand_over(self, to: str) -> None:
        """A planned switchover: read-only, then, once `to` has applied everything this server
        wrote, the key given up; `to` promotes by the ordinary path (it finds its source
        read-only and stops its stream). If `to` has not caught up within HANDOVER_WAIT (well
        inside the lease: the lease guard must not fire meanwhile), writes resume here and the
        request is dropped."""
        if not self.db.demote():
            log.warning("switchover to %s: read_only could not be set, fencing instead", to)
            self._fence()
            return
        mine = self.db.observe().gtid_current
        deadline = time.monotonic() + HANDOVER_WAIT
        while time.monotonic() < deadline:
            peer = self._ask(to)
            if peer is not None and gtid.is_prefix(mine, peer.binlog_state):
                self._release_key()
                log.warning("switchover: read-only, %s has everything up to %s: key handed over",
                            to, mine)
                return
            time.sleep(0.05)
        with self.guard.lease_safe() as safe:
            if safe:
                self.db.allow_writes()
        self.etcd.compare_and_delete(self.keys.switchover, to)
        log.error("switchover to %s aborted: it had not applied %s within %.1fs; writable "
                  "again", to, mine, HANDOVER_WAIT)

    def _release_key(self) -> None:
        """Give the leader key up: compare-and-delete of my name, then the lease revoked."""
        self.guard.release()
        lease, self.lease = self.lease, None
        if lease is None and self.kvs.get(self.keys.leader) != self.me:
            return
        try:  # my key, with or without the lease it was taken with (lost when etcd was away)
            self.etcd.compare_and_delete(self.keys.leader, self.me)
            if lease:
                self.etcd.revoke(lease.id)
            log.warning("released the leader key")
        except EtcdError as e:
            log.warning("could not release the leader key (its lease runs out): %s", e)
        self.kvs.pop(self.keys.leader, None)

    def _designated_standby(self, leader: str | None, obs: Observation) -> str | None:
        """The one replica that acknowledges the leader's commits: the recorded standby, or
        the first other member by name. One only: with two acknowledging replicas an
        acknowledged write could be on either, and the recorded one might lack it."""
        others = sorted(m for m in self.cfg.members if m != leader)
        return obs.sync_standby if obs.sync_standby in others else (others or [None])[0]

    def _replicate_from(self, leader: str, obs: Observation) -> None:
        host, port = self.cfg.members[leader]
        semisync = self._designated_standby(leader, obs) == self.me
        self.db.replicate_from(host, port, self.cfg.replication_user,
                               self.cfg.replication_password(), self.cfg.heartbeat, semisync)
        log.warning("replicating from %s (%s:%s), semi-sync acknowledgements %s", leader, host,
                    port, "on" if semisync else "off")

    def _keep_following(self, facts: Facts, obs: Observation) -> None:
        wanted = self._designated_standby(obs.leader, obs) == self.me
        if facts.semisync_replica_enabled != wanted:
            self.db.set_semisync_replica(wanted)
            log.warning("semi-sync acknowledgements to %s %s", obs.leader,
                        "on" if wanted else "off")

    def _while_waiting(self, facts: Facts, obs: Observation) -> None:
        """Keep replication going while nothing else may change.

        With the key gone, the synchronous standby asks its source whether it is read-only.
        If it is (fenced, or restarted read-only after a kill) or does not answer, the standby
        stops receiving (STOP SLAVE IO_THREAD): a fenced old primary's heartbeats would
        otherwise keep its stream from ever falling silent. Once the key is gone that server
        cannot become writable again (a former leader never takes a free key back), and
        without the standby's acknowledgements (AFTER_SYNC, no timeout) it cannot acknowledge
        a single commit more, so nothing acknowledged can be missed. A source still writable
        (its agent died, its mariadbd did not) keeps its stream: the standby waits, as it must.
        """
        if not obs.etcd_ok or not facts.running or facts.source is None:
            return
        if obs.leader is None:
            candidate = (obs.cluster_initialized and not obs.degraded
                         and obs.sync_standby == self.me)
            source = self.cfg.member_at(*facts.source)
            if candidate and facts.io_state != "No" and source:
                peer = self._ask(source)
                if peer is None or peer.read_only:
                    self.db.stop_receiving()
                    self.stopped_receiving_from = source
                    self.again = True  # the stream is over: decide on it without a tick's wait
                    log.warning("leader key gone and %s %s: stopped receiving from it", source,
                                "does not answer" if peer is None else "is read-only")
            return
        if obs.replicating_from != obs.leader:
            return
        if facts.io_errno == ER_SOURCE_REFUSED_POSITION:
            self._refused(obs.leader, facts)
        elif facts.io_state == "No":
            self.db.start_replication()
            log.warning("replication from %s was stopped: started again", obs.leader)

    def _refused(self, leader: str, facts: Facts) -> None:
        """The leader's server refused my position (error 1236). If it is writable, it is the
        primary and my history is not a prefix of its own: forget it, stay fenced for a human.
        If it is read-only, it is a fenced old primary whose crash recovery dropped commits I
        had already received (and acknowledged; it never committed them): its key is about to
        go, and my relay log is what the next primary needs. Touch nothing."""
        peer = self._ask(leader)
        if peer is None or peer.read_only:
            if self.refused_by != leader:  # logged once
                log.warning("%s (read-only or silent) refused my position, it lacks what I "
                            "have: waiting for its key to go (%s)", leader, facts.io_error)
            self.refused_by = leader
            return
        self.diverged_from = leader
        self.db.forget_source()
        log.error("%s refused my GTID position: diverged history (%s); stays fenced", leader,
                  facts.io_error)

    # The primary's semi-sync

    def _keep_semisync(self, facts: Facts, obs: Observation) -> None:
        """Semi-sync on the writable holder: never silently async, relaxed only after etcd
        records it, the standby recorded only once it acknowledges."""
        standby = self._designated_standby(self.me, obs)
        if self._stuck(facts):
            self._degrade(obs)
        elif not obs.degraded:
            if not facts.semisync_master_enabled:
                self.db.set_semisync_primary(True)  # someone turned it off: never async
                log.warning("semi-sync was off without `degraded` in etcd: turned it on")
            elif (facts.semisync_master_on and facts.semisync_clients >= 1
                  and standby in facts.replicas and obs.sync_standby != standby):
                self.etcd.put(self.keys.sync_standby, standby)
                log.warning("synchronous standby: %s", standby)
        else:
            self._restore(facts, obs, standby)

    def _stuck(self, facts: Facts) -> bool:
        """Commits wait and nothing is acknowledged (or no replica can acknowledge), for
        `degrade_after` seconds in a row."""
        progress = facts.semisync_acked != self.acked
        self.acked = facts.semisync_acked
        stuck = facts.semisync_master_enabled and (
            facts.semisync_clients == 0 or (facts.semisync_waiting > 0 and not progress))
        now = time.monotonic()
        if not stuck:
            self.stuck_since = None
            return False
        self.stuck_since = self.stuck_since or now
        return now - self.stuck_since >= self.cfg.degrade_after

    def _degrade(self, obs: Observation) -> None:
        if not obs.degraded:
            self.etcd.put(self.keys.degraded, Stamp(self.me, time.time()).encode())
        # Before relaxing: a crash from now on keeps what was binlogged (maybe acknowledged).
        self.db.set_crash_recovery(truncate=False)
        with self.guard.lease_safe() as safe:
            # Written while my lease (so my key) was alive: any agent that later finds the key
            # gone reads `degraded` too, and will not promote.
            if safe:
                self.db.set_semisync_primary(False)
                log.warning("no replica acknowledged for %.1fs: recorded `degraded`, relaxed "
                            "semi-sync, crash recovery keeps uncommitted binlog tails (no "
                            "automatic failover until it is restored)", self.cfg.degrade_after)
        self.stuck_since = self.restore_from = None

    def _restore(self, facts: Facts, obs: Observation, standby: str | None) -> None:
        """Back from degraded: semi-sync on again once the standby is connected, then, when
        the standby has everything this server had when acknowledgements resumed, record it
        and clear `degraded`: from then on it holds every acknowledged write."""
        if standby not in facts.replicas:
            self.restore_from = None
            return
        if not facts.semisync_master_enabled:
            self.db.set_semisync_primary(True)
            log.warning("%s is back: semi-sync on again (still degraded)", standby)
            return
        if not (facts.semisync_master_on and facts.semisync_clients >= 1):
            return
        if self.restore_from is None:
            self.restore_from = facts.gtid_current
            return
        theirs = obs.published_gtids.get(standby)
        if theirs is not None and gtid.covers(gtid.position(theirs),
                                              gtid.position(self.restore_from)):
            self.etcd.put(self.keys.sync_standby, standby)
            self.etcd.delete(self.keys.degraded)
            self.restore_from = None
            log.warning("%s caught up: synchronous standby again, `degraded` cleared", standby)

    # Publishing

    def _publish(self, facts: Facts) -> None:
        if facts.gtid_current != self.published:
            self.etcd.put(self.keys.gtid(self.me), facts.gtid_current)
            self.published = facts.gtid_current

    def _snapshot(self, facts: Facts, obs: Observation, decision: Decision) -> Snapshot:
        leader = self.kvs.get(self.keys.leader)
        source = self.cfg.member_at(*facts.source) if facts.source else None
        return Snapshot(
            me=self.me, taken_at=time.monotonic(), etcd_ok=obs.etcd_ok, leader=leader,
            lease_deadline=self.lease.deadline if self.lease and leader == self.me else None,
            running=facts.running, read_only=facts.read_only, replicating_from=source,
            io_connected=facts.io_connected, replica_lag=facts.lag,
            semisync_primary=facts.semisync_master_enabled and facts.semisync_master_on,
            semisync_replica=facts.semisync_replica_on, degraded=obs.degraded,
            last_failover_at=obs.last_failover_at, decision=decision)

    def _log(self, decision: Decision) -> None:
        """Each change of action once, with its reason (a reason's numbers change every
        tick: not a reason to log)."""
        if self.last is None or decision.action is not self.last.action:
            level = logging.WARNING if decision.action in (
                Action.NEEDS_HUMAN, Action.STAY_FENCED, Action.FENCE) else logging.INFO
            log.log(level, "decision %s: %s", decision.action, decision.reason)
        self.last = decision

    # The loop

    def run(self, stop: threading.Event) -> None:
        self.guard.start()
        try:
            self.resume_lease()
            while not stop.is_set():
                started = time.monotonic()
                self.again = False
                try:
                    self.tick()
                except Exception:  # a bug must not end the loop: the guard and the next tick
                    log.exception("tick failed")
                if not self.again:
                    stop.wait(max(0.0, self.cfg.tick - (time.monotonic() - started)))
        finally:
            self.guard.stop()


def build(config: Config) -> tuple[Agent, Board]:
    etcd = Client.from_files(config.etcd.endpoints, config.etcd.ca, config.etcd.cert,
                             config.etcd.key, config.etcd.timeout)
    board = Board()
    db = LocalMariaDB(config.socket, recovery_file=config.recovery_file)
    return Agent(config, etcd, db, board), board


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m agent.service",
                                     description="ha-webstack's database agent (issue #15)")
    parser.add_argument("--config", default="/etc/ha-webstack/agent.json")
    parser.add_argument("--check", action="store_true", help="validate the configuration only")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(levelname)s %(threadName)s: %(message)s")
    try:
        config = load(args.config)
    except ConfigError as e:
        print(f"agent: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    agent, board = build(config)
    server = serve(board, Limits(fence_margin=config.policy.fence_margin,
                                 replica_max_lag=config.replica_max_lag), config.listen)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("agent %s of cluster %s: HTTP on %s:%s, tick %.2fs", config.name, config.cluster,
             *server.server_address[:2], config.tick)
    try:
        agent.run(stop)
    finally:
        server.shutdown()
        server.server_close()
    log.info("stopped (no role changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

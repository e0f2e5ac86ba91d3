"""The agent end to end, against real local services: three etcd members with TLS
(tests/unit/etcd_cluster.py), two mariadbd (tests/unit/db_cluster.py, restarted after a kill as
systemd would), and two agents run as the service runs them (`python -m agent.service --config`),
each with its own HTTP port.

A write stream plays the app: it inserts rows with growing ids into whichever server takes them
(the app's login has no privilege past read_only) and records each acknowledged id. A sampler
reads read_only on both servers every few milliseconds, in the order a, b, a: two writable
nodes at once is a's two readings writable around b's writable one.

The scenarios run in order on one set of services, each starting from the healthy pair the last
left: bootstrap elects the initial primary, its replica follows with semi-sync on; the primary's
agent restarted resumes its lease, so no failover follows; kill -9 of the
primary's mariadbd promotes the standby, with every acknowledged write, and the old primary,
restarted, rejoins as a replica; losing etcd's quorum makes the primary fence itself before its
lease could expire, and once etcd is back, one primary again with nothing lost; a node whose
history diverged stays fenced. Polls have deadlines; no sleep is an assertion.
"""

import contextlib
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

from agent import gtid, switchover
from agent.etcd_client import Client, EtcdError
from agent.keys import Keys
from tests.unit.db_cluster import (
    REPL_PASSWORD,
    DBCluster,
    needs_mariadb,
    password_file,
    running_db_cluster,
)
from tests.unit.etcd_cluster import Cluster, free_ports, needs_etcd, running_cluster
from tests.unit.stacks import secrets_in_environment
from webstack import ROOT

pytestmark = [needs_etcd, needs_mariadb]

A, B = "db-01", "db-02"
KEYS = Keys("failover")
# The agents' interpreter: this one, or another with PyMySQL (e.g. a Python 3.13 venv).
AGENT_PYTHON = os.environ.get("AGENT_PYTHON", sys.executable)
POLICY = {"lease_ttl": 5, "fence_margin": 2, "replication_silence": 2, "anti_flap_window": 0,
          "degrade_after": 2, "tick": 0.5}


def until(predicate, timeout: float, pause: float = 0.1):
    """Poll `predicate` until it returns something true or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(pause)
    return result


class Agents:
    """The agents as processes, their configuration files and logs under `root`."""

    def __init__(self, root: Path, etcd: Cluster, db: DBCluster):
        self.root, self.etcd, self.db = root, etcd, db
        self.ports = dict(zip(db.servers, free_ports(len(db.servers)), strict=True))
        self.procs: dict[str, subprocess.Popen] = {}
        secret = password_file(root)
        for name in db.servers:
            (root / f"{name}.json").write_text(json.dumps(self.config(name, secret), indent=2))

    def config(self, name: str, secret: Path) -> dict:
        pki = self.etcd.client
        return {
            "name": name, "cluster": KEYS.cluster, "initial_primary": A,
            "members": {n: s.address for n, s in self.db.servers.items()},
            "etcd": {"endpoints": [m.client_url for m in self.etcd.members], "ca": pki["ca"],
                     "cert": pki["cert"], "key": pki["key"], "timeout": 0.5},
            "mariadb": {"socket": self.db.servers[name].socket,
                        "replication_user": "replicator",
                        "replication_password_file": str(secret),
                        "recovery_file": self.db.servers[name].recovery_file},
            "policy": POLICY,
            "http": {"listen": f"127.0.0.1:{self.ports[name]}"},
            "lease_file": str(self.root / f"{name}.lease"),
        }

    def start(self, name: str) -> None:
        log = (self.root / f"{name}.log").open("a")
        self.procs[name] = subprocess.Popen(
            [AGENT_PYTHON, "-m", "agent.service", "--config", str(self.root / f"{name}.json")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def status(self, name: str, path: str) -> int | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[name], timeout=2)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            return None
        finally:
            conn.close()

    def logs(self) -> str:
        return "\n".join(f"--- agent {n}\n{(self.root / f'{n}.log').read_text()[-6000:]}"
                         for n in self.db.servers)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """etcd, the databases and the agents, started in that order, stopped in the reverse."""
    root = tmp_path_factory.mktemp("failover")
    with pytest.MonkeyPatch.context() as mp:
        secrets_in_environment(mp)
        with running_cluster(root / "etcd", mp) as etcd, \
                running_db_cluster(root / "db") as db:
            etcd.wait_healthy()
            agents = Agents(root, etcd, db)
            try:
                for name in db.servers:
                    agents.start(name)
                yield etcd, db, agents
            finally:
                agents.close()


def etcd_client(etcd: Cluster) -> Client:
    pki = etcd.client
    return Client.from_files([m.client_url for m in etcd.members], pki["ca"], pki["cert"],
                             pki["key"], timeout=0.5)


def cluster_state(etcd: Cluster) -> dict[str, str]:
    try:
        return etcd_client(etcd).get_prefix(KEYS.prefix)
    except EtcdError:
        return {}


def writable(db: DBCluster, name: str) -> bool | None:
    """read_only=OFF on this server; None when it does not answer."""
    try:
        return not db.value(name, "SELECT @@read_only")
    except pymysql.MySQLError:
        return None


def replica_of(db: DBCluster, name: str, source: str) -> bool:
    """Replicating from `source`, IO connected, semi-sync acknowledgements on."""
    try:
        with contextlib.closing(db.connect(name, cursorclass=pymysql.cursors.DictCursor)) as c:
            with c.cursor() as cur:
                cur.execute("SHOW ALL SLAVES STATUS")
                rows = [r for r in cur.fetchall() if not r["Connection_name"]]
                cur.execute("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_slave_status'")
                semisync = cur.fetchone()["Value"] == "ON"
    except pymysql.MySQLError:
        return False
    return bool(rows) and rows[0]["Master_Port"] == db.servers[source].port and rows[0][
        "Slave_IO_Running"] == "Yes" and rows[0]["Slave_SQL_Running"] == "Yes" and semisync


def healthy_pair(etcd: Cluster, db: DBCluster, agents: Agents) -> tuple[str, str] | None:
    """(primary, replica) when one holds the key and writes, the other follows it with
    semi-sync, the standby is recorded and the health checks agree; else None."""
    state = cluster_state(etcd)
    primary = state.get(KEYS.leader)
    if primary not in db.servers:
        return None
    replica = next(n for n in db.servers if n != primary)
    ok = (writable(db, primary) and writable(db, replica) is False
          and replica_of(db, replica, primary) and state.get(KEYS.sync_standby) == replica
          and KEYS.degraded not in state
          and agents.status(primary, "/primary") == 200
          and agents.status(replica, "/replica") == 200)
    return (primary, replica) if ok else None


class Writer(threading.Thread):
    """The app: one row per attempt, ids never reused; `acked` holds those committed."""

    def __init__(self, db: DBCluster):
        super().__init__(daemon=True)
        self.db = db
        self.acked: list[int] = []
        self.acked_at: list[float] = []  # monotonic, one per acknowledged id
        self.acked_on: list[str] = []  # the server that acknowledged it
        self.stop = threading.Event()
        self.order = list(db.servers)

    ids = itertools.count(1)  # shared by every writer of the module: an id is never reused

    def run(self) -> None:
        conns = {}
        while not self.stop.is_set():
            for name in self.order:
                row = next(self.ids)
                try:
                    conn = conns.get(name) or conns.setdefault(name, self.db.app(name, 5.0))
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO writes VALUES (%s, %s)", (row, time.time()))
                except (pymysql.MySQLError, OSError):
                    with contextlib.suppress(Exception):
                        conns.pop(name).close()
                    continue
                self.acked.append(row)
                self.acked_at.append(time.monotonic())
                self.acked_on.append(name)
                self.order.remove(name)
                self.order.insert(0, name)  # the server that took it, first next time
                break
            else:
                time.sleep(0.05)
            time.sleep(0.005)

    def longest_gap(self, since: float) -> float:
        """The longest time without an acknowledged write, from `since` to the last one."""
        times = [since] + [t for t in self.acked_at if t > since]
        return max(b - a for a, b in zip(times, times[1:], strict=False)) if times[1:] else 0.0

    def wait_for(self, more: int, timeout: float) -> bool:
        target = len(self.acked) + more
        return bool(until(lambda: len(self.acked) >= target, timeout))


class Sampler(threading.Thread):
    """read_only of both servers, over and over, a-b-a then b-a-b; `overlaps`: the rounds that
    saw two writable servers at once."""

    def __init__(self, db: DBCluster):
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.rounds = 0
        self.overlaps: list[tuple] = []

    def run(self) -> None:
        a, b = self.db.servers
        conns: dict[str, pymysql.Connection] = {}
        while not self.stop.is_set():
            order = (a, b, a) if self.rounds % 2 == 0 else (b, a, b)
            seen = [(name, self._writable(conns, name)) for name in order]
            if all(w for _, w in seen):
                self.overlaps.append((time.time(), seen))
            self.rounds += 1
            time.sleep(0.01)

    def _writable(self, conns: dict, name: str) -> bool:
        try:
            conn = conns.get(name) or conns.setdefault(name, self.db.connect(name, read_timeout=2))
            with conn.cursor() as cur:
                cur.execute("SELECT @@read_only")
                return not cur.fetchone()[0]
        except (pymysql.MySQLError, OSError):
            with contextlib.suppress(Exception):
                conns.pop(name).close()
            return False


@contextlib.contextmanager
def load(db: DBCluster):
    """A write stream and a sampler for the duration; both checked by the caller."""
    writer, sampler = Writer(db), Sampler(db)
    writer.start()
    sampler.start()
    try:
        yield writer, sampler
    finally:
        writer.stop.set()
        sampler.stop.set()
        writer.join(timeout=15)
        sampler.join(timeout=15)


def lease_left(agents: Agents, name: str) -> float | None:
    """ha_agent_lease_seconds_left from the agent's /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", agents.ports[name], timeout=2)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return None
    finally:
        conn.close()
    return next((float(line.split()[1]) for line in text.splitlines()
                 if line.startswith("ha_agent_lease_seconds_left ")), None)


def rows_on(db: DBCluster, name: str) -> set[int]:
    return {row[0] for row in db.query(name, "SELECT id FROM app.writes")}


def assert_nothing_lost(db: DBCluster, writer: Writer, sampler: Sampler, primary: str) -> None:
    assert writer.acked, "no write was acknowledged at all"
    missing = set(writer.acked) - rows_on(db, primary)
    where = {row: (on, at) for row, on, at in zip(writer.acked, writer.acked_on, writer.acked_at,
                                                   strict=True) if row in missing}
    assert not missing, f"acknowledged writes missing on {primary}: {sorted(where.items())[:20]}"
    assert sampler.rounds > 100, sampler.rounds
    assert not sampler.overlaps, f"two writable servers at once: {sampler.overlaps[:3]}"


def caught_up(db: DBCluster, replica: str, primary: str) -> bool:
    """The replica has exactly the primary's history (the primary quiet meanwhile)."""
    return db.value(replica, "SELECT @@gtid_current_pos") == db.value(
        primary, "SELECT @@gtid_current_pos")


# The scenarios, in order.

def test_bootstrap_elects_the_initial_primary_and_the_replica_follows_with_semisync(stack):
    etcd, db, agents = stack
    pair = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    assert pair == (A, B), agents.logs()
    state = cluster_state(etcd)
    assert KEYS.initialized in state
    status = dict(db.query(A, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'"))
    assert status["Rpl_semi_sync_master_status"] == "ON"
    assert status["Rpl_semi_sync_master_clients"] == "1"
    assert db.value(A, "SELECT @@rpl_semi_sync_master_wait_point") == "AFTER_SYNC"
    assert agents.status(B, "/primary") == 503 and agents.status(A, "/replica") == 503


def test_a_lost_replica_stalls_writes_briefly_then_the_primary_runs_degraded(stack):
    """The replica stopped (systemctl stop): commits wait for its acknowledgement until the
    primary records `degraded` and relaxes semi-sync; back, it catches up and semi-sync is
    restored, `degraded` cleared."""
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    with load(db) as (writer, sampler):
        assert writer.wait_for(20, timeout=10)
        stopped_at = time.monotonic()
        db.stop(replica)
        assert until(lambda: KEYS.degraded in cluster_state(etcd), timeout=10), agents.logs()
        assert writer.wait_for(20, timeout=10), agents.logs()
        gap = writer.longest_gap(stopped_at)
        assert gap < POLICY["degrade_after"] + 2, f"writes stalled {gap:.1f}s"
        assert agents.status(primary, "/primary") == 200
        db.start(replica)
        assert until(lambda: healthy_pair(etcd, db, agents) == (primary, replica),
                     timeout=30), agents.logs()
        assert writer.wait_for(20, timeout=10)
    assert_nothing_lost(db, writer, sampler, primary)
    assert until(lambda: caught_up(db, replica, primary), timeout=10)


def test_restarting_the_primarys_agent_is_no_failover(stack):
    """systemctl restart of the agent on the primary: the new process resumes the lease the
    old one held (its id in the lease file), so the key never leaves the primary, which never
    stops taking writes, and nobody else becomes writable."""
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    failover_before = cluster_state(etcd).get(KEYS.last_failover)
    log = agents.root / f"{primary}.log"
    resumed = log.read_text().count("resumed lease")
    with load(db) as (writer, sampler):
        assert writer.wait_for(20, timeout=10)
        agents.stop(primary)
        agents.start(primary)
        # Past the old lease's whole ttl: it would have expired by now had it not been resumed.
        watch_until = time.monotonic() + POLICY["lease_ttl"] + 2
        while time.monotonic() < watch_until:
            assert cluster_state(etcd).get(KEYS.leader) == primary, agents.logs()
            assert writable(db, primary) is True, agents.logs()
        assert log.read_text().count("resumed lease") == resumed + 1, agents.logs()
        assert until(lambda: healthy_pair(etcd, db, agents) == (primary, replica),
                     timeout=10), agents.logs()
        assert writer.wait_for(20, timeout=10)
    assert_nothing_lost(db, writer, sampler, primary)
    assert cluster_state(etcd).get(KEYS.last_failover) == failover_before


def test_kill_9_of_the_primary_promotes_the_standby_and_loses_no_acknowledged_write(stack):
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    with load(db) as (writer, sampler):
        assert writer.wait_for(30, timeout=10), agents.logs()
        killed_at = time.monotonic()
        db.kill(primary)
        promoted = until(lambda: cluster_state(etcd).get(KEYS.leader) == replica
                         and writable(db, replica), timeout=15, pause=0.05)
        took = time.monotonic() - killed_at
        assert promoted, agents.logs()
        assert writer.wait_for(30, timeout=15), agents.logs()
        # The old primary, restarted by its "systemd", rejoins: its history is a prefix.
        assert until(lambda: healthy_pair(etcd, db, agents) == (replica, primary),
                     timeout=30), agents.logs()
        assert writer.wait_for(20, timeout=10)
    assert_nothing_lost(db, writer, sampler, replica)
    assert took < 8, f"promotion took {took:.1f}s"
    assert until(lambda: caught_up(db, primary, replica), timeout=10)
    assert rows_on(db, primary) == rows_on(db, replica)
    assert gtid.is_prefix(db.value(primary, "SELECT @@gtid_current_pos"),
                          db.value(replica, "SELECT @@gtid_binlog_state"))
    last = json.loads(cluster_state(etcd)[KEYS.last_failover])
    assert last["by"] == replica


def test_a_planned_switchover_hands_over_with_every_write_and_the_old_primary_rejoins(stack):
    """agent.switchover: the primary turns read-only, hands the key to its standby once that
    has everything, the standby promotes, the old primary rejoins; no failover is recorded."""
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    before = cluster_state(etcd).get(KEYS.last_failover)
    with load(db) as (writer, sampler):
        assert writer.wait_for(30, timeout=10), agents.logs()
        asked_at = time.monotonic()
        code = switchover.switch_over(etcd_client(etcd), KEYS, replica, db.servers, timeout=20)
        assert code == 0, agents.logs()
        gap = writer.longest_gap(asked_at)
        assert until(lambda: healthy_pair(etcd, db, agents) == (replica, primary),
                     timeout=30), agents.logs()
        assert writer.wait_for(20, timeout=10)
    assert_nothing_lost(db, writer, sampler, replica)
    state = cluster_state(etcd)
    assert KEYS.switchover not in state and state.get(KEYS.last_failover) == before
    print(f"\nplanned switchover: longest gap between acknowledged writes {gap:.2f}s")


def test_a_switchover_the_agents_would_refuse_changes_nothing(stack, capsys):
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    client = etcd_client(etcd)
    assert switchover.switch_over(client, KEYS, primary, db.servers, timeout=5) == 2
    assert "is the primary already" in capsys.readouterr().err
    assert switchover.switch_over(client, KEYS, "db-09", db.servers, timeout=5) == 2
    assert healthy_pair(etcd, db, agents) == (primary, replica)
    assert KEYS.switchover not in cluster_state(etcd)


def test_etcd_quorum_lost_the_primary_fences_itself_before_its_lease_could_expire(stack):
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    lost = etcd.members[:2]
    with load(db) as (writer, sampler):
        assert writer.wait_for(30, timeout=10)
        for m in lost:
            etcd.kill(m.name)
        # The agent's own lease deadline (etcd's expiry is later still: counted from when a
        # renewal arrived, and a new etcd leader renews every lease) as /metrics says it.
        deadline = fenced_at = None
        while fenced_at is None:
            now = time.monotonic()
            left = lease_left(agents, primary)
            if writable(db, primary) is not True:
                fenced_at = now
            elif left:
                deadline = now + left
            assert deadline is None or now < deadline + 1, agents.logs()
        assert deadline is not None and fenced_at < deadline - POLICY["fence_margin"] + 0.5, (
            f"fenced {fenced_at - deadline:.2f}s from the lease's end")
        assert writable(db, replica) is False  # no role change without etcd
        acked_while_fenced = len(writer.acked)
        until(lambda: False, timeout=1.0)  # a second of nobody writable
        assert len(writer.acked) == acked_while_fenced
        for m in lost:
            etcd.start(m.name, "existing")
        etcd.wait_healthy()
        pair = until(lambda: healthy_pair(etcd, db, agents), timeout=40)
        assert pair, agents.logs()
        assert writer.wait_for(20, timeout=15)
    assert_nothing_lost(db, writer, sampler, pair[0])
    assert until(lambda: caught_up(db, pair[1], pair[0]), timeout=10)
    assert rows_on(db, pair[1]) == rows_on(db, pair[0])


def test_the_primary_lost_while_degraded_is_not_replaced_automatically(stack):
    """Replica stopped, the cluster degraded, then the primary killed: the replica may lack
    acknowledged writes, so nobody is promoted, both agents say a human is needed. The human
    (runbook) names the node with every write as the standby and clears `degraded`: it takes
    over, and the replica, started again, rejoins it."""
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    with load(db) as (writer, sampler):
        assert writer.wait_for(20, timeout=10)
        db.stop(replica)
        assert until(lambda: KEYS.degraded in cluster_state(etcd), timeout=10), agents.logs()
        assert writer.wait_for(20, timeout=10)
        db.kill(primary)
        log = agents.root / f"{primary}.log"
        asked = log.read_text().count("decision needs_human")
        assert until(lambda: log.read_text().count("decision needs_human") > asked,
                     timeout=10), agents.logs()
        # Longer than a promotion would take: nobody writes, nobody holds the key.
        watch_until = time.monotonic() + POLICY["replication_silence"] + 2
        while time.monotonic() < watch_until:
            assert KEYS.leader not in cluster_state(etcd)
            assert not writable(db, primary) and writable(db, replica) is not True
        client = etcd_client(etcd)
        client.put(KEYS.sync_standby, primary)
        client.delete(KEYS.degraded)
        assert until(lambda: cluster_state(etcd).get(KEYS.leader) == primary
                     and writable(db, primary), timeout=15), agents.logs()
        db.start(replica)
        assert until(lambda: healthy_pair(etcd, db, agents) == (primary, replica),
                     timeout=30), agents.logs()
        assert writer.wait_for(20, timeout=10)
    assert_nothing_lost(db, writer, sampler, primary)


def test_no_secret_in_the_agents_command_lines_or_logs(stack):
    _, db, agents = stack
    assert REPL_PASSWORD not in agents.logs()
    for proc in agents.procs.values():
        with open(f"/proc/{proc.pid}/cmdline", "rb") as cmdline:
            assert REPL_PASSWORD.encode() not in cmdline.read()


def test_a_node_whose_history_diverged_stays_fenced(stack):
    etcd, db, agents = stack
    primary, replica = until(lambda: healthy_pair(etcd, db, agents), timeout=30)
    agents.stop(replica)
    db.query(replica, "STOP SLAVE")
    db.query(replica, "RESET SLAVE ALL")
    db.query(replica, "INSERT INTO app.writes VALUES (%s, 0)", (10**9,))  # root ignores read_only
    agents.start(replica)
    log = agents.root / f"{replica}.log"
    assert until(lambda: "decision stay_fenced" in log.read_text(), timeout=15), agents.logs()
    assert writable(db, replica) is False
    assert db.value(replica, "SHOW SLAVE STATUS") is None  # replicating from nobody
    assert cluster_state(etcd).get(KEYS.leader) == primary
    assert agents.status(replica, "/replica") == 503

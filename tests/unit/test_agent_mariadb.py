"""The agent's MariaDB side (agent/mariadb.py) against two real local servers
(tests/unit/db_cluster.py): what a tick reads, and each action, checked by MariaDB's own view.

db-01 is made the primary and db-02 its semi-synchronous replica before each test that needs a
pair (`pair`); the fence tests kill db-01, which the testbed restarts read-only, as systemd
would. About 15 s.
"""

import contextlib
import os
import signal
import threading
import time

import pymysql
import pytest

from agent.mariadb import (
    SEMISYNC_TIMEOUT_MS,
    Facts,
    LocalMariaDB,
    StreamWatch,
    _pid,
    ask_peer,
)
from tests.unit.db_cluster import (
    REPL_PASSWORD,
    REPL_USER,
    DBCluster,
    needs_mariadb,
    running_db_cluster,
)

pytestmark = needs_mariadb
A, B = "db-01", "db-02"
HEARTBEAT = 0.25


def until(predicate, timeout: float, pause: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(pause)
    return result


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    with running_db_cluster(tmp_path_factory.mktemp("mariadb"), restart_delay=0.5) as c:
        yield c


def local(db: DBCluster, name: str) -> LocalMariaDB:
    return LocalMariaDB(db.servers[name].socket)


def follow(db: DBCluster, replica: str, source: str, semisync: bool = True) -> None:
    host, port = db.servers[source].address.split(":")
    local(db, replica).replicate_from(host, int(port), REPL_USER, REPL_PASSWORD, HEARTBEAT,
                                      semisync)


@pytest.fixture
def pair(db) -> tuple[LocalMariaDB, LocalMariaDB]:
    """db-01 the writable primary, db-02 its replica acknowledging, both caught up."""
    primary, replica = local(db, A), local(db, B)
    primary.prepare_primary(semisync=True)
    primary.allow_writes()
    follow(db, B, A)
    assert until(lambda: B in primary.observe().replicas
                 and primary.observe().semisync_clients == 1, timeout=10), db.log(B)
    return primary, replica


def insert(db: DBCluster, name: str, row: int, timeout: float = 5.0) -> None:
    with contextlib.closing(db.app(name, timeout)) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO writes VALUES (%s, %s)", (row, time.time()))


def ids(db: DBCluster, name: str) -> set[int]:
    return {r[0] for r in db.query(name, "SELECT id FROM app.writes")}


_next = iter(range(1, 10**6))


def test_a_fresh_server_is_read_only_with_nothing_to_replicate(db):
    facts = local(db, B).observe()
    assert facts.running and facts.read_only and not facts.writable
    assert facts.source is None and not facts.io_connected and facts.relay_applied
    assert abs(facts.started_at - time.time()) < 120
    assert facts.semisync_replica_enabled  # the config's, for crash recovery


def test_a_server_that_does_not_answer_is_not_running(tmp_path):
    facts = LocalMariaDB(str(tmp_path / "nothing.sock"), timeout=0.5).observe()
    assert facts == Facts(running=False, error=facts.error) and "Can't connect" in facts.error


def test_primary_and_semisync_replica(db, pair):
    primary, replica = pair
    p, r = primary.observe(), replica.observe()
    assert p.writable and p.semisync_master_enabled and p.semisync_master_on
    assert p.replicas == {B} and p.semisync_clients == 1
    assert db.value(A, "SELECT @@rpl_semi_sync_master_wait_point") == "AFTER_SYNC"
    assert db.value(A, "SELECT @@rpl_semi_sync_master_timeout") == SEMISYNC_TIMEOUT_MS
    assert r.read_only and r.source == ("127.0.0.1", db.servers[A].port)
    assert r.io_connected and r.semisync_replica_on
    row = next(_next)
    insert(db, A, row)
    assert until(lambda: row in ids(db, B), timeout=5)
    after = replica.observe()
    assert after.relay_applied and after.gtid_current == primary.observe().gtid_current
    assert after.lag is not None and after.lag < 5


def test_the_stream_is_heard_through_heartbeats_and_silent_once_stopped(db, pair):
    primary, replica = pair
    watch = StreamWatch()
    assert watch.silence(replica.observe(), time.monotonic()) == 0.0  # first seen connected
    time.sleep(1.0)  # four heartbeat periods, no write
    assert watch.silence(replica.observe(), time.monotonic()) < 3 * HEARTBEAT
    replica.stop_receiving()
    stopped = time.monotonic()
    facts = replica.observe()
    assert facts.io_state == "No" and not facts.io_connected
    silence = until(lambda: (s := watch.silence(replica.observe(), time.monotonic())) > 1.0
                    and s, timeout=3)
    assert silence and silence >= time.monotonic() - stopped - 3 * HEARTBEAT - 0.1
    replica.start_replication()


def test_a_commit_waits_for_the_standby_until_semisync_is_relaxed(db, pair):
    primary, replica = pair
    replica.stop_receiving()
    assert until(lambda: primary.observe().semisync_clients == 0, timeout=5)
    row, result = next(_next), {}
    writer = threading.Thread(target=_insert_into, args=(db, A, row, result))
    writer.start()
    assert until(lambda: primary.observe().semisync_waiting == 1, timeout=5)
    assert "ok" not in result  # not acknowledged: nobody has it but the primary
    primary.set_semisync_primary(False)
    writer.join(timeout=5)
    assert result == {"ok": True}
    replica.start_replication()


def _insert_into(db, name, row, result):
    try:
        insert(db, name, row, timeout=30)
        result["ok"] = True
    except pymysql.MySQLError as e:
        result["error"] = e


def test_fencing_a_writable_primary_with_a_commit_in_flight(db, pair):
    """The commit waiting for an acknowledgement holds read_only off; the fence kills mariadbd,
    which comes back read-only without that commit (never acknowledged, never replicated)."""
    primary, replica = pair
    replica.stop_receiving()
    row, result, before = next(_next), {}, primary.observe().gtid_current
    writer = threading.Thread(target=_insert_into, args=(db, A, row, result))
    writer.start()
    assert until(lambda: primary.observe().semisync_waiting == 1, timeout=5)
    assert primary.observe().gtid_current != before  # binlogged, waiting (AFTER_SYNC)
    pid = db.pid(A)
    done = primary.fence()
    writer.join(timeout=10)
    assert "read_only=ON failed" in done and f"pid {pid}) killed" in done, done
    assert "error" in result  # the client never got an acknowledgement
    assert until(lambda: primary.observe().running, timeout=30), db.log(A)
    back = primary.observe()
    assert back.read_only and db.pid(A) != pid
    assert back.gtid_current == before and row not in ids(db, A)  # cut by crash recovery
    assert "to remove transactions starting from GTID" in db.log(A, tail=20000)
    replica.start_replication()


def test_the_net_timeout_is_set_and_the_stream_reconnected_with_it(db, pair):
    _, replica = pair
    replica.set_net_timeout(2)
    facts = replica.observe()
    assert facts.net_timeout == 2
    assert until(lambda: replica.observe().io_connected, timeout=10), db.log(B)
    replica.set_net_timeout(60)  # the server's default, as the other tests found it


def test_a_fence_after_the_lease_expired_kills_mariadbd_first(db, pair):
    """A holder that wakes past its lease (frozen, starved): another node may write already,
    so not a moment is spent on read_only; it comes back read-only all the same."""
    primary, replica = pair
    assert primary.observe().writable
    pid = db.pid(A)
    done = primary.fence(expired=True)
    assert done.startswith("lease already expired") and f"pid {pid}) killed" in done, done
    assert "read_only" not in done
    assert until(lambda: primary.observe().running, timeout=30), db.log(A)
    assert primary.observe().read_only and db.pid(A) != pid


def test_fencing_a_read_only_server_cuts_its_clients_and_keeps_it_running(db, pair):
    _, replica = pair
    pid = db.pid(B)
    with contextlib.closing(db.app(B)) as client:
        done = replica.fence()
        assert "read_only=ON" in done and "killed" in done and "mariadbd" not in done, done
        with pytest.raises(pymysql.MySQLError):
            client.ping(reconnect=False)
    assert db.pid(B) == pid and replica.observe().io_connected  # replication threads stay


def test_a_hung_server_that_answered_before_is_killed(db, pair):
    """SIGSTOP stands for a mariadbd that hangs: it may be writable, nothing can be asked."""
    _, replica = pair
    assert replica.observe().running  # the agent saw this very process answer
    pid = db.pid(B)
    os.kill(pid, signal.SIGSTOP)
    done = replica.fence()
    assert "not reachable" in done and f"pid {pid}) killed" in done, done
    assert until(lambda: replica.observe().running, timeout=30), db.log(B)
    assert db.pid(B) != pid


def test_promotion_applies_everything_received_then_takes_writes(db, pair):
    primary, replica = pair
    rows = [next(_next) for _ in range(5)]
    for row in rows:
        insert(db, A, row)
    replica.prepare_primary(semisync=False)
    facts = replica.observe()
    assert facts.source is None and facts.read_only and set(rows) <= ids(db, B)
    replica.allow_writes()
    assert replica.observe().writable
    # Back as it was: db-02 a replica of db-01 again (its history is a prefix: no new writes).
    replica.fence()
    assert until(lambda: replica.observe().running, timeout=30)


def test_a_peer_answers_for_itself_over_tcp(db, pair):
    host, port = db.servers[A].address.split(":")
    peer = ask_peer(host, int(port), REPL_USER, REPL_PASSWORD)
    assert peer is not None and not peer.read_only
    assert peer.binlog_state == db.value(A, "SELECT @@gtid_binlog_state")
    assert ask_peer(host, int(port), REPL_USER, "wrong") is None
    assert ask_peer("127.0.0.1", 1, REPL_USER, REPL_PASSWORD, timeout=0.5) is None


def test_crash_recovery_is_written_only_when_it_changes(tmp_path):
    path = tmp_path / "62-ha-webstack-agent.cnf"
    db = LocalMariaDB("/nonexistent.sock", recovery_file=str(path))
    assert db.set_crash_recovery(truncate=True) is True
    assert "init_rpl_role = SLAVE\nrpl_semi_sync_slave_enabled = ON\n" in path.read_text()
    assert db.set_crash_recovery(truncate=True) is False
    assert db.set_crash_recovery(truncate=False) is True
    assert "init_rpl_role = MASTER\nrpl_semi_sync_slave_enabled = OFF\n" in path.read_text()
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    assert LocalMariaDB("/nonexistent.sock").set_crash_recovery(truncate=False) is False


def test_a_stale_pid_file_never_gets_another_process_killed(tmp_path):
    stale = tmp_path / "mysqld.pid"
    stale.write_text(f"{os.getpid()}\n")  # this python, not a mariadbd
    assert _pid(str(stale)) is None
    assert _pid(str(tmp_path / "missing.pid")) is None


"""The agent's hands on its own MariaDB: what it reads every tick, and what it does to it.

Everything goes through PyMySQL as root over the local unix socket (Debian's root@localhost
authenticates by the socket's peer, so no password exists to leak); one fresh connection per
operation, so nothing stale survives a restart of mariadbd, and operations are safe from two
threads (the main loop and the lease guard). Statements and syntax are the ones MariaDB 10.11
(Debian 12) and 11.8 (Debian 13) both accept: SHOW ALL SLAVES STATUS, CHANGE MASTER TO,
START/STOP SLAVE, RESET SLAVE ALL, the rpl_semi_sync_* variables.

What a database host's own configuration must say (the agent relies on it, see agent/README.md):
read_only=ON and event_scheduler=OFF at start, so a mariadbd that (re)starts never takes writes
before its agent decides; gtid_strict_mode, log_bin, log_slave_updates, a unique server_id;
report_host=<member name>, which is how a primary knows which replica is connected; and an
include of the agent's own option file (`set_crash_recovery`), which decides what crash
recovery does with transactions binlogged but not committed.

The replication password comes from the caller (read from a root-only file), goes to the server
as a bound parameter, and is never logged: nothing here puts it in a message.
"""

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pymysql
import pymysql.cursors

from agent import gtid
from agent.files import write_atomically

# A year in milliseconds: commits wait for the standby's acknowledgement "forever". Only the
# agent relaxes semi-sync, after recording it in etcd; MariaDB must never fall back on its own.
SEMISYNC_TIMEOUT_MS = 365 * 24 * 3600 * 1000
# The source refused the position this replica asked for: with gtid_strict_mode, a GTID of
# mine is not in its binlog (a diverged history) or was purged from it. Either way: a human.
ER_SOURCE_REFUSED_POSITION = 1236
# Server threads that are not clients: a fence leaves them alone.
_SERVER_COMMANDS = ("Daemon", "Binlog Dump", "Slave_IO", "Slave_SQL", "Slave_worker")
_SERVER_USERS = ("system user", "event_scheduler")
_STATUS = ("Uptime", "Rpl_semi_sync_master_status", "Rpl_semi_sync_master_clients",
           "Rpl_semi_sync_master_wait_sessions", "Rpl_semi_sync_master_yes_tx",
           "Rpl_semi_sync_slave_status")


class MariaDBError(Exception):
    """An action on the local MariaDB could not be completed; the message says which step."""


@dataclass(frozen=True, kw_only=True)
class Facts:
    """One tick's reading of the local MariaDB. When `running` is False the rest is defaults."""

    running: bool
    error: str = ""  # why it is not running (the connection error)
    started_at: float | None = None  # epoch s, now - Uptime: a restart moves it
    read_only: bool = True
    gtid_current: str = ""  # gtid_current_pos: what this server has, written or applied
    source: tuple[str, int] | None = None  # (Master_Host, Master_Port); None: not a replica
    io_state: str = ""  # Slave_IO_Running: Yes, Connecting or No
    io_errno: int = 0
    io_error: str = ""
    gtid_io: str = ""  # Gtid_IO_Pos: what the IO thread received
    gtid_slave: str = ""  # gtid_slave_pos: what the SQL thread applied
    heartbeats: int = 0  # Slave_received_heartbeats: grows while an idle source is alive
    lag: float | None = None  # seconds behind the source (heartbeat row, or MariaDB's own)
    semisync_master_enabled: bool = False  # rpl_semi_sync_master_enabled
    semisync_master_on: bool = False  # Rpl_semi_sync_master_status: commits wait for an ack
    semisync_clients: int = 0  # Rpl_semi_sync_master_clients: replicas able to ack
    semisync_waiting: int = 0  # Rpl_semi_sync_master_wait_sessions: commits waiting now
    semisync_acked: int = 0  # Rpl_semi_sync_master_yes_tx: commits acknowledged so far
    semisync_replica_enabled: bool = False  # rpl_semi_sync_slave_enabled
    semisync_replica_on: bool = False  # Rpl_semi_sync_slave_status: this replica acks
    replicas: frozenset[str] = frozenset()  # report_host of the replicas connected to me
    net_timeout: int = 0  # slave_net_timeout: how long the IO thread's reads may wait

    @property
    def writable(self) -> bool:
        return self.running and not self.read_only

    @property
    def io_connected(self) -> bool:
        return self.io_state == "Yes"

    @property
    def relay_applied(self) -> bool:
        """Whether the SQL thread applied everything the IO thread received."""
        return gtid.covers(gtid.position(self.gtid_slave), gtid.position(self.gtid_io))


class StreamWatch:
    """Seconds since the replication stream last delivered anything, an event or a heartbeat.

    MariaDB keeps counters, not times (Slave_received_heartbeats, Gtid_IO_Pos), so the time of
    the last change is tracked here, tick by tick. With MASTER_HEARTBEAT_PERIOD well under the
    silence threshold, a live source is never silent, idle or not."""

    def __init__(self):
        self._mark: tuple | None = None
        self._last: float | None = None

    def silence(self, facts: Facts, now: float) -> float | None:
        """Seconds of silence at monotonic `now`; None: nothing heard from this source yet."""
        if not facts.running or facts.source is None:
            self._mark = self._last = None
            return None
        mark = (facts.source, facts.heartbeats, facts.gtid_io)
        if mark != self._mark:
            new_source = self._mark is None or self._mark[0] != facts.source
            # A source first seen connected may have spoken just now: assume it did, which
            # only ever delays a promotion by the threshold.
            if not new_source or facts.io_connected:
                self._last = now
            self._mark = mark
        return None if self._last is None else now - self._last


@dataclass(frozen=True)
class Peer:
    """What another member's MariaDB says about itself."""

    read_only: bool
    binlog_state: str  # gtid_binlog_state


def ask_peer(host: str, port: int, user: str, password: str, timeout: float = 1.0) -> Peer | None:
    """Another member's read_only and gtid_binlog_state, asked over TCP with the replication
    login (reading global variables needs no privilege); None if it does not answer."""
    try:
        conn = pymysql.connect(host=host, port=port, user=user, password=password,
                               connect_timeout=timeout, read_timeout=timeout)
    except pymysql.MySQLError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_state")
            read_only, state = cur.fetchone()
            return Peer(read_only=bool(read_only), binlog_state=state or "")
    except pymysql.MySQLError:
        return None
    finally:
        conn.close()


class LocalMariaDB:
    """The MariaDB on this host, through its unix socket. `recovery_file`: the option file
    (included by the server's configuration) where the agent says how mariadbd recovers from a
    crash (`set_crash_recovery`); None: left alone."""

    def __init__(self, socket: str, timeout: float = 2.0, recovery_file: str | None = None):
        self.socket = socket
        self.timeout = timeout
        self.recovery_file = recovery_file
        self._pid_file: str | None = None  # where mariadbd said its pid is
        self._pid: int | None = None  # the mariadbd that last answered

    @contextlib.contextmanager
    def _cursor(self, read_timeout: float | None = None, dict_rows: bool = False,
                connect_timeout: float | None = None) -> Iterator[pymysql.cursors.Cursor]:
        conn = pymysql.connect(
            unix_socket=self.socket, user="root", autocommit=True,
            connect_timeout=connect_timeout or self.timeout,
            read_timeout=read_timeout or self.timeout,
            write_timeout=self.timeout,
            cursorclass=pymysql.cursors.DictCursor if dict_rows else pymysql.cursors.Cursor)
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.close()

    # Reading

    def observe(self) -> Facts:
        """This tick's facts; a server that does not answer is simply not running."""
        try:
            with self._cursor(dict_rows=True) as cur:
                return self._read(cur)
        except (pymysql.MySQLError, OSError) as e:
            return Facts(running=False, error=str(e))

    def _read(self, cur) -> Facts:
        cur.execute("SELECT @@read_only AS ro, @@gtid_current_pos AS pos, "
                    "@@rpl_semi_sync_master_enabled AS master, "
                    "@@rpl_semi_sync_slave_enabled AS replica, @@pid_file AS pid_file, "
                    "@@slave_net_timeout AS net_timeout")
        variables = cur.fetchone()
        self._pid_file = variables["pid_file"]
        self._pid = _pid(self._pid_file)
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ("
                    + ", ".join(["%s"] * len(_STATUS)) + ")", _STATUS)
        status = {row["Variable_name"]: row["Value"] for row in cur.fetchall()}
        cur.execute("SHOW ALL SLAVES STATUS")
        stream = next((row for row in cur.fetchall() if not row["Connection_name"]), None)
        cur.execute("SHOW SLAVE HOSTS")
        replicas = frozenset(row["Host"] for row in cur.fetchall() if row["Host"])
        facts = dict(
            running=True, started_at=time.time() - int(status.get("Uptime", 0)),
            read_only=bool(variables["ro"]), gtid_current=variables["pos"] or "",
            semisync_master_enabled=bool(variables["master"]),
            semisync_master_on=status.get("Rpl_semi_sync_master_status") == "ON",
            semisync_clients=int(status.get("Rpl_semi_sync_master_clients", 0)),
            semisync_waiting=int(status.get("Rpl_semi_sync_master_wait_sessions", 0)),
            semisync_acked=int(status.get("Rpl_semi_sync_master_yes_tx", 0)),
            semisync_replica_enabled=bool(variables["replica"]),
            semisync_replica_on=status.get("Rpl_semi_sync_slave_status") == "ON",
            replicas=replicas, net_timeout=int(variables["net_timeout"]))
        if stream and stream["Master_Host"]:
            facts.update(
                source=(stream["Master_Host"], int(stream["Master_Port"])),
                io_state=stream["Slave_IO_Running"], io_errno=int(stream["Last_IO_Errno"]),
                io_error=stream["Last_IO_Error"], gtid_io=stream["Gtid_IO_Pos"] or "",
                gtid_slave=stream["Gtid_Slave_Pos"] or "",
                heartbeats=int(stream["Slave_received_heartbeats"]),
                lag=_lag(cur, stream))
        return Facts(**facts)

    # Acting

    def fence(self, expired: bool = False) -> str:
        """Stop this server taking writes, now; what was done, for the log.

        expired=True: my lease is already over (the host was frozen, or the agent starved), so
        another node may be the primary already: mariadbd that last answered is killed first,
        with no second spent on read_only. It comes back read-only, as below.

        read_only=ON (waiting at most a second for commits in flight) and every client
        connection killed. If the server was writable, or read_only could not be set, mariadbd
        is then killed (SIGKILL) so that it restarts read-only: its service manager restarts it
        (systemd: Restart=on-abnormal), its configuration starts it read-only, and crash
        recovery drops whatever it binlogged but never committed. Why not only read_only: a
        commit waiting for a semi-sync acknowledgement holds it off (read_only then times out),
        and killing that client's connection would commit the transaction here, never
        acknowledged and never replicated: an errant GTID. A killed server commits nothing.
        A mariadbd that runs but does not answer (hung) is killed too if it is the process that
        last answered: it may be writable. A new process (restarting) started read-only."""
        done = []
        writable = read_only_set = False
        pid = _pid(self._pid_file) if self._pid_file else None
        if expired and pid is not None and pid == self._pid:
            return f"lease already expired: {_kill_server(pid)}"
        try:  # a local socket answers in milliseconds: half a second means hung
            with self._cursor(read_timeout=2, connect_timeout=0.5) as cur:
                cur.execute("SELECT @@read_only, @@pid_file")
                read_only, self._pid_file = cur.fetchone()
                writable = not read_only
                pid = _pid(self._pid_file)
                cur.execute("SET SESSION lock_wait_timeout = 1")
                try:
                    cur.execute("SET GLOBAL read_only = ON")
                    read_only_set = True
                    done.append("read_only=ON")
                except pymysql.MySQLError as e:
                    done.append(f"read_only=ON failed ({e.args[-1]})")
                _quietly(cur, "SET GLOBAL event_scheduler = OFF")
                if read_only_set:  # no commit is waiting: cutting clients commits nothing
                    done.append(f"{_kill_clients(cur)} client connection(s) killed")
        except (pymysql.MySQLError, OSError) as e:
            done.append(f"not reachable ({e})")
            writable = pid is not None and pid == self._pid  # silent: assume the worst
        if pid and (writable or not read_only_set):
            done.append(_kill_server(pid))
        return "; ".join(done)

    def demote(self) -> bool:
        """A planned step-down: read_only=ON, waiting at most a second for commits in flight
        (the standby is healthy and acknowledges them), and the event scheduler off. Clients
        are not cut: they get read-only errors, and the app retries its writes elsewhere.
        False if read_only could not be set (then only a fence will do)."""
        with self._cursor(read_timeout=5) as cur:
            cur.execute("SET SESSION lock_wait_timeout = 1")
            try:
                cur.execute("SET GLOBAL read_only = ON")
            except pymysql.MySQLError:
                return False
            _quietly(cur, "SET GLOBAL event_scheduler = OFF")
        return True

    def prepare_primary(self, semisync: bool) -> None:
        """Everything before taking writes: replication stopped once everything received is
        applied (RESET SLAVE ALL: this server follows nobody), the events a former primary
        created enabled here, semi-sync AFTER_SYNC with a timeout that never expires (off only
        when etcd records the cluster as degraded). read_only stays ON: `allow_writes`."""
        with self._cursor(read_timeout=15, dict_rows=True) as cur:
            cur.execute("SHOW ALL SLAVES STATUS")
            if any(not row["Connection_name"] and row["Master_Host"] for row in cur.fetchall()):
                _stop_replicating(cur)
            # Events replicate disabled; the primary runs them (the replication heartbeat).
            # Before semi-sync is on: this write must not wait for a standby.
            cur.execute("SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS "
                        "WHERE STATUS = 'SLAVESIDE_DISABLED'")
            for event in cur.fetchall():
                cur.execute(f"ALTER EVENT `{event['EVENT_SCHEMA']}`.`{event['EVENT_NAME']}` "
                            "ENABLE")
            _semisync_primary(cur, semisync)

    def allow_writes(self) -> None:
        """read_only=OFF and the event scheduler on: this server is the primary. Only for the
        holder of the leader key, with its lease safe (the caller's check)."""
        with self._cursor() as cur:
            cur.execute("SET GLOBAL read_only = OFF")
            _quietly(cur, "SET GLOBAL event_scheduler = ON")

    def replicate_from(self, host: str, port: int, user: str, password: str,
                       heartbeat: float, semisync: bool) -> None:
        """Become a replica of host:port from where this server is: gtid_slave_pos set to
        gtid_current_pos (a former primary's own writes included), MASTER_USE_GTID=slave_pos,
        a heartbeat every `heartbeat` seconds so silence means a dead source, semi-sync
        acknowledgements on if this replica is the designated standby. Read-only, as ever."""
        with self._cursor(read_timeout=15) as cur:
            cur.execute("SET GLOBAL read_only = ON")
            _quietly(cur, "SET GLOBAL event_scheduler = OFF")
            cur.execute("STOP SLAVE")
            cur.execute("SELECT @@GLOBAL.gtid_current_pos")
            cur.execute("SET GLOBAL gtid_slave_pos = %s", (cur.fetchone()[0],))
            cur.execute("CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
                        "MASTER_PASSWORD = %s, MASTER_USE_GTID = slave_pos, "
                        "MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = %s",
                        (host, port, user, password, heartbeat))
            cur.execute("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
            cur.execute(f"SET GLOBAL rpl_semi_sync_slave_enabled = {_on(semisync)}")
            cur.execute("START SLAVE")

    def set_net_timeout(self, seconds: int) -> None:
        """slave_net_timeout, and the IO thread reconnected so that its connection has it.

        A source lost without a word (its host gone, a partition) leaves the IO thread in a
        read until this timeout, 60 s by default, and STOP SLAVE waits for that read: a
        promotion would wait a minute. A few heartbeats long, a live source is never cut."""
        with self._cursor(read_timeout=15, dict_rows=True) as cur:
            cur.execute("SET GLOBAL slave_net_timeout = %s", (seconds,))
            cur.execute("SHOW ALL SLAVES STATUS")
            if any(not r["Connection_name"] and r["Slave_IO_Running"] != "No"
                   for r in cur.fetchall()):
                cur.execute("STOP SLAVE IO_THREAD")
                cur.execute("START SLAVE IO_THREAD")

    def set_semisync_replica(self, on: bool) -> None:
        """Acknowledge (or stop acknowledging) to the source. The source learns it when the IO
        thread connects, so the IO thread reconnects."""
        with self._cursor(read_timeout=15) as cur:
            cur.execute(f"SET GLOBAL rpl_semi_sync_slave_enabled = {_on(on)}")
            cur.execute("STOP SLAVE IO_THREAD")
            cur.execute("START SLAVE IO_THREAD")

    def start_replication(self) -> None:
        with self._cursor(read_timeout=15) as cur:
            cur.execute("START SLAVE")

    def stop_receiving(self) -> None:
        """Stop the IO thread: no more events in, no more acknowledgements out."""
        with self._cursor(read_timeout=15) as cur:
            cur.execute("STOP SLAVE IO_THREAD")

    def forget_source(self) -> None:
        """Replicate from nobody (a source that refused my history)."""
        with self._cursor(read_timeout=15) as cur:
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")

    def set_crash_recovery(self, truncate: bool) -> bool:
        """How the next start after a crash treats transactions binlogged but not committed in
        InnoDB (with the binlog on, InnoDB's commit is made durable lazily: after a crash, a
        commit the client saw succeed may be only "prepared"). truncate=True (init_rpl_role=
        SLAVE): rolled back and cut from the binlog, right while semi-sync is on (the standby
        has every acknowledged one; the rest nobody acknowledged), so a killed primary comes
        back as a prefix of the new one. truncate=False (MASTER): committed, as MariaDB does by
        default, required while semi-sync is relaxed: they may have been acknowledged, and this
        server then holds the only copy. Written atomically, only when it changes; whether it
        changed. Takes effect at the next start."""
        if self.recovery_file is None:
            return False
        text = _RECOVERY.format(role="SLAVE" if truncate else "MASTER", semisync=_on(truncate))
        with contextlib.suppress(OSError):
            if open(self.recovery_file).read() == text:
                return False
        write_atomically(self.recovery_file, text)
        return True

    def set_semisync_primary(self, on: bool) -> None:
        """Semi-sync on (the standby acknowledges every commit) or relaxed (commits no longer
        wait: only after etcd records the cluster as degraded)."""
        with self._cursor() as cur:
            _semisync_primary(cur, on)


_RECOVERY = """\
# Managed by the ha-webstack agent (agent/mariadb.py, set_crash_recovery): how mariadbd recovers
# from a crash. SLAVE: transactions binlogged but not committed are rolled back and cut from the
# binlog (semi-sync on: nobody acknowledged them). MASTER: they are committed (semi-sync relaxed:
# they may have been acknowledged). Rewritten by the agent; do not edit.
[mariadbd]
init_rpl_role = {role}
rpl_semi_sync_slave_enabled = {semisync}
"""


def _on(flag: bool) -> str:
    return "ON" if flag else "OFF"


def _semisync_primary(cur, on: bool) -> None:
    cur.execute("SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC")
    cur.execute(f"SET GLOBAL rpl_semi_sync_master_timeout = {SEMISYNC_TIMEOUT_MS}")
    cur.execute("SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON")
    cur.execute(f"SET GLOBAL rpl_semi_sync_master_enabled = {_on(on)}")


def _stop_replicating(cur, timeout: float = 10.0) -> None:
    """Stop receiving, apply everything received, then forget the source."""
    cur.execute("STOP SLAVE IO_THREAD")
    cur.execute("SHOW ALL SLAVES STATUS")
    received = next(r for r in cur.fetchall() if not r["Connection_name"])["Gtid_IO_Pos"]
    cur.execute("SELECT MASTER_GTID_WAIT(%s, %s) AS waited", (received or "", timeout))
    if cur.fetchone()["waited"] != 0:
        raise MariaDBError(f"the relay log was not applied up to {received} within {timeout}s "
                           "(SQL thread stopped?): not taking writes")
    cur.execute("STOP SLAVE")
    cur.execute("RESET SLAVE ALL")


def _lag(cur, stream: dict) -> float | None:
    """Seconds behind the source: from the replication heartbeat row the primary writes every
    second (true also when idle), else MariaDB's Seconds_Behind_Master."""
    try:
        cur.execute("SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) / 1e6 AS lag "
                    "FROM ha_heartbeat.heartbeat WHERE id = 1")
        row = cur.fetchone()
        if row and row["lag"] is not None:
            return max(0.0, float(row["lag"]))
    except pymysql.MySQLError:
        pass  # no heartbeat table on this cluster
    behind = stream.get("Seconds_Behind_Master")
    return None if behind is None else float(behind)


def _quietly(cur, statement: str) -> None:
    """A statement whose failure changes nothing that matters (e.g. event_scheduler=DISABLED)."""
    try:
        cur.execute(statement)
    except pymysql.MySQLError:
        pass


def _kill_clients(cur) -> int:
    """KILL CONNECTION every client but this one: server and replication threads stay."""
    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                f"AND COMMAND NOT IN ({', '.join(['%s'] * len(_SERVER_COMMANDS))}) "
                f"AND USER NOT IN ({', '.join(['%s'] * len(_SERVER_USERS))})",
                (*_SERVER_COMMANDS, *_SERVER_USERS))
    killed = 0
    for (thread_id,) in cur.fetchall():
        try:
            cur.execute("KILL CONNECTION %s", (int(thread_id),))
            killed += 1
        except pymysql.MySQLError:
            pass  # gone meanwhile
    return killed


def _pid(pid_file: str) -> int | None:
    """mariadbd's pid from its pid file, if that process is a mariadbd (a stale file after a
    crash may name another process: never kill that)."""
    try:
        pid = int(open(pid_file).read().strip())
        with open(f"/proc/{pid}/comm") as comm:
            return pid if comm.read().strip() in ("mariadbd", "mysqld") else None
    except (OSError, ValueError):
        return None


def _kill_server(pid: int, wait: float = 2.0) -> str:
    """SIGKILL mariadbd and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return f"mariadbd (pid {pid}) already gone"
    deadline = time.monotonic() + wait
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ", 1)[1].startswith("Z"):
                    break  # dead, not yet reaped by its parent
        except OSError:
            break
        time.sleep(0.01)
    return f"mariadbd (pid {pid}) killed: its service manager restarts it read-only"

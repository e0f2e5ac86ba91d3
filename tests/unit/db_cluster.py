"""Throwaway MariaDB servers on 127.0.0.1 for the agent's tests, as tests/unit/etcd_cluster.py
is for etcd: real `mariadbd` processes, each with a temporary datadir (made once by
mariadb-install-db, then copied), its own port, socket and binlog, configured as the agent
expects a database host to be (`SERVER_CONFIG`): GTID strict mode, log_slave_updates,
read-only and replica-role at start, semi-synchronous replication AFTER_SYNC available.

No systemd here, so `DBCluster` plays its part: a server killed by a signal (`kill`, or the
agent's own fence) is started again after `restart_delay` seconds, as Debian's mariadb.service
does (Restart=on-abnormal); `stop` is `systemctl stop`, no restart. Processes run in their own
session and are killed, each by its own pid, when the cluster is closed.

Replication users are created on every server without binlogging them (sql_log_bin=0), as if
each had received them already: the agents find an empty GTID history everywhere.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from agent.mariadb import LocalMariaDB
from tests.unit.etcd_cluster import free_ports

# For a module of tests that need real servers: skipped, saying so, without the binaries.
needs_mariadb = pytest.mark.skipif(
    not (shutil.which("mariadbd") and shutil.which("mariadb-install-db")),
    reason="mariadbd/mariadb-install-db not installed: apt-get install mariadb-server "
           "(make check installs it) to run real local MariaDB servers")

REPL_USER = "replicator"
REPL_PASSWORD = "repl-s3cret-for-tests"
APP_USER, APP_PASSWORD = "app", "app-s3cret-for-tests"

# What the agent needs of every database host's configuration (the deploy's static drop-in):
# start read-only, GTID strict, semi-sync AFTER_SYNC available, replicas named by report_host;
# and the agent's own option file, included, which says how crash recovery treats what was
# binlogged but not committed (agent/mariadb.py: set_crash_recovery).
SERVER_CONFIG = """\
log_bin = {root}/{name}-bin
relay_log = {root}/{name}-relay-bin
log_slave_updates = ON
binlog_format = ROW
gtid_strict_mode = ON
sync_binlog = 1
innodb_flush_log_at_trx_commit = 1
read_only = ON
event_scheduler = OFF
rpl_semi_sync_master_enabled = OFF
rpl_semi_sync_master_wait_point = AFTER_SYNC
report_host = {name}
skip_name_resolve = ON
!include {root}/agent-recovery.cnf
"""


@dataclass
class Server:
    name: str
    server_id: int
    port: int
    root: Path

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> str:
        return str(self.root / "mysqld.sock")

    @property
    def pid_file(self) -> Path:
        return self.root / "mysqld.pid"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "error.log"

    @property
    def recovery_file(self) -> str:
        """The agent's option file (agent/mariadb.py: set_crash_recovery)."""
        return str(self.root / "agent-recovery.cnf")

    def config(self) -> str:
        return (f"[mariadbd]\nuser = root\ndatadir = {self.datadir}\nsocket = {self.socket}\n"
                f"port = {self.port}\nbind_address = 127.0.0.1\npid_file = {self.pid_file}\n"
                f"log_error = {self.log}\nserver_id = {self.server_id}\n"
                "innodb_buffer_pool_size = 32M\ninnodb_log_file_size = 16M\n"
                "performance_schema = OFF\nmax_connections = 100\n"
                + SERVER_CONFIG.format(root=self.root, name=self.name))


class DBCluster:
    """Servers db-01, db-02 (and db-03 with n=3) under one temporary directory."""

    def __init__(self, root: Path, n: int = 2, restart_delay: float = 1.0):
        self.root = root
        self.restart_delay = restart_delay
        ports = free_ports(n)
        self.servers = {f"db-{i:02d}": Server(f"db-{i:02d}", i, ports[i - 1],
                                              root / f"db-{i:02d}") for i in range(1, n + 1)}
        self._procs: dict[str, subprocess.Popen] = {}
        self._stopped: set[str] = set()  # stopped on purpose: not restarted
        self._lock = threading.Lock()
        self._closing = False
        template = root / "template"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={template}",
                        "--user=root", "--auth-root-authentication-method=socket",
                        "--skip-test-db"], check=True, capture_output=True, timeout=120)
        for s in self.servers.values():
            s.root.mkdir(parents=True)
            shutil.copytree(template, s.datadir, symlinks=True)
            (s.root / "my.cnf").write_text(s.config())
            # As the deploy leaves it: crash recovery as semi-sync wants it.
            LocalMariaDB(s.socket, recovery_file=s.recovery_file).set_crash_recovery(True)

    def start(self, name: str) -> None:
        """Start the server (again) and wait until it answers on its socket."""
        s = self.servers[name]
        with self._lock:
            if self._closing:
                return
            self._stopped.discard(name)
            log = s.log.open("a")
            proc = subprocess.Popen(["mariadbd", f"--defaults-file={s.root / 'my.cnf'}"],
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self._procs[name] = proc
        threading.Thread(target=self._supervise, args=(name, proc), daemon=True).start()
        self.wait_up(name)

    def _supervise(self, name: str, proc: subprocess.Popen) -> None:
        """systemd's Restart=on-abnormal: a server killed by a signal comes back, read-only."""
        proc.wait()
        time.sleep(self.restart_delay)
        with self._lock:
            again = (not self._closing and name not in self._stopped
                     and self._procs.get(name) is proc and proc.returncode < 0)
        if again:
            self.start(name)

    def wait_up(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect(name).close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start:\n"
                                         + self.servers[name].log.read_text()[-3000:]) from None
                time.sleep(0.1)

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.pid if proc and proc.poll() is None else None

    def kill(self, name: str) -> None:
        """kill -9 of mariadbd: the supervisor starts it again after `restart_delay`."""
        proc = self._procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self, name: str) -> None:
        """`systemctl stop mariadb`: a clean shutdown, and it stays down."""
        with self._lock:
            self._stopped.add(name)
            proc = self._procs.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)

    def connect(self, name: str, **kwargs) -> pymysql.Connection:
        """root over the server's unix socket, autocommit."""
        return pymysql.connect(unix_socket=self.servers[name].socket, user="root",
                               autocommit=True, connect_timeout=2, **kwargs)

    def query(self, name: str, sql: str, args=None) -> list[tuple]:
        with contextlib.closing(self.connect(name, read_timeout=10)) as conn:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())

    def value(self, name: str, sql: str, args=None):
        rows = self.query(name, sql, args)
        return rows[0][0] if rows else None

    def app(self, name: str, timeout: float = 2.0) -> pymysql.Connection:
        """The application's login over TCP: no privilege past read_only."""
        s = self.servers[name]
        return pymysql.connect(host="127.0.0.1", port=s.port, user=APP_USER,
                               password=APP_PASSWORD, database="app", autocommit=True,
                               connect_timeout=timeout, read_timeout=timeout,
                               write_timeout=timeout)

    def provision(self, name: str) -> None:
        """The users and the app's table, on this server only (not binlogged)."""
        statements = [
            "SET SESSION sql_log_bin = 0",
            f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'",
            f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'",
            f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}'",
            "CREATE DATABASE IF NOT EXISTS app",
            "CREATE TABLE IF NOT EXISTS app.writes (id INT PRIMARY KEY, at DOUBLE NOT NULL)",
            f"GRANT SELECT, INSERT ON app.* TO '{APP_USER}'@'127.0.0.1'",
        ]
        with contextlib.closing(self.connect(name)) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def log(self, name: str, tail: int = 4000) -> str:
        return self.servers[name].log.read_text()[-tail:]


@contextlib.contextmanager
def running_db_cluster(root: Path, n: int = 2, restart_delay: float = 1.0) -> Iterator[DBCluster]:
    """Servers started and provisioned, every one read-only with an empty GTID history; every
    process killed afterwards, whatever happened."""
    c = DBCluster(root, n, restart_delay)
    try:
        for name in c.servers:
            c.start(name)
            c.provision(name)
        yield c
    finally:
        c.close()


def password_file(root: Path) -> Path:
    """The replication password as the agent reads it: a root-only file."""
    path = root / "replication.password"
    path.write_text(REPL_PASSWORD + "\n")
    os.chmod(path, 0o600)
    return path

"""MariaDB primary + replica: config, users, GTID replication, and what the deploy does with it."""

import json
import shlex
import subprocess
import time

import pytest

from lab.toolkit.deploy import changed_operations, run_deploy
from lab.toolkit.hosts import (
    VIP,
    addr,
    caught_up,
    docker,
    in_netns,
    lab_up,
    replica_status,
    replicating,
    run,
    sql,
    systemd_pid,
    wait_until,
)
from lab.toolkit.http import https_get
from lab.toolkit.streams import CA, Stream
from webstack.mariadb import MONITOR_USER, REPL_USER, SEED_USER

readonly = pytest.mark.readonly
DB = pytest.mark.hosts("databases")
APP_TABLES = ("webstack.notes", "webstack.visits")


def _sql(host, statement: str) -> str:
    """A statement as MariaDB's root over the host's local socket (tab-separated, no headers)."""
    return host.check_output(f"mariadb -N -B -e {shlex.quote(statement)}")


def _variables(host, *names: str) -> dict[str, str]:
    return dict(line.split("\t") for line in _sql(host, " UNION ALL ".join(
        f"SELECT '{n}', @@global.{n}" for n in names)).splitlines())


# --- specs: safe against any inventory ------------------------------------------------------

@readonly
@DB
def test_mariadb_config_and_listening_address(hosts, stack, name):
    h, me = hosts[name], stack.host(name)
    assert h.package("mariadb-server").is_installed and h.service("mariadb").is_running
    assert h.socket(f"tcp://{me.address}:{me.mysql_port}").is_listening
    assert not h.socket(f"tcp://0.0.0.0:{me.mysql_port}").is_listening
    values = _variables(h, "binlog_format", "log_bin", "log_slave_updates", "gtid_strict_mode",
                        "sync_binlog", "innodb_flush_log_at_trx_commit", "skip_name_resolve",
                        "local_infile", "log_bin_basename", "server_id")
    assert values["binlog_format"] == "ROW"
    assert values["log_bin"] == values["log_slave_updates"] == values["gtid_strict_mode"] == "1"
    assert values["sync_binlog"] == values["innodb_flush_log_at_trx_commit"] == "1"
    assert values["skip_name_resolve"] == "1" and values["local_infile"] == "0"
    assert values["log_bin_basename"] == f"/var/lib/mysql/{name}-bin"
    assert int(values["server_id"]) == me.mysql_server_id_effective  # unique: settings check it


@readonly
def test_one_writable_primary_every_other_database_replicates_from_it(hosts, stack):
    """Whichever host is the primary now (a failover may have moved it): exactly one is
    writable, and every other is read-only and replicates from it with GTID."""
    dbs = stack.group("databases")
    writable = [db for db in dbs if _sql(hosts[db.name], "SELECT @@global.read_only") == "0"]
    assert len(writable) == 1, f"writable databases: {[db.name for db in writable]}"
    primary = writable[0]
    for db in dbs:
        if db is primary:
            continue
        status = {k.strip(): v.strip() for k, _, v in (
            line.partition(":") for line in hosts[db.name].check_output(
                "mariadb -e 'SHOW SLAVE STATUS\\G'").splitlines() if ":" in line)}
        assert status.get("Master_Host") == primary.address, db.name
        assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes", db.name
        assert status["Using_Gtid"] == "Slave_Pos", db.name


@readonly
@DB
def test_secure_baseline(hosts, name):
    h = hosts[name]
    assert _sql(h, "SELECT COUNT(*) FROM mysql.user WHERE user = '' OR host = '%'") == "0"
    assert _sql(h, "SHOW DATABASES LIKE 'test'") == ""
    assert "unix_socket" in _sql(h, "SHOW CREATE USER root@localhost")


@readonly
@DB
def test_users_come_only_from_the_hosts_that_need_them(hosts, stack, name):
    h, app_user = hosts[name], stack.group("webservers")[0].app_db_user
    users = (app_user, REPL_USER, SEED_USER, MONITOR_USER)
    rows = set(_sql(h, "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE user IN "
                       f"({', '.join(repr(u) for u in users)})").splitlines())
    # Replication users for every database host: after a failover any of them is a replica.
    assert rows == ({f"{app_user}@{a}" for a in stack.addresses("webservers")}
                    | {f"{u}@{a}" for u in (REPL_USER, SEED_USER)
                       for a in stack.addresses("databases")}
                    | {f"{MONITOR_USER}@{a}" for a in stack.addresses("monitoring")})
    some_db = stack.addresses("databases")[-1]
    grants = _sql(h, f"SHOW GRANTS FOR '{REPL_USER}'@'{some_db}'")
    assert "GRANT REPLICATION SLAVE ON *.*" in grants and "webstack" not in grants
    app = _sql(h, f"SHOW GRANTS FOR '{app_user}'@'{stack.addresses('webservers')[0]}'")
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON `webstack`.*" in app
    assert "GRANT USAGE ON *.*" in app  # nothing global beyond login


# --- the lab ---------------------------------------------------------------------------------

def tables_match() -> bool:
    """Row counts and CHECKSUM TABLE of the app's tables are the same on both hosts."""
    query = "; ".join(f"SELECT COUNT(*) FROM {t}; CHECKSUM TABLE {t}" for t in APP_TABLES)
    return sql("db-01", query) == sql("db-02", query)


def post_note(text: str):
    return https_get(f"https://{VIP}/api/notes", CA, method="POST",
                     data=json.dumps({"text": text}).encode(),
                     headers={"Content-Type": "application/json"})


@pytest.mark.lab
def test_after_a_reboot_mariadb_listens_on_its_own_address_only():
    docker("restart", "-t", "5", "db-02")
    listening = f"{addr('db-02')}:3306"
    assert wait_until(lambda: listening in run("db-02", "ss", "-ltn").stdout,
                      timeout=60) is not None
    assert "*:3306" not in run("db-02", "ss", "-ltn").stdout
    assert wait_until(lambda: replicating("db-02"), timeout=30) is not None


@pytest.mark.lab
def test_note_written_through_the_floating_ip_reaches_the_replica():
    text = f"replicated-{time.time()}"
    status, _, body = post_note(text)
    assert status == 201 and json.loads(body)["written_to"] == addr("db-01")
    assert sql("db-01", f"SELECT COUNT(*) FROM webstack.notes WHERE text='{text}'") == "1"
    assert wait_until(lambda: sql("db-02", f"SELECT COUNT(*) FROM webstack.notes "
                                           f"WHERE text='{text}'") == "1", timeout=2) is not None
    status, _, body = https_get(f"https://{VIP}/api/notes", CA)
    assert text in [n["text"] for n in json.loads(body)["notes"]]


def _login(source: str, db: str, user: str, secret: str, statement: str):
    """A real login from the source host's own network namespace (its address, its firewall).
    The password goes through MYSQL_PWD, not the command line."""
    return subprocess.run(in_netns(source, "mariadb", "--connect-timeout=3", "-h", addr(db), "-u",
                                   user, "webstack", "-e", statement),
                          capture_output=True, text=True, timeout=30,
                          env={"MYSQL_PWD": secret, "PATH": "/usr/bin:/bin"})


@pytest.mark.lab
def test_replica_refuses_the_apps_writes(stack):
    secret = stack.secrets["mysql_app_password"]
    refused = _login("web-01", "db-02", "webstack", secret,
                     "INSERT INTO notes (text, web_server) VALUES ('x', 'test')")
    assert refused.returncode != 0 and "read-only" in refused.stderr
    allowed = _login("web-01", "db-01", "webstack", secret, "SELECT 1")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.lab
@pytest.mark.parametrize("source", ["lb-01", "monitor-01"])
def test_app_user_cannot_log_in_from_other_hosts(stack, source):
    login = _login(source, "db-01", "webstack", stack.secrets["mysql_app_password"], "SELECT 1")
    assert login.returncode != 0
    # monitor-01 may reach the port (its exporters log in as another user); lb-01 may not.
    expected = "Access denied" if source == "monitor-01" else "Can't connect"
    assert expected in login.stderr, login.stderr


@pytest.mark.lab
def test_replication_user_cannot_read_app_tables(stack):
    login = _login("db-02", "db-01", REPL_USER, stack.secrets["mysql_replication_password"],
                   "SELECT * FROM webstack.notes")
    assert login.returncode != 0 and "denied" in login.stderr


@pytest.mark.lab
def test_replica_restart_during_writes_catches_up():
    with Stream("/api/notes", method="POST") as writes:
        assert writes.wait_for(10)
        run("db-02", "systemctl", "restart", "mariadb", timeout=120, check=True)
        assert writes.wait_for(10)
    assert writes.failures == [], "writes to the primary failed while the replica restarted"
    assert wait_until(tables_match, timeout=30) is not None
    assert replicating("db-02")


@pytest.mark.lab
def test_stopped_replication_fails_the_deploy_with_the_reason():
    sql("db-02", "STOP SLAVE SQL_THREAD")
    try:
        result = run_deploy("--limit", "databases")
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "replication on db-02 is broken: IO thread Yes, SQL thread No" in output
    finally:
        sql("db-02", "START SLAVE SQL_THREAD")
    assert replica_status("db-02")["Slave_SQL_Running"] == "Yes"


@pytest.mark.lab
def test_broken_replica_is_reseeded_only_when_asked():
    sql("db-02", "STOP SLAVE SQL_THREAD")
    sql("db-01", "INSERT INTO webstack.notes (text, web_server) VALUES ('while-broken', 't')")
    result = run_deploy("--limit", "databases", "--data", "mysql_reseed_replicas=True")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Re-seed this replica (mysql_reseed_replicas)" in result.stdout + result.stderr
    assert replicating("db-02")
    assert wait_until(tables_match, timeout=30) is not None
    assert changed_operations(run_deploy("--json", "--limit", "databases")) == []  # healthy now


@pytest.mark.lab
def test_deploy_never_restarts_mariadb():
    pids = {name: systemd_pid(name, "mariadb") for name in ("db-01", "db-02")}
    result = run_deploy("--limit", "databases")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {name: systemd_pid(name, "mariadb") for name in ("db-01", "db-02")} == pids


@pytest.mark.lab
def test_destroyed_replica_is_seeded_from_the_primary():
    """db-02's container and data are destroyed; a deploy rebuilds it from the primary."""
    for i in range(20):
        assert post_note(f"before-destroy-{i}")[0] == 201
    docker("rm", "-f", "-v", "db-02")
    tag = f"while-gone-{time.time()}"
    for i in range(20):
        assert post_note(f"{tag}-{i}")[0] == 201
    lab_up()
    result = run_deploy()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Seed this new replica from the primary" in result.stdout + result.stderr
    assert wait_until(tables_match, timeout=30) is not None
    status = replica_status("db-02")
    assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"
    assert status["Using_Gtid"] == "Slave_Pos"
    assert wait_until(lambda: caught_up("db-02", "db-01"), timeout=30) is not None
    assert sql("db-02", f"SELECT COUNT(*) FROM webstack.notes WHERE text LIKE '{tag}-%'") == "20"

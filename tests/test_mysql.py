"""MariaDB primary + replica: config, users, GTID replication, and what the deploy does with it."""

import json
import subprocess
import threading
import time

import pytest

from tests.conftest import (
    changed_operations,
    docker_exec,
    https_get,
    lab_hosts,
    replica_status,
    run_deploy,
    sql,
    systemd_pid,
    wait_until,
)
from webstack.secret_loader import load as load_secrets

pytestmark = pytest.mark.lab
DB = lab_hosts("databases")
APP_TABLES = ("webstack.notes", "webstack.visits")


def post_note(lab, text: str):
    return https_get(f"https://{lab.floating_ip}/api/notes", method="POST",
                     data=json.dumps({"text": text}).encode(),
                     headers={"Content-Type": "application/json"})


def tables_match() -> bool:
    """Row counts and CHECKSUM TABLE of the app's tables are the same on both hosts."""
    query = "; ".join(f"SELECT COUNT(*) FROM {t}; CHECKSUM TABLE {t}" for t in APP_TABLES)
    return sql("db-01", query) == sql("db-02", query)


# --- specs --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DB)
def test_mariadb_config_and_listening_address(hosts, lab, name):
    h = hosts[name]
    assert h.package("mariadb-server").is_installed and h.service("mariadb").is_running
    address = lab.host(name).address
    assert h.socket(f"tcp://{address}:3306").is_listening
    assert not h.socket("tcp://0.0.0.0:3306").is_listening
    values = dict(line.split("\t") for line in sql(name, (
        "SELECT 'binlog_format', @@binlog_format UNION ALL SELECT 'log_bin', @@log_bin "
        "UNION ALL SELECT 'log_slave_updates', @@log_slave_updates UNION ALL SELECT "
        "'gtid_strict_mode', @@gtid_strict_mode UNION ALL SELECT 'sync_binlog', @@sync_binlog "
        "UNION ALL SELECT 'flush', @@innodb_flush_log_at_trx_commit UNION ALL SELECT "
        "'skip_name_resolve', @@skip_name_resolve UNION ALL SELECT 'local_infile', "
        "@@local_infile UNION ALL SELECT 'read_only', @@read_only UNION ALL SELECT "
        "'log_bin_basename', @@log_bin_basename")).splitlines())
    assert values["binlog_format"] == "ROW"
    assert values["log_bin"] == values["log_slave_updates"] == values["gtid_strict_mode"] == "1"
    assert values["sync_binlog"] == values["flush"] == values["skip_name_resolve"] == "1"
    assert values["local_infile"] == "0"
    assert values["log_bin_basename"] == f"/var/lib/mysql/{name}-bin"
    assert values["read_only"] == ("1" if "db_replicas" in lab.host(name).groups else "0")


def test_after_a_reboot_mariadb_listens_on_its_own_address_only(hosts, lab):
    subprocess.run(["docker", "restart", "-t", "5", "db-02"], check=True, capture_output=True)
    address = lab.host("db-02").address
    listening = docker_exec("db-02", "ss", "-ltn")
    assert wait_until(lambda: f"{address}:3306" in docker_exec("db-02", "ss", "-ltn").stdout,
                      timeout=60) is not None, listening.stdout
    assert "*:3306" not in docker_exec("db-02", "ss", "-ltn").stdout
    assert wait_until(lambda: replica_status("db-02").get("Slave_SQL_Running") == "Yes",
                      timeout=30) is not None


def test_server_ids_are_unique():
    assert sql("db-01", "SELECT @@server_id") != sql("db-02", "SELECT @@server_id")


@pytest.mark.parametrize("name", DB)
def test_secure_baseline(name):
    assert sql(name, "SELECT COUNT(*) FROM mysql.user WHERE user = '' OR host = '%'") == "0"
    assert sql(name, "SHOW DATABASES LIKE 'test'") == ""
    plugin = sql(name, "SELECT plugin FROM mysql.user WHERE user='root' AND host='localhost'")
    assert plugin in ("unix_socket", "mysql_native_password")
    assert "unix_socket" in sql(name, "SHOW CREATE USER root@localhost")


@pytest.mark.parametrize("name", DB)
def test_users_come_only_from_the_hosts_that_need_them(lab, name):
    rows = set(sql(name, "SELECT CONCAT(user, '@', host) FROM mysql.user "
                         "WHERE user IN ('webstack', 'replicator', 'seeder', 'exporter')"
                   ).splitlines())
    addr = {h.name: h.address for h in lab.hosts}
    webs = [h.name for h in lab.hosts if "webservers" in h.groups]
    # Replication users for every database host: after a failover any of them is a replica.
    assert rows == ({f"webstack@{addr[w]}" for w in webs}
                    | {f"{user}@{addr[db]}" for user in ("replicator", "seeder") for db in DB}
                    | {f"exporter@{addr['monitor-01']}"})
    grants = sql(name, f"SHOW GRANTS FOR 'replicator'@'{addr['db-02']}'")
    assert "GRANT REPLICATION SLAVE ON *.*" in grants and "webstack" not in grants
    app = sql(name, f"SHOW GRANTS FOR 'webstack'@'{addr['web-01']}'")
    assert "GRANT SELECT, INSERT, UPDATE, DELETE ON `webstack`.*" in app
    assert "ON *.*" in app and "GRANT USAGE ON *.*" in app  # nothing global beyond login


def test_replica_threads_run_with_gtid():
    status = replica_status("db-02")
    assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"
    assert status["Using_Gtid"] == "Slave_Pos"


# --- end to end ----------------------------------------------------------------------------

def test_note_written_through_the_floating_ip_reaches_the_replica(lab):
    text = f"replicated-{time.time()}"
    status, _, body = post_note(lab, text)
    assert status == 201 and json.loads(body)["written_to"] == lab.host("db-01").address
    assert sql("db-01", f"SELECT COUNT(*) FROM webstack.notes WHERE text='{text}'") == "1"
    assert wait_until(lambda: sql("db-02", f"SELECT COUNT(*) FROM webstack.notes "
                                           f"WHERE text='{text}'") == "1", timeout=2) is not None
    status, _, body = https_get(f"https://{lab.floating_ip}/api/notes")
    assert text in [n["text"] for n in json.loads(body)["notes"]]


def _as_app_user(web: str, db_address: str, statement: str) -> subprocess.CompletedProcess:
    password = load_secrets("lab")["mysql_app_password"]
    code = ("import pymysql,sys\n"
            f"c=pymysql.connect(host='{db_address}',user='webstack',password='{password}',"
            "database='webstack',connect_timeout=3)\n"
            f"c.cursor().execute(\"{statement}\"); c.commit()")
    return docker_exec(web, "python3", "-c", code)


def test_replica_refuses_the_apps_writes(lab):
    refused = _as_app_user("web-01", lab.host("db-02").address,
                           "INSERT INTO notes (text, web_server) VALUES ('x', 'test')")
    assert refused.returncode != 0 and "read-only" in refused.stderr
    allowed = _as_app_user("web-01", lab.host("db-01").address, "SELECT 1")
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("source", ["lb-01", "monitor-01"])
def test_app_user_cannot_log_in_from_other_hosts(lab, source):
    """A real login as the app's user, from the source host's own network namespace."""
    hosts = sql("db-01", "SELECT host FROM mysql.user WHERE user='webstack'").split()
    assert hosts and lab.host(source).address not in hosts
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", source], check=True,
                         capture_output=True, text=True).stdout.strip()
    password = load_secrets("lab")["mysql_app_password"]
    login = subprocess.run(
        ["nsenter", "-t", pid, "-n", "mariadb", "--connect-timeout=3", "-h",
         lab.host("db-01").address, "-u", "webstack", f"-p{password}", "-e", "SELECT 1"],
        capture_output=True, text=True, timeout=30)
    assert login.returncode != 0
    # monitor-01 may reach the port (its exporters log in as another user); lb-01 may not.
    expected = "Access denied" if source == "monitor-01" else "Can't connect"
    assert expected in login.stderr, login.stderr


def test_replication_user_cannot_read_app_tables(lab):
    password = load_secrets("lab")["mysql_replication_password"]
    result = docker_exec("db-02", "mariadb", "-h", lab.host("db-01").address, "-u",
                         "replicator", f"-p{password}", "-e", "SELECT * FROM webstack.notes")
    assert result.returncode != 0 and "denied" in result.stderr


def test_replica_restart_during_writes_catches_up(lab):
    errors, sent = [], []

    def write():
        for i in range(150):
            status, _, _ = post_note(lab, f"during-restart-{i}")
            (sent if status == 201 else errors).append(i)
            time.sleep(0.02)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.5)
    docker_exec("db-02", "systemctl", "restart", "mariadb")
    writer.join()
    assert errors == [], "writes to the primary failed while the replica restarted"
    assert wait_until(tables_match, timeout=30) is not None
    status = replica_status("db-02")
    assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"


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


def test_broken_replica_is_reseeded_only_when_asked():
    sql("db-02", "STOP SLAVE SQL_THREAD")
    sql("db-01", "INSERT INTO webstack.notes (text, web_server) VALUES ('while-broken', 't')")
    result = run_deploy("--limit", "databases", "--data", "mysql_reseed_replicas=True")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Re-seed this replica (mysql_reseed_replicas)" in result.stdout + result.stderr
    status = replica_status("db-02")
    assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"
    assert wait_until(tables_match, timeout=30) is not None
    assert changed_operations(run_deploy("--json", "--limit", "databases")) == []  # healthy now


def test_deploy_never_restarts_mariadb(hosts):
    pids = {name: systemd_pid(hosts[name], "mariadb") for name in DB}
    result = run_deploy("--limit", "databases")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {name: systemd_pid(hosts[name], "mariadb") for name in DB} == pids


def test_destroyed_replica_is_seeded_from_the_primary(lab):
    """db-02's container and data are destroyed; a deploy rebuilds it from the primary."""
    for i in range(20):
        assert post_note(lab, f"before-destroy-{i}")[0] == 201
    subprocess.run(["docker", "rm", "-f", "-v", "db-02"], check=True, capture_output=True)
    run = f"while-gone-{time.time()}"
    for i in range(20):
        assert post_note(lab, f"{run}-{i}")[0] == 201
    up = subprocess.run(["python3", "lab/lab.py", "up"], capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    result = run_deploy()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Seed this new replica from the primary" in result.stdout + result.stderr
    assert wait_until(tables_match, timeout=30) is not None
    status = replica_status("db-02")
    assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"
    assert status["Using_Gtid"] == "Slave_Pos"
    gone = f"SELECT COUNT(*) FROM webstack.notes WHERE text LIKE '{run}-%'"
    assert sql("db-02", gone) == "20"

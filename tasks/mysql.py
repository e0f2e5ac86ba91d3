"""MariaDB on the database hosts: one primary takes the writes, replicas copy its binlog (GTID).

- Config in two drop-ins: settings that need a restart, and dynamic ones applied with SET GLOBAL,
  so a re-run never restarts MariaDB unless a restart-only setting changed. Both are checked with
  `mariadbd --help --verbose` (which rejects unknown or bad options) before they are installed.
- Users, grants, the app's schema and the heartbeat are made on the primary only and reach the
  replicas through replication (writing them on a replica would break GTID replication).
- A replica is configured once: straight away when the primary has no data yet, else seeded
  from a consistent, streamed dump of the primary. A healthy replica is left alone; a broken one
  fails the deploy with its error, and is re-seeded only when asked (mysql_reseed_replicas).
Reads MySQLSettings (group_data/databases.py); proven by tests/test_mysql.py.
"""

import hashlib
import io
import re
import shlex

from pyinfra import host, inventory
from pyinfra.facts.mysql import MysqlUsers
from pyinfra.operations import apt, files, mysql, server, systemd
from pyinfra.operations.util import any_changed

from webstack import ROOT
from webstack.context import me, stack
from webstack.facts import MariaDBState
from webstack.ops import validated_template

CONF_DIR = "/etc/mysql/mariadb.conf.d"
CHECK = "mariadbd --help --verbose"
REPL_USER, SEED_USER, MONITOR_USER = "replicator", "seeder", "exporter"
SECRET_MARKER = "/var/lib/ha-webstack/replication-secret.sha256"

s = me()
st = stack()
primary = st.group("db_primary")[0]
is_primary = host.name == primary.name
secrets = st.secrets


def dynamic_settings() -> dict:
    semi = s.mysql_semi_sync
    return {
        "read_only": "OFF" if is_primary else "ON",
        "event_scheduler": "ON" if is_primary else "OFF",  # only the primary beats the heartbeat
        "gtid_strict_mode": "ON",
        "sync_binlog": 1,
        "innodb_flush_log_at_trx_commit": 1,
        "binlog_expire_logs_seconds": s.mysql_binlog_retention_days * 86400,
        "local_infile": "OFF",
        "max_connections": s.mysql_max_connections,
        "rpl_semi_sync_master_enabled": "ON" if semi and is_primary else "OFF",
        "rpl_semi_sync_slave_enabled": "ON" if semi and not is_primary else "OFF",
        "rpl_semi_sync_master_wait_point": "AFTER_SYNC",
        "rpl_semi_sync_master_timeout": s.mysql_semi_sync_timeout_ms,
    }


def sql(statement: str) -> str:
    return f"mariadb -e {shlex.quote(statement)}"


# --- server and config ----------------------------------------------------------------------

apt.packages(name="MariaDB (Debian's default-mysql-server)",
             packages=["default-mysql-server", "default-mysql-client"], no_recommends=True)
static = validated_template(
    "templates/mysql/60-ha-webstack.cnf.j2", f"{CONF_DIR}/60-ha-webstack.cnf", validate=CHECK,
    s=s, address=me().address, hostname=host.name, server_id=me().mysql_server_id_effective)
dynamic_values = dynamic_settings()
dynamic = validated_template(
    "templates/mysql/61-ha-webstack-dynamic.cnf.j2", f"{CONF_DIR}/61-ha-webstack-dynamic.cnf",
    validate=CHECK, dynamic=dynamic_values)
# Debian enables mariadb.socket: after a reboot systemd itself listens on *:3306, ignoring
# bind-address, and starts MariaDB on the first connection, even one meant to find it stopped.
socket = systemd.service(name="No socket activation (mariadb.socket)",
                         service="mariadb.socket", running=False, enabled=False)
systemd.service(name="Restart MariaDB (a restart-only setting changed)", service="mariadb",
                running=True, enabled=True, restarted=True, _if=any_changed(static, socket))
server.shell(name="Apply dynamic settings with SET GLOBAL (no restart)",
             commands=[sql("; ".join(f"SET GLOBAL {k} = {v}" for k, v in dynamic_values.items()))],
             _if=dynamic.did_change)
systemd.service(name="MariaDB running and enabled", service="mariadb", running=True, enabled=True)


# --- primary: baseline, users, schema, heartbeat ------------------------------------------

def native_password_hash(password: str) -> str:
    """MariaDB's mysql_native_password hash: '*' + upper hex of SHA1(SHA1(password))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def desired_users() -> dict[tuple[str, str], tuple[str, list[tuple[list[str], str]]]]:
    """(user, host) -> (password, [(privileges, database)]) from the inventory and secrets."""
    app = st.group("webservers")[0] if st.group("webservers") else None
    users = {}
    if app:
        for web in st.group("webservers"):
            users[(app.app_db_user, web.address)] = (secrets["mysql_app_password"], [
                (["SELECT", "INSERT", "UPDATE", "DELETE"], app.app_db_name),
                (["SELECT"], "ha_heartbeat")])
    for replica in st.group("db_replicas"):
        users[(REPL_USER, replica.address)] = (secrets["mysql_replication_password"],
                                               [(["REPLICATION SLAVE"], "*")])
        # Seeding a new replica reads a consistent dump of the primary (mariadb-dump --gtid).
        users[(SEED_USER, replica.address)] = (secrets["mysql_seed_password"], [
            (["SELECT", "LOCK TABLES", "SHOW VIEW", "EVENT", "TRIGGER", "RELOAD",
              "BINLOG MONITOR"], "*")])
    for monitor in st.group("monitoring"):
        users[(MONITOR_USER, monitor.address)] = (secrets["mysql_monitor_password"], [
            (["PROCESS", "BINLOG MONITOR", "SLAVE MONITOR"], "*"), (["SELECT"], "ha_heartbeat")])
    return users


def primary_tasks() -> None:
    existing = host.get_fact(MysqlUsers)
    wanted = desired_users()
    managed_names = {user for user, _ in wanted} | {REPL_USER, SEED_USER, MONITOR_USER}
    for key in existing:
        name, _, where = key.partition("@")
        stale = name in managed_names and (name, where) not in wanted
        if name == "" or where == "%" or stale:
            mysql.user(name=f"Remove user {key!r} (anonymous, wildcard or stale)", user=name,
                       user_hostname=where, present=False)
    mysql.database(name="No test database", database="test", present=False)

    state = host.get_fact(MariaDBState)
    if "ha_heartbeat.beat" not in state.get("events", []):
        mysql.sql(name="Replication heartbeat (event writing the time every second)",
                  sql=(ROOT / "templates/mysql/heartbeat.sql").read_text())
    for web in st.group("webservers")[:1]:
        mysql.database(name=f"App database {web.app_db_name}", database=web.app_db_name,
                       charset="utf8mb4")
        schema_file = ROOT / web.app_source / web.app_schema_file
        if web.app_schema_file and schema_file.is_file():
            schema = schema_file.read_text()
            tables = re.findall(r"CREATE TABLE IF NOT EXISTS `?(\w+)", schema, re.I)
            if any(f"{web.app_db_name}.{t}" not in state.get("tables", []) for t in tables):
                mysql.sql(name="App schema", sql=schema, database=web.app_db_name)

    for (user, where), (password, grants) in sorted(wanted.items()):
        mysql.user(name=f"User {user}@{where}", user=user, user_hostname=where,
                   password=password)
        # pyinfra's mysql.user sets a password only on creation; a rotated secret is applied
        # here, when the stored hash is not the secret's.
        current = existing.get(f"{user}@{where}", {}).get("authentication_string")
        if current is not None and current != native_password_hash(password):
            mysql.sql(name=f"Password of {user}@{where} (secret changed)",
                      sql=f"ALTER USER '{user}'@'{where}' IDENTIFIED BY '{password}'")
        for privileges, database in grants:
            mysql.privileges(name=f"Grants of {user}@{where} on {database}", user=user,
                             user_hostname=where, privileges=privileges, database=database)


# --- replicas -----------------------------------------------------------------------------

def change_master() -> str:
    password = secrets["mysql_replication_password"]
    return (f"CHANGE MASTER TO MASTER_HOST='{primary.address}', MASTER_PORT={s.mysql_port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{password}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=5")


def seed_commands() -> list[str]:
    """Stream a consistent dump of the primary into this replica, then replicate from its GTID.

    Applied with sql_log_bin=0: the copy must not become this replica's own transactions.
    """
    dump = (f"MYSQL_PWD={shlex.quote(secrets['mysql_seed_password'])} mariadb-dump "
            f"-h {primary.address} -P {s.mysql_port} -u {SEED_USER} --single-transaction "
            "--gtid --master-data=1 --events --routines --triggers --system=users --insert-ignore "
            f"--databases {' '.join(s.mysql_app_databases)}")
    return [f"set -o pipefail; {{ echo 'SET SESSION sql_log_bin=0;'; {dump}; }} | mariadb",
            sql(f"{change_master()}; START SLAVE")]


def replica_problem(status: dict) -> str:
    """'' when replication is healthy, else what is wrong, in MariaDB's own words."""
    if status.get("Master_Host") != primary.address:
        return (f"replicates from {status.get('Master_Host')}, but the inventory's primary is "
                f"{primary.address} ({primary.name})")
    errors = [f"{kind} thread error {status.get(f'Last_{kind}_Errno')}: "
              f"{status.get(f'Last_{kind}_Error')}" for kind in ("IO", "SQL")
              if status.get(f"Last_{kind}_Errno", "0") != "0"]
    if status.get("Slave_SQL_Running") != "Yes" or status.get("Slave_IO_Running") == "No":
        errors.insert(0, f"IO thread {status.get('Slave_IO_Running')}, "
                         f"SQL thread {status.get('Slave_SQL_Running')}")
    return "; ".join(errors)


def replication_secret_fingerprint():
    """A hash of the replication secret on the replica, to see when the secret rotates."""
    digest = hashlib.sha256(secrets["mysql_replication_password"].encode()).hexdigest()
    return files.put(name="Replication secret fingerprint", src=io.StringIO(digest + "\n"),
                     dest=SECRET_MARKER, mode="600")


def replica_tasks() -> None:
    mine = host.get_fact(MariaDBState)
    status = mine.get("replica", {})
    primary_has_data = bool(inventory.get_host(primary.name).get_fact(MariaDBState)
                            .get("gtid_binlog_pos"))
    if not status:
        replication_secret_fingerprint()
        if primary_has_data:
            server.shell(name="Seed this new replica from the primary, then replicate",
                         commands=seed_commands(), _shell_executable="bash")
        else:
            server.shell(name="Replicate from the (empty) primary",
                         commands=[sql(f"{change_master()}; START SLAVE")])
        return
    # The replication password lives in the replica's master.info: apply a rotated secret.
    marker = replication_secret_fingerprint()
    password = secrets["mysql_replication_password"]
    server.shell(name="Apply the rotated replication password",
                 commands=[sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_PASSWORD='{password}'; "
                               "START SLAVE")], _if=marker.did_change)
    problem = replica_problem(status)
    if problem and s.mysql_reseed_replicas:
        drop = "; ".join(f"DROP DATABASE IF EXISTS {db}" for db in s.mysql_app_databases)
        server.shell(name="Re-seed this replica (mysql_reseed_replicas): its copy is replaced",
                     commands=[sql(f"STOP SLAVE; RESET SLAVE ALL; SET SESSION sql_log_bin=0; "
                                   f"{drop}; RESET MASTER"), *seed_commands()],
                     _shell_executable="bash")
    elif problem:
        message = (f"ha-webstack: replication on {host.name} is broken: {problem}. The deploy "
                   "does not repair it on its own. Fix the cause, or re-seed this replica "
                   "from the primary (destroys its copy): see README.md, 'The database': "
                   "deploy with --limit " + host.name + " --data mysql_reseed_replicas=True")
        server.shell(name="Replication is broken: stop here",
                     commands=[f"echo {shlex.quote(message)} >&2; exit 1"])


if is_primary:
    primary_tasks()
else:
    replica_tasks()

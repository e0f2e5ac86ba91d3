"""MariaDB on the database hosts: one primary takes the writes, replicas copy its binlog (GTID).

- Config in two drop-ins: settings that need a restart, and dynamic ones applied with SET GLOBAL,
  so a re-run never restarts MariaDB unless a restart-only setting changed. Both are checked with
  `mariadbd --help --verbose` (which rejects unknown or bad options) before they are installed.
- Users, grants, the app's schema and the heartbeat are made on the primary only and reach the
  replicas through replication (writing them on a replica would break GTID replication).
- A replica is configured once: straight away when the primary has no data yet, else seeded
  from a consistent, streamed dump of the primary. A healthy replica is left alone; a broken one
  fails the deploy with its error, and is re-seeded only when asked (mysql_reseed_replicas).
- A former primary joining as a replica (after ops/promote_replica.py) replicates from the new
  primary as it is when it has nothing the new primary lacks (GTIDs). Otherwise it is re-seeded,
  a dump of its data kept, only when asked or when an unplanned failover fenced it.
- That the inventory's primary really is the primary is checked before anything runs
  (webstack/mariadb.py: inventory_role_problem, called by deploy.py).
- With mysql_failover = "automatic" the database agents decide who is primary
  (webstack/db_agent.py: primary_now): users and schema go to that host, replicas are checked
  against it, read_only, the heartbeat's scheduler and semi-sync are left to the agents, and a
  former primary is rejoined by its own agent, not by the deploy.
Reads MySQLSettings (group_data/databases.py); proven by tests/test_mysql.py.
"""

import hashlib
import re
import shlex

from pyinfra import host, inventory
from pyinfra.facts.mysql import MysqlUsers
from pyinfra.operations import apt, mysql, server, systemd
from pyinfra.operations.util import any_changed

from webstack import ROOT
from webstack.context import me, stack
from webstack.db_agent import DbAgentRole, listen, primary_now
from webstack.facts import MariaDBState
from webstack.mariadb import (
    BACKUP_DIR,
    CHECK,
    CONF_DIR,
    MONITOR_USER,
    REPL_USER,
    SEED_USER,
    change_master,
    dynamic_config,
    replication_secret_marker,
    runtime_settings,
    set_global,
    sql,
    transactions_missing_on,
)
from webstack.ops import validated_template
from webstack.run_state import OTHER_HOSTS

s = me()
st = stack()
primary = primary_now(st)
is_primary = host.name == primary.name
secrets = st.secrets


def fail(name: str, message: str) -> None:
    """An operation that stops this host's deploy with `message` (nothing after it runs)."""
    server.shell(name=name, commands=[f"echo {shlex.quote('ha-webstack: ' + message)} >&2; exit 1"])


# --- server and config ----------------------------------------------------------------------

apt.packages(name="MariaDB (Debian's default-mysql-server)",
             packages=["default-mysql-server", "default-mysql-client"], no_recommends=True)
static = validated_template(
    "templates/mysql/60-ha-webstack.cnf.j2", f"{CONF_DIR}/60-ha-webstack.cnf", validate=CHECK,
    s=s, address=me().address, hostname=host.name, server_id=me().mysql_server_id_effective)
dynamic_values, dynamic = dynamic_config(s, is_primary)
# Debian enables mariadb.socket: after a reboot systemd itself listens on *:3306, ignoring
# bind-address, and starts MariaDB on the first connection, even one meant to find it stopped.
socket = systemd.service(name="No socket activation (mariadb.socket)",
                         service="mariadb.socket", running=False, enabled=False)
systemd.service(name="Restart MariaDB (a restart-only setting changed)", service="mariadb",
                running=True, enabled=True, restarted=True, _if=any_changed(static, socket))
server.shell(name="Apply dynamic settings with SET GLOBAL (no restart)",
             commands=[sql(set_global(runtime_settings(s, dynamic_values)))],
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
    # Every database host, not just today's replicas: after a failover any of them replicates
    # from any other (ops/promote_replica.py), and the users must already be there.
    for replica in st.group("databases"):
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
    elif "ha_heartbeat.beat" in state.get("disabled_events", []):
        # Events arrive disabled through replication: a promoted replica turns its beat on.
        mysql.sql(name="Replication heartbeat enabled (this host was promoted)",
                  sql="ALTER EVENT ha_heartbeat.beat ENABLE")
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

def replicate_from_primary() -> str:
    return change_master(primary.address, s.mysql_port, secrets["mysql_replication_password"])


def seed_commands() -> list[str]:
    """Stream a consistent dump of the primary into this replica, then replicate from its GTID.

    Applied with sql_log_bin=0: the copy must not become this replica's own transactions.
    """
    dump = (f"MYSQL_PWD={shlex.quote(secrets['mysql_seed_password'])} mariadb-dump "
            f"-h {primary.address} -P {s.mysql_port} -u {SEED_USER} --single-transaction "
            "--gtid --master-data=1 --events --routines --triggers --system=users --insert-ignore "
            f"--databases {' '.join(s.mysql_app_databases)}")
    return [f"set -o pipefail; {{ echo 'SET SESSION sql_log_bin=0;'; {dump}; }} | mariadb",
            sql(f"{replicate_from_primary()}; START SLAVE")]


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
    return replication_secret_marker(secrets["mysql_replication_password"])


def reseed_commands() -> list[str]:
    """Replace this host's copy with the primary's: a dump of it is kept first."""
    drop = "; ".join(f"DROP DATABASE IF EXISTS {db}" for db in s.mysql_app_databases)
    backup = (f"mkdir -p -m 700 {BACKUP_DIR} && mariadb-dump --all-databases --single-transaction "
              f"--events --routines | gzip > {BACKUP_DIR}/{host.name}-$(date -u +%Y%m%dT%H%M%SZ)"
              ".sql.gz")
    return [f"set -o pipefail; umask 077; {backup}",
            sql(f"STOP SLAVE; RESET SLAVE ALL; SET SESSION sql_log_bin=0; {drop}; RESET MASTER"),
            *seed_commands()]


def rejoin_tasks(mine: dict, primary_state: dict) -> None:
    """This host holds data but replicates from nobody: a former primary, most likely."""
    missing = transactions_missing_on(primary_state, mine)
    if not missing:
        replication_secret_fingerprint()
        server.shell(name=f"Rejoin as a replica of {primary.name} (nothing to catch up on here)",
                     commands=[sql(f"SET GLOBAL gtid_slave_pos = '{mine['gtid_binlog_pos']}'; "
                                   f"{set_global({'read_only': 'ON'})}; "
                                   f"{replicate_from_primary()}; START SLAVE")])
    elif host.name in primary_state.get("fenced", []) or s.mysql_reseed_replicas:
        why = ("an unplanned failover fenced it" if not s.mysql_reseed_replicas
               else "mysql_reseed_replicas")
        replication_secret_fingerprint()
        server.shell(name=f"Re-seed from {primary.name} ({why}); a dump of the old copy is kept "
                          f"in {BACKUP_DIR}", commands=reseed_commands(), _shell_executable="bash")
    else:
        fail("Holds writes the primary lacks: stop here",
             f"{host.name} holds data and transactions {primary.name} never received "
             f"({', '.join(missing)}). Joining as a replica would discard them. Recover what you "
             f"need, then re-seed it from {primary.name} (a dump of it is kept in {BACKUP_DIR}): "
             f"deploy with --limit {host.name} --data mysql_reseed_replicas=True")


def replica_tasks() -> None:
    mine = host.get_fact(MariaDBState)
    status = mine.get("replica", {})
    with OTHER_HOSTS:  # the primary may be outside --limit: one connection to it, not one each
        primary_state = inventory.get_host(primary.name).get_fact(MariaDBState)
    primary_has_data = bool(primary_state.get("gtid_binlog_pos"))
    if not status and s.mysql_failover == "automatic" and host.get_fact(DbAgentRole, listen(s)):
        # Replicating from nobody while its agent runs: a fenced former primary, or a server
        # restarting or rejoining just now (facts read mid-way). Its agent rejoins it, or keeps
        # it fenced; seeding it here would overwrite a copy that holds data.
        return
    if not status and mine.get("gtid_binlog_pos"):
        rejoin_tasks(mine, primary_state)
        return
    if not status:
        replication_secret_fingerprint()
        if primary_has_data:
            server.shell(name="Seed this new replica from the primary, then replicate",
                         commands=seed_commands(), _shell_executable="bash")
        else:
            server.shell(name="Replicate from the (empty) primary",
                         commands=[sql(f"{replicate_from_primary()}; START SLAVE")])
        return
    # The replication password lives in the replica's master.info: apply a rotated secret.
    marker = replication_secret_fingerprint()
    password = secrets["mysql_replication_password"]
    server.shell(name="Apply the rotated replication password",
                 commands=[sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_PASSWORD='{password}'; "
                               "START SLAVE")], _if=marker.did_change)
    problem = replica_problem(status)
    if problem and s.mysql_reseed_replicas:
        server.shell(name="Re-seed this replica (mysql_reseed_replicas): its copy is replaced, "
                          f"a dump of it kept in {BACKUP_DIR}",
                     commands=reseed_commands(), _shell_executable="bash")
    elif problem:
        fail("Replication is broken: stop here",
             f"replication on {host.name} is broken: {problem}. The deploy does not repair it "
             "on its own. Fix the cause, or re-seed this replica from the primary (replaces "
             "its copy, keeping a dump): see docs/runbooks.md: deploy with --limit "
             f"{host.name} --data mysql_reseed_replicas=True")


if is_primary:
    primary_tasks()
    if s.mysql_failover == "automatic":
        # Any host may be a replica after the next failover, rejoined by its agent with the
        # secret as it is then: its fingerprint is kept here too, so the first deploy after
        # that finds nothing to apply.
        replication_secret_fingerprint()
else:
    replica_tasks()

"""MariaDB replication pieces shared by the deploy (tasks/mysql.py) and the failover
(ops/promote_replica.py): the role-dependent settings, CHANGE MASTER, and GTID arithmetic.
"""

import hashlib
import io
import shlex

from pyinfra import inventory
from pyinfra.operations import files

from webstack.facts import MariaDBState
from webstack.ops import validated_template

CONF_DIR = "/etc/mysql/mariadb.conf.d"
DYNAMIC_CNF = f"{CONF_DIR}/61-ha-webstack-dynamic.cnf"
CHECK = "mariadbd --help --verbose"  # rejects unknown or bad options
REPL_USER, SEED_USER, MONITOR_USER = "replicator", "seeder", "exporter"
# Written on the new primary by an unplanned failover: the old primary named here may hold
# writes nobody else has, so when it comes back the deploy re-seeds it (keeping a dump of it).
FENCED_TABLE = "ha_heartbeat.fenced"
FENCED_DDL = (f"CREATE TABLE IF NOT EXISTS {FENCED_TABLE} (host VARCHAR(255) PRIMARY KEY, "
              "address VARCHAR(64) NOT NULL, fenced_at DATETIME NOT NULL, "
              "promoted VARCHAR(255) NOT NULL)")
BACKUP_DIR = "/var/backups/ha-webstack"
SECRET_MARKER = "/var/lib/ha-webstack/replication-secret.sha256"


def sql(statement: str) -> str:
    """A shell command running `statement` as root over the local socket."""
    return f"mariadb -e {shlex.quote(statement)}"


# What the database agent sets at run time where mysql_failover is "automatic" (agent/): who
# writes, who beats the heartbeat, semi-sync. The deploy must not set them behind its back.
AGENT_OWNED = ("read_only", "event_scheduler", "rpl_semi_sync_master_enabled",
               "rpl_semi_sync_slave_enabled", "rpl_semi_sync_master_wait_point",
               "rpl_semi_sync_master_timeout")


def dynamic_settings(s, primary: bool) -> dict:
    """The dynamic settings' values at start (the drop-in); the role decides who writes and who
    beats. With automatic failover every server starts read-only with no events, whatever its
    role: it never writes before its agent says so; semi-sync is the agent's alone."""
    automatic = s.mysql_failover == "automatic"
    writer = primary and not automatic
    semi = s.mysql_semi_sync
    values = {
        "read_only": "OFF" if writer else "ON",
        "event_scheduler": "ON" if writer else "OFF",  # only the primary beats the heartbeat
        "gtid_strict_mode": "ON",
        "sync_binlog": 1,
        "innodb_flush_log_at_trx_commit": 1,
        "binlog_expire_logs_seconds": s.mysql_binlog_retention_days * 86400,
        "local_infile": "OFF",
        "max_connections": s.mysql_max_connections,
        "rpl_semi_sync_master_enabled": "ON" if semi and primary else "OFF",
        "rpl_semi_sync_slave_enabled": "ON" if semi and not primary else "OFF",
        "rpl_semi_sync_master_wait_point": "AFTER_SYNC",
        "rpl_semi_sync_master_timeout": s.mysql_semi_sync_timeout_ms,
    }
    if automatic:
        values = {k: v for k, v in values.items() if not k.startswith("rpl_semi_sync")}
    return values


def runtime_settings(s, values: dict) -> dict:
    """Of the drop-in's values, those the deploy applies to a running server (SET GLOBAL): all
    of them, except, with automatic failover, what the agent owns."""
    if s.mysql_failover != "automatic":
        return values
    return {k: v for k, v in values.items() if k not in AGENT_OWNED}


def dynamic_config(s, primary: bool, **op_args):
    """The drop-in that makes the role's settings survive a restart (validated first).

    Returns (values, install operation); op_args are pyinfra's global arguments (e.g. _if)."""
    values = dynamic_settings(s, primary)
    return values, validated_template(
        "templates/mysql/61-ha-webstack-dynamic.cnf.j2", DYNAMIC_CNF, validate=CHECK,
        dynamic=values, **op_args)


def set_global(values: dict) -> str:
    return "; ".join(f"SET GLOBAL {k} = {v}" for k, v in values.items())


def change_master(primary_address: str, port: int, password: str) -> str:
    return (f"CHANGE MASTER TO MASTER_HOST='{primary_address}', MASTER_PORT={port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{password}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=5")


def replication_secret_marker(password: str, **op_args):
    """A hash of the replication secret on a replica, to see when the secret rotates (the
    password itself lives in the replica's master.info)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return files.put(name="Replication secret fingerprint", src=io.StringIO(digest + "\n"),
                     dest=SECRET_MARKER, mode="600", **op_args)


def parse_gtids(position: str) -> dict[int, tuple[int, int]]:
    """'0-1-100,1-5-7' -> {domain: (server_id, seq_no)}."""
    gtids = {}
    for gtid in filter(None, (p.strip() for p in position.split(","))):
        domain, server_id, seq = (int(x) for x in gtid.split("-"))
        gtids[domain] = (server_id, seq)
    return gtids


def transactions_missing_on(primary_state: dict, host_state: dict) -> list[str]:
    """GTID ranges this host has that the primary never received, e.g. ['0-1-101..0-1-105'].

    The primary holds what it applied as a replica (gtid_slave_pos; kept after a promotion)
    and what it wrote itself (gtid_binlog_pos, its own server_id). With gtid_strict_mode,
    sequence numbers in a domain only grow, so a host whose last GTID in each domain is within
    one of those has nothing the primary lacks and can replicate from it as it is.
    """
    applied = parse_gtids(primary_state.get("gtid_slave_pos", ""))
    written = parse_gtids(primary_state.get("gtid_binlog_pos", ""))
    missing = []
    for domain, (server_id, seq) in parse_gtids(host_state.get("gtid_binlog_pos", "")).items():
        if domain in applied and seq <= applied[domain][1]:
            continue
        if domain in written and written[domain][0] == server_id and seq <= written[domain][1]:
            continue
        first = applied[domain][1] + 1 if domain in applied else 1
        missing.append(f"{domain}-{server_id}-{first}..{domain}-{server_id}-{seq}")
    return missing


def release(version: str) -> tuple[int, int]:
    """'10.11.18-MariaDB-0+deb12u1-log' -> (10, 11): the release a replication rule is about."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def replicates_backwards(primary_version: str, replica_version: str) -> bool:
    """MariaDB replicates from an older release to a newer one (how an upgrade goes: the
    replicas first), never from a newer to an older: the older one cannot read what the newer
    writes. Unknown versions (a server down) decide nothing."""
    if not primary_version or not replica_version:
        return False
    return release(replica_version) < release(primary_version)


def replication_release_problem(stack) -> str:
    """A replica older than the inventory's primary, or ''. Facts are fetched from hosts
    outside --limit too: the rule is about the pair."""
    primaries = stack.group("db_primary")
    if not primaries:
        return ""
    primary_version = inventory.get_host(primaries[0].name).get_fact(MariaDBState).get("version")
    for replica in stack.group("db_replicas"):
        version = inventory.get_host(replica.name).get_fact(MariaDBState).get("version")
        if replicates_backwards(primary_version, version):
            return (f"{replica.name} runs MariaDB {version}, older than its primary "
                    f"{primaries[0].name} ({primary_version}): MariaDB does not replicate from "
                    f"a newer release to an older one. Upgrade {replica.name} to the primary's "
                    f"Debian release first (ops/upgrade_debian.py, docs/upgrades.md)")
    return ""


def inventory_role_problem(stack) -> str:
    """Why the inventory's db_primary is not the host that takes the writes, or ''.

    After a failover (ops/promote_replica.py) the old primary replicates from the new one, or,
    fenced, the new one holds writes the old one never received. A deploy with the inventory
    not yet updated would point the app back at the old primary: it must not start.
    """
    primaries = stack.group("db_primary")
    named = inventory.get_host(primaries[0].name) if primaries else None
    if not named or not named.connected:
        return ""
    mine = named.get_fact(MariaDBState)
    if mine.get("replica"):
        return (f"the inventory makes {named.name} the primary, but it replicates from "
                f"{mine['replica'].get('Master_Host')}")
    for other in stack.group("databases"):
        theirs_host = inventory.get_host(other.name)
        if (other.name == named.name or not theirs_host.connected
                or other.name in mine.get("fenced", [])):  # fenced: the deploy re-seeds it
            continue
        theirs = theirs_host.get_fact(MariaDBState)
        missing = transactions_missing_on(mine, theirs) if theirs.get("running") else []
        if missing and not theirs.get("replica") and theirs.get("read_only") == "0":
            return (f"the inventory makes {named.name} the primary, but {other.name} takes "
                    f"writes and has transactions {named.name} never received "
                    f"({', '.join(missing)})")
    return ""

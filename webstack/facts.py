"""pyinfra facts that pyinfra does not ship: ufw's state.

Written by hand because pyinfra has no ufw fact or operation; ufw's own rules files are the
authoritative record (`ufw status` output omits comments and differs between versions).
"""

from pyinfra.api import FactBase

from webstack.policy import Rule, normalize_source


class UfwRules(FactBase):
    """The user rules ufw holds (IPv4 and IPv6), as canonical Rules."""

    default = list

    def command(self):
        return "cat /etc/ufw/user.rules /etc/ufw/user6.rules 2>/dev/null || true"

    def process(self, output):
        rules = {}
        for line in output:
            if not line.startswith("### tuple ### "):
                continue
            # ufw 0.36: action proto dport dst sport src [dapp sapp] direction [comment=hex],
            # dapp/sapp only in an application-profile rule ("-" for none, spaces as %20).
            fields = line.split()[3:]
            action, proto, dport, _dst, _sport, src = fields[:6]
            rest = [f for f in fields[6:] if not f.startswith("comment=")]
            dapp, sapp = rest[:2] if len(rest) == 3 else ("-", "-")
            comment = next((bytes.fromhex(f[8:]).decode() for f in fields
                            if f.startswith("comment=")), "")
            rule = Rule(action, proto, dport, normalize_source(src), comment,
                        app=_app_name(dapp), source_app=_app_name(sapp))
            rules[rule.key] = rule
        return list(rules.values())


def _app_name(field: str) -> str:
    return "" if field == "-" else field.replace("%20", " ")


class UfwStatus(FactBase):
    """{'active': bool, 'defaults': 'deny (incoming), ...', 'logging': 'on (low)'}."""

    def command(self):
        return "ufw status verbose 2>/dev/null || echo 'Status: absent'"

    def process(self, output):
        status = {"active": False, "defaults": "", "logging": ""}
        for line in output:
            key, _, value = line.partition(":")
            if key == "Status":
                status["active"] = value.strip() == "active"
            elif key == "Default":
                status["defaults"] = value.strip()
            elif key == "Logging":
                status["logging"] = value.strip()
        return status


_STATE_SQL = " UNION ALL ".join([
    "SELECT 'gtid_binlog_pos', @@global.gtid_binlog_pos",
    "SELECT 'gtid_slave_pos', @@global.gtid_slave_pos",
    "SELECT 'table', CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')",
    "SELECT 'event', CONCAT(EVENT_SCHEMA, '.', EVENT_NAME) FROM information_schema.EVENTS",
    "SELECT 'disabled_event', CONCAT(EVENT_SCHEMA, '.', EVENT_NAME) FROM information_schema.EVENTS "
    "WHERE STATUS <> 'ENABLED'",
    "SELECT 'read_only', @@global.read_only",
    "SELECT 'version', @@global.version",
])
# Hosts an unplanned failover fenced (webstack/mariadb.py FENCED_TABLE); the table may not exist.
_FENCED_SQL = "SELECT 'fenced', host FROM ha_heartbeat.fenced"


class MariaDBState(FactBase):
    """What the deploy needs to know of a MariaDB server in one round trip.

    {'running': bool, 'version': str, 'gtid_binlog_pos': str, 'gtid_slave_pos': str,
     'read_only': '0'|'1',
     'tables': [db.table], 'events': [db.event], 'disabled_events': [db.event],
     'fenced': [host name], 'replica': {SHOW SLAVE STATUS field: value} or {}}
    pyinfra's mysql facts cover users, grants and databases; replication state and GTID
    positions they do not, hence this one.
    """

    def command(self):
        return ("command -v mariadb >/dev/null && mariadb -N -B -e \"" + _STATE_SQL + "\" "
                "&& { mariadb -N -B -e \"" + _FENCED_SQL + "\" 2>/dev/null || true; } "
                "&& echo '--replica--' && mariadb -e 'SHOW SLAVE STATUS\\G' "
                "|| echo '--not running--'")

    def process(self, output):
        state = {"running": True, "version": "", "gtid_binlog_pos": "", "gtid_slave_pos": "",
                 "read_only": "", "tables": [], "events": [], "disabled_events": [],
                 "fenced": [], "replica": {}}
        in_replica = False
        for line in output:
            if line == "--not running--":
                state["running"] = False
            elif line == "--replica--":
                in_replica = True
            elif in_replica and ":" in line and not line.startswith("*"):
                key, _, value = line.strip().partition(":")
                state["replica"][key.strip()] = value.strip()
            elif not in_replica and "\t" in line:
                key, _, value = line.partition("\t")
                if key in ("table", "event", "disabled_event"):
                    state[key + "s"].append(value)
                elif key == "fenced":
                    state[key].append(value)
                else:
                    state[key] = value
        return state

    default = dict

"""The database agent (agent/) as the deploy sees it: where its files go, the configuration it
is given, and which database host is the primary now.

With mysql_failover = "automatic" the inventory's db_primary is only the first primary: after a
failover the agents know who holds the leader key, the inventory does not. So the deploy asks
them (`primary_now`) and writes users and schema there, points replicas and the app there, and
never fights the agents over read_only. Shared by tasks/db_agent.py, tasks/mysql.py,
tasks/app.py and deploy.py; proven by tests/test_db_agent.py.
"""

import json

from pyinfra import inventory, state
from pyinfra.api import FactBase

from webstack import etcd
from webstack.mariadb import CONF_DIR, REPL_USER
from webstack.run_state import once
from webstack.settings import Host, Stack

CODE_DIR = "/opt/ha-webstack"  # agent/ is copied to CODE_DIR/agent; run as python3 -m agent...
CONFIG = "/etc/ha-webstack/agent.json"
SECRETS_DIR = "/etc/ha-webstack/agent"
PASSWORD_FILE = f"{SECRETS_DIR}/replication.password"
RECOVERY_FILE = f"{CONF_DIR}/62-ha-webstack-agent.cnf"  # the agent writes it (crash recovery)
UNIT = "ha-webstack-agent"
STATE_DIR = "/var/lib/ha-webstack-agent"  # the unit's StateDirectory: the held lease's id
CHECK = f"cd {CODE_DIR} && python3 -m agent.service --check --config"  # + the file


def switchover_command(to: str) -> str:
    """The planned switchover through the agents (agent/switchover.py), run as root on a
    database host: ops/promote_replica.py's step where mysql_failover is "automatic"."""
    return f"cd {CODE_DIR} && python3 -m agent.switchover --config {CONFIG} --to {to}"


def automatic(stack: Stack) -> bool:
    return any(h.mysql_failover == "automatic" for h in stack.group("databases"))


def listen(h: Host) -> str:
    """address:port of a database host's agent HTTP (its config, the fact, the checks)."""
    return f"{h.address}:{h.db_agent_port}"


def config(stack: Stack, me: Host) -> dict:
    """agent.json for database host `me` (agent/config.py checks it again on the host)."""
    web = stack.group("webservers")
    http = {"listen": listen(me)}
    if web:  # the app's own limit: a replica further behind serves no reads
        http["replica_max_lag"] = web[0].app_replica_max_lag
    return {
        "name": me.name,
        "cluster": me.stack_env,
        "members": {h.name: f"{h.address}:{h.mysql_port}" for h in stack.group("databases")},
        "initial_primary": stack.group("db_primary")[0].name,
        "etcd": {"endpoints": [m.client_url for m in etcd.members(stack)],
                 **etcd.pki_paths(etcd.CLIENT_PKI)},
        "mariadb": {"socket": "/run/mysqld/mysqld.sock", "replication_user": REPL_USER,
                    "replication_password_file": PASSWORD_FILE, "recovery_file": RECOVERY_FILE},
        "policy": {"lease_ttl": me.db_agent_lease_ttl_s,
                   "fence_margin": me.db_agent_fence_margin_s,
                   "anti_flap_window": me.db_agent_anti_flap_window_s},
        "http": http,
        "lease_file": f"{STATE_DIR}/lease",
    }


def config_text(stack: Stack, me: Host) -> str:
    return json.dumps(config(stack, me), indent=2, sort_keys=True) + "\n"


class DbAgentRole(FactBase):
    """What this host's database agent answers on its health endpoints: 'primary' (/primary
    is 200: the writable lease holder), 'replica' (/replica is 200), 'other' (it answers
    neither: fenced, waiting, needs a human), 'down' (installed, not answering), or None (no
    agent installed here)."""

    # A fact is one shell command; the agent's endpoints are plain HTTP on the host's address.
    _SCRIPT = f"""
import os, sys, urllib.error, urllib.request
def status(path):
    try:
        return urllib.request.urlopen(f"http://{{sys.argv[1]}}/{{path}}", timeout=2).status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None
p, r = status("primary"), status("replica")
installed = os.path.exists("/etc/systemd/system/{UNIT}.service")
print("primary" if p == 200 else "replica" if r == 200 else "other" if p or r
      else "down" if installed else "none")
"""

    def command(self, listen: str):
        return f"python3 -c '{self._SCRIPT}' {listen}"

    def process(self, output):
        role = "".join(output).strip()
        return None if role == "none" else role


def _roles(stack: Stack) -> dict[str, str | None]:
    """Each database host's DbAgentRole; None for a host that cannot be reached (one outside
    --limit is connected to first)."""
    roles = {}
    for h in stack.group("databases"):
        pyinfra_host = inventory.get_host(h.name)
        if not pyinfra_host.connected and pyinfra_host not in state.failed_hosts:
            pyinfra_host.connect(show_errors=False)
        roles[h.name] = (pyinfra_host.get_fact(DbAgentRole, listen(h))
                         if pyinfra_host.connected else None)
    return roles


def primary_from_roles(stack: Stack, roles: dict[str, str | None]) -> Host:
    """The primary now, from what each database host's agent answered (None: no agent
    installed, or the host unreachable).

    No agent anywhere is the first deploy (or the switch from manual): the inventory's
    db_primary. Agents there but none of them the primary (down, fenced, waiting, a host
    unreachable) is a failover under way, or one they may not choose alone: the deploy must not
    pick one itself, above all not write users as root to a read-only server (ValueError)."""
    primaries = [name for name, role in roles.items() if role == "primary"]
    if len(primaries) == 1:
        return stack.host(primaries[0])
    if len(primaries) > 1:  # the agents' invariant: cannot happen; never guess
        raise ValueError(f"the database agents of {', '.join(primaries)} all say primary")
    if all(role is None for role in roles.values()):
        return stack.group("db_primary")[0]
    answered = ", ".join(f"{name}: {role or 'no answer'}" for name, role in roles.items())
    raise ValueError(f"no database agent says it is the primary ({answered}): a failover is "
                     "under way, it waits for a human, or the agents cannot reach etcd (the "
                     "inventory group 'etcd', docs/etcd.md; the agents' journals say which: "
                     "docs/runbooks.md)")


def primary_now(stack: Stack) -> Host:
    """The host that takes the writes: the inventory's db_primary in manual mode; in automatic
    mode whichever host the agents made primary. Asked once per deploy run."""
    if not automatic(stack):
        return stack.group("db_primary")[0]
    return once("db_primary_now", lambda: primary_from_roles(stack, _roles(stack)))


def app_routes(stack: Stack, web: Host) -> tuple[str, list[str]]:
    """Where web server `web`'s app sends its writes and its reads (app/: DB_PRIMARY and
    DB_REPLICAS, host or host:port). Automatic: its local HAProxy (tasks/db_proxy.py), which
    follows the agents, so a failover changes nothing here. Manual: the primary now and the
    other database hosts, rewritten by ops/promote_replica.py on a failover."""
    if automatic(stack):
        return (f"127.0.0.1:{web.db_proxy_write_port}", [f"127.0.0.1:{web.db_proxy_read_port}"])
    if not stack.group("databases"):
        return "", []
    primary = primary_now(stack)
    return primary.address, [h.address for h in stack.group("databases")
                             if h.name != primary.name]

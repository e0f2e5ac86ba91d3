"""The lab's hosts from the control machine: commands, SQL, replication, HAProxy and the
floating IP, through the docker CLI (lab only: specs that run anywhere use SSH instead).

Everything that changes the lab during a benchmark runs inside `lab_lock()`: the lab is shared
by the test suite and the engineers, one user at a time (flock on /tmp/ha-webstack-lab.lock).
"""

import contextlib
import fcntl
import os
import runpy
import subprocess
import threading
import time
from contextlib import contextmanager

from lab import topology
from lab.toolkit.deploy import ROOT
from webstack import db_agent, haproxy, keepalived

LOCK_FILE = "/tmp/ha-webstack-lab.lock"
# The lab as built (lab/.state/topology.json), with LAB_DB_PRIMARY read at import.
LAB = topology.current()
VIP = LAB.floating_ip


def addr(name: str) -> str:
    return LAB.host(name).address


def group(name: str) -> list[str]:
    """The lab's hosts of one inventory group, by name."""
    return [h.name for h in LAB.hosts if name in h.groups]


def primary() -> str:
    """The database host the inventory makes the primary (LAB_DB_PRIMARY, default db-01)."""
    return group("db_primary")[0]


def replica() -> str:
    return group("db_replicas")[0]


def wait_until(predicate, timeout: float, interval: float = 0.2) -> float | None:
    """Poll until predicate() is truthy: the seconds it took, or None on timeout. A predicate
    that raises (the thing polled is down right now) counts as not yet."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except (subprocess.SubprocessError, RuntimeError, AssertionError, OSError):
            pass
        time.sleep(interval)
    return None


@contextmanager
def lab_lock(enabled: bool = True):
    """Hold the shared lab lock for the duration of one step (a drill, a wrk run)."""
    if not enabled:
        yield
        return
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- commands -----------------------------------------------------------------------------

def sh(*cmd: str, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """A command on the control machine; check=True raises with its output on failure."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-800:]
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({result.returncode}): {output}")
    return result


def run(host: str, *cmd: str, timeout: float = 60, check: bool = False,
        **kw) -> subprocess.CompletedProcess:
    """A command as root inside a lab host (docker exec)."""
    return sh("docker", "exec", host, *cmd, timeout=timeout, check=check, **kw)


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """The docker CLI itself: stop, start, pause a lab host."""
    return sh("docker", *args, timeout=timeout, check=check)


def container_pid(name: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout)


def in_netns(name: str, *cmd: str) -> list[str]:
    """A control-machine command run in a lab host's network namespace (its address, its
    firewall), for traffic the firewall only lets that host send."""
    return ["nsenter", f"--net=/proc/{container_pid(name)}/ns/net", *cmd]


def systemd_pid(host: str, unit: str) -> int:
    return int(run(host, "systemctl", "show", "-p", "MainPID", "--value", unit,
                   check=True).stdout)


# --- MariaDB ------------------------------------------------------------------------------

def sql(host: str, statement: str, timeout: float = 120) -> str:
    """A statement run as root over the host's local socket (tab-separated, no headers)."""
    return run(host, "mariadb", "-N", "-B", "-e", statement, timeout=timeout,
               check=True).stdout.strip()


def mariadb_answers(host: str) -> bool:
    return run(host, "mariadb", "-N", "-B", "-e", "SELECT 1", timeout=10).returncode == 0


def replica_status(host: str) -> dict:
    """SHOW SLAVE STATUS of a database host, as a dict ({} when it replicates from none)."""
    out = run(host, "mariadb", "-e", "SHOW SLAVE STATUS\\G", timeout=10).stdout
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in out.splitlines() if ":" in line)}


def replicating(host: str, source_address: str | None = None) -> bool:
    """Both replication threads run (from source_address, when given)."""
    status = replica_status(host)
    return (status.get("Slave_IO_Running") == status.get("Slave_SQL_Running") == "Yes"
            and source_address in (None, status.get("Master_Host")))


def caught_up(replica_host: str, primary_host: str, timeout: float = 10) -> bool:
    """The replica applied everything the primary had logged when this was called (False
    while either server is still starting)."""
    try:
        position = sql(primary_host, "SELECT @@global.gtid_binlog_pos")
        return sql(replica_host, f"SELECT MASTER_GTID_WAIT('{position}', {timeout})",
                   timeout=timeout + 10) == "0"
    except (RuntimeError, subprocess.SubprocessError):
        return False


def note_ids(host: str, tag: str) -> set[int]:
    """Ids of the notes a stream tagged `tag` left on a database host."""
    rows = sql(host, f"SELECT id FROM webstack.notes WHERE text LIKE '{tag}-%'")
    return {int(x) for x in rows.split()}


def db_roles_as_built() -> str | None:
    """None when the inventory's primary is writable and its replica a running read-only
    replica; else what differs (an ops test or a failover may have swapped them)."""
    p, r = primary(), replica()
    if sql(p, "SELECT @@read_only") != "0":
        return f"{p} is read-only (not the primary)"
    if sql(r, "SELECT @@read_only") != "1":
        return f"{r} is writable (not a replica)"
    if not replicating(r):
        return f"replication on {r} is not running"
    return None


# --- HAProxy, keepalived ------------------------------------------------------------------

def haproxy_servers(lb: str = "lb-01") -> dict[str, tuple[int, int]]:
    """{server: (srv_op_state, srv_admin_state)} of the web backend, from HAProxy's runtime
    API (op state 2 = up, 0 = down; admin bit 0x08 = drained); {} if HAProxy is down."""
    res = run(lb, "bash", "-c",
              f"echo 'show servers state {haproxy.BACKEND}' | socat stdio {haproxy.SOCKET}",
              timeout=10)
    states = {}
    for line in res.stdout.splitlines():
        fields = line.split()  # be_id be_name srv_id srv_name srv_addr op_state admin_state ...
        if len(fields) > 6 and fields[1] == haproxy.BACKEND:
            states[fields[3]] = (int(fields[5]), int(fields[6]))
    return states


def in_rotation(server: str, lb: str = "lb-01") -> bool:
    return haproxy_servers(lb).get(server, (0, 0))[0] == 2


def drained(server: str, lb: str = "lb-01") -> bool:
    return bool(haproxy_servers(lb).get(server, (0, 0))[1] & 0x08)


def all_in_rotation(lb: str = "lb-01") -> bool:
    states = haproxy_servers(lb)
    return bool(states) and all(op == 2 for op, _ in states.values())


def haproxy_runtime(lb: str, command: str) -> str:
    """One runtime-API command's answer (e.g. `show ssl cert <path>`)."""
    return run(lb, "bash", "-c", f"echo '{command}' | socat stdio {haproxy.SOCKET}",
               timeout=10).stdout


def backend_sessions(lb: str) -> int:
    """Requests the web backend has handled on `lb` since HAProxy started (`show stat`, stot)."""
    for line in haproxy_runtime(lb, "show stat").splitlines():
        fields = line.split(",")  # pxname svname qcur qmax scur smax slim stot ...
        if fields[:2] == [haproxy.BACKEND, "BACKEND"]:
            return int(fields[7])
    raise RuntimeError(f"no {haproxy.BACKEND} backend in {lb}'s HAProxy statistics")


# --- the database agents (mysql_failover = "automatic") -----------------------------------

DATABASES = [h.name for h in LAB.hosts if "databases" in h.groups]
AGENT_PORT = runpy.run_path(str(ROOT / "group_data/databases.py"))["db_agent_port"]
ETCD_CLIENT_PORT = runpy.run_path(str(ROOT / "group_data/etcd.py"))["etcd_client_port"]
# The drills' packet drops carry this comment (lab/toolkit/drills.py); this removes them all.
DRILL_COMMENT = "ha-webstack-drill"
DRILL_RULES_REMOVE = (
    f"for chain in INPUT OUTPUT; do while rule=$(iptables -w -S $chain | grep -m1 -- "
    f"'--comment {DRILL_COMMENT}'); do iptables -w ${{rule/-A/-D}}; done; done")


def agent_role(host: str) -> str:
    """What the host's agent answers (webstack/db_agent.py's fact, the one the deploy reads):
    primary, replica, other, down, none."""
    return run(host, "python3", "-c", db_agent.DbAgentRole._SCRIPT,
               f"{addr(host)}:{AGENT_PORT}", timeout=10).stdout.strip()


def agent_primary() -> str | None:
    return next((h for h in DATABASES if agent_role(h) == "primary"), None)


def writable_databases() -> list[str]:
    return [h for h in DATABASES if sql(h, "SELECT @@global.read_only", timeout=5) == "0"]


class WritableSampler:
    """Every database's read_only, sampled back to back (0.2 s apart) until stopped: `.both`
    lists the samples in which more than one server was writable (the agents' promise:
    never)."""

    def __init__(self):
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.2):
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.samples.append(writable_databases())  # a server down: next sample

    @property
    def both(self) -> list[list[str]]:
        return [s for s in self.samples if len(s) > 1]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)


def db_routes(web: str) -> dict[str, list[str]]:
    """{backend: servers UP} of a web server's local HAProxy (tasks/db_proxy.py)."""
    up: dict[str, list[str]] = {"db-primary": [], "db-replicas": []}
    for line in haproxy_runtime(web, "show stat").splitlines():
        fields = line.split(",")
        if (len(fields) > 17 and fields[0] in up and fields[1] != "BACKEND"
                and fields[17] == "UP"):
            up[fields[0]].append(fields[1])
    return up


def vip_holders() -> list[str]:
    """The load balancers that currently carry the floating IP on an interface."""
    return [lb for lb in group("loadbalancers")
            if f" {VIP}/" in run(lb, "ip", "-4", "-o", "addr", "show", timeout=10).stdout]


# --- the lab's containers ----------------------------------------------------------------

def lab_up(web_servers: int = 2, fresh: bool = False, timeout: float = 900) -> None:
    """`lab/lab.py up` with LAB_WEB_SERVERS=web_servers and the lab's other knobs as built
    (subnet, Debian releases): adds or removes web servers' containers, or recreates one that
    was destroyed (fresh: every container); raises with its output on failure. New containers
    are bare until a deploy (deploy.run_deploy) configures them."""
    knobs = {"LAB_WEB_SERVERS": str(web_servers), "LAB_SUBNET": LAB.subnet,
             "LAB_DEBIAN": LAB.debian,
             "LAB_DEBIAN_HOSTS": ",".join(f"{n}={r}" for n, r in LAB.debian_hosts)}
    sh("python3", "lab/lab.py", "up", *(["--fresh"] if fresh else []), cwd=ROOT,
       env={**os.environ, **knobs}, timeout=timeout, check=True)


# --- the lab as it must be left -----------------------------------------------------------

UNITS = {"loadbalancers": ("haproxy", "keepalived"), "webservers": ("nginx", "ha-webstack-app"),
         "databases": ("mariadb",), "etcd": ("etcd",)}


def restore() -> list[str]:
    """Put the lab back as found (containers running and unpaused, services started, the
    floating IP on lb-01, replication running); return what had to be repaired."""
    repaired = []
    for h in LAB.hosts:
        status = docker("inspect", "-f", "{{.State.Status}}", h.name, check=False).stdout.strip()
        if status == "paused":
            docker("unpause", h.name)
            repaired.append(f"unpaused {h.name}")
        elif status != "running":
            docker("start", h.name)
            repaired.append(f"started {h.name}")
    for h in LAB.managed_hosts:
        for grp, units in UNITS.items():
            for unit in units if grp in h.groups else ():
                if run(h.name, "systemctl", "is-active", "--quiet", unit).returncode != 0:
                    run(h.name, "systemctl", "start", unit, timeout=120)
                    repaired.append(f"started {unit} on {h.name}")
    for db in DATABASES:  # a partition drill that died half-way
        if DRILL_COMMENT in run(db, "iptables", "-w", "-S").stdout:
            run(db, "bash", "-c", DRILL_RULES_REMOVE, check=True)
            repaired.append(f"removed the drill's packet drops on {db}")
    for lb in group("loadbalancers"):  # a planned-handover drill that died half-way
        if run(lb, "test", "-e", keepalived.HOLD_FILE).returncode == 0:
            run(lb, "bash", "-c", keepalived.RELEASE, check=True)
            repaired.append(f"released {lb}'s hold")
        if "ha-webstack-quiesce" in run(lb, "iptables", "-w", "-S", "INPUT").stdout:
            run(lb, "bash", "-c", keepalived.unquiesce(VIP), check=True)
            repaired.append(f"unquiesced {lb}")
    wait_until(lambda: vip_holders() == ["lb-01"], timeout=60)
    wait_until(all_in_rotation, timeout=30)
    if agent_role(DATABASES[0]) != "none":  # the agents own replication: only wait for them
        if not wait_until(lambda: sorted(map(agent_role, DATABASES)) == ["primary", "replica"],
                          timeout=60):
            repaired.append(f"not repaired: the agents say {[agent_role(h) for h in DATABASES]}")
    elif not wait_until(lambda: replicating(replica()), timeout=30):
        run(replica(), "mariadb", "-e", "START SLAVE")
        repaired.append(f"START SLAVE on {replica()}")
    return repaired

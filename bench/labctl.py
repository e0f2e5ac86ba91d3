"""Small helpers to look at and steer the lab from the control machine (docker CLI only).

Everything that touches the lab runs inside `lab_lock()`: the lab is shared with the test suite
and other engineers, one user at a time (flock on /tmp/ha-webstack-lab.lock, like `flock(1)`).
"""

import fcntl
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import topology  # noqa: E402

LOCK_FILE = "/tmp/ha-webstack-lab.lock"
HAPROXY_SOCKET = "/run/haproxy/admin.sock"  # templates/haproxy/haproxy.cfg.j2
LAB = topology.current()
VIP = LAB.floating_ip


def addr(name: str) -> str:
    return LAB.host(name).address


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


def sh(*cmd: str, timeout: float = 120, check: bool = False, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-800:]
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed ({result.returncode}): {output}")
    return result


def dexec(container: str, *cmd: str, timeout: float = 60, check: bool = False):
    return sh("docker", "exec", container, *cmd, timeout=timeout, check=check)


def sql(host: str, statement: str, timeout: float = 60) -> str:
    return dexec(host, "mariadb", "-N", "-B", "-e", statement, timeout=timeout,
                 check=True).stdout.strip()


def container_pid(name: str) -> int:
    return int(sh("docker", "inspect", "-f", "{{.State.Pid}}", name, check=True).stdout)


def in_netns(name: str, *cmd: str) -> list[str]:
    """A control-machine command run in a lab host's network namespace (its address, its
    firewall), for traffic the firewall only lets that host send."""
    return ["nsenter", f"--net=/proc/{container_pid(name)}/ns/net", *cmd]


# --- HAProxy, keepalived ------------------------------------------------------------------

def haproxy_servers(lb: str = "lb-01") -> dict[str, int]:
    """{server: srv_op_state} of the web backend (2 = up, 0 = down); {} if HAProxy is down."""
    res = dexec(lb, "bash", "-c", f"echo 'show servers state web' | socat stdio {HAPROXY_SOCKET}",
                timeout=10)
    states = {}
    for line in res.stdout.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "web":
            states[fields[3]] = int(fields[5])
    return states


def web_servers() -> list[str]:
    return [h.name for h in LAB.hosts if "webservers" in h.groups]


def server_up(name: str, lb: str = "lb-01") -> bool:
    try:
        return haproxy_servers(lb).get(name) == 2
    except subprocess.TimeoutExpired:
        return False


def all_servers_up(lb: str = "lb-01") -> bool:
    try:
        states = haproxy_servers(lb)
    except subprocess.TimeoutExpired:
        return False
    return bool(states) and all(v == 2 for v in states.values())


def vip_holders() -> list[str]:
    holders = []
    for lb in ("lb-01", "lb-02"):
        res = dexec(lb, "ip", "-4", "-o", "addr", "show", timeout=10)
        if f" {VIP}/" in res.stdout:
            holders.append(lb)
    return holders


# --- MariaDB ------------------------------------------------------------------------------

def replica_caught_up(timeout: float = 60) -> bool:
    """db-02 has applied everything db-01 had logged when this was called."""
    pos = sql("db-01", "SELECT @@gtid_binlog_pos")
    waited = sql("db-02", f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})", timeout=timeout + 10)
    return waited == "0"


def db_roles_as_built() -> str | None:
    """None when db-01 is the writable primary and db-02 its running read-only replica; else
    what differs (an ops drill or a failover may have swapped them: do not bench on that)."""
    if sql("db-01", "SELECT @@read_only") != "0":
        return "db-01 is read-only (not the primary)"
    if sql("db-02", "SELECT @@read_only") != "1":
        return "db-02 is writable (not a replica)"
    if not replica_running():
        return "replication on db-02 is not running"
    return None


def replica_running() -> bool:
    out = dexec("db-02", "mariadb", "-e", "SHOW SLAVE STATUS\\G", timeout=10).stdout
    return "Slave_IO_Running: Yes" in out and "Slave_SQL_Running: Yes" in out


def mariadb_answers(host: str) -> bool:
    return dexec(host, "mariadb", "-N", "-B", "-e", "SELECT 1", timeout=10).returncode == 0


def wait_until(predicate, timeout: float, interval: float = 0.2) -> float | None:
    """Poll until predicate() is truthy: the seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if predicate():
                return time.monotonic() - start
        except (subprocess.SubprocessError, RuntimeError):
            pass  # the thing polled is down right now: that is what we wait out
        time.sleep(interval)
    return None


# --- the lab as it must be left -----------------------------------------------------------

def restore() -> list[str]:
    """Put the lab back as found (containers running and unpaused, services started, VIP on
    lb-01, replication running); return what had to be repaired."""
    repaired = []
    for h in LAB.hosts:
        status = sh("docker", "inspect", "-f", "{{.State.Status}}", h.name).stdout.strip()
        if status == "paused":
            sh("docker", "unpause", h.name)
            repaired.append(f"unpaused {h.name}")
        elif status != "running":
            sh("docker", "start", h.name)
            repaired.append(f"started {h.name}")
    units = {"loadbalancers": ["haproxy", "keepalived"], "webservers": ["nginx",
             "ha-webstack-app"], "databases": ["mariadb"]}
    for h in LAB.managed_hosts:
        for group, names in units.items():
            for unit in names if group in h.groups else []:
                if dexec(h.name, "systemctl", "is-active", "--quiet", unit).returncode != 0:
                    dexec(h.name, "systemctl", "start", unit, timeout=120)
                    repaired.append(f"started {unit} on {h.name}")
    wait_until(lambda: vip_holders() == ["lb-01"], timeout=60)
    wait_until(all_servers_up, timeout=30)
    if not wait_until(replica_running, timeout=30):
        dexec("db-02", "mariadb", "-e", "START SLAVE")
        repaired.append("START SLAVE on db-02")
    return repaired

"""Test hosts come from the same pyinfra inventory the deploy uses (one source of truth).

`lab` tests need the running lab (`make lab`); everything else is the fast tier (`make check`).
"""

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import testinfra
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab import topology  # noqa: E402

LAB_INVENTORY = "inventories/lab.py"


def _lab_inventory():
    # pyinfra's own loader, so tests see exactly the hosts and data the deploy sees.
    with ctx_state.use(State()):
        return make_inventory(str(ROOT / LAB_INVENTORY), cwd=str(ROOT))


def _testinfra_host(pyinfra_host):
    data = pyinfra_host.data
    extra = (f"-o UserKnownHostsFile={data.ssh_known_hosts_file} "
             "-o StrictHostKeyChecking=yes -o BatchMode=yes")
    # One multiplexed connection per host for the whole session: SSH is rate-limited by ufw.
    return testinfra.get_host(f"ssh://{data.ssh_user}@{data.ssh_hostname}",
                              ssh_identity_file=data.ssh_key, ssh_extra_args=extra, sudo=True,
                              controlpath="/tmp/ha-webstack-test-%%C", controlpersist=900)


def lab_hosts(group: str | None = None) -> list[str]:
    """Names of the lab's hosts (in one inventory group), for parametrizing specs."""
    if not topology.TOPOLOGY_FILE.exists():
        return []
    inventory = _lab_inventory()
    return [h.name for h in (inventory.get_group(group) if group else inventory)]


@pytest.fixture(scope="session")
def lab():
    return topology.current()


@pytest.fixture(scope="session")
def hosts():
    """Every managed lab host as a testinfra host, by name."""
    return {h.name: _testinfra_host(h) for h in _lab_inventory()}


def docker_exec(container: str, *cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True,
                          timeout=timeout)


def sql(host: str, statement: str, timeout: int = 120) -> str:
    """A statement run as root over the lab host's local socket (tab-separated, no headers)."""
    result = docker_exec(host, "mariadb", "-N", "-B", "-e", statement, timeout=timeout)
    assert result.returncode == 0, f"{host}: {result.stderr}"
    return result.stdout.strip()


def replica_status(host: str) -> dict:
    """SHOW SLAVE STATUS of a lab database host, as a dict ({} when it replicates from none)."""
    out = docker_exec(host, "mariadb", "-e", "SHOW SLAVE STATUS\\G").stdout
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in out.splitlines() if ":" in line)}


def caught_up(replica: str, primary: str) -> bool:
    """The replica applied everything the primary had logged when this was called (False
    while either server is still starting)."""
    try:
        position = sql(primary, "SELECT @@global.gtid_binlog_pos")
        return sql(replica, f"SELECT MASTER_GTID_WAIT('{position}', 10)") == "0"
    except AssertionError:
        return False


def run_deploy(*extra: str, cwd: Path = ROOT, inventory: str = LAB_INVENTORY,
               timeout: int = 900, deploy: str = "deploy.py",
               env: dict | None = None) -> subprocess.CompletedProcess:
    """pyinfra with a deploy file (deploy.py or an ops/ file); env adds variables, e.g.
    LAB_DB_PRIMARY for the lab inventory."""
    return subprocess.run([str(ROOT / ".venv/bin/pyinfra"), "-y", *extra, inventory, deploy],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def changed_operations(result: subprocess.CompletedProcess) -> list[str]:
    """From `pyinfra --json` output: 'operation: hosts' for every op that changed or failed."""
    results = json.loads(result.stdout)["results"]
    return [f"{op['name']}: {op['success'] + op['error']}" for op in results["operations"]
            if op["success"] or op["error"]]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _fetch(opener, url: str, timeout: float, **kw):
    """(status, headers, body) of one request; 4xx/5xx are answers, not exceptions."""
    try:
        with opener.open(urllib.request.Request(url, **kw), timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def http_get(url: str, timeout: float = 10, redirects: bool = True, **kw):
    """A request from the control machine (GET unless method= says otherwise)."""
    return _fetch(urllib.request.build_opener(*([] if redirects else [_NoRedirect])), url,
                  timeout, **kw)


def systemd_pid(testinfra_host, unit: str) -> int:
    return int(testinfra_host.check_output(f"systemctl show -p MainPID --value {unit}"))


def lab_ca() -> Path:
    return ROOT / "secrets" / "lab-ca" / "ca.crt"


def https_get(url: str, timeout: float = 5, **kw):
    """A request over HTTPS, verified against the lab CA (never -k)."""
    context = ssl.create_default_context(cafile=str(lab_ca()))
    return _fetch(urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)), url,
                  timeout, **kw)


def vip_holder(lab) -> list[str]:
    """The load balancers that currently carry the floating IP on an interface."""
    holders = []
    for h in lab.hosts:
        if "loadbalancers" in h.groups:
            out = docker_exec(h.name, "ip", "-4", "-o", "addr", "show").stdout
            if f" {lab.floating_ip}/" in out:
                holders.append(h.name)
    return holders


def wait_until(predicate, timeout: float, interval: float = 0.2):
    """Poll until predicate() is truthy; return the seconds it took, or None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


class _Background:
    """A bounded loop (`_run`, which checks `_stop`) in a thread for a `with` block."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class RequestStream(_Background):
    """A bounded stream of GETs in a background thread: counts answers and failures."""

    def __init__(self, url: str, max_seconds: float = 60, max_requests: int = 20000):
        super().__init__()
        self.url, self.max_seconds, self.max_requests = url, max_seconds, max_requests
        self.results: list[tuple[float, int | str, str]] = []  # (time, status|error, served-by)

    def _run(self):
        start = time.monotonic()
        while (not self._stop.is_set() and time.monotonic() - start < self.max_seconds
               and len(self.results) < self.max_requests):
            t = time.monotonic()
            try:
                status, headers, _ = https_get(self.url, timeout=5)
                self.results.append((t, status, headers.get("X-Served-By", "")))
            except OSError as e:
                self.results.append((t, type(e).__name__, ""))
            time.sleep(0.02)

    @property
    def failures(self):
        return [r for r in self.results if r[1] != 200]


class WriteStream(_Background):
    """A bounded stream of note writes through the floating IP, in a background thread.

    `acked` maps each note id the app acknowledged (201) to the database it was written to;
    `failed` holds (time, status or error) of the writes that were not acknowledged.
    """

    def __init__(self, vip: str, tag: str, max_seconds: float = 180, max_writes: int = 5000):
        super().__init__()
        self.url, self.tag = f"https://{vip}/api/notes", tag
        self.max_seconds, self.max_writes = max_seconds, max_writes
        self.acked: dict[int, str] = {}
        self.failed: list[tuple[float, int | str]] = []

    def _run(self):
        start = time.monotonic()
        for i in range(self.max_writes):
            if self._stop.is_set() or time.monotonic() - start > self.max_seconds:
                break
            t = time.monotonic()
            try:
                status, _, body = https_get(self.url, method="POST",
                                            data=json.dumps({"text": f"{self.tag}-{i}"}).encode(),
                                            headers={"Content-Type": "application/json"})
                if status == 201:
                    note = json.loads(body)
                    self.acked[note["id"]] = note["written_to"]
                else:
                    self.failed.append((t, status))
            except OSError as e:
                self.failed.append((t, type(e).__name__))
            time.sleep(0.05)

    def wait_for(self, acked: int, timeout: float = 30) -> bool:
        """Until `acked` more writes were acknowledged."""
        target = len(self.acked) + acked
        return wait_until(lambda: len(self.acked) >= target, timeout) is not None

    def failure_window(self) -> float:
        """Seconds from the first failed write to the last (0 when none failed)."""
        return self.failed[-1][0] - self.failed[0][0] if self.failed else 0.0

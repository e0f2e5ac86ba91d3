"""Test hosts come from the same pyinfra inventory the deploy uses (one source of truth).

`lab` tests need the running lab (`make lab`); everything else is the fast tier (`make check`).
"""

import json
import subprocess
import sys
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


def run_deploy(*extra: str, cwd: Path = ROOT, inventory: str = LAB_INVENTORY,
               timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv/bin/pyinfra"), "-y", *extra, inventory, "deploy.py"],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def changed_operations(result: subprocess.CompletedProcess) -> list[str]:
    """From `pyinfra --json` output: 'operation: hosts' for every op that changed or failed."""
    results = json.loads(result.stdout)["results"]
    return [f"{op['name']}: {op['success'] + op['error']}" for op in results["operations"]
            if op["success"] or op["error"]]


def http_get(url: str, timeout: float = 10, **kw):
    """GET from the control machine; returns (status, headers, body) and never raises on 4xx/5xx."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, **kw)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def systemd_pid(testinfra_host, unit: str) -> int:
    return int(testinfra_host.check_output(f"systemctl show -p MainPID --value {unit}"))

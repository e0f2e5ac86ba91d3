"""Scale-out: the lab's web-server count goes to three and back; the deploy follows the inventory.

Adding web-03 puts it in HAProxy's rotation and opens the database to it, and changes no
firewall rule elsewhere; removing it takes all of that away again.
"""

import json
import os
import subprocess
from collections import Counter

import pytest

from tests.conftest import ROOT, docker_exec, https_get, run_deploy, wait_until

pytestmark = pytest.mark.lab


def _lab_up(web_servers: int):
    env = dict(os.environ, LAB_WEB_SERVERS=str(web_servers))
    result = subprocess.run(["python3", "lab/lab.py", "up"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _changed_by_host(result) -> dict[str, set[str]]:
    changed: dict[str, set[str]] = {}
    for op in json.loads(result.stdout)["results"]["operations"]:
        for name in op["success"]:
            changed.setdefault(name, set()).add(op["name"])
    return changed


@pytest.fixture
def three_web_servers():
    _lab_up(3)
    try:
        yield run_deploy("--json")
    finally:
        _lab_up(2)
        assert run_deploy().returncode == 0


def test_web_03_joins_rotation_and_reaches_the_database(lab, three_web_servers):
    result = three_web_servers
    assert result.returncode == 0, result.stderr[-3000:]
    # web-03 enters rotation once its health checks pass (haproxy_check_rise).
    url = f"https://{lab.floating_ip}/healthz"
    assert wait_until(lambda: https_get(url)[1]["X-Served-By"] == "web-03",
                      timeout=15) is not None
    served = [https_get(f"https://{lab.floating_ip}/healthz")[1]["X-Served-By"]
              for _ in range(30)]
    assert Counter(served) == {"web-01": 10, "web-02": 10, "web-03": 10}
    assert served[3:6] == served[:3]  # cycles
    db = lab.host("db-01").address
    reach = docker_exec("web-03", "timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{db}/3306")
    assert reach.returncode == 0
    firewall_changed = {host for host, ops in _changed_by_host(result).items()
                        if any(op.startswith("tasks/firewall.py") for op in ops)}
    assert firewall_changed == {"web-03", "db-01", "db-02"}

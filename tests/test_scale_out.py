"""Scale-out: the lab's web-server count goes to three and back; the deploy follows the inventory.

Adding web-03 puts it in HAProxy's rotation and opens the database to it, and changes no
firewall rule elsewhere; removing it takes all of that away again.
"""

import subprocess
from collections import Counter

import pytest

from lab.toolkit.deploy import ROOT, changed_by_host, run_deploy
from lab.toolkit.hosts import lab_up, run, wait_until
from lab.toolkit.http import https_get
from lab.toolkit.streams import CA

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def three_web_servers():
    lab_up(3)
    try:
        yield run_deploy("--json")
    finally:
        lab_up(2)
        assert run_deploy().returncode == 0


def test_web_03_joins_rotation_and_reaches_the_database(lab, three_web_servers):
    result = three_web_servers
    assert result.returncode == 0, result.stderr[-3000:]
    # web-03 enters rotation once its health checks pass (haproxy_check_rise).
    url = f"https://{lab.floating_ip}/healthz"
    assert wait_until(lambda: https_get(url, CA)[1]["X-Served-By"] == "web-03",
                      timeout=15) is not None
    served = [https_get(f"https://{lab.floating_ip}/healthz", CA)[1]["X-Served-By"]
              for _ in range(30)]
    assert Counter(served) == {"web-01": 10, "web-02": 10, "web-03": 10}
    assert served[3:6] == served[:3]  # cycles
    db = lab.host("db-01").address
    reach = run("web-03", "timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{db}/3306")
    assert reach.returncode == 0
    firewall_changed = {host for host, ops in changed_by_host(result).items()
                        if any(op.startswith("tasks/firewall.py") for op in ops)}
    assert firewall_changed == {"web-03", "db-01", "db-02"}


def test_read_only_specs_verify_the_scaled_out_stack(three_web_servers):
    """`make verify` sees web-03 through the inventory alone, and it passes."""
    verify = subprocess.run([str(ROOT / ".venv/bin/pytest"), "-m", "readonly", "-q",
                             "-p", "no:cacheprovider", "tests"], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert verify.returncode == 0, verify.stdout[-4000:]
    assert "web-03" in verify.stdout and " passed" in verify.stdout

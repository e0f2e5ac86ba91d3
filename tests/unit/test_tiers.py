"""The rules that keep production safe, checked with the real pytest and inventories: a test
that perturbs hosts is refused against a non-lab inventory, and an inventory that yields no
hosts, or a host that does not answer, is a clear failure, never a skip. No lab needed."""

import os
import subprocess
import sys

import pytest

from lab.toolkit.deploy import ROOT
from webstack.secret_loader import SECRETS


def _pytest(inventory: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "INVENTORY": inventory,
           **{name.upper(): "s3cret-for-tests" for name in SECRETS}}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args,
                           "tests"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_lab_tests_are_refused_against_production_before_connecting():
    result = _pytest("inventories/prod.py", "-m", "lab")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "refused:" in result.stderr and "run only against inventories/lab.py" in result.stderr
    assert "No host was contacted" in result.stderr
    assert "PASSED" not in result.stdout and "FAILED" not in result.stdout


def test_an_inventory_without_hosts_is_a_clear_failure(tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text('"""An inventory with no hosts at all."""\n')
    result = _pytest(str(empty), "-m", "readonly")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert f"cannot verify INVENTORY={empty}" in result.stderr
    assert "has no hosts" in result.stderr


def test_a_host_that_does_not_answer_fails_its_specs_by_name(tmp_path):
    """One web server whose SSH port refuses at once (loopback, port 1): every spec for it
    fails naming the host, its address and the user; none is skipped."""
    inventory = tmp_path / "unreachable.py"
    inventory.write_text(
        "webservers = [('web-09', {'ssh_hostname': '127.0.0.1', 'ssh_port': 1, "
        "'ssh_user': 'deploy', 'stack_env': 'unit', 'stack_network': '127.0.0.0/8', "
        "'admin_networks': ['127.0.0.1/32']})]\n")
    result = _pytest(str(inventory), "-m", "readonly", "-k", "nginx_installed", timeout=180)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "web-09 (127.0.0.1): unreachable over SSH as deploy" in result.stdout
    assert " skipped" not in result.stdout

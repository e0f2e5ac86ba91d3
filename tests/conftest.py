"""Fixtures, and the rules that keep production safe. Three tiers, by marker (pyproject.toml):

  readonly  reads hosts over SSH as the deploy's user and the stack over HTTP(S); changes
            nothing; runs against any inventory: `make verify INVENTORY=inventories/prod.py`
  lab       perturbs hosts or uses the lab's containers (docker, `client`); refused unless
            the inventory is the lab's
  (none)    the fast tier, tests/unit: no hosts at all (`make check`)

The inventory is $INVENTORY (default inventories/lab.py), loaded with pyinfra's own loader, so
the specs see exactly the hosts, groups and data the deploy sees. A read-only spec takes its
host from `@pytest.mark.hosts(group)`: one test per host of the group, by name.
"""

import contextlib
import io
import os
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest
import testinfra
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

from lab.toolkit.deploy import LAB_INVENTORY, ROOT
from webstack import tls
from webstack.settings import SettingsError, Stack, from_pyinfra

INVENTORY = os.environ.get("INVENTORY", LAB_INVENTORY)


def _is_lab_inventory() -> bool:
    return (ROOT / INVENTORY).resolve() == (ROOT / LAB_INVENTORY).resolve()


@cache
def _inventory():
    """(pyinfra Inventory, validated Stack), or (None, the reason it could not be loaded)."""
    stderr = io.StringIO()
    try:
        with ctx_state.use(State()), contextlib.redirect_stderr(stderr):
            inventory = make_inventory(str(ROOT / INVENTORY), cwd=str(ROOT))
            return inventory, from_pyinfra(inventory)
    except SettingsError as e:
        return None, str(e)
    except SystemExit:  # an inventory file validates itself (check_inventory) and exits
        return None, stderr.getvalue().strip() or f"{INVENTORY} exited while loading"
    except Exception as e:  # noqa: BLE001 - any load failure is reported, never skipped
        return None, f"{INVENTORY} could not be loaded: {type(e).__name__}: {e}"


# --- collection: hosts per spec, and the refusals -----------------------------------------

def pytest_generate_tests(metafunc):
    """`@pytest.mark.hosts("webservers")` runs the spec once per host of that group
    (`hosts()` with no group: every host), the host's name as the parameter `name`."""
    marker = metafunc.definition.get_closest_marker("hosts")
    if marker is None:
        return
    group = marker.args[0] if marker.args else None
    inventory, stack_or_problem = _inventory()
    if inventory is None:
        problem = stack_or_problem
    else:
        names = [h.name for h in inventory if group is None or group in h.groups]
        if names:
            metafunc.parametrize("name", names)
            return
        problem = f"{INVENTORY} has no hosts" + (f" in group {group}" if group else "")
    metafunc.parametrize("name", [pytest.param(None, id="no-hosts",
                                               marks=pytest.mark.no_hosts(problem))])


@pytest.hookimpl(trylast=True)  # after -m has deselected what the run does not ask for
def pytest_collection_modifyitems(config, items):
    lab_items = [i.nodeid for i in items if i.get_closest_marker("lab")]
    if lab_items and not _is_lab_inventory():
        raise pytest.UsageError(
            f"refused: {len(lab_items)} selected tests are marked `lab` (they stop services, "
            f"kill processes or use the lab's containers) and run only against "
            f"{LAB_INVENTORY}, not INVENTORY={INVENTORY}; e.g. {lab_items[0]}. No host was "
            "contacted. For the read-only specs: make verify INVENTORY=" + INVENTORY)
    no_hosts = {str(i.get_closest_marker("no_hosts").args[0]) for i in items
                if i.get_closest_marker("no_hosts")}
    if no_hosts:
        raise pytest.UsageError(f"cannot verify INVENTORY={INVENTORY}: "
                                + "; ".join(sorted(no_hosts)))


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def stack() -> Stack:
    """The validated settings of every host in the inventory, as the deploy computes them."""
    inventory, stack_or_problem = _inventory()
    if inventory is None:
        pytest.fail(stack_or_problem, pytrace=False)
    return stack_or_problem


class _Hosts(dict):
    """{name: testinfra host over SSH, as the deploy's user with sudo}, connected on first
    use. One multiplexed connection per host for the whole run: ufw rate-limits SSH."""

    def __missing__(self, name: str):
        h = next(h for h in _inventory()[0] if h.name == name)
        data = h.data
        options = ["-o BatchMode=yes", "-o ConnectTimeout=10"]
        if data.get("ssh_known_hosts_file"):
            options.append(f"-o UserKnownHostsFile={data.ssh_known_hosts_file}")
        if data.get("ssh_strict_host_key_checking"):
            options.append(f"-o StrictHostKeyChecking={data.ssh_strict_host_key_checking}")
        user = data.get("ssh_user") or os.environ.get("USER", "root")
        address = data.get("ssh_hostname") or name
        host = testinfra.get_host(
            f"ssh://{user}@{address}:{data.get('ssh_port') or 22}",
            ssh_identity_file=data.get("ssh_key"), ssh_extra_args=" ".join(options), sudo=True,
            controlpath="/tmp/ha-webstack-test-%%C", controlpersist=900)
        try:
            probe = host.run("true")
            problem = probe.stderr.strip() or f"exit {probe.rc}" if probe.rc != 0 else ""
        except RuntimeError as e:  # testinfra's word for ssh's own failure (exit 255)
            problem = e.args[0].stderr.strip() if e.args else str(e)
        if problem:
            pytest.fail(f"{name} ({address}): unreachable over SSH as {user} with sudo: "
                        f"{problem}", pytrace=False)
        self[name] = host
        return host


@pytest.fixture(scope="session")
def hosts(stack) -> dict:
    return _Hosts()


@pytest.fixture(scope="session")
def vip(stack) -> str:
    """The stack's public address: the load balancers' floating IP."""
    return str(stack.group("loadbalancers")[0].keepalived_floating_ip)


@pytest.fixture(scope="session")
def ca(stack) -> Path | None:
    """What HTTPS clients verify the stack's certificate with: the stack CA's certificate, or
    the system's trust store (None) when the certificate was supplied (haproxy_tls_pem_file)."""
    if stack.secrets.get("haproxy_tls_pem_file"):
        return None
    return tls.ca_dir(stack.hosts[0].stack_env) / "ca.crt"


@pytest.fixture(scope="session")
def lab():
    """The lab's topology (lab tests only: it names the containers)."""
    from lab.toolkit.hosts import LAB
    return LAB


# --- what a verification run checked, per host --------------------------------------------

_outcomes: dict[str, list[tuple[str, str]]] = defaultdict(list)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        item_host = report.nodeid.rsplit("[", 1)[1].rstrip("]") if "[" in report.nodeid else ""
        host = item_host if item_host in _host_names() else "(the stack)"
        check = report.nodeid.split("::")[-1].split("[")[0].removeprefix("test_")
        _outcomes[host].append((check, report.outcome))


@cache
def _host_names() -> frozenset[str]:
    inventory = _inventory()[0]
    return frozenset(h.name for h in inventory) if inventory else frozenset()


def pytest_terminal_summary(terminalreporter):
    if not _outcomes or not terminalreporter.config.getoption("markexpr") == "readonly":
        return
    terminalreporter.section(f"verified per host ({INVENTORY})")
    for host in sorted(_outcomes):
        checks = _outcomes[host]
        bad = [f"{c} ({o})" for c, o in checks if o != "passed"]
        terminalreporter.write_line(
            f"{host:<12} {len(checks) - len(bad)}/{len(checks)} checks passed"
            + (f"; NOT: {', '.join(bad)}" if bad else f": {', '.join(c for c, _ in checks)}"))

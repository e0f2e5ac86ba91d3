"""tasks/etcd.py and tasks/etcd_client.py run by the real pyinfra against @fake hosts (pyinfra's
simulating connector: nothing is contacted, every command succeeds with the output scripted
here): which operations each host gets when the cluster is created, when it exists, and when
the deploy cannot tell. Proves the task files' wiring and decisions, not etcd itself (that is
test_etcd_live.py)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

from lab.toolkit.deploy import ROOT

PARTS = ["group_data", "tasks", "templates", "webstack"]
MEMBERS = {"lb-01": 11, "lb-02": 12, "monitor-01": 41}

INVENTORY = '''
from webstack.settings import check_inventory

_env = {"stack_env": "unittest", "stack_network": "10.9.0.0/24",
        "admin_networks": ["10.9.0.1/32"]}
_responses = %(responses)r


def _h(name, octet, **data):
    return (f"@fake/{name}", {"ssh_hostname": f"10.9.0.{octet}", **_env,
                              "fake_responses": _responses.get(name, {}), **data})


_vip = {"keepalived_floating_ip": "10.9.0.10"}
loadbalancers = [_h("lb-01", 11, **_vip), _h("lb-02", 12, **_vip)]
webservers = [_h("web-01", 21)]
databases = [_h("db-01", 31), _h("db-02", 32)]
db_primary = [_h("db-01", 31)]
db_replicas = [_h("db-02", 32)]
monitoring = [_h("monitor-01", 41, alertmanager_webhook_url="http://127.0.0.1:9099/alerts")]
etcd = [_h("lb-01", 11, **_vip), _h("lb-02", 12, **_vip), _h("monitor-01", 41)]
check_inventory(globals())
'''

# deploy.py's etcd part, without the roles whose facts would need scripting too.
DEPLOY = '''
from pyinfra import host, local

from webstack.context import stack

if "etcd" in host.groups:
    local.include("tasks/etcd.py")
if "databases" in host.groups and stack().group("etcd"):
    local.include("tasks/etcd_client.py")
'''

# What `stat` prints for a data directory etcd has written (pyinfra's File fact parses it).
MEMBER_DIR = ("user=etcd group=etcd mode=drwx------ atime=1700000000 mtime=1700000000 "
              "ctime=1700000000 size=4096 '/var/lib/etcd/ha-webstack/member'")


def plan(tmp_path: Path, responses: dict) -> subprocess.CompletedProcess:
    for part in PARTS:
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "inventory.py").write_text(INVENTORY % {"responses": responses})
    (tmp_path / "deploy.py").write_text(DEPLOY)
    return subprocess.run(
        [str(ROOT / ".venv/bin/pyinfra"), "-y", "--json", "inventory.py", "deploy.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"})


def operations(result) -> dict[str, list[str]]:
    """{operation name: hosts it ran on (changed)}, names without their task file."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ops = json.loads(result.stdout)["results"]["operations"]
    return {op["name"].split(" | ", 1)[-1]: sorted(h.removeprefix("@fake/") for h in
                                                 op["success"]) for op in ops}


def test_a_new_cluster_is_created_by_every_member_at_once(tmp_path, all_secrets):
    ops = operations(plan(tmp_path, {}))
    members = sorted(MEMBERS)
    assert ops["/etc/default/etcd (initial cluster state: new)"] == members
    assert ops["Start etcd: create the cluster"] == members
    assert ops["/etc/default/etcd: the cluster exists, later starts join it"] == members
    assert not any(name.startswith("Restart etcd") for name in ops)
    assert ops["etcd client: key"] == ["db-01", "db-02"]
    keys = sorted(p.name for p in (tmp_path / "secrets/unittest-ca/hosts").iterdir())
    assert keys == sorted(f"@fake_{h}.{ext}" for h in [*MEMBERS, "db-01", "db-02"]
                          for ext in ("crt", "key"))


def test_once_a_member_has_data_the_cluster_is_never_created_again(tmp_path, all_secrets):
    ops = operations(plan(tmp_path, {"lb-02": {"/var/lib/etcd/ha-webstack/member": MEMBER_DIR}}))
    assert ops["/etc/default/etcd (initial cluster state: existing)"] == sorted(MEMBERS)
    assert "Start etcd: create the cluster" not in ops
    assert ops["Restart etcd, one member at a time (its configuration changed)"] == sorted(
        MEMBERS)


def test_a_member_outside_the_run_with_no_data_anywhere_stops_the_deploy(tmp_path, all_secrets):
    result = plan(tmp_path, {})
    assert result.returncode == 0
    limited = subprocess.run(
        [str(ROOT / ".venv/bin/pyinfra"), "-y", "--limit", "@fake/lb-01", "inventory.py",
         "deploy.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0"})
    output = limited.stdout + limited.stderr
    assert limited.returncode != 0
    assert "cannot tell whether the cluster exists" in output, output[-3000:]

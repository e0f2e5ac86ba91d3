"""webstack/settings.py layers settings "exactly as pyinfra merges them" (group_data/all.py <
group_data/<group>.py and the inventory's group data < host data): checked against pyinfra's
own inventory loader, which decides what the deploy really gets (host.data).

Each case writes an inventory file into tmp_path, next to a link to the real group_data/, and
loads it twice: as the inventory's own check_inventory() sees it (webstack's layering), and with
pyinfra_cli's make_inventory (what `pyinfra inventories/x.py deploy.py` loads) validated by
from_pyinfra() (what deploy.py uses). For every host and every setting the values must agree,
or the check made before connecting validates other values than the deploy applies.
"""

import runpy

import pytest
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

from webstack import ROOT
from webstack.settings import Stack, check_inventory, from_pyinfra

HEAD = """\
from webstack.settings import check_inventory

_env = {"stack_env": "unittest", "stack_network": "10.9.0.0/24",
        "admin_networks": ["10.9.0.1/32"]}


def _h(name, address, **data):
    return (name, {"ssh_hostname": address, **_env, **data})


_vip = {"keepalived_floating_ip": "10.9.0.10"}
"""
LBS = 'loadbalancers = [_h("lb-01", "10.9.0.11", **_vip), _h("lb-02", "10.9.0.12", **_vip)]'
MONITORING = ('monitoring = [_h("monitor-01", "10.9.0.41", '
              'alertmanager_webhook_url="http://127.0.0.1:9099/alerts")]')
DATABASES = 'databases = [_h("db-01", "10.9.0.31"), _h("db-02", "10.9.0.32")]'
DB_PRIMARY = 'db_primary = [_h("db-01", "10.9.0.31")]'
DB_REPLICAS = 'db_replicas = [_h("db-02", "10.9.0.32")]'
WEBSERVERS = 'webservers = [_h("web-01", "10.9.0.21"), _h("web-02", "10.9.0.22")]'

# The layers at work: group data tuples (on groups with and without a group_data/ file), host
# data, a host listed in two groups with different host data, a group of the operator's own.
LAYERED = [
    LBS,
    'webservers = ([_h("web-01", "10.9.0.21"), _h("web-02", "10.9.0.22", nginx_port=8081)],\n'
    '              {"nginx_port": 8080, "app_replica_max_lag": 1.0})',
    'databases = [_h("db-01", "10.9.0.31", mysql_max_connections=300), _h("db-02", "10.9.0.32")]',
    'db_primary = [_h("db-01", "10.9.0.31", mysql_max_connections=400)]',
    'db_replicas = ([_h("db-02", "10.9.0.32")], {"mysql_replica_parallel_threads": 8})',
    MONITORING,
    'canary = (["web-01"], {"nginx_client_max_body_size": "4m"})',
]


def write_inventory(tmp_path, groups: list[str]):
    (tmp_path / "group_data").symlink_to(ROOT / "group_data")  # pyinfra reads it from cwd
    (tmp_path / "inventories").mkdir()
    path = tmp_path / "inventories" / "unit.py"
    path.write_text(HEAD + "\n" + "\n".join(groups) + "\n\ncheck_inventory(globals())\n")
    return path


def load_with_pyinfra(path, cwd):
    with ctx_state.use(State()):
        inventory = make_inventory(str(path), cwd=str(cwd))
        return inventory, from_pyinfra(inventory)


def disagreements(ours: Stack, pyinfras: Stack) -> list[str]:
    assert sorted(h.name for h in ours.hosts) == sorted(h.name for h in pyinfras.hosts)
    found = []
    for host in ours.hosts:
        theirs = pyinfras.host(host.name)
        assert host.settings.keys() == theirs.settings.keys(), host.name
        for model, values in host.settings.items():
            for key in type(values).model_fields:
                mine, other = getattr(values, key), getattr(theirs.settings[model], key)
                if mine != other:
                    found.append(f"{host.name} {key}: webstack {mine!r}, pyinfra {other!r}")
    return found


CASES = [
    pytest.param(LAYERED, id="group data, host data, a host in two groups, an own group"),
    pytest.param([LBS, WEBSERVERS, DATABASES,
                  'db_primary = ([_h("db-01", "10.9.0.31")], {"mysql_max_connections": 500})',
                  DB_REPLICAS, MONITORING],
                 id="group data on db_primary, declared after databases"),
    pytest.param([*LAYERED[:-1], 'all = (["lb-01", "lb-02", "web-01", "web-02", "db-01", '
                                 '"db-02", "monitor-01"], {"ufw_logging": "medium"})'],
                 id="inventory data for all, not set by any other group"),
]
# Cases where the two disagree today: webstack orders the groups' layers by its ROLE_GROUPS
# (then the others) and applies `all` after the role groups; pyinfra applies group data in the
# order the inventory file declares the groups, with `all` beneath every group.
DIVERGING = [
    pytest.param([LBS, WEBSERVERS,
                  'db_primary = ([_h("db-01", "10.9.0.31")], {"mysql_max_connections": 500})',
                  DATABASES, DB_REPLICAS, MONITORING],
                 id="db_primary declared before databases"),
    pytest.param(['canary = (["web-01"], {"app_replica_max_lag": 2.0})', LBS, WEBSERVERS,
                  DATABASES, DB_PRIMARY, DB_REPLICAS, MONITORING],
                 id="own group declared before the role groups"),
    pytest.param([LBS, WEBSERVERS, DATABASES, DB_PRIMARY,
                  'db_replicas = ([_h("db-02", "10.9.0.32")], {"sshd_port": 2200})', MONITORING,
                  'all = (["lb-01", "lb-02", "web-01", "web-02", "db-01", "db-02", '
                  '"monitor-01"], {"ufw_logging": "medium"})'],
                 id="all in the inventory, a role group overriding a group_data/all.py value"),
]


@pytest.mark.parametrize("groups", CASES)
def test_webstack_picks_the_values_pyinfra_deploys(tmp_path, all_secrets, groups):
    path = write_inventory(tmp_path, groups)
    _, pyinfras = load_with_pyinfra(path, tmp_path)
    ours = check_inventory(runpy.run_path(str(path)))
    assert disagreements(ours, pyinfras) == []


@pytest.mark.xfail(strict=True, reason=(
    "hosts_from_inventory layers group data in ROLE_GROUPS order and re-applies `all` after "
    "the role groups; pyinfra uses the inventory's declaration order with `all` lowest"))
@pytest.mark.parametrize("groups", DIVERGING)
def test_webstack_picks_the_values_pyinfra_deploys_whatever_the_group_order(tmp_path,
                                                                           all_secrets, groups):
    path = write_inventory(tmp_path, groups)
    _, pyinfras = load_with_pyinfra(path, tmp_path)
    ours = check_inventory(runpy.run_path(str(path)))
    assert disagreements(ours, pyinfras) == []


def test_where_each_value_comes_from(tmp_path, all_secrets):
    path = write_inventory(tmp_path, LAYERED)
    inventory, _ = load_with_pyinfra(path, tmp_path)
    ours = check_inventory(runpy.run_path(str(path)))
    expected = {
        # host data beats everything
        ("web-02", "nginx_port"): 8081,
        # a group_data/ file beats the inventory's data for the same group (pyinfra's order):
        # the inventory's webservers nginx_port = 8080 never applies
        ("web-01", "nginx_port"): 80,
        ("web-01", "app_replica_max_lag"): 5.0,
        # group data for a group without a group_data/ file does apply
        ("db-02", "mysql_replica_parallel_threads"): 8,
        ("db-01", "mysql_replica_parallel_threads"): 4,
        # host data given in two groups: the later group's entry wins
        ("db-01", "mysql_max_connections"): 400,
        ("db-02", "mysql_max_connections"): 200,
        # an operator's own group
        ("web-01", "nginx_client_max_body_size"): "4m",
        ("web-02", "nginx_client_max_body_size"): "1m",
    }
    got_pyinfra = {(h, k): inventory.get_host(h).data.get(k) for h, k in expected}
    got_webstack = {(h, k): getattr(ours.host(h), k) for h, k in expected}
    assert got_pyinfra == expected
    assert got_webstack == expected


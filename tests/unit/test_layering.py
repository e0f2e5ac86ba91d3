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

from webstack import ROOT, settings
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
# Cases where the order of the groups decides: pyinfra applies group data in the order the
# inventory file declares the groups (not webstack's ROLE_GROUPS order), with `all` (the
# inventory's data, then group_data/all.py) beneath every group.
ORDERED = [
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
    pytest.param([LBS, 'webservers = [_h("web-01", "10.9.0.21"), _h("web-02", "10.9.0.22")]',
                  DATABASES, DB_PRIMARY, DB_REPLICAS, MONITORING,
                  'all = (["lb-01", "lb-02", ("web-01", {"nginx_port": 8082}), "db-01", '
                  '"db-02", "monitor-01"], {})'],
                 id="a host's entry in all beats its group entries; a host not in all is no host"),
]


@pytest.mark.parametrize("groups", CASES)
def test_webstack_picks_the_values_pyinfra_deploys(tmp_path, all_secrets, groups):
    path = write_inventory(tmp_path, groups)
    _, pyinfras = load_with_pyinfra(path, tmp_path)
    ours = check_inventory(runpy.run_path(str(path)))
    assert disagreements(ours, pyinfras) == []


@pytest.mark.parametrize("groups", ORDERED)
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



def test_the_group_named_after_the_inventory_file_beats_every_declared_group(
        tmp_path, all_secrets, monkeypatch):
    # pyinfra puts every host in a group named after the inventory file (inventories/unit.py:
    # `unit`), after the groups the file declares: group_data/unit.py beats them all.
    group_data = tmp_path / "data"
    group_data.mkdir()
    for source in (ROOT / "group_data").glob("*.py"):
        (group_data / source.name).symlink_to(source)
    (group_data / "unit.py").write_text('ufw_logging = "high"\n')
    monkeypatch.setattr(settings, "GROUP_DATA_DIR", group_data)
    path = write_inventory(tmp_path, [
        'canary = (["web-01"], {"ufw_logging": "medium"})', LBS, WEBSERVERS, DATABASES,
        DB_PRIMARY, DB_REPLICAS, MONITORING])
    # pyinfra reads ./group_data (tmp_path's links to the real one), then these directories
    with ctx_state.use(State()):
        inventory = make_inventory(str(path), cwd=str(tmp_path),
                                   group_data_directories=[str(group_data)])
        pyinfras = from_pyinfra(inventory)
    ours = check_inventory(runpy.run_path(str(path)))
    assert disagreements(ours, pyinfras) == []
    assert {h.name: h.ufw_logging for h in ours.hosts} == dict.fromkeys(
        [h.name for h in ours.hosts], "high")


@pytest.mark.parametrize(("group", "problem"), [
    pytest.param('all = (["lb-01", "lb-02", "web-01", "web-02", "db-01", "db-02", '
                 '"monitor-01"], {"nginx_port": 8080})',
                 "unknown setting 'nginx_port' in unit.py (group all)", id="all"),
    pytest.param('canary = (["web-01"], {"sshd_port": 0})',
                 "setting 'sshd_port' = 0 (from unit.py (group canary), host web-01)",
                 id="own group"),
])
def test_a_bad_value_names_the_layer_it_came_from(tmp_path, all_secrets, capsys, group,
                                                  problem):
    path = write_inventory(tmp_path, [LBS, WEBSERVERS, DATABASES, DB_PRIMARY, DB_REPLICAS,
                                      MONITORING, group])
    with pytest.raises(SystemExit):
        runpy.run_path(str(path))  # the inventory file runs check_inventory()
    assert problem in capsys.readouterr().err

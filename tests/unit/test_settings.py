"""Bad input is refused with a message naming the setting and the fix, before any host is touched.

Unit tests call the validator directly; the CLI tests run the real `pyinfra` against a copy of the
repository with one bad value and check that it stops before connecting anywhere.
"""

import shutil
from pathlib import Path

import pytest

from lab.toolkit.deploy import ROOT, run_deploy
from webstack.settings import SettingsError, _build, _read_group_data, hosts_from_inventory

GOOD = {
    "stack_env": "unittest",
    "stack_network": "10.9.0.0/24",
    "admin_networks": ["10.9.0.1/32"],
}


def _namespace(**overrides):
    env = {**GOOD, **overrides.pop("env", {})}

    def host(name, address, **data):
        return (name, {"ssh_hostname": address, **env, **data})

    vip = {"keepalived_floating_ip": "10.9.0.10"}
    webhook = {"alertmanager_webhook_url": "http://127.0.0.1:9099/alerts"}
    ns = {
        "__file__": "inventories/unit.py",
        "loadbalancers": [host("lb-01", "10.9.0.11", **vip), host("lb-02", "10.9.0.12", **vip)],
        "webservers": [host("web-01", "10.9.0.21"), host("web-02", "10.9.0.22")],
        "databases": [host("db-01", "10.9.0.31"), host("db-02", "10.9.0.32")],
        "db_primary": [host("db-01", "10.9.0.31")],
        "db_replicas": [host("db-02", "10.9.0.32")],
        "monitoring": [host("monitor-01", "10.9.0.41", **webhook)],
    }
    ns.update(overrides)
    return ns


def _problems(namespace, group_data=None):
    hosts = hosts_from_inventory(namespace, group_data or _read_group_data())
    with pytest.raises(SettingsError) as err:
        _build(hosts, env=None)
    return str(err.value)


def test_good_inventory_builds_the_stack(all_secrets):
    stack = _build(hosts_from_inventory(_namespace(), _read_group_data()), env=None)
    assert [h.name for h in stack.group("webservers")] == ["web-01", "web-02"]
    assert str(stack.host("lb-01").keepalived_floating_ip) == "10.9.0.10"


def test_typo_in_a_group_data_key_is_named_with_a_suggestion(all_secrets):
    data = _read_group_data()
    data["all"]["sshd_rate_limt"] = True
    msg = _problems(_namespace(), data)
    assert "unknown setting 'sshd_rate_limt' in group_data/all.py" in msg
    assert "did you mean 'sshd_rate_limit'" in msg


def test_malformed_cidr_names_the_setting_and_the_expected_form(all_secrets):
    msg = _problems(_namespace(env={"admin_networks": ["10.9.0.0/33"]}))
    assert "setting 'admin_networks'" in msg and "'10.9.0.0/33'" in msg
    assert "CIDR notation" in msg


def test_floating_ip_outside_the_subnet_is_refused(all_secrets):
    vip = {"keepalived_floating_ip": "10.8.0.10"}
    ns = _namespace()
    ns["loadbalancers"] = [(name, {**data, **vip}) for name, data in ns["loadbalancers"]]
    msg = _problems(ns)
    assert "'keepalived_floating_ip' = 10.8.0.10" in msg and "outside stack_network" in msg


def test_duplicate_addresses_are_refused(all_secrets):
    ns = _namespace()
    ns["monitoring"] = [("monitor-01", {**ns["monitoring"][0][1], "ssh_hostname": "10.9.0.21"})]
    msg = _problems(ns)
    assert "duplicate address 10.9.0.21 for hosts web-01, monitor-01" in msg


def test_alerts_must_go_somewhere(all_secrets):
    ns = _namespace()
    ns["monitoring"] = [(name, {k: v for k, v in data.items() if k != "alertmanager_webhook_url"})
                        for name, data in ns["monitoring"]]
    assert "alerts go nowhere: set alertmanager_webhook_url or alertmanager_email_to" in (
        _problems(ns))


def test_two_primaries_are_refused(all_secrets):
    ns = _namespace()
    ns["db_primary"] = ns["databases"]
    assert "group db_primary has 2 hosts" in _problems(ns)


def _etcd(ns, *names):
    """The namespace's etcd group made of these hosts (their data from their other groups)."""
    data = {name: d for group in ("loadbalancers", "webservers", "databases", "monitoring")
            for name, d in ns[group]}
    return {**ns, "etcd": [(name, data[name]) for name in names]}


ETCD = ("lb-01", "lb-02", "monitor-01")


def test_three_etcd_members_outside_the_databases_build(all_secrets):
    stack = _build(hosts_from_inventory(_etcd(_namespace(), *ETCD), _read_group_data()),
                   env=None)
    assert [h.name for h in stack.group("etcd")] == list(ETCD)
    assert stack.host("lb-01").etcd_client_port == 2379


def test_the_etcd_group_may_be_empty_until_the_agent_uses_it(all_secrets):
    stack = _build(hosts_from_inventory(_etcd(_namespace()), _read_group_data()), env=None)
    assert stack.group("etcd") == []


@pytest.mark.parametrize("names", [("lb-01",), ("lb-01", "lb-02")])
def test_fewer_than_three_etcd_members_are_refused_with_the_reason(all_secrets, names):
    msg = _problems(_etcd(_namespace(), *names))
    assert f"group etcd has {len(names)} host" in msg and "put at least 3" in msg
    assert "majority" in msg


def test_an_even_number_of_etcd_members_is_refused(all_secrets):
    msg = _problems(_etcd(_namespace(), "lb-01", "lb-02", "monitor-01", "web-01"))
    assert "group etcd has 4 hosts: use an odd number (3 or 5)" in msg


def test_a_database_host_in_etcd_is_refused(all_secrets):
    msg = _problems(_etcd(_namespace(), "lb-01", "lb-02", "db-01"))
    assert "host db-01 is in both etcd and databases" in msg
    assert "outside the database tier" in msg


def test_etcd_members_share_one_cluster_token(all_secrets):
    ns = _etcd(_namespace(), *ETCD)
    ns["etcd"] = [(name, {**data, "etcd_cluster_token": "other"}) if name == "lb-02"
                  else (name, data) for name, data in ns["etcd"]]
    msg = _problems(ns)
    assert "setting 'etcd_cluster_token' differs between the etcd members (ha-webstack, other)" in (
        msg)


@pytest.mark.parametrize("key, value, expected", [
    ("etcd_data_dir", "/var/lib/etcd/default", "bootstraps a one-member cluster there"),
    ("etcd_data_dir", "relative/dir", "setting 'etcd_data_dir' = 'relative/dir'"),
    ("etcd_election_timeout_ms", 300, "at least 5 times etcd_heartbeat_interval_ms (100)"),
    ("etcd_client_port", 0, "setting 'etcd_client_port' = 0"),
])
def test_bad_etcd_settings_name_the_setting(all_secrets, key, value, expected):
    ns = _etcd(_namespace(), *ETCD)
    ns["etcd"] = [(name, {**data, key: value}) for name, data in ns["etcd"]]
    msg = _problems(ns)
    assert expected in msg and f"'{key}'" in msg


def test_missing_secret_names_the_variable_and_the_file(monkeypatch):
    from webstack.secret_loader import SECRETS
    for name in SECRETS:
        monkeypatch.delenv(name.upper(), raising=False)
    msg = _problems(_namespace())
    assert "secret 'mysql_app_password' is missing: export MYSQL_APP_PASSWORD=" in msg
    assert "secrets/unittest.env" in msg


# --- the real CLI: the error comes before pyinfra connects to anything -----------------------

REPO_PARTS = ["deploy.py", "inventories", "group_data", "tasks", "templates", "webstack", "lab"]


@pytest.fixture
def repo_copy(tmp_path):
    """The repository without its secrets; prod addresses rewritten to the lab's own subnet so
    that even a broken check could only ever reach the lab."""
    for part in REPO_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, tmp_path / part, ignore=shutil.ignore_patterns(".state"))
        else:
            shutil.copy(src, tmp_path / part)
    prod = tmp_path / "inventories/prod.py"
    prod.write_text(prod.read_text().replace("192.0.2.", "10.213.0.")
                    .replace("198.51.100.0/28", "10.213.0.1/32"))
    return tmp_path


def _edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _assert_refused_before_connecting(result, *expected):
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Connecting to hosts" not in output and "Connected" not in output, output
    for text in expected:
        assert text in output, output


def test_cli_refuses_prod_without_secrets(repo_copy, monkeypatch):
    from webstack.secret_loader import SECRETS
    for name in SECRETS:
        monkeypatch.delenv(name.upper(), raising=False)
    result = run_deploy(cwd=repo_copy, inventory="inventories/prod.py")
    _assert_refused_before_connecting(result, "secret 'haproxy_stats_password' is missing",
                                      "secrets/prod.env")


def test_cli_refuses_a_typo_in_group_data(repo_copy, all_secrets):
    _edit(repo_copy / "group_data/all.py", "ufw_logging =", "ufw_loging =")
    result = run_deploy(cwd=repo_copy, inventory="inventories/prod.py")
    _assert_refused_before_connecting(result, "unknown setting 'ufw_loging'",
                                      "did you mean 'ufw_logging'")


def test_cli_refuses_a_floating_ip_outside_the_network(repo_copy, all_secrets):
    _edit(repo_copy / "inventories/prod.py", 'keepalived_floating_ip="10.213.0.10"',
          'keepalived_floating_ip="10.214.0.10"')
    result = run_deploy(cwd=repo_copy, inventory="inventories/prod.py")
    _assert_refused_before_connecting(result, "outside stack_network 10.213.0.0/24")


def test_cli_refuses_an_etcd_group_of_two(repo_copy, all_secrets):
    _edit(repo_copy / "inventories/prod.py", ', ("monitor-01", "10.213.0.41"))', ")")
    result = run_deploy(cwd=repo_copy, inventory="inventories/prod.py")
    _assert_refused_before_connecting(result, "group etcd has 2 hosts: put at least 3")


@pytest.mark.parametrize("file, old, new, expected", [
    ("group_data/loadbalancers.py", 'haproxy_balance = "roundrobin"',
     'haproxy_balance = "random"', "setting 'haproxy_balance' = 'random'"),
    ("group_data/databases.py", 'mysql_innodb_buffer_pool_size = "256M"',
     'mysql_innodb_buffer_pool_size = "lots"', "setting 'mysql_innodb_buffer_pool_size'"),
    ("group_data/webservers.py", "nginx_port = 80 ", "nginx_port = 80000 ",
     "setting 'nginx_port' = 80000"),
])
def test_cli_refuses_an_invalid_tier_setting(repo_copy, all_secrets, file, old, new, expected):
    _edit(repo_copy / file, old, new)
    result = run_deploy(cwd=repo_copy, inventory="inventories/lab.py")
    _assert_refused_before_connecting(result, expected, "Expected:")

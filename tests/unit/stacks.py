"""Small in-memory stacks for the fast tier, described the way an inventory file describes them
(as tests/unit/test_settings.py does) and validated by webstack/settings.py against the real
group_data/ defaults. Building one needs the secrets: use the `all_secrets` fixture (or, for a
fixture wider than one test, `secrets_in_environment`)."""

from ipaddress import ip_network

import pytest

from webstack.secret_loader import SECRETS
from webstack.settings import Stack, _build, _read_group_data, hosts_from_inventory


def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every required secret set in the environment (which wins over secrets/<env>.env), so a
    test gives the same answer with or without the lab's generated secrets file."""
    for name in SECRETS:
        monkeypatch.setenv(name.upper(), "s3cret-for-tests")


def namespace(subnet: str = "10.213.0.0/24", web_servers: int = 2,
              admin_networks: list[str] | None = None) -> dict:
    """An inventory module's globals: the lab's layout (lb .11/.12, web .21.., db .31/.32,
    monitor .41, floating IP .10, etcd on lb-01, lb-02 and monitor-01) in `subnet`; the admin
    network is the gateway (.1)."""
    net = ip_network(subnet)
    env = {"stack_env": "unittest", "stack_network": subnet,
           "admin_networks": admin_networks or [f"{net[1]}/32"]}

    def host(name, offset, **data):
        return (name, {"ssh_hostname": str(net[offset]), **env, **data})

    vip = {"keepalived_floating_ip": str(net[10])}
    ns = {
        "__file__": "inventories/unit.py",
        "loadbalancers": [host("lb-01", 11, **vip), host("lb-02", 12, **vip)],
        "webservers": [host(f"web-{i:02d}", 20 + i) for i in range(1, web_servers + 1)],
        "databases": [host("db-01", 31), host("db-02", 32)],
        "db_primary": [host("db-01", 31)],
        "db_replicas": [host("db-02", 32)],
        "monitoring": [host("monitor-01", 41,
                            alertmanager_webhook_url="http://127.0.0.1:9099/alerts")],
        "etcd": [host("lb-01", 11, **vip), host("lb-02", 12, **vip), host("monitor-01", 41)],
    }
    return ns


def build(ns: dict) -> Stack:
    return _build(hosts_from_inventory(ns, _read_group_data()), env=None)

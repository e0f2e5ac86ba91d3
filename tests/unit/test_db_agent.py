"""The database agent as the deploy sees it (webstack/db_agent.py), before any host: the
configuration it writes is one the agent itself accepts, the primary the deploy follows, the
settings and firewall rows of mysql_failover = "automatic"."""

import json
import os

import pytest

from agent import config as agent_config
from tests.unit import stacks
from webstack import db_agent
from webstack.mariadb import AGENT_OWNED, dynamic_settings, runtime_settings
from webstack.policy import rules_for
from webstack.settings import SettingsError


def automatic(ns: dict, **data) -> dict:
    """The namespace with mysql_failover = "automatic" on every database host."""
    for group in ("databases", "db_primary", "db_replicas"):
        ns[group] = [(name, {**d, "mysql_failover": "automatic", **data}) for name, d in ns[group]]
    return ns


@pytest.fixture
def stack(all_secrets):
    return stacks.build(automatic(stacks.namespace()))


def test_the_agents_configuration_is_one_the_agent_accepts(stack, tmp_path):
    me = stack.host("db-02")
    written = db_agent.config(stack, me)
    # The host's paths, moved under tmp_path: the agent checks the files exist and are private.
    for section, key in [("etcd", "ca"), ("etcd", "cert"), ("etcd", "key"),
                         ("mariadb", "replication_password_file")]:
        path = tmp_path / key
        path.write_text("secret\n")
        os.chmod(path, 0o600)
        written[section][key] = str(path)
    written["mariadb"]["recovery_file"] = str(tmp_path / "62.cnf")
    written["lease_file"] = str(tmp_path / "lease")
    parsed = agent_config.parse("agent.json", json.loads(json.dumps(written)))
    assert parsed.name == "db-02" and parsed.initial_primary == "db-01"
    assert parsed.members == {"db-01": ("10.213.0.31", 3306), "db-02": ("10.213.0.32", 3306)}
    assert parsed.etcd.endpoints == ("https://10.213.0.11:2379", "https://10.213.0.12:2379",
                                     "https://10.213.0.41:2379")
    assert parsed.listen == ("10.213.0.32", me.db_agent_port)
    assert (parsed.policy.lease_ttl, parsed.policy.fence_margin,
            parsed.policy.anti_flap_window) == (me.db_agent_lease_ttl_s,
                                                me.db_agent_fence_margin_s,
                                                me.db_agent_anti_flap_window_s)
    assert parsed.replica_max_lag == stack.group("webservers")[0].app_replica_max_lag
    assert db_agent.config_text(stack, me) == db_agent.config_text(stack, me)  # stable text


@pytest.mark.parametrize(("roles", "primary"), [
    ({"db-01": None, "db-02": None}, "db-01"),  # no agent yet: the inventory's first primary
    ({"db-01": "primary", "db-02": "replica"}, "db-01"),
    ({"db-01": "other", "db-02": "primary"}, "db-02"),  # after a failover
    ({"db-01": None, "db-02": "primary"}, "db-02"),  # the old primary's host is down
])
def test_the_deploy_follows_the_primary_the_agents_chose(stack, roles, primary):
    assert db_agent.primary_from_roles(stack, roles).name == primary


@pytest.mark.parametrize("roles", [
    {"db-01": "other", "db-02": "replica"},  # a failover under way, or waiting for a human
    {"db-01": None, "db-02": "other"},
    {"db-01": "down", "db-02": "replica"},  # the primary's agent is installed, not answering
    {"db-01": "primary", "db-02": "primary"},
])
def test_without_one_primary_the_deploy_does_not_choose(stack, roles):
    with pytest.raises(ValueError, match="primary"):
        db_agent.primary_from_roles(stack, roles)


def test_the_agents_own_read_only_events_and_semi_sync(stack):
    for name in ("db-01", "db-02"):
        values = dynamic_settings(stack.host(name), primary=name == "db-01")
        assert values["read_only"] == "ON" and values["event_scheduler"] == "OFF"
        assert not [k for k in values if k.startswith("rpl_semi_sync")]
        assert not set(runtime_settings(stack.host(name), values)) & set(AGENT_OWNED)


def test_manual_failover_keeps_the_roles_values(all_secrets):
    manual = stacks.build(stacks.namespace())
    primary = dynamic_settings(manual.host("db-01"), primary=True)
    assert primary["read_only"] == "OFF"
    assert runtime_settings(manual.host("db-01"), primary) == primary
    assert not db_agent.automatic(manual)


def test_the_agents_port_is_open_to_web_servers_and_monitoring_only_where_they_run(stack,
                                                                                   all_secrets):
    port = str(stack.host("db-01").db_agent_port)
    sources = {r.source for r in rules_for(stack, stack.host("db-01")) if r.port == port}
    assert sources == {"10.213.0.21", "10.213.0.22", "10.213.0.41"}
    manual = stacks.build(stacks.namespace())
    assert not [r for r in rules_for(manual, manual.host("db-01")) if r.port == port]


def manual_on_db02(ns: dict) -> None:
    for group in ("databases", "db_replicas"):
        ns[group] = [(n, {**d, "mysql_failover": "manual"} if n == "db-02" else d)
                     for n, d in ns[group]]


@pytest.mark.parametrize(("change", "message"), [
    (lambda ns: ns.pop("etcd"), "needs an etcd group"),
    (lambda ns: manual_on_db02(ns), "differs between"),
])
def test_automatic_failover_needs_etcd_and_one_mode(all_secrets, change, message):
    ns = automatic(stacks.namespace())
    change(ns)
    with pytest.raises(SettingsError, match=message):
        stacks.build(ns)


def test_a_fence_margin_not_below_the_lease_ttl_is_refused(all_secrets):
    with pytest.raises(SettingsError, match="db_agent_fence_margin_s.*less than"):
        stacks.build(automatic(stacks.namespace(), db_agent_lease_ttl_s=4,
                               db_agent_fence_margin_s=4))


def test_with_automatic_failover_the_app_uses_its_local_routes(stack, all_secrets):
    web = stack.host("web-01")
    assert db_agent.app_routes(stack, web) == ("127.0.0.1:3306", ["127.0.0.1:3307"])
    manual = stacks.build(stacks.namespace())
    assert db_agent.app_routes(manual, manual.host("web-01")) == ("10.213.0.31",
                                                                   ["10.213.0.32"])


def test_a_route_on_a_port_the_web_server_uses_is_refused(all_secrets):
    ns = automatic(stacks.namespace())
    ns["webservers"] = [(n, {**d, "db_proxy_read_port": 8000}) for n, d in ns["webservers"]]
    with pytest.raises(SettingsError, match="db_proxy_read_port.*also app_port"):
        stacks.build(ns)

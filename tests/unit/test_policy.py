"""The firewall policy (webstack/policy.py) turned into each host's ufw rules, for a small
in-memory stack (tests/unit/stacks.py): who may reach what is decided here, before any host."""

import pytest

from tests.unit import stacks
from webstack.policy import POLICY, Rule, rules_for

SUBNET = "10.9.0.0/24"
ADMIN = "10.9.0.1"
LBS = {"lb-01": "10.9.0.11", "lb-02": "10.9.0.12"}
WEBS = {"web-01": "10.9.0.21", "web-02": "10.9.0.22"}
DBS = {"db-01": "10.9.0.31", "db-02": "10.9.0.32"}
MONITOR = "10.9.0.41"


@pytest.fixture
def stack(all_secrets):
    return stacks.build(stacks.namespace(SUBNET))


def rules(stack, name: str) -> list[Rule]:
    return rules_for(stack, stack.host(name))


def allowed(stack, name: str, port: str) -> dict[str, str]:
    """source -> action of the host's rules for one port."""
    return {r.source: r.action for r in rules(stack, name) if r.port == port}


@pytest.mark.parametrize("db", DBS)
def test_databases_accept_mysql_from_web_servers_other_databases_and_monitoring_only(stack, db):
    other_db = next(a for name, a in DBS.items() if name != db)
    assert allowed(stack, db, "3306") == {
        **dict.fromkeys(WEBS.values(), "allow"), other_db: "allow", MONITOR: "allow"}


def test_mysql_is_open_on_database_hosts_only(stack):
    open_on = {h.name for h in stack.hosts if allowed(stack, h.name, "3306")}
    assert open_on == set(DBS)


@pytest.mark.parametrize("host", [*LBS, *WEBS, *DBS, "monitor-01"])
def test_ssh_only_from_admin_networks_and_rate_limited_first(stack, host):
    host_rules = rules(stack, host)
    assert allowed(stack, host, "22") == {ADMIN: "limit"}
    # first, so a deploy that adds rules one by one never locks itself out
    assert host_rules[0] == Rule("limit", "tcp", "22", ADMIN, "all/ssh from admin_networks")


def test_ssh_admin_networks_are_taken_as_given(all_secrets):
    stack = stacks.build(stacks.namespace(SUBNET, admin_networks=["10.9.0.1/32",
                                                                   "198.51.100.0/28"]))
    assert allowed(stack, "web-01", "22") == {ADMIN: "limit", "198.51.100.0/28": "limit"}


@pytest.mark.parametrize("host", [*LBS, *WEBS, *DBS, "monitor-01"])
def test_a_host_never_allows_its_own_address(stack, host):
    address = stack.host(host).address
    assert address not in {r.source for r in rules(stack, host)}


def test_only_the_load_balancers_are_public(stack):
    public = {(h.name, r.port) for h in stack.hosts for r in rules(stack, h.name)
              if r.source == "any"}
    assert public == {(lb, port) for lb in LBS for port in ("80", "443")}


def test_vrrp_between_the_load_balancers_only(stack):
    vrrp = {h.name: [(r.source, r.port) for r in rules(stack, h.name) if r.proto == "vrrp"]
            for h in stack.hosts}
    assert vrrp == {**{h.name: [] for h in stack.hosts},
                    "lb-01": [(LBS["lb-02"], "any")], "lb-02": [(LBS["lb-01"], "any")]}


def test_web_servers_take_http_from_the_load_balancers_and_admins(stack):
    assert allowed(stack, "web-01", "80") == {**dict.fromkeys(LBS.values(), "allow"),
                                              ADMIN: "allow"}


def test_adding_web_03_adds_exactly_one_mysql_rule_per_database_host(all_secrets):
    before = stacks.build(stacks.namespace(SUBNET, web_servers=2))
    after = stacks.build(stacks.namespace(SUBNET, web_servers=3))
    web_03 = after.host("web-03").address
    for h in before.hosts:
        added = set(rules(after, h.name)) - set(rules(before, h.name))
        removed = set(rules(before, h.name)) - set(rules(after, h.name))
        expected = ({Rule("allow", "tcp", "3306", web_03, "databases/mysql from webservers")}
                    if h.name in DBS else set())
        assert (added, removed) == (expected, set()), h.name


def test_setting_named_ports_resolve_to_the_setting_of_the_host(all_secrets):
    ns = stacks.namespace(SUBNET)
    ns["databases"] = [(n, {**d, "mysql_port": 3307}) for n, d in ns["databases"]]
    ns["webservers"] = [(n, {**d, "nginx_port": 8081} if n == "web-02" else d)
                        for n, d in ns["webservers"]]
    stack = stacks.build(ns)

    def ports(host, service):
        return {r.port for r in rules(stack, host) if r.comment.startswith(service + " ")}

    assert ports("db-01", "databases/mysql") == {"3307"}
    assert ports("web-02", "webservers/http") == {"8081"}
    assert ports("web-01", "webservers/http") == {"80"}  # the group_data default


def test_every_setting_named_port_in_the_policy_is_a_port_setting(stack):
    # A misspelt setting name would only fail on a host of that role, mid-deploy.
    for row in POLICY:
        role = next(h for h in stack.hosts if row.role == "all" or row.role in h.groups)
        for port in row.ports:
            value = getattr(role, port) if isinstance(port, str) else port
            assert isinstance(value, int) and 1 <= value <= 65535, (row.service, port)


def test_a_source_named_twice_gets_one_rule_with_the_first_rows_comment(all_secrets):
    # The monitoring host is also the admin network here: the management port would get the
    # same rule twice with two comments, and every deploy would rewrite the comment.
    stack = stacks.build(stacks.namespace(SUBNET, admin_networks=[f"{MONITOR}/32"]))
    for h in stack.hosts:
        keys = [r.key for r in rules(stack, h.name)]
        assert len(keys) == len(set(keys)), h.name
    management = [r for r in rules(stack, "lb-01") if r.port == "8404"]
    assert management == [Rule("allow", "tcp", "8404", MONITOR,
                               "loadbalancers/haproxy-management from admin_networks")]


ETCD = {"lb-01": LBS["lb-01"], "lb-02": LBS["lb-02"], "monitor-01": MONITOR}


@pytest.mark.parametrize("member", ETCD)
def test_etcd_clients_are_the_databases_and_its_metrics_go_to_monitoring(stack, member):
    assert allowed(stack, member, "2379") == dict.fromkeys(DBS.values(), "allow")
    scraper = {MONITOR} - {ETCD[member]}
    assert allowed(stack, member, "2381") == dict.fromkeys(scraper, "allow")


@pytest.mark.parametrize("member", ETCD)
def test_etcd_peers_are_the_other_members_only(stack, member):
    others = {a for name, a in ETCD.items() if name != member}
    assert allowed(stack, member, "2380") == dict.fromkeys(others, "allow")


def test_etcd_ports_are_open_on_etcd_members_only(stack):
    open_on = {h.name for h in stack.hosts
               if any(allowed(stack, h.name, port) for port in ("2379", "2380", "2381"))}
    assert open_on == set(ETCD)

"""The etcd members' /etc/default/etcd (templates/etcd/etcd.default.j2) for the unit stack's three
members, rendered from the real settings: the static cluster, TLS both ways, the bootstrap state.
"""

import re
import shutil
import subprocess

import pytest

from tests.unit.etcd_cluster import parse, render, stack_with_etcd
from webstack import etcd


@pytest.fixture
def stack(all_secrets):
    return stack_with_etcd()


def rendered(stack, name, state="existing"):
    cluster = etcd.members(stack)
    me = next(m for m in cluster if m.name == name)
    return parse(render(stack, me, cluster, state))


MEMBERS = {"lb-01": "10.213.0.11", "lb-02": "10.213.0.12", "monitor-01": "10.213.0.41"}


@pytest.mark.parametrize(("name", "address"), MEMBERS.items())
def test_each_member_listens_and_advertises_tls_on_its_own_address(stack, name, address):
    env = rendered(stack, name)
    assert env["ETCD_NAME"] == name
    assert env["ETCD_LISTEN_CLIENT_URLS"] == env["ETCD_ADVERTISE_CLIENT_URLS"] == (
        f"https://{address}:2379")
    assert env["ETCD_LISTEN_PEER_URLS"] == env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == (
        f"https://{address}:2380")
    assert env["ETCD_DATA_DIR"] == "/var/lib/etcd/ha-webstack"


def test_the_initial_cluster_is_the_etcd_group_in_inventory_order(stack):
    expected = ",".join(f"{n}=https://{a}:2380" for n, a in MEMBERS.items())
    assert {rendered(stack, n)["ETCD_INITIAL_CLUSTER"] for n in MEMBERS} == {expected}
    assert {rendered(stack, n)["ETCD_INITIAL_CLUSTER_TOKEN"] for n in MEMBERS} == {"ha-webstack"}


@pytest.mark.parametrize("state", ["new", "existing"])
def test_the_bootstrap_state_is_the_one_asked_for(stack, state):
    assert rendered(stack, "lb-01", state)["ETCD_INITIAL_CLUSTER_STATE"] == state


def test_any_other_bootstrap_state_is_refused(stack):
    cluster = etcd.members(stack)
    with pytest.raises(ValueError, match="'new' or 'existing'"):
        etcd.environment(stack.host("lb-01"), cluster[0], cluster, "maybe")


def test_clients_and_peers_need_a_certificate_from_the_stack_ca(stack):
    env = rendered(stack, "lb-01")
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    pki = etcd.pki_paths(etcd.MEMBER_PKI)
    assert env["ETCD_TRUSTED_CA_FILE"] == env["ETCD_PEER_TRUSTED_CA_FILE"] == pki["ca"]
    assert env["ETCD_CERT_FILE"] == env["ETCD_PEER_CERT_FILE"] == pki["cert"]
    assert env["ETCD_KEY_FILE"] == env["ETCD_PEER_KEY_FILE"] == pki["key"]
    plain = [k for k, v in env.items() if "http://" in v]
    assert plain == ["ETCD_LISTEN_METRICS_URLS"], "a plain-HTTP URL other than /metrics"
    assert not any(k.startswith("ETCD_AUTO_TLS") or k.endswith("AUTO_TLS") for k in env)


def test_ports_and_timing_come_from_the_settings(all_secrets):
    stack = stack_with_etcd(**{name: {"etcd_client_port": 12379, "etcd_peer_port": 12380,
                                      "etcd_metrics_port": 12381,
                                      "etcd_heartbeat_interval_ms": 200,
                                      "etcd_election_timeout_ms": 2000} for name in MEMBERS})
    env = rendered(stack, "lb-02")
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "https://10.213.0.12:12379"
    assert "monitor-01=https://10.213.0.41:12380" in env["ETCD_INITIAL_CLUSTER"]
    assert env["ETCD_LISTEN_METRICS_URLS"] == "http://10.213.0.12:12381"
    assert (env["ETCD_HEARTBEAT_INTERVAL"], env["ETCD_ELECTION_TIMEOUT"]) == ("200", "2000")


def test_endpoints_list_every_member_for_etcdctl(stack):
    assert etcd.endpoints(stack) == ",".join(f"https://{a}:2379" for a in MEMBERS.values())


@pytest.mark.skipif(shutil.which("etcd") is None,
                    reason="etcd is not installed here (apt-get install etcd-server): the "
                           "variable names cannot be checked against its flags")
def test_every_variable_is_a_flag_of_the_installed_etcd(stack):
    """etcd only warns about an ETCD_ variable it does not know: a typo in
    ETCD_CLIENT_CERT_AUTH would silently leave clients unauthenticated."""
    help_text = subprocess.run(["etcd", "--help"], capture_output=True, text=True).stdout
    flags = {f.upper().replace("-", "_") for f in re.findall(r"^\s+--([a-z0-9-]+)", help_text,
                                                            re.MULTILINE)}
    unknown = [k for k in rendered(stack, "lb-01") if k.removeprefix("ETCD_") not in flags]
    assert not unknown, f"not flags of {subprocess.getoutput('etcd --version').splitlines()[0]}"


@pytest.mark.parametrize(("has_data", "state"), [
    ({"lb-01": False, "lb-02": False, "monitor-01": False}, "new"),
    ({"lb-01": True, "lb-02": True, "monitor-01": True}, "existing"),
    ({"lb-01": True, "lb-02": False, "monitor-01": True}, "existing"),  # a replaced member
    ({"lb-01": True, "lb-02": None, "monitor-01": False}, "existing"),
])
def test_the_cluster_is_created_only_when_no_member_has_data(has_data, state):
    assert etcd.initial_state(has_data) == state


def test_a_missing_member_with_no_data_anywhere_stops_the_deploy():
    with pytest.raises(ValueError, match="lb-02 did not answer"):
        etcd.initial_state({"lb-01": False, "lb-02": None, "monitor-01": False})

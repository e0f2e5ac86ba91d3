"""etcd: a three-member cluster outside the database tier, TLS with client certificates both
ways, that keeps working when one member is lost (docs/etcd.md)."""

import json
import shlex

import pytest

from lab.toolkit.hosts import run, wait_until
from webstack import etcd

ETCD = pytest.mark.hosts("etcd")
DB = pytest.mark.hosts("databases")
ETCDCTL_ENV = f"{etcd.CLIENT_PKI}/etcdctl.env"


def etcdctl_run(host, *args: str):
    """etcdctl on a database host, with the agent's client certificate (root only)."""
    command = "set -a; . {}; etcdctl {}".format(ETCDCTL_ENV, " ".join(map(shlex.quote, args)))
    return host.run(f"sh -c {shlex.quote(command)}")


def etcdctl(host, *args: str) -> str:
    result = etcdctl_run(host, *args)
    assert result.rc == 0, f"etcdctl {' '.join(args)}: {result.stderr.strip()}"
    return result.stdout


@pytest.mark.readonly
@ETCD
def test_etcd_member_running_on_its_own_address(hosts, stack, name):
    h, me = hosts[name], stack.host(name)
    assert h.package("etcd-server").is_installed
    assert h.service("etcd").is_running and h.service("etcd").is_enabled
    for port in (me.etcd_client_port, me.etcd_peer_port):
        assert h.socket(f"tcp://{me.address}:{port}").is_listening
        assert not h.socket(f"tcp://0.0.0.0:{port}").is_listening
    key = h.file(etcd.pki_paths(etcd.MEMBER_PKI)["key"])
    assert (key.user, key.group, key.mode) == ("root", "etcd", 0o640)
    assert not h.file(etcd.PACKAGE_DATA_DIR).exists, "the package's one-member cluster is left"


@pytest.mark.readonly
@DB
def test_every_member_healthy_from_a_database_host(hosts, stack, name):
    h = hosts[name]
    assert h.file(etcd.pki_paths(etcd.CLIENT_PKI)["key"]).mode == 0o600
    members = json.loads(etcdctl(h, "member", "list", "-w", "json"))["members"]
    assert sorted(m["name"] for m in members) == sorted(m.name for m in etcd.members(stack))
    health = json.loads(etcdctl(h, "endpoint", "health", "--cluster", "-w", "json"))
    assert len(health) == len(members) and all(e["health"] for e in health), health


@pytest.mark.readonly
@DB
def test_a_client_without_a_certificate_is_refused(hosts, stack, name):
    """The stack CA alone (what any host has) does not let a process talk to etcd."""
    h, member = hosts[name], etcd.members(stack)[0]
    ca = etcd.pki_paths(etcd.CLIENT_PKI)["ca"]
    refused = h.run(f"curl -sS --max-time 5 --cacert {ca} {member.client_url}/health")
    assert refused.rc != 0, f"etcd answered a client without a certificate: {refused.stdout}"


@pytest.mark.lab
def test_losing_one_member_changes_nothing(hosts, stack):
    """One of three members killed: writes and linearizable reads go on through the others (a
    request made while they elect a new leader, if the lost one led, fails and is retried, as
    every client does); the member rejoins when it starts again."""
    db = hosts[stack.group("databases")[0].name]
    lost = etcd.members(stack)[-1]
    key = "/ha-webstack/test/one-member-down"
    run(lost.name, "systemctl", "kill", "-s", "KILL", "etcd", check=True)
    run(lost.name, "systemctl", "stop", "etcd", check=True)  # no restart during the check
    try:
        assert wait_until(lambda: etcdctl_run(db, "put", key, lost.name).rc == 0,
                          timeout=15) is not None, "no write succeeded with one member down"

        def read_back():
            got = etcdctl_run(db, "get", "--print-value-only", "--consistency=l", key)
            return got.rc == 0 and got.stdout.strip() == lost.name
        assert wait_until(read_back, timeout=15) is not None, "the write could not be read back"
    finally:
        run(lost.name, "systemctl", "start", "etcd", check=True)
        etcdctl_run(db, "del", key)

    def all_healthy():
        out = etcdctl_run(db, "endpoint", "health", "--cluster", "-w", "json")
        return out.rc == 0 and all(e["health"] for e in json.loads(out.stdout))
    assert wait_until(all_healthy, timeout=30) is not None, f"{lost.name} did not rejoin"

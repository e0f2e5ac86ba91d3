"""A real three-member etcd cluster on 127.0.0.1, configured exactly as the deploy configures
one: each member's environment is what templates/etcd/etcd.default.j2 renders from the real
settings, its certificate what webstack/tls.issue_host issues from a temporary CA. Needs the
`etcd` and `etcdctl` binaries (Debian: etcd-server, etcd-client); skipped, saying so, without.

Checked: the cluster forms and every member is healthy; a client without a certificate, or with
one from another CA, is refused; with one member killed, writes and reads still work; the
killed member, restarted with the state the deploy leaves (`existing`), rejoins instead of
bootstrapping again; a member whose data is lost is refused by etcd itself rather than
re-bootstrapped. Takes about 10-20 s; every process is killed at the end. The cluster itself
is tests/unit/etcd_cluster.py's, shared with the agent's client tests.
"""

import shutil

import pytest

from tests.unit.etcd_cluster import Cluster, needs_etcd, running_cluster

pytestmark = needs_etcd


@pytest.fixture
def cluster(tmp_path, monkeypatch, all_secrets):
    with running_cluster(tmp_path, monkeypatch) as c:
        yield c


def _logs(c: Cluster, tail: int = 3000) -> str:
    return "\n".join(f"--- {m.name}\n{c.log(m.name)[-tail:]}" for m in c.members)


def test_a_real_three_member_cluster(cluster):
    c = cluster
    healthy = c.wait_healthy()
    assert sorted(line.split()[0] for line in healthy) == sorted(
        m.client_url for m in c.members), _logs(c)
    members = c.etcdctl("member", "list")
    assert sorted(line.split(", ")[2] for line in members.stdout.splitlines()) == [
        "lb-01", "lb-02", "monitor-01"]
    for m in c.members:
        assert "unrecognized environment variable" not in c.log(m.name), c.log(m.name)

    # No client certificate: the TLS handshake fails, nothing is read.
    bare = c.etcdctl("get", "x", cert="", key="")
    assert bare.returncode != 0
    assert "client didn't provide a certificate" in _logs(c, tail=10**7)
    # A certificate from another CA is refused too.
    stranger = c._install_pki("db-01", c.root / "stranger", env="stranger")
    refused = c.etcdctl("get", "x", cert=stranger["cert"], key=stranger["key"])
    assert refused.returncode != 0
    assert "certificate signed by unknown authority" in _logs(c, tail=10**7)

    # One member down: a majority (2 of 3) still writes and reads.
    c.kill("lb-01")
    rest = [c.member("lb-02"), c.member("monitor-01")]
    put = c.retried("put", "/ha-webstack/test", "written-with-one-member-down", endpoints=rest,
                    timeout=10)
    assert put.returncode == 0 and put.stdout.strip() == "OK", put.stderr + _logs(c)
    get = c.etcdctl("get", "--print-value-only", "/ha-webstack/test", endpoints=rest)
    assert get.stdout.strip() == "written-with-one-member-down", get.stderr

    # Restarted with what the deploy leaves in /etc/default/etcd: it rejoins and catches up.
    c.start("lb-01", "existing")
    assert len(c.wait_healthy()) == 3, _logs(c)
    caught_up = c.etcdctl("get", "--print-value-only", "--consistency=s", "/ha-webstack/test",
                          endpoints=[c.member("lb-01")])
    assert caught_up.stdout.strip() == "written-with-one-member-down", caught_up.stderr

    # Its data lost, a member may not bootstrap again beside its running cluster: etcd refuses.
    c.kill("lb-01")
    shutil.rmtree(c.root / "lb-01" / "data")
    c.start("lb-01", "new")
    assert c.procs["lb-01"].wait(timeout=20) != 0
    assert "has already been bootstrapped" in c.log("lb-01"), c.log("lb-01")[-3000:]
    del c.procs["lb-01"]

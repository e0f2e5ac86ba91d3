"""A real three-member etcd cluster on 127.0.0.1, configured exactly as the deploy configures
one: each member's environment is what templates/etcd/etcd.default.j2 renders from the real
settings, its certificate what webstack/tls.issue_host issues from a temporary CA. Needs the
`etcd` and `etcdctl` binaries (Debian: etcd-server, etcd-client); skipped, saying so, without.

Checked: the cluster forms and every member is healthy; a client without a certificate, or with
one from another CA, is refused; with one member killed, writes and reads still work; the
killed member, restarted with the state the deploy leaves (`existing`), rejoins instead of
bootstrapping again; a member whose data is lost is refused by etcd itself rather than
re-bootstrapped. Takes about 10-20 s; every process is killed at the end.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pyinfra.api.util import get_template

from tests.unit.etcd_cluster import parse, render, stack_with_etcd
from webstack import ROOT, etcd, tls

pytestmark = pytest.mark.skipif(
    not (shutil.which("etcd") and shutil.which("etcdctl")),
    reason="etcd/etcdctl not installed: apt-get install etcd-server etcd-client to run a real "
           "3-member cluster")

ENV = "unittest"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    """Three etcd processes in a temporary directory, one per member of the unit stack."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        # A temporary CA per environment name; "stranger" is another stack's.
        monkeypatch.setattr(tls, "ca_dir", lambda env: root / f"{env}-ca")
        names = ("lb-01", "lb-02", "monitor-01")
        ports = _free_ports(3 * len(names))  # client, peer, metrics
        self.stack = stack_with_etcd(
            **{n: {"etcd_data_dir": str(root / n / "data"), "etcd_metrics_port": ports[3 * i + 2]}
               for i, n in enumerate(names)})
        self.members = [etcd.Member(n, "127.0.0.1", ports[3 * i], ports[3 * i + 1])
                        for i, n in enumerate(names)]
        self.procs: dict[str, subprocess.Popen] = {}
        for m in self.members:
            self._install_pki(m.name, root / m.name / "pki")
        # The database agents' certificate and etcdctl settings, as tasks/etcd_client.py
        # installs them on db-01.
        self.client = self._install_pki("db-01", root / "client")
        self.client_env = parse(get_template(str(ROOT / "templates/etcd/etcdctl.env.j2")).render(
            pki=self.client, pki_dir=str(root / "client"),
            endpoints=",".join(m.client_url for m in self.members)))

    def _install_pki(self, name: str, pki_dir: Path, env: str = ENV) -> dict[str, str]:
        pki_dir.mkdir(parents=True, mode=0o700)
        cert, key = tls.issue_host(env, name, "127.0.0.1")
        paths = etcd.pki_paths(str(pki_dir))
        shutil.copy(tls.ca_dir(env) / "ca.crt", paths["ca"])
        shutil.copy(cert, paths["cert"])
        shutil.copy(key, paths["key"])
        return paths

    def member(self, name: str) -> etcd.Member:
        return next(m for m in self.members if m.name == name)

    def start(self, name: str, state: str) -> None:
        me = self.member(name)
        text = render(self.stack, me, self.members, state, str(self.root / name / "pki"))
        (self.root / name / "etcd.env").write_text(text)
        log = (self.root / name / "etcd.log").open("a")
        self.procs[name] = subprocess.Popen(
            ["etcd"], env={"PATH": os.environ["PATH"], **parse(text)}, cwd=self.root / name,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)

    def log(self, name: str) -> str:
        return (self.root / name / "etcd.log").read_text()

    def etcdctl(self, *args: str, endpoints=None, timeout: float = 15,
                **settings: str) -> subprocess.CompletedProcess:
        """etcdctl with the client's etcdctl.env; `settings` override its variables
        (cert="" drops the certificate), `endpoints` its ETCDCTL_ENDPOINTS."""
        env = {**self.client_env, **{f"ETCDCTL_{k.upper()}": v for k, v in settings.items()}}
        if endpoints:
            env["ETCDCTL_ENDPOINTS"] = ",".join(m.client_url for m in endpoints)
        env = {k: v for k, v in env.items() if v}
        return subprocess.run(
            ["etcdctl", "--dial-timeout=2s", "--command-timeout=3s", *args],
            env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True,
            timeout=timeout)

    def retried(self, *args: str, timeout: float = 20, done=lambda result: True,
                **kwargs) -> subprocess.CompletedProcess:
        """etcdctl until it succeeds (and `done`) or `timeout` passes, as a client does: a
        request made while the members elect a new leader fails and must be retried."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.etcdctl(*args, **kwargs)
            if (result.returncode == 0 and done(result)) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def wait_healthy(self, timeout: float = 20) -> list[str]:
        """The `is healthy` lines of `endpoint health --cluster` once every member has one (a
        member that has not yet published its client URL is left out of --cluster)."""
        result = self.retried("endpoint", "health", "--cluster", timeout=timeout,
                              done=lambda r: len(_healthy(r)) == len(self.members))
        return _healthy(result)


def _healthy(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "is healthy" in line]


@pytest.fixture
def cluster(tmp_path, monkeypatch, all_secrets):
    c = Cluster(tmp_path, monkeypatch)
    try:
        for m in c.members:
            c.start(m.name, "new")
        yield c
    finally:
        c.stop_all()


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

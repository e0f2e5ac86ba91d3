"""What the etcd tests share: the members' /etc/default/etcd rendered by pyinfra's own template
engine from the real settings, read back as the environment etcd gets from systemd; and a real
three-member cluster on 127.0.0.1 configured that way (`Cluster`, `running_cluster`), used by
tests/unit/test_etcd_live.py and tests/unit/test_agent_etcd.py."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyinfra.api.util import get_template

from tests.unit import stacks
from webstack import ROOT, etcd, tls
from webstack.settings import Stack

TEMPLATE = "templates/etcd/etcd.default.j2"
ENV = "unittest"
# For a module of tests that need a real cluster: skipped, saying so, without the binaries.
needs_etcd = pytest.mark.skipif(
    not (shutil.which("etcd") and shutil.which("etcdctl")),
    reason="etcd/etcdctl not installed: apt-get install etcd-server etcd-client to run a real "
           "3-member cluster")


def stack_with_etcd(**member_data) -> Stack:
    """The unit stack (etcd on lb-01, lb-02, monitor-01); `member_data` maps a member's name to
    settings given to it as host data, as an inventory would."""
    ns = stacks.namespace()
    ns["etcd"] = [(name, {**data, **member_data.get(name, {})}) for name, data in ns["etcd"]]
    return stacks.build(ns)


def render(stack: Stack, me: etcd.Member, cluster: list[etcd.Member], state: str,
           pki_dir: str = etcd.MEMBER_PKI) -> str:
    context = etcd.environment(stack.host(me.name), me, cluster, state, pki_dir)
    return get_template(str(ROOT / TEMPLATE)).render(**context)


def parse(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (no quoting is used)."""
    pairs = (line.split("=", 1) for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def free_ports(n: int) -> list[int]:
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
        ports = free_ports(3 * len(names))  # client, peer, metrics
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


@contextlib.contextmanager
def running_cluster(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A cluster created as the deploy creates one (every member `new`, at once), healthy before
    it is handed over; every member killed afterwards, whatever happened."""
    c = Cluster(root, monkeypatch)
    try:
        for m in c.members:
            c.start(m.name, "new")
        yield c
    finally:
        c.stop_all()

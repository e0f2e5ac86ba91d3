"""Specs for tasks/common.py and the firewall baseline on every managed host."""

import socket
import subprocess

import pytest

from lab.lab import KNOWN_HOSTS, SSH_KEY
from tests.conftest import docker_exec, lab_hosts

pytestmark = pytest.mark.lab
ALL = lab_hosts()


@pytest.mark.parametrize("name", ALL)
def test_baseline_packages_installed(hosts, name):
    for package in ("ufw", "unattended-upgrades", "ca-certificates", "sudo"):
        assert hosts[name].package(package).is_installed, package


@pytest.mark.parametrize("name", ALL)
def test_security_updates_enabled(hosts, name):
    conf = hosts[name].file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in conf


@pytest.mark.parametrize("name", ALL)
def test_etc_hosts_resolves_every_inventory_host(hosts, name):
    for other in ALL:
        assert hosts[name].run(f"getent hosts {other}").rc == 0, other
    assert hosts[name].check_output("hostname") == name


@pytest.mark.parametrize("name", ALL)
def test_sshd_effective_config_is_hardened(hosts, name):
    effective = hosts[name].check_output("sshd -T")
    for line in ("permitrootlogin no", "passwordauthentication no",
                 "kbdinteractiveauthentication no", "pubkeyauthentication yes"):
        assert line in effective.splitlines(), line
    assert hosts[name].service("ssh").is_running


@pytest.mark.parametrize("name", ALL)
def test_ufw_active_with_default_deny(hosts, name):
    status = hosts[name].check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    assert "Logging: on (low)" in status
    # SSH only from the admin network (the lab's gateway), rate-limited.
    assert "22/tcp                     LIMIT IN    10.213.0.1" in status


# --- end to end: reach the hosts as an operator would, and as the internet would ------------

def _ssh(lab, address, user="deploy", *command, extra=()):
    return subprocess.run(
        ["ssh", "-i", str(SSH_KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
         "-o", "StrictHostKeyChecking=yes",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *extra, f"{user}@{address}", *command],
        capture_output=True, text=True, timeout=30)


def test_deploy_user_logs_in_with_the_lab_key_and_has_sudo(lab):
    result = _ssh(lab, lab.host("web-01").address, "deploy", "sudo", "-n", "true")
    assert result.returncode == 0, result.stderr


def test_root_is_refused_even_with_an_authorized_key(lab):
    pub = SSH_KEY.with_suffix(".pub").read_text()
    docker_exec("web-02", "sh", "-c", f"install -d -m700 /root/.ssh && echo '{pub.strip()}' "
                "> /root/.ssh/authorized_keys")
    try:
        result = _ssh(lab, lab.host("web-02").address, "root", "true")
        assert result.returncode == 255 and "Permission denied" in result.stderr
    finally:
        docker_exec("web-02", "rm", "-f", "/root/.ssh/authorized_keys")


def test_password_login_is_not_offered(lab):
    result = _ssh(lab, lab.host("db-02").address, "deploy", "true",
                  extra=("-o", "PreferredAuthentications=password,keyboard-interactive",
                         "-o", "PubkeyAuthentication=no"))
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_ssh_is_open_to_the_control_machine(lab):
    for h in lab.managed_hosts:
        with socket.create_connection((h.address, 22), timeout=5) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-"), h.name


def test_ssh_is_filtered_from_the_internet(lab):
    targets = [h.address for h in lab.managed_hosts]
    scan = docker_exec("client", "nmap", "-Pn", "-n", "-p", "22", "--max-retries", "1",
                       "-oG", "-", *targets, timeout=120)
    assert scan.returncode == 0, scan.stderr
    lines = [line for line in scan.stdout.splitlines() if "Ports:" in line]
    assert len(lines) == len(targets)
    assert all("22/filtered/tcp" in line for line in lines), scan.stdout

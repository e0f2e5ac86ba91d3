"""Specs for tasks/common.py and the firewall baseline on every managed host."""

import re
import socket
import subprocess

import pytest

from lab.lab import KNOWN_HOSTS, SSH_KEY
from lab.toolkit.hosts import addr, run
from webstack.policy import normalize_source

readonly = pytest.mark.readonly


@readonly
@pytest.mark.hosts()
def test_baseline_packages_installed(hosts, name):
    for package in ("ufw", "unattended-upgrades", "ca-certificates", "sudo"):
        assert hosts[name].package(package).is_installed, package


@readonly
@pytest.mark.hosts()
def test_systemd_reports_the_host_running_with_no_failed_unit(hosts, name):
    state = hosts[name].run("systemctl is-system-running").stdout.strip()
    failed = hosts[name].check_output("systemctl --failed --no-legend --plain")
    assert (state, failed) == ("running", ""), f"{name} is {state}: {failed}"


@readonly
@pytest.mark.hosts()
def test_security_updates_enabled(hosts, name):
    conf = hosts[name].file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in conf


@readonly
@pytest.mark.hosts()
def test_etc_hosts_resolves_every_inventory_host(hosts, stack, name):
    for other in stack.hosts:
        resolved = hosts[name].run(f"getent hosts {other.name}")
        assert resolved.rc == 0 and resolved.stdout.split()[0] == other.address, other.name
    assert hosts[name].check_output("hostname") == name


@readonly
@pytest.mark.hosts()
def test_sshd_effective_config_is_hardened(hosts, name):
    effective = hosts[name].check_output("sshd -T")
    for line in ("permitrootlogin no", "passwordauthentication no",
                 "kbdinteractiveauthentication no", "pubkeyauthentication yes"):
        assert line in effective.splitlines(), line
    assert hosts[name].service("ssh").is_running


@readonly
@pytest.mark.hosts()
def test_ufw_active_with_default_deny_and_ssh_for_admins_only(hosts, stack, name):
    status = hosts[name].check_output("ufw status verbose")
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    assert f"Logging: on ({stack.host(name).ufw_logging})" in status
    port = stack.host(name).sshd_port
    ssh_sources = set(re.findall(rf"^{port}/tcp\s+(?:LIMIT|ALLOW) IN\s+(\S+)", status, re.M))
    assert ssh_sources == {normalize_source(str(n)) for n in stack.host(name).admin_networks}


@readonly
@pytest.mark.hosts()
def test_sshd_answers_the_admin_side(stack, name):
    h = stack.host(name)
    with socket.create_connection((h.address, h.sshd_port), timeout=5) as conn:
        assert conn.recv(64).startswith(b"SSH-2.0-")


@readonly
@pytest.mark.hosts()
def test_password_login_is_not_offered(stack, name):
    h = stack.host(name)
    result = subprocess.run(
        ["ssh", "-p", str(h.sshd_port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "PreferredAuthentications=password,keyboard-interactive",
         "-o", "PubkeyAuthentication=no", f"nobody-{name}@{h.address}", "true"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


# --- the lab: reach the hosts as an attacker would -----------------------------------------

def _ssh(address, user, *command):
    return subprocess.run(
        ["ssh", "-i", str(SSH_KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"{user}@{address}", *command], capture_output=True, text=True, timeout=30)


@pytest.mark.lab
def test_root_is_refused_even_with_an_authorized_key():
    pub = SSH_KEY.with_suffix(".pub").read_text()
    run("web-02", "sh", "-c", f"install -d -m700 /root/.ssh && echo '{pub.strip()}' "
        "> /root/.ssh/authorized_keys")
    try:
        result = _ssh(addr("web-02"), "root", "true")
        assert result.returncode == 255 and "Permission denied" in result.stderr
    finally:
        run("web-02", "rm", "-f", "/root/.ssh/authorized_keys")


@pytest.mark.lab
def test_ssh_is_filtered_from_the_internet(lab):
    targets = [h.address for h in lab.managed_hosts]
    scan = run("client", "nmap", "-Pn", "-n", "-p", "22", "--max-retries", "1",
               "-oG", "-", *targets, timeout=120)
    assert scan.returncode == 0, scan.stderr
    lines = [line for line in scan.stdout.splitlines() if "Ports:" in line]
    assert len(lines) == len(targets)
    assert all("22/filtered/tcp" in line for line in lines), scan.stdout

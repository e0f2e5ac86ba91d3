"""keepalived: the floating IP sits on one working load balancer and moves when it fails."""

import pytest

from lab.toolkit.hosts import VIP, run, vip_holders, wait_until
from lab.toolkit.http import https_get
from lab.toolkit.streams import CA
from webstack.keepalived import HOLD_FILE

LB = pytest.mark.hosts("loadbalancers")


@pytest.mark.readonly
@LB
def test_keepalived_running_and_nonlocal_bind_on(hosts, name):
    h = hosts[name]
    assert h.service("keepalived").is_running and h.service("keepalived").is_enabled
    assert h.sysctl("net.ipv4.ip_nonlocal_bind") == 1
    assert "net.ipv4.ip_nonlocal_bind = 1" in h.file(
        "/etc/sysctl.d/60-ha-webstack.conf").content_string
    assert h.file("/etc/keepalived/keepalived.conf").mode == 0o600


@pytest.mark.readonly
@LB
def test_no_balancer_is_held_out_of_the_election(hosts, name):
    assert not hosts[name].file(HOLD_FILE).exists, (
        f"{name} is held out of the floating IP's election ({HOLD_FILE} exists, left by an "
        "unfinished ops/upgrade_debian.py): finish that run, or remove the file")


@pytest.mark.readonly
def test_floating_ip_is_on_exactly_one_balancer(hosts, stack, vip):
    holders = [lb.name for lb in stack.group("loadbalancers")
               if f" {vip}/" in hosts[lb.name].check_output("ip -4 -o addr show")]
    assert len(holders) == 1, f"the floating IP {vip} is on {holders or 'no balancer'}"


def _answers():
    try:
        return https_get(f"https://{VIP}/healthz", CA, timeout=2)[0] == 200
    except OSError:
        return False


@pytest.mark.lab
def test_floating_ip_is_on_lb_01_as_built():
    assert vip_holders() == ["lb-01"]


@pytest.mark.lab
def test_floating_ip_follows_haproxy():
    run("lb-01", "systemctl", "stop", "haproxy")
    try:
        assert wait_until(lambda: vip_holders() == ["lb-02"], timeout=10) is not None
        assert wait_until(_answers, timeout=10) is not None
    finally:
        run("lb-01", "systemctl", "start", "haproxy")
    assert wait_until(lambda: vip_holders() == ["lb-01"], timeout=15) is not None
    assert wait_until(_answers, timeout=10) is not None

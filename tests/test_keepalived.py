"""keepalived: the floating IP sits on one working load balancer and moves when it fails."""

import pytest

from tests.conftest import docker_exec, https_get, lab_hosts, vip_holder, wait_until

pytestmark = pytest.mark.lab
LB = lab_hosts("loadbalancers")


def _answers(lab):
    try:
        return https_get(f"https://{lab.floating_ip}/healthz", timeout=2)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("name", LB)
def test_keepalived_running_and_nonlocal_bind_on(hosts, name):
    h = hosts[name]
    assert h.service("keepalived").is_running and h.service("keepalived").is_enabled
    assert h.sysctl("net.ipv4.ip_nonlocal_bind") == 1
    assert "net.ipv4.ip_nonlocal_bind = 1" in h.file(
        "/etc/sysctl.d/60-ha-webstack.conf").content_string
    assert h.file("/etc/keepalived/keepalived.conf").mode == 0o600


def test_floating_ip_is_on_lb_01_only(lab):
    assert vip_holder(lab) == ["lb-01"]


def test_floating_ip_follows_haproxy(lab):
    docker_exec("lb-01", "systemctl", "stop", "haproxy")
    try:
        assert wait_until(lambda: vip_holder(lab) == ["lb-02"], timeout=10) is not None
        assert wait_until(lambda: _answers(lab), timeout=10) is not None
    finally:
        docker_exec("lb-01", "systemctl", "start", "haproxy")
    assert wait_until(lambda: vip_holder(lab) == ["lb-01"], timeout=15) is not None
    assert wait_until(lambda: _answers(lab), timeout=10) is not None


def test_floating_ip_survives_the_loss_of_lb_01(lab):
    import subprocess
    subprocess.run(["docker", "stop", "-t", "2", "lb-01"], check=True, capture_output=True)
    try:
        assert wait_until(lambda: vip_holder(lab) == ["lb-02"], timeout=10) is not None
        assert wait_until(lambda: _answers(lab), timeout=10) is not None
    finally:
        subprocess.run(["docker", "start", "lb-01"], check=True, capture_output=True)
    assert wait_until(lambda: vip_holder(lab) == ["lb-01"], timeout=60) is not None
    assert wait_until(lambda: _answers(lab), timeout=10) is not None

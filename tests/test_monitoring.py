"""Prometheus and Alertmanager on monitor-01: every target up, alerts reach the receiver."""

import json
import time

import pytest

from tests.conftest import docker_exec, http_get, lab_hosts, wait_until

pytestmark = pytest.mark.lab
RECEIVED = "/var/lib/ha-alert-receiver/alerts.jsonl"


@pytest.fixture(scope="module")
def prometheus(lab):
    return f"http://{lab.host('monitor-01').address}:9090"


def _targets(prometheus):
    status, _, body = http_get(f"{prometheus}/api/v1/targets")
    assert status == 200
    return json.loads(body)["data"]["activeTargets"]


def _received_since(mark: float) -> list[dict]:
    """Alerts the lab receiver got that started, or ended, after the mark."""
    out = docker_exec("monitor-01", "cat", RECEIVED).stdout
    alerts = []
    for line in out.splitlines():
        alerts += json.loads(line)["alerts"]
    return [a for a in alerts if _ts(a["startsAt"]) >= mark or _ts(a.get("endsAt")) >= mark]


def _ts(value) -> float:
    import datetime
    if not value or value.startswith("0001"):
        return 0.0
    return datetime.datetime.fromisoformat(value[:26].rstrip("Z") + "+00:00").timestamp()


def _has(alerts, name, instance_key, instance, status):
    return any(a["labels"]["alertname"] == name and a["labels"].get(instance_key) == instance
               and a["status"] == status for a in alerts)


@pytest.mark.parametrize("service", ["prometheus", "prometheus-alertmanager",
                                     "prometheus-blackbox-exporter", "ha-alert-receiver"])
def test_monitoring_services_run(hosts, service):
    assert hosts["monitor-01"].service(service).is_running
    assert hosts["monitor-01"].service(service).is_enabled


def test_configs_pass_their_checkers(hosts):
    h = hosts["monitor-01"]
    assert h.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert h.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0


def test_uis_listen_on_own_address_for_admins_only(lab, prometheus):
    assert http_get(f"{prometheus}/-/ready")[0] == 200
    assert http_get(f"http://{lab.host('monitor-01').address}:9093/-/ready")[0] == 200
    for port in (9090, 9093):
        assert docker_exec("client", "curl", "-s", "-m", "3",
                           f"http://{lab.host('monitor-01').address}:{port}/").returncode != 0


def test_every_scrape_target_is_up(prometheus, lab):
    def all_up():
        return all(t["health"] == "up" for t in _targets(prometheus))
    assert wait_until(all_up, timeout=60, interval=2) is not None, [
        (t["labels"]["instance"], t["lastError"]) for t in _targets(prometheus)
        if t["health"] != "up"]
    instances = {(t["labels"]["job"], t["labels"]["instance"]) for t in _targets(prometheus)}
    for name in lab_hosts():
        assert ("node", name) in instances
    for name in lab_hosts("webservers"):
        assert ("nginx", name) in instances
    for name in lab_hosts("loadbalancers"):
        assert ("haproxy", name) in instances
    for name in lab_hosts("databases"):
        assert ("mysqld", name) in instances
    assert ("blackbox", "floating-ip") in instances


def _breaks_and_alerts(host, service: str, alert: str, label: str, value: str):
    """Stop a service: the alert must reach the receiver within 90 s, then resolve."""
    mark = time.time()
    host.run(f"systemctl stop {service}")
    try:
        fired = wait_until(lambda: _has(_received_since(mark), alert, label, value, "firing"),
                           timeout=90, interval=2)
    finally:
        host.run(f"systemctl start {service}")
    assert fired is not None, f"{alert} did not reach the receiver within 90 s"
    resolved = wait_until(lambda: _has(_received_since(mark), alert, label, value, "resolved"),
                          timeout=90, interval=2)
    assert resolved is not None, f"{alert} did not resolve after {service} came back"


def test_stopped_web_server_alerts_and_resolves(hosts):
    _breaks_and_alerts(hosts["web-02"], "nginx", "WebServerDownInHAProxy", "server", "web-02")


def test_stopped_replica_fires_the_replication_alert(hosts):
    _breaks_and_alerts(hosts["db-02"], "mariadb", "ReplicationStopped", "instance", "db-02")

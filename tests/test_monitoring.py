"""Prometheus and Alertmanager on monitor-01: every target up, alerts reach the receiver."""

import json
import time

import pytest

from lab.toolkit.hosts import run, wait_until
from lab.toolkit.http import http_get

readonly = pytest.mark.readonly
RECEIVED = "/var/lib/ha-alert-receiver/alerts.jsonl"


@pytest.fixture(scope="module")
def monitor(stack):
    return stack.group("monitoring")[0]


@pytest.fixture(scope="module")
def prometheus(monitor):
    return f"http://{monitor.address}:{monitor.prometheus_port}"


def _targets(prometheus):
    status, _, body = http_get(f"{prometheus}/api/v1/targets")
    assert status == 200
    return json.loads(body)["data"]["activeTargets"]


def _received_since(mark: float) -> list[dict]:
    """Alerts the lab receiver got that started, or ended, after the mark."""
    out = run("monitor-01", "cat", RECEIVED).stdout
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


@readonly
@pytest.mark.hosts("monitoring")
def test_monitoring_services_run(hosts, stack, name):
    services = ["prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter"]
    if stack.host(name).alert_receiver_lab:
        services.append("ha-alert-receiver")
    for service in services:
        assert hosts[name].service(service).is_running, service
        assert hosts[name].service(service).is_enabled, service


@readonly
@pytest.mark.hosts("monitoring")
def test_configs_pass_their_checkers(hosts, name):
    h = hosts[name]
    assert h.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
    assert h.run("amtool check-config /etc/prometheus/alertmanager.yml").rc == 0


@readonly
def test_uis_answer_the_admin_side(monitor, prometheus):
    assert http_get(f"{prometheus}/-/ready")[0] == 200
    assert http_get(f"http://{monitor.address}:{monitor.alertmanager_port}/-/ready")[0] == 200


@pytest.mark.lab
def test_uis_are_closed_to_the_internet(lab):
    for port in (9090, 9093):
        assert run("client", "curl", "-s", "-m", "3",
                   f"http://{lab.host('monitor-01').address}:{port}/").returncode != 0


@readonly
def test_every_scrape_target_is_up(prometheus, stack):
    def all_up():
        return all(t["health"] == "up" for t in _targets(prometheus))
    assert wait_until(all_up, timeout=60, interval=2) is not None, [
        (t["labels"]["instance"], t["lastError"]) for t in _targets(prometheus)
        if t["health"] != "up"]
    instances = {(t["labels"]["job"], t["labels"]["instance"]) for t in _targets(prometheus)}
    expected = {("node", h.name) for h in stack.hosts}
    expected |= {("nginx", h.name) for h in stack.group("webservers")}
    expected |= {("haproxy", h.name) for h in stack.group("loadbalancers")}
    expected |= {("mysqld", h.name) for h in stack.group("databases")}
    assert expected <= instances, sorted(expected - instances)
    assert ("blackbox", "floating-ip") in instances


def _breaks_and_alerts(host, service: str, alert: str, label: str, value: str):
    """Stop a service: the alert must reach the receiver within 90 s, then resolve."""
    mark = time.time()
    run(host, "systemctl", "stop", service)
    try:
        fired = wait_until(lambda: _has(_received_since(mark), alert, label, value, "firing"),
                           timeout=90, interval=2)
    finally:
        run(host, "systemctl", "start", service)
    assert fired is not None, f"{alert} did not reach the receiver within 90 s"
    resolved = wait_until(lambda: _has(_received_since(mark), alert, label, value, "resolved"),
                          timeout=90, interval=2)
    assert resolved is not None, f"{alert} did not resolve after {service} came back"


@pytest.mark.lab
def test_stopped_web_server_alerts_and_resolves():
    _breaks_and_alerts("web-02", "nginx", "WebServerDownInHAProxy", "server", "web-02")


@pytest.mark.lab
def test_stopped_replica_fires_the_replication_alert():
    _breaks_and_alerts("db-02", "mariadb", "ReplicationStopped", "instance", "db-02")

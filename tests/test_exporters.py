"""Exporters: each on its host's own address, reachable from the monitoring host only."""

import pytest

from lab.toolkit.hosts import run

readonly = pytest.mark.readonly


def _from_monitoring(hosts, stack, url: str) -> str:
    """What the monitoring host (Prometheus' view) gets from url; '' when refused."""
    monitor = stack.group("monitoring")[0].name
    return hosts[monitor].run(f"curl -sf -m 5 {url}").stdout


@readonly
@pytest.mark.hosts()
def test_node_exporter_on_own_address_for_monitoring(hosts, stack, name):
    h, me = hosts[name], stack.host(name)
    assert h.service("prometheus-node-exporter").is_running
    assert h.service("prometheus-node-exporter").is_enabled
    assert h.socket(f"tcp://{me.address}:{me.node_exporter_port}").is_listening
    assert not h.socket(f"tcp://0.0.0.0:{me.node_exporter_port}").is_listening
    metrics = _from_monitoring(hosts, stack, f"http://{me.address}:{me.node_exporter_port}/metrics")
    assert "node_filesystem_avail_bytes" in metrics


@readonly
@pytest.mark.hosts("webservers")
def test_nginx_exporter_reads_stub_status(hosts, stack, name):
    h, me = hosts[name], stack.host(name)
    assert h.service("prometheus-nginx-exporter").is_running
    assert h.socket(f"tcp://{me.address}:{me.nginx_exporter_port}").is_listening
    metrics = _from_monitoring(hosts, stack,
                               f"http://{me.address}:{me.nginx_exporter_port}/metrics")
    assert "nginx_up 1" in metrics and "nginx_connections_accepted" in metrics


@readonly
@pytest.mark.hosts("databases")
def test_mysqld_exporter_per_database_logs_in_as_the_monitoring_user(hosts, stack, name):
    monitor = hosts[stack.group("monitoring")[0].name]
    unit = f"ha-mysqld-exporter@{name}"
    assert monitor.service(unit).is_running and monitor.service(unit).is_enabled
    port = monitor.check_output(f"grep PORT= /etc/ha-webstack/mysqld-exporter/{name}.env")
    metrics = monitor.check_output(f"curl -sf http://127.0.0.1:{port.split('=')[1]}/metrics")
    assert "mysql_up 1" in metrics
    assert "mysql_heartbeat_stored_timestamp_seconds" in metrics
    assert monitor.file(f"/etc/ha-webstack/mysqld-exporter/{name}.cnf").mode == 0o640


@pytest.mark.lab
def test_exporters_are_closed_to_the_internet(lab):
    ports = {"node": 9100, "nginx": 9113}
    refused = []
    for h in lab.managed_hosts:
        for kind, port in ports.items():
            if kind == "nginx" and "webservers" not in h.groups:
                continue
            got = run("client", "curl", "-s", "-m", "3", f"http://{h.address}:{port}/metrics")
            if got.returncode == 0:
                refused.append(f"{h.name}:{port}")
    assert refused == [], f"exporters the internet reaches: {refused}"

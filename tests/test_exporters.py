"""Exporters: each on its host's own address, reachable from the monitoring host only."""

import pytest

from tests.conftest import docker_exec, lab_hosts

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("name", lab_hosts())
def test_node_exporter_on_own_address_for_monitoring_only(hosts, lab, name):
    h, address = hosts[name], lab.host(name).address
    assert h.service("prometheus-node-exporter").is_running
    assert h.service("prometheus-node-exporter").is_enabled
    assert h.socket(f"tcp://{address}:9100").is_listening
    assert not h.socket("tcp://0.0.0.0:9100").is_listening
    metrics = docker_exec("monitor-01", "curl", "-sf", f"http://{address}:9100/metrics")
    assert "node_filesystem_avail_bytes" in metrics.stdout
    if name != "monitor-01":
        assert docker_exec("client", "curl", "-s", "-m", "3",
                           f"http://{address}:9100/metrics").returncode != 0


@pytest.mark.parametrize("name", lab_hosts("webservers"))
def test_nginx_exporter_reads_stub_status(hosts, lab, name):
    h, address = hosts[name], lab.host(name).address
    assert h.service("prometheus-nginx-exporter").is_running
    assert h.socket(f"tcp://{address}:9113").is_listening
    metrics = docker_exec("monitor-01", "curl", "-sf", f"http://{address}:9113/metrics").stdout
    assert "nginx_up 1" in metrics and "nginx_connections_accepted" in metrics


@pytest.mark.parametrize("name", lab_hosts("databases"))
def test_mysqld_exporter_per_database_logs_in_as_the_monitoring_user(hosts, name):
    monitor = hosts["monitor-01"]
    unit = f"ha-mysqld-exporter@{name}"
    assert monitor.service(unit).is_running and monitor.service(unit).is_enabled
    port = monitor.check_output(f"grep PORT= /etc/ha-webstack/mysqld-exporter/{name}.env")
    metrics = monitor.check_output(f"curl -sf http://127.0.0.1:{port.split('=')[1]}/metrics")
    assert "mysql_up 1" in metrics
    assert "mysql_heartbeat_stored_timestamp_seconds" in metrics
    assert monitor.file(f"/etc/ha-webstack/mysqld-exporter/{name}.cnf").mode == 0o640

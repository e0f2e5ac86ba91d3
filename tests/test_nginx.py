"""Specs for tasks/nginx.py: nginx serving the site on every web server."""

import pytest

from tests.conftest import http_get, lab_hosts, run_deploy

pytestmark = pytest.mark.lab
WEB = lab_hosts("webservers")


@pytest.mark.parametrize("name", WEB)
def test_nginx_installed_running_enabled_and_config_valid(hosts, name):
    h = hosts[name]
    assert h.package("nginx").is_installed
    assert h.service("nginx").is_running and h.service("nginx").is_enabled
    assert h.run("nginx -t").rc == 0


@pytest.mark.parametrize("name", WEB)
def test_each_server_answers_with_its_own_name(lab, name):
    status, headers, body = http_get(f"http://{lab.host(name).address}/")
    assert status == 200
    assert headers["X-Served-By"] == name
    assert headers["Server"] == "nginx"  # server_tokens off: no version
    status, headers, _ = http_get(f"http://{lab.host(name).address}/healthz")
    assert status == 200 and headers["X-Served-By"] == name


@pytest.mark.parametrize("name", WEB)
def test_static_files_are_served_by_nginx(lab, name):
    status, headers, body = http_get(f"http://{lab.host(name).address}/static/style.css")
    assert status == 200 and "text/css" in headers["Content-Type"]
    assert headers["Expires"] and headers["X-Served-By"] == name


@pytest.mark.parametrize("name", WEB)
def test_real_ip_trusted_only_from_the_load_balancers(hosts, lab, name):
    config = hosts[name].check_output("nginx -T 2>/dev/null")
    trusted = {line.split()[1].rstrip(";") for line in config.splitlines()
               if line.strip().startswith("set_real_ip_from")}
    assert trusted == {h.address for h in lab.hosts if "loadbalancers" in h.groups}
    assert "server_tokens off;" in config


@pytest.mark.parametrize("name", WEB)
def test_stub_status_is_on_loopback_only(hosts, name):
    h = hosts[name]
    assert "Active connections" in h.check_output("curl -s http://127.0.0.1:8080/stub_status")
    assert h.socket("tcp://127.0.0.1:8080").is_listening
    assert not h.socket("tcp://0.0.0.0:8080").is_listening


def test_access_log_records_upstream_timing(hosts, lab):
    http_get(f"http://{lab.host('web-01').address}/healthz")
    last = hosts["web-01"].check_output("tail -n 1 /var/log/nginx/ha-webstack.access.log")
    assert "GET /healthz" in last and "urt=" in last and "uct=" in last


def test_broken_setting_fails_the_deploy_and_nginx_keeps_serving(hosts, lab):
    url = f"http://{lab.host('web-01').address}/healthz"
    bad = run_deploy("--limit", "web-01", "--data", "nginx_extra_config=no_such_directive on;")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "'nginx -t' rejected the new /etc/nginx/sites-enabled/ha-webstack.conf" in output
    assert 'unknown directive "no_such_directive"' in output
    assert http_get(url)[0] == 200
    assert "no_such_directive" not in hosts["web-01"].file(
        "/etc/nginx/sites-enabled/ha-webstack.conf").content_string
    good = run_deploy("--limit", "web-01")
    assert good.returncode == 0, good.stderr[-2000:]
    assert http_get(url)[0] == 200

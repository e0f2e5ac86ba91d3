"""Specs for tasks/nginx.py: nginx serving the site on every web server."""

import uuid

import pytest

from lab.toolkit.deploy import run_deploy
from lab.toolkit.hosts import addr, run
from lab.toolkit.http import http_get

readonly = pytest.mark.readonly
WEB = pytest.mark.hosts("webservers")


def _url(stack, name: str, path: str) -> str:
    h = stack.host(name)
    return f"http://{h.address}:{h.nginx_port}{path}"


@readonly
@WEB
def test_nginx_installed_running_enabled_and_config_valid(hosts, name):
    h = hosts[name]
    assert h.package("nginx").is_installed
    assert h.service("nginx").is_running and h.service("nginx").is_enabled
    assert h.run("nginx -t").rc == 0


@readonly
@WEB
def test_each_server_answers_with_its_own_name(stack, name):
    status, headers, _ = http_get(_url(stack, name, stack.host(name).app_health_path))
    assert status == 200 and headers["X-Served-By"] == name
    assert headers["Server"] == "nginx"  # server_tokens off: no version


@readonly
@WEB
def test_static_files_are_served_by_nginx(stack, name):
    status, headers, _ = http_get(_url(stack, name, "/static/style.css"))
    assert status == 200 and "text/css" in headers["Content-Type"]
    assert headers["Expires"] and headers["X-Served-By"] == name


@readonly
@WEB
def test_real_ip_trusted_only_from_the_load_balancers(hosts, stack, name):
    config = hosts[name].check_output("nginx -T 2>/dev/null")
    trusted = {line.split()[1].rstrip(";") for line in config.splitlines()
               if line.strip().startswith("set_real_ip_from")}
    assert trusted == set(stack.addresses("loadbalancers"))
    assert "server_tokens off;" in config


@readonly
@WEB
def test_stub_status_is_on_loopback_only(hosts, stack, name):
    h, port = hosts[name], stack.host(name).nginx_status_port
    assert "Active connections" in h.check_output(f"curl -s http://127.0.0.1:{port}/stub_status")
    assert h.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not h.socket(f"tcp://0.0.0.0:{port}").is_listening


@readonly
@WEB
def test_access_log_records_upstream_timing(hosts, stack, name):
    marker = uuid.uuid4().hex
    assert http_get(_url(stack, name, f"{stack.host(name).app_health_path}?{marker}"))[0] == 200
    logged = hosts[name].check_output(f"grep -h {marker} /var/log/nginx/ha-webstack.access.log")
    assert f"GET {stack.host(name).app_health_path}?{marker}" in logged
    assert "urt=" in logged and "uct=" in logged


@pytest.mark.lab
def test_broken_setting_fails_the_deploy_and_nginx_keeps_serving(lab):
    url = f"http://{lab.host('web-01').address}/healthz"
    bad = run_deploy("--limit", "web-01", "--data", "nginx_extra_config=no_such_directive on;")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "'nginx -t' rejected the new /etc/nginx/sites-enabled/ha-webstack.conf" in output
    assert 'unknown directive "no_such_directive"' in output
    assert http_get(url)[0] == 200
    conf = run("web-01", "cat", "/etc/nginx/sites-enabled/ha-webstack.conf").stdout
    assert "no_such_directive" not in conf
    good = run_deploy("--limit", "web-01")
    assert good.returncode == 0, good.stderr[-2000:]
    assert http_get(url)[0] == 200


@pytest.mark.lab
def test_a_config_edited_by_hand_is_put_back_by_the_next_deploy():
    # The same path finishes a run cut short between rendering a config and installing it.
    conf = "/etc/nginx/sites-enabled/ha-webstack.conf"
    run("web-01", "bash", "-c", f"echo '# edited by hand' >> {conf}", check=True)
    res = run_deploy("--limit", "web-01")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "edited by hand" not in run("web-01", "cat", conf).stdout
    assert http_get(f"http://{addr('web-01')}/healthz")[0] == 200

"""HAProxy on the load balancers: round-robin, TLS, health checks, retries, management.
(A web server stopped under traffic: tests/test_drills.py, nginx_graceful_stop.)"""

import base64
import re
from collections import Counter

import pytest

from lab.toolkit.deploy import run_deploy
from lab.toolkit.hosts import VIP, backend_sessions, group, run, vip_holders
from lab.toolkit.http import http_get, https_get
from lab.toolkit.streams import CA
from webstack import haproxy

readonly = pytest.mark.readonly
LB = pytest.mark.hosts("loadbalancers")


@readonly
@LB
def test_haproxy_installed_running_and_config_valid(hosts, name):
    h = hosts[name]
    assert h.package("haproxy").is_installed
    assert h.service("haproxy").is_running and h.service("haproxy").is_enabled
    assert h.run(haproxy.CHECK).rc == 0
    assert h.file(haproxy.PEM_PATH).mode == 0o600
    info = h.check_output(f"echo 'show info' | socat stdio {haproxy.SOCKET}")
    assert "Name: HAProxy" in info


@readonly
@LB
def test_runtime_api_lists_every_web_server(hosts, stack, name):
    out = hosts[name].check_output(f"echo 'show servers state {haproxy.BACKEND}' | "
                                   f"socat stdio {haproxy.SOCKET}")
    assert {h.name for h in stack.group("webservers")} <= set(out.split())


@readonly
def test_http_redirects_to_https_with_hsts(stack, vip, ca):
    status, headers, _ = http_get(f"http://{vip}/some/path?q=1", redirects=False)
    assert status in (301, 308)
    assert headers["Location"] == f"https://{vip}/some/path?q=1"
    status, headers, _ = https_get(f"https://{vip}{stack.group('webservers')[0].app_health_path}",
                                   ca)
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    max_age = int(headers["Strict-Transport-Security"].split("=")[1].split(";")[0])
    assert max_age == stack.group("loadbalancers")[0].haproxy_hsts_max_age


@readonly
@LB
def test_stats_page_needs_credentials_and_is_not_on_the_floating_ip(stack, vip, name):
    lb = stack.host(name)
    url = f"http://{lb.address}:{lb.haproxy_stats_port}/stats"
    assert http_get(url)[0] == 401
    secret = stack.secrets["haproxy_stats_password"]
    auth = base64.b64encode(f"{lb.haproxy_stats_user}:{secret}".encode()).decode()
    status, _, body = http_get(url, headers={"Authorization": f"Basic {auth}"})
    assert status == 200 and "Statistics Report" in body
    with pytest.raises(OSError):
        http_get(f"http://{vip}:{lb.haproxy_stats_port}/stats", timeout=3)


@readonly
@LB
def test_metrics_are_served_to_the_monitoring_host(hosts, stack, name):
    lb = stack.host(name)
    monitor = hosts[stack.group("monitoring")[0].name]
    metrics = monitor.check_output(
        f"curl -sf -m 5 http://{lb.address}:{lb.haproxy_stats_port}/metrics")
    assert "haproxy_backend_active_servers" in metrics


# --- the lab -------------------------------------------------------------------------------

@pytest.mark.lab
def test_round_robin_alternates_strictly():
    lb = vip_holders()[0]
    before = backend_sessions(lb)
    served = [https_get(f"https://{VIP}/", CA)[1]["X-Served-By"] for _ in range(20)]
    # Other clients share the rotation (the monitoring host probes the floating IP): each of
    # their requests takes one turn, so it may repeat one server once in ours, never more.
    others = backend_sessions(lb) - before - len(served)
    repeats = sum(a == b for a, b in zip(served, served[1:], strict=False))
    assert repeats <= others, (served, f"{others} requests from other clients")
    share = 20 // len(group("webservers"))
    assert all(abs(Counter(served)[w] - share) <= others for w in group("webservers")), served


@pytest.mark.lab
def test_tls_versions_and_ciphers_follow_the_intermediate_profile():
    scan = run("client", "nmap", "-Pn", "-n", "--script", "ssl-enum-ciphers", "-p", "443",
               VIP, timeout=180).stdout
    versions = set(re.findall(r"\|\s+(TLSv1\.\d|SSLv\d)", scan))
    assert versions == {"TLSv1.2", "TLSv1.3"}, scan
    ciphers = re.findall(r"\|\s+(TLS_\w+)", scan)
    tls12 = [c for c in ciphers if not c.startswith("TLS_AKE_")]  # TLS 1.3 suites are all AEAD
    assert tls12 and all(c.startswith("TLS_ECDHE_") and ("_GCM_" in c or "CHACHA20" in c)
                         for c in tls12), tls12


@pytest.mark.lab
def test_tls_1_1_handshake_is_refused():
    result = run("client", "sh", "-c", f"echo | openssl s_client -connect {VIP}:443 -tls1_1 "
                 "-cipher DEFAULT@SECLEVEL=0 2>&1")
    assert "Cipher is (NONE)" in result.stdout or "alert" in result.stdout, result.stdout


@pytest.mark.lab
def test_management_port_is_closed_to_the_internet(lab):
    for lb in group("loadbalancers"):
        got = run("client", "curl", "-s", "-m", "3", f"http://{lab.host(lb).address}:8404/metrics")
        assert got.returncode != 0, f"the internet reaches {lb}'s management port"


def _config(lb: str) -> str:
    return run(lb, "cat", "/etc/haproxy/haproxy.cfg").stdout


@pytest.mark.lab
def test_invalid_haproxy_setting_fails_the_deploy_and_haproxy_keeps_serving():
    bad = run_deploy("--limit", "lb-01", "--data", "haproxy_extra_global=no-such-keyword on")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "rejected the new /etc/haproxy/haproxy.cfg" in output
    assert "no-such-keyword" in output
    assert https_get(f"https://{VIP}/healthz", CA)[0] == 200
    assert "no-such-keyword" not in _config("lb-01")
    assert run_deploy("--limit", "lb-01").returncode == 0


@pytest.mark.lab
def test_config_haproxy_cannot_load_is_rolled_back():
    """`haproxy -c` accepts 2,000,000 connections; starting workers for them fails (file
    descriptors). The deploy notices, puts the old file back, and the old workers serve on."""
    bad = run_deploy("--limit", "lb-01", "--data", "haproxy_maxconn=2000000")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "the service did not take the new /etc/haproxy/haproxy.cfg" in output
    assert https_get(f"https://{VIP}/healthz", CA)[0] == 200
    assert "maxconn 2000000" not in _config("lb-01")
    assert run_deploy("--limit", "lb-01").returncode == 0
    assert https_get(f"https://{VIP}/healthz", CA)[0] == 200

"""HAProxy on the load balancers: round-robin, TLS, health checks, retries, management."""

import re
import time
from collections import Counter

import pytest

from tests.conftest import (
    RequestStream,
    docker_exec,
    http_get,
    https_get,
    lab_hosts,
    run_deploy,
    wait_until,
)
from webstack.secret_loader import load as load_secrets

pytestmark = pytest.mark.lab
LB = lab_hosts("loadbalancers")


@pytest.fixture(scope="module")
def vip(lab):
    return f"https://{lab.floating_ip}"


@pytest.mark.parametrize("name", LB)
def test_haproxy_installed_running_and_config_valid(hosts, name):
    h = hosts[name]
    assert h.package("haproxy").is_installed
    assert h.service("haproxy").is_running and h.service("haproxy").is_enabled
    assert h.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0
    assert h.file("/etc/haproxy/certs/site.pem").mode == 0o600
    info = h.check_output("echo 'show info' | socat stdio /run/haproxy/admin.sock")
    assert "Name: HAProxy" in info


@pytest.mark.parametrize("name", LB)
def test_runtime_api_lists_every_web_server(hosts, lab, name):
    out = hosts[name].check_output("echo 'show servers state web' | "
                                   "socat stdio /run/haproxy/admin.sock")
    assert {h.name for h in lab.hosts if "webservers" in h.groups} <= set(out.split())


def test_round_robin_alternates_strictly(vip):
    served = [https_get(f"{vip}/")[1]["X-Served-By"] for _ in range(20)]
    assert Counter(served) == {"web-01": 10, "web-02": 10}
    assert all(a != b for a, b in zip(served, served[1:], strict=False)), served


def test_http_redirects_to_https_with_hsts(lab, vip):
    status, headers, _ = http_get(f"http://{lab.floating_ip}/some/path?q=1", redirects=False)
    assert status in (301, 308)
    assert headers["Location"] == f"https://{lab.floating_ip}/some/path?q=1"
    status, headers, _ = https_get(f"{vip}/healthz")
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert int(headers["Strict-Transport-Security"].split("=")[1]) >= 15552000


def test_tls_versions_and_ciphers_follow_the_intermediate_profile(lab):
    scan = docker_exec("client", "nmap", "-Pn", "-n", "--script", "ssl-enum-ciphers", "-p", "443",
                       lab.floating_ip, timeout=180).stdout
    versions = set(re.findall(r"\|\s+(TLSv1\.\d|SSLv\d)", scan))
    assert versions == {"TLSv1.2", "TLSv1.3"}, scan
    ciphers = re.findall(r"\|\s+(TLS_\w+)", scan)
    tls12 = [c for c in ciphers if not c.startswith("TLS_AKE_")]  # TLS 1.3 suites are all AEAD
    assert tls12 and all(c.startswith("TLS_ECDHE_") and ("_GCM_" in c or "CHACHA20" in c)
                         for c in tls12), tls12


def test_tls_1_1_handshake_is_refused(lab):
    result = docker_exec("client", "sh", "-c",
                         f"echo | openssl s_client -connect {lab.floating_ip}:443 -tls1_1 "
                         "-cipher DEFAULT@SECLEVEL=0 2>&1")
    assert "Cipher is (NONE)" in result.stdout or "alert" in result.stdout, result.stdout


def test_stopped_web_server_leaves_rotation_without_errors(hosts, vip):
    with RequestStream(f"{vip}/healthz", max_seconds=40) as stream:
        time.sleep(1)
        stopped_at = time.monotonic()
        hosts["web-01"].run("systemctl stop nginx")
        try:
            time.sleep(6)
        finally:
            hosts["web-01"].run("systemctl start nginx")
        back = wait_until(lambda: any(r[2] == "web-01" for r in stream.results
                                      if r[0] > stopped_at + 6), timeout=15)
    assert stream.failures == [], stream.failures[:5]
    after_5s = [r[2] for r in stream.results if stopped_at + 5 <= r[0] <= stopped_at + 6]
    assert after_5s and set(after_5s) == {"web-02"}
    assert back is not None, "web-01 did not return to rotation"


def test_stats_page_needs_credentials_and_is_not_on_the_floating_ip(lab):
    lb = lab.host("lb-01").address
    assert http_get(f"http://{lb}:8404/stats")[0] == 401
    import base64
    password = load_secrets("lab")["haproxy_stats_password"]
    auth = base64.b64encode(f"admin:{password}".encode()).decode()
    status, _, body = http_get(f"http://{lb}:8404/stats",
                               headers={"Authorization": f"Basic {auth}"})
    assert status == 200 and "Statistics Report" in body
    with pytest.raises(OSError):
        http_get(f"http://{lab.floating_ip}:8404/stats", timeout=3)


def test_metrics_are_served_to_the_monitoring_host_only(lab):
    lb = lab.host("lb-01").address
    metrics = docker_exec("monitor-01", "curl", "-sf", f"http://{lb}:8404/metrics").stdout
    assert "haproxy_backend_active_servers" in metrics
    from_client = docker_exec("client", "curl", "-s", "-m", "3", f"http://{lb}:8404/metrics")
    assert from_client.returncode != 0


def test_invalid_haproxy_setting_fails_the_deploy_and_haproxy_keeps_serving(hosts, vip):
    bad = run_deploy("--limit", "lb-01", "--data", "haproxy_extra_global=no-such-keyword on")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "rejected the new /etc/haproxy/haproxy.cfg" in output
    assert "no-such-keyword" in output
    assert https_get(f"{vip}/healthz")[0] == 200
    assert "no-such-keyword" not in hosts["lb-01"].file("/etc/haproxy/haproxy.cfg").content_string
    assert run_deploy("--limit", "lb-01").returncode == 0


def test_config_haproxy_cannot_load_is_rolled_back(hosts, vip):
    """`haproxy -c` accepts 2,000,000 connections; starting workers for them fails (file
    descriptors). The deploy notices, puts the old file back, and the old workers serve on."""
    bad = run_deploy("--limit", "lb-01", "--data", "haproxy_maxconn=2000000")
    output = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert "the service did not take the new /etc/haproxy/haproxy.cfg" in output
    assert https_get(f"{vip}/healthz")[0] == 200
    assert "maxconn 2000000" not in hosts["lb-01"].file("/etc/haproxy/haproxy.cfg").content_string
    assert run_deploy("--limit", "lb-01").returncode == 0
    assert https_get(f"{vip}/healthz")[0] == 200

"""ops/rolling_app_deploy.py: a new app version, one server at a time, under a request stream."""

import json
import shutil

import pytest

from tests.conftest import ROOT, RequestStream, docker_exec, http_get, lab_hosts, run_deploy

pytestmark = pytest.mark.lab
OP = "ops/rolling_app_deploy.py"
WEB = lab_hosts("webservers")


def app_version(lab, name: str) -> str:
    status, _, body = http_get(f"http://{lab.host(name).address}/healthz")
    return json.loads(body)["version"] if status == 200 else f"HTTP {status}"


def app_copy(tmp_path, version: str, broken: bool = False) -> str:
    """A copy of the app with its own version (and, if asked, an app that cannot start)."""
    dest = tmp_path / version
    shutil.copytree(ROOT / "app", dest, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "VERSION").write_text(version + "\n")
    if broken:
        (dest / "webstack_app.py").write_text("raise SystemExit('this version cannot start')\n")
    return str(dest)


def drained(lb: str, server: str) -> bool:
    """The balancer holds the server in drain (admin state bit 0x08 of `show servers state`)."""
    out = docker_exec(lb, "bash", "-c",
                      "echo 'show servers state web' | socat stdio /run/haproxy/admin.sock")
    fields = next(line.split() for line in out.stdout.splitlines()
                  if len(line.split()) > 6 and line.split()[3] == server)
    return bool(int(fields[6]) & 0x08)


@pytest.fixture(scope="module", autouse=True)
def back_to_the_repository_app():
    yield
    result = run_deploy(deploy=OP)
    assert result.returncode == 0, result.stderr[-3000:]


def test_rolling_deploy_drops_no_request_and_ends_on_the_new_version(lab, tmp_path):
    version = f"rolling-{tmp_path.name}"
    with RequestStream(f"https://{lab.floating_ip}/api/notes", max_seconds=240) as stream:
        result = run_deploy("--data", f"app_source={app_copy(tmp_path, version)}", deploy=OP)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\nrolling deploy: {len(stream.results)} requests, {len(stream.failures)} failed")
    assert len(stream.results) > 100 and stream.failures == []
    assert {name: app_version(lab, name) for name in WEB} == dict.fromkeys(WEB, version)
    assert {r[2] for r in stream.results[-20:]} == set(WEB)  # all back in rotation


def test_rollout_stops_at_a_server_that_does_not_come_back(lab, tmp_path):
    before = {name: app_version(lab, name) for name in WEB}
    broken = app_copy(tmp_path, "broken", broken=True)
    with RequestStream(f"https://{lab.floating_ip}/api/notes", max_seconds=240) as stream:
        result = run_deploy("--data", f"app_source={broken}", "--data", "app_health_timeout_s=5",
                            deploy=OP)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{WEB[0]} does not answer /healthz 5 s after the deploy" in output
    assert stream.failures == []  # the drained server took no requests
    assert {r[2] for r in stream.results[-20:]} == set(WEB[1:])
    assert all(app_version(lab, name) == before[name] for name in WEB[1:])  # left alone
    assert all(drained(lb, WEB[0]) for lb in ("lb-01", "lb-02"))

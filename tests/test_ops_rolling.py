"""ops/rolling_app_deploy.py: a new app version, one server at a time, under a request stream."""

import json
import shutil

import pytest

from lab.toolkit.deploy import ROOT, run_deploy
from lab.toolkit.hosts import drained, group
from lab.toolkit.http import http_get
from lab.toolkit.streams import Stream

pytestmark = pytest.mark.lab
OP = "ops/rolling_app_deploy.py"
WEB = group("webservers")


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


@pytest.fixture(scope="module", autouse=True)
def back_to_the_repository_app():
    yield
    result = run_deploy(deploy=OP)
    assert result.returncode == 0, result.stderr[-3000:]


def test_rolling_deploy_drops_no_request_and_ends_on_the_new_version(lab, tmp_path):
    version = f"rolling-{tmp_path.name}"
    with Stream("/api/notes", rate=20, seconds=240) as stream:
        result = run_deploy("--data", f"app_source={app_copy(tmp_path, version)}", deploy=OP)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"\nrolling deploy: {len(stream.records)} requests, {len(stream.failures)} failed")
    assert len(stream.records) > 100 and stream.failures == []
    assert {name: app_version(lab, name) for name in WEB} == dict.fromkeys(WEB, version)
    assert {r["served_by"] for r in stream.records[-20:]} == set(WEB)  # all back in rotation


def test_rollout_stops_at_a_server_that_does_not_come_back(lab, tmp_path):
    before = {name: app_version(lab, name) for name in WEB}
    broken = app_copy(tmp_path, "broken", broken=True)
    with Stream("/api/notes", rate=10, seconds=240) as stream:
        result = run_deploy("--data", f"app_source={broken}", "--data", "app_health_timeout_s=5",
                            deploy=OP)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{WEB[0]} does not answer /healthz 5 s after the deploy" in output
    assert stream.failures == []  # the drained server took no requests
    assert {r["served_by"] for r in stream.records[-20:]} == set(WEB[1:])
    assert all(app_version(lab, name) == before[name] for name in WEB[1:])  # left alone
    assert all(drained(WEB[0], lb) for lb in group("loadbalancers"))

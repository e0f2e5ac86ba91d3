"""Specs for tasks/app.py and the stack-status app's contract."""

import json
import shutil
import subprocess

import pytest

from lab.toolkit.deploy import ROOT, run_deploy
from lab.toolkit.hosts import group, run, systemd_pid, wait_until
from lab.toolkit.http import http_get

readonly = pytest.mark.readonly
WEB = pytest.mark.hosts("webservers")
UNIT = "ha-webstack-app"


def _post(url, body: bytes, content_type="application/json"):
    status, _, text = http_get(url, method="POST", data=body,
                               headers={"Content-Type": content_type})
    return status, json.loads(text)


@readonly
@WEB
def test_app_runs_under_systemd_on_localhost_only(hosts, stack, name):
    h, port = hosts[name], stack.host(name).app_port
    assert h.service(UNIT).is_running and h.service(UNIT).is_enabled
    assert h.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not h.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert h.process.filter(user="webapp")


@readonly
@WEB
def test_app_environment_file_is_root_only(hosts, name):
    f = hosts[name].file("/etc/ha-webstack-app.env")
    assert f.user == "root" and f.mode == 0o600
    assert "DB_PASSWORD=" in f.content_string


@readonly
@WEB
def test_app_health_path_answers_through_nginx(stack, name):
    h = stack.host(name)
    status, headers, _ = http_get(f"http://{h.address}:{h.nginx_port}{h.app_health_path}")
    assert status == 200 and headers["X-Served-By"] == name


# --- the lab: the default app's contract ------------------------------------------------------

@pytest.mark.lab
@pytest.mark.parametrize("name", group("webservers"))
def test_healthz_reports_server_and_version_without_the_database(lab, name):
    status, _, body = http_get(f"http://{lab.host(name).address}/healthz")
    version = (ROOT / "app/VERSION").read_text().strip()
    assert status == 200
    assert json.loads(body) == {"server": name, "status": "ok", "version": version}


@pytest.mark.lab
def test_health_db_reports_each_server_as_json(lab):
    _, headers, body = http_get(f"http://{lab.host('web-01').address}/health/db")
    report = json.loads(body)
    assert headers["Content-Type"] == "application/json"
    roles = [(s["role"], s["address"]) for s in report["servers"]]
    assert roles == [("primary", lab.host("db-01").address), ("replica", lab.host("db-02").address)]
    assert all({"reachable", "read_only", "lag_seconds"} <= s.keys() for s in report["servers"])


@pytest.mark.lab
@pytest.mark.parametrize("body, content_type, status, error", [
    (b'{"txt": "x"}', "application/json", 400, '"text" field'),
    (b'not json', "application/json", 400, '"text" field'),
    (b'{"text": 42}', "application/json", 422, "non-empty string"),
    (b'{"text": "' + b"x" * 2000 + b'"}', "application/json", 422, "longer than"),
    (b'{"text": "' + b"x" * 70000 + b'"}', "application/json", 413, "too large"),
    (b'{"text": "' + b"x" * 1_100_000 + b'"}', "application/json", 413, "too large"),
    (b'text=x', "application/x-www-form-urlencoded", 415, "send JSON"),
])
def test_bad_note_input_gets_a_clear_4xx_json_error(lab, body, content_type, status, error):
    got, payload = _post(f"http://{lab.host('web-01').address}/api/notes", body, content_type)
    assert got == status and error in payload["error"]


@pytest.mark.lab
def test_unknown_path_is_a_json_404(lab):
    status, _, body = http_get(f"http://{lab.host('web-01').address}/no/such/page")
    assert status == 404 and "error" in json.loads(body)


def _render(url: str, tmp_path, shot_name: str) -> str:
    """Headless Chromium: a screenshot to artifacts/, and the DOM after rendering."""
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}"]
    shot = ROOT / "artifacts" / shot_name
    shot.parent.mkdir(exist_ok=True)
    subprocess.run([*chromium, f"--screenshot={shot}", "--window-size=1000,900", url],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
    return subprocess.run([*chromium, "--dump-dom", url], capture_output=True, text=True,
                          timeout=120, check=True).stdout


@pytest.mark.lab
def test_status_page_renders_in_a_browser(lab, tmp_path):
    dom = _render(f"http://{lab.host('web-02').address}/", tmp_path, "status-page.png")
    assert 'id="served-by">web-02</strong>' in dom
    assert "Visit number" in dom and "DOWN" not in dom


@pytest.mark.lab
def test_status_page_renders_with_the_database_down(lab, tmp_path):
    for db in ("db-01", "db-02"):
        run(db, "systemctl", "stop", "mariadb")
    try:
        dom = _render(f"http://{lab.host('web-01').address}/", tmp_path,
                      "status-page-database-down.png")
    finally:
        for db in ("db-01", "db-02"):
            run(db, "systemctl", "start", "mariadb")
    assert 'id="served-by">web-01</strong>' in dom
    assert "The database is down" in dom and dom.count(">DOWN<") == 2

    def healthy():
        status, _, body = http_get(f"http://{lab.host('web-01').address}/health/db")
        servers = json.loads(body)["servers"]
        return status == 200 and all(s["reachable"] for s in servers)
    assert wait_until(healthy, timeout=30) is not None


@pytest.mark.lab
def test_changing_only_the_app_code_restarts_only_the_app(tmp_path):
    h = "web-01"
    app_pid, nginx_pid = systemd_pid(h, UNIT), systemd_pid(h, "nginx")
    changed = tmp_path / "app"
    shutil.copytree(ROOT / "app", changed, ignore=shutil.ignore_patterns("__pycache__"))
    (changed / "CHANGED-BY-TEST").write_text("a code change\n")
    try:
        result = run_deploy("--json", "--limit", "web-01", "--data", f"app_source={changed}")
        assert result.returncode == 0, result.stderr[-2000:]
        changed_ops = {op["name"] for op in json.loads(result.stdout)["results"]["operations"]
                       if op["success"]}
        assert changed_ops == {"tasks/app.py | App code",
                               "tasks/app.py | App running, restarted when it changed"}
        assert systemd_pid(h, UNIT) != app_pid
        assert systemd_pid(h, "nginx") == nginx_pid
    finally:
        assert run_deploy("--limit", "web-01").returncode == 0
    assert run(h, "test", "-e", "/opt/ha-webstack-app/CHANGED-BY-TEST").returncode == 1

"""The alert rules, rendered with the lab's settings, pass `promtool test rules`.

Fast tier: needs promtool (Debian's prometheus package; `make check` installs it), not the lab.
"""

import re
import runpy
import shutil
import subprocess

import jinja2
import pytest
import yaml

from lab.toolkit.deploy import ROOT
from lab.topology import DEFAULT_SUBNET, DEFAULT_WEB_SERVERS, Topology
from webstack.settings import check_inventory

TEMPLATE = "templates/monitoring/ha-webstack-alerts.yml.j2"
DEFAULT_FLOATING_IP = Topology(DEFAULT_SUBNET, DEFAULT_WEB_SERVERS).floating_ip
# The lab inventory validates its secrets when loaded; these tests need none of their values,
# and must not depend on the lab having generated secrets/lab.env.
pytestmark = pytest.mark.usefixtures("all_secrets")


def _render(tmp_path):
    stack = check_inventory(runpy.run_path(str(ROOT / "inventories/lab.py")))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.get_template(TEMPLATE).render(
        m=stack.group("monitoring")[0], health_path="/healthz",
        floating_ip=stack.group("loadbalancers")[0].keepalived_floating_ip)
    # Summaries are checked by promtool (exp_annotations); runbook hints are static text,
    # checked to be present by test_every_alert_has_a_firing_and_a_quiet_case.
    rules = yaml.safe_load(text)
    for rule in rules["groups"][0]["rules"]:
        rule["annotations"].pop("runbook")
    (tmp_path / "ha-webstack-alerts.yml").write_text(yaml.safe_dump(rules))
    # The expectations name the default lab's floating IP; the lab may have been moved since
    # (LAB_SUBNET), and the rules name the one it has now.
    tests = (ROOT / "tests/unit/monitoring/alerts_test.yml").read_text()
    vip = str(stack.group("loadbalancers")[0].keepalived_floating_ip)
    (tmp_path / "alerts_test.yml").write_text(tests.replace(DEFAULT_FLOATING_IP, vip))
    return text


def test_promtool_rule_tests_pass(tmp_path):
    _render(tmp_path)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (make check does)"
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case(tmp_path):
    rules = yaml.safe_load(_render(tmp_path))["groups"][0]["rules"]
    tests = yaml.safe_load((ROOT / "tests/unit/monitoring/alerts_test.yml").read_text())["tests"]
    fires, quiet = set(), set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fires if case["exp_alerts"] else quiet).add(case["alertname"])
        # a series whose alert is not expected is a quiet case for the alerts that fire
        if len(test["input_series"]) > 1:
            quiet |= {case["alertname"] for case in test["alert_rule_test"]}
    names = {r["alert"] for r in rules}
    assert names == fires, "every alert needs a test in which it fires"
    assert names <= quiet, "every alert needs a case in which it stays quiet"
    assert all({"summary", "runbook"} <= r["annotations"].keys() for r in rules)
    assert all(re.fullmatch(r"\d+[smh]", r["for"]) for r in rules)


def test_a_runbook_named_by_an_alert_exists(tmp_path):
    rules = yaml.safe_load(_render(tmp_path))["groups"][0]["rules"]
    headings = set(re.findall(r"^## (.+)$", (ROOT / "docs/runbooks.md").read_text(), re.M))
    named = {r["alert"]: m.group(1) for r in rules
             if (m := re.match(r"docs/runbooks\.md, ([^:]+):", r["annotations"]["runbook"]))}
    assert named, "no alert points at docs/runbooks.md"
    missing = {alert: h for alert, h in named.items() if h not in headings}
    assert not missing, f"runbooks named by alerts but absent from docs/runbooks.md: {missing}"

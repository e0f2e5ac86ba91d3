"""The onboarding docs match the code: line references, names, addresses, ports, algorithm."""

import re

import pytest

from lab.toolkit.deploy import ROOT
from lab.topology import DEFAULT_SUBNET, Topology
from webstack.settings import _read_group_data

ARCHITECTURE = (ROOT / "docs/architecture.md").read_text()
RUNBOOKS = (ROOT / "docs/runbooks.md").read_text()
DEFAULTS = {k: v for values in _read_group_data().values() for k, v in values.items()}
LINE_REFS = re.findall(r"\[`([^`]+)`\]\(\.\./([^)#]+)#L(\d+)\)", ARCHITECTURE)
OPS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "ops").glob("*.py"))


def test_the_guide_points_at_code():
    assert len(LINE_REFS) >= 20


@pytest.mark.parametrize(("token", "path", "line"), LINE_REFS)
def test_each_line_reference_holds_what_it_names(token, path, line):
    lines = (ROOT / path).read_text().splitlines()
    found = [i + 1 for i, text in enumerate(lines) if token in text]
    assert token in lines[int(line) - 1], f"{path}:{line} lost `{token}`; now at lines {found}"


def test_the_diagram_names_the_lab_hosts_with_their_addresses():
    lab = Topology(DEFAULT_SUBNET, 2)
    diagram = ARCHITECTURE.split("```mermaid")[1].split("```")[0]
    for host in lab.managed_hosts:
        octet = host.address.rsplit(".", 1)[1]
        assert re.search(rf"{host.name} \.{octet}\b", diagram), f"{host.name} .{octet}"
    assert f"floating IP {lab.floating_ip}" in diagram


def test_the_diagram_ports_are_the_default_settings():
    diagram = ARCHITECTURE.split("```mermaid")[1].split("```")[0]
    assert f"nginx :{DEFAULTS['nginx_port']} → app 127.0.0.1:{DEFAULTS['app_port']}" in diagram
    assert f"MariaDB primary :{DEFAULTS['mysql_port']}" in diagram
    assert f"Prometheus :{DEFAULTS['prometheus_port']}" in diagram
    assert f"Alertmanager :{DEFAULTS['alertmanager_port']}" in diagram
    scraped = (DEFAULTS["node_exporter_port"], DEFAULTS["haproxy_stats_port"],
               DEFAULTS["nginx_exporter_port"])
    assert "scrapes " + " ".join(f":{p}" for p in scraped) in diagram


def test_the_algorithm_named_is_the_default():
    assert DEFAULTS["haproxy_balance"] == "roundrobin"
    assert "Round-robin by default" in ARCHITECTURE


@pytest.mark.parametrize("op", OPS)
def test_every_operation_says_when_what_and_how_to_undo_and_has_a_runbook(op):
    doc = (ROOT / op).read_text().split('"""')[1]
    for part in ("When to use it", "What it does", "How to undo"):
        assert part in doc, f"{op}: docstring lacks '{part}'"
    assert f"`{op}`" in RUNBOOKS or f"{op}" in RUNBOOKS

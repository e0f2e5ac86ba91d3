"""The firewall matches the policy: each host holds exactly the rules webstack/policy.py computes
for it from the inventory (read-only, any inventory), and, in the lab, probes from every host
find every allowed pair connecting and every other pair refused or timing out."""

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address, ip_network

import pytest

from lab.toolkit.deploy import run_deploy
from lab.toolkit.hosts import run
from webstack import policy
from webstack.facts import UfwRules

PUBLIC_ON_VIP = (80, 443)  # HAProxy listens on the floating IP only


@pytest.mark.readonly
@pytest.mark.hosts()
def test_host_holds_exactly_the_policys_rules(hosts, stack, name):
    """ufw's own rules files, parsed as the deploy parses them, against the computed policy."""
    held = UfwRules().process(hosts[name].check_output(
        "cat /etc/ufw/user.rules /etc/ufw/user6.rules").splitlines())
    wanted = policy.rules_for(stack, stack.host(name))
    assert sorted(held) == sorted(wanted)


@pytest.mark.readonly
@pytest.mark.hosts()
def test_every_rule_names_its_policy_row(hosts, name):
    status = hosts[name].check_output("ufw status")
    rules = [line for line in status.splitlines()[4:] if line.strip()]
    assert rules and all("# " in line and "/" in line.split("# ")[1] for line in rules), rules


def _allowed(rules, source_address: str, port: int) -> bool:
    return any(r.proto == "tcp" and r.port == str(port) and
               (r.source == "any" or ip_address(source_address) in ip_network(r.source))
               for r in rules)


def _expected(stack, lab):
    """{(source, target address, port): allowed} for every source, target and policy port."""
    sources = {h.name: h.address for h in lab.hosts} | {"control": lab.gateway}
    targets = {}
    for h in stack.hosts:
        rules = policy.rules_for(stack, h)
        for port in {int(r.port) for r in policy.rules_for(stack, h) if r.proto == "tcp"} | {
                int(r.port) for t in stack.hosts for r in policy.rules_for(stack, t)
                if r.proto == "tcp"}:
            if "loadbalancers" in h.groups and port in PUBLIC_ON_VIP:
                continue  # probed on the floating IP instead
            targets[(h.address, port)] = rules
    lb_rules = policy.rules_for(stack, stack.group("loadbalancers")[0])
    for port in PUBLIC_ON_VIP:
        targets[(lab.floating_ip, port)] = lb_rules
    return {(src, addr, port): _allowed(rules, src_addr, port)
            for src, src_addr in sources.items() for (addr, port), rules in targets.items()
            if src_addr != addr}


def _probe_from_container(container: str, pairs: list[tuple[str, int]]) -> dict:
    script = " ".join(
        f"(timeout 2 bash -c 'exec 3<>/dev/tcp/{a}/{p}' 2>/dev/null && echo {a}:{p}:open "
        f"|| echo {a}:{p}:closed) &" for a, p in pairs) + " wait"
    out = run(container, "bash", "-c", script, timeout=60).stdout
    return {(a, int(p)): state == "open" for a, p, state in
            (line.split(":") for line in out.split())}


def _probe_from_control(pairs):
    def one(pair):
        try:
            with socket.create_connection(pair, timeout=2):
                return pair, True
        except OSError:
            return pair, False
    with ThreadPoolExecutor(32) as pool:
        return dict(pool.map(one, pairs))


def _probe(source: str, pairs: list[tuple[str, int]]) -> dict:
    return (_probe_from_control(pairs) if source == "control"
            else _probe_from_container(source, pairs))


def _word(is_open: bool) -> str:
    return "open" if is_open else "closed"


@pytest.mark.lab
def test_every_allowed_pair_connects_and_no_other(stack, lab):
    expected = _expected(stack, lab)
    wrong = []
    for source in sorted({s for s, _, _ in expected}):
        pairs = [(a, p) for s, a, p in expected if s == source]
        seen = _probe(source, pairs)
        # SSH is rate-limited (ufw "limit": 6 new connections in 30 s per source), and the
        # control machine has just been busy over SSH: an allowed SSH pair gets another try
        # once that window has passed.
        limited = [(a, p) for a, p in pairs if expected[(source, a, p)] and not seen[(a, p)]
                   and p == 22]
        if limited:
            time.sleep(31)
            seen |= _probe(source, limited)
        wrong += [f"{source} -> {a}:{p}: expected {_word(expected[(source, a, p)])}, "
                  f"got {_word(seen[(a, p)])}"
                  for a, p in pairs if seen[(a, p)] != expected[(source, a, p)]]
    assert wrong == []
    assert sum(expected.values()) > 20  # the matrix really has allowed pairs in it


@pytest.mark.lab
def test_internet_sees_only_https_on_the_floating_ip(lab):
    targets = [h.address for h in lab.managed_hosts] + [lab.floating_ip]
    # Every TCP port; a bounded rate, aimed only at the lab's own addresses.
    scan = run("client", "nmap", "-Pn", "-n", "-p-", "-T5", "--min-rate", "20000",
                       "--max-retries", "1", "--open", "-oG", "-", *targets, timeout=600)
    assert scan.returncode == 0, scan.stderr
    open_ports = {}
    for line in scan.stdout.splitlines():
        if "Ports:" in line:
            address = line.split()[1]
            open_ports[address] = sorted(int(p.split("/")[0]) for p in
                                         line.split("Ports:")[1].split(",") if "/open/" in p)
    assert open_ports == {lab.floating_ip: [80, 443]}


@pytest.mark.lab
def test_hand_made_rule_is_removed_by_the_next_deploy():
    run("db-01", "ufw", "allow", "3306")
    assert "3306                       ALLOW       Anywhere" in run("db-01", "ufw", "status").stdout
    result = run_deploy("--limit", "db-01")
    assert result.returncode == 0, result.stderr[-2000:]
    status = run("db-01", "ufw", "status").stdout
    assert "Anywhere" not in status.split("--\n", 1)[1]


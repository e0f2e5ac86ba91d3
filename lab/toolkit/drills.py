"""The failure drills: each breaks one thing under a stream through the floating IP (streams.py),
repairs it (or lets systemd/keepalived do so), waits until the stack is whole again, and reports.

One drill, one instrument, one verdict: tests/test_drills.py runs each drill once and asserts its
verdict; `make bench` (bench/drills.py) runs it many times and reports the figures and how often
the verdict held. A verdict is the list of the stack's promises the run broke ([] = held).
"""

import runpy
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.toolkit.deploy import ROOT
from lab.toolkit.hosts import (
    DATABASES,
    DRILL_COMMENT,
    DRILL_RULES_REMOVE,
    ETCD_CLIENT_PORT,
    VIP,
    WritableSampler,
    addr,
    agent_primary,
    agent_role,
    all_in_rotation,
    caught_up,
    db_roles_as_built,
    docker,
    group,
    in_rotation,
    lab_lock,
    mariadb_answers,
    note_ids,
    primary,
    replica,
    replicating,
    restore,
    run,
    sql,
    systemd_pid,
    vip_holders,
    wait_until,
)
from lab.toolkit.streams import Stream
from webstack import db_agent, haproxy, keepalived

WEB = "web-01"  # the web server the web-tier drills break


@dataclass(frozen=True)
class Drill:
    name: str
    what: str                                # the fault, as the report names it
    action: Callable[[], dict]               # breaks, repairs, measures: a result dict
    verdict: Callable[[dict], list[str]]     # the promises this result broke


def _r(value: float | None, plus: float = 0.0):
    return None if value is None else round(value + plus, 2)


def _since(t: float, predicate, timeout: float) -> float | None:
    """Seconds from wall-clock time t until predicate() holds; None if not within timeout."""
    return _r(time.time() - t) if wait_until(predicate, timeout) is not None else None


# --- the web tier -------------------------------------------------------------------------

def _out_and_back(fault: str, do_fault, hold_s: float, fix: str, do_fix) -> dict:
    """Break WEB under a stream, hold the fault for hold_s, repair it: when HAProxy took it out
    of rotation, and how long after the repair it was whole again (and serving)."""
    with Stream("/healthz", baseline_s=2) as s:
        t = s.mark(fault)
        do_fault()
        out = wait_until(lambda: not in_rotation(WEB), 15)
        time.sleep(max(0.0, hold_s - (time.time() - t)))
        t_fix = s.mark(fix)
        do_fix()
        whole = _since(t_fix, lambda: in_rotation(WEB), 30)
        serves = wait_until(lambda: WEB in s.served_by_after(t_fix), 15) is not None
    return {**s.summary(), "out_of_rotation_s": _r(out), "whole_again_s": whole,
            "whole_again_from": fix, "serves_again": serves, "fault_held_s": _r(t_fix - t)}


def _no_failed_request_and_back(result: dict) -> list[str]:
    problems = []
    if result["failed"]:
        problems.append(f"{result['failed']} of {result['sent']} requests failed: "
                        f"{result['failures_by_kind']}")
    if result.get("whole_again_s") is None:
        problems.append(f"{WEB} did not come back into rotation")
    if result.get("serves_again") is False:
        problems.append(f"{WEB} answered no request after it came back")
    return problems


def nginx_graceful_stop() -> dict:
    return _out_and_back(
        f"systemctl stop nginx ({WEB})", lambda: run(WEB, "systemctl", "stop", "nginx",
                                                     check=True), 4,
        "systemctl start nginx", lambda: run(WEB, "systemctl", "start", "nginx", check=True))


def web_kill9() -> dict:
    # nginx has no Restart=: it is started again; the app restarts itself (Restart=always).
    return _out_and_back(
        f"kill -9 nginx + app ({WEB})",
        lambda: run(WEB, "systemctl", "kill", "--signal=KILL", "nginx", "ha-webstack-app",
                    check=True), 3,
        "systemctl start nginx", lambda: run(WEB, "systemctl", "start", "nginx", check=True))


def app_kill9() -> dict:
    """The app alone: nginx stays up and answers 502 until systemd has restarted gunicorn."""
    with Stream("/healthz", baseline_s=2) as s:
        t = s.mark(f"kill -9 the app only ({WEB})")
        run(WEB, "systemctl", "kill", "--signal=KILL", "ha-webstack-app", check=True)
        whole = _since(t, lambda: run(WEB, "curl", "-sf", "-o", "/dev/null",
                                      "http://127.0.0.1/healthz").returncode == 0
                       and in_rotation(WEB), 30)
        serves = wait_until(lambda: WEB in s.served_by_after(t + (whole or 0)), 15) is not None
    return {**s.summary(), "whole_again_s": whole, "whole_again_from": "kill",
            "serves_again": serves}


def web_pause(seconds: float = 8) -> dict:
    return _out_and_back(f"docker pause {WEB}", lambda: docker("pause", WEB), seconds,
                         f"docker unpause {WEB}", lambda: docker("unpause", WEB))


def _slowest_bounded(result: dict) -> list[str]:
    """None lost; new requests go elsewhere once the checks take the frozen server out, and
    the few it held in flight wait for it to thaw, no longer."""
    problems = _no_failed_request_and_back(result)
    bound = result["fault_held_s"] + 1
    if result["slowest_request_s"] > bound:
        problems.append(f"a request took {result['slowest_request_s']} s (bound: the "
                        f"{result['fault_held_s']} s freeze + 1 s)")
    return problems


# --- the load balancers -------------------------------------------------------------------

def haproxy_kill9() -> dict:
    with Stream("/healthz", baseline_s=2) as s:
        t = s.mark("kill -9 haproxy (lb-01)")
        run("lb-01", "systemctl", "kill", "--signal=KILL", "haproxy", check=True)
        seen: set[str] = set()

        def whole() -> bool:  # also notes whether keepalived moved the VIP meanwhile
            holders = vip_holders()
            seen.update(holders)
            return holders == ["lb-01"] and all_in_rotation()

        back = _since(t, whole, 60)
    return {**s.summary(), "whole_again_s": back, "whole_again_from": "kill",
            "vip_moved_to_lb02": "lb-02" in seen}


def _whole_again(result: dict) -> list[str]:
    return [] if result.get("whole_again_s") is not None else ["the stack was not whole again"]


def lb_stop() -> dict:
    """lb-01's host stops: keepalived on lb-02 takes the floating IP; lb-01 takes it back."""
    with Stream("/healthz", baseline_s=2) as s:
        t = s.mark("docker stop lb-01")
        docker("stop", "-t", "2", "lb-01")
        moved = _since(t, lambda: vip_holders() == ["lb-02"], 20)
        answered = wait_until(lambda: s.served_by_after(t), 10) is not None
        s.mark("docker start lb-01")
        docker("start", "lb-01")
        back = wait_until(lambda: vip_holders() == ["lb-01"] and all_in_rotation(), 90)
        s.mark("VIP back on lb-01")
    return {**s.summary(), "vip_on_lb02_after_s": moved, "answered_via_lb02": answered,
            "whole_again_s": _r(back), "whole_again_from": "lb-01 started"}


def _vip_moved_and_back(result: dict) -> list[str]:
    problems = _whole_again(result)
    if result["vip_on_lb02_after_s"] is None:
        problems.append("the floating IP did not move to lb-02 within 20 s")
    if not result["answered_via_lb02"]:
        problems.append("the stack did not answer through lb-02")
    return problems


def _on(host: str, command: str) -> None:
    run(host, "bash", "-c", command, timeout=60, check=True)


def lb_handover() -> dict:
    """A planned move of the floating IP, as ops/upgrade_debian.py makes it for the active
    balancer: lb-01 quiesced, held and stopped (the IP moves to lb-02); then lb-02 quiesced,
    lb-01 released and lb-02 hands the IP over (lb-01's higher priority keeps it)."""
    drain = runpy.run_path(str(ROOT / "group_data/loadbalancers.py"))[
        "keepalived_handover_drain_s"]  # the lab's inventory keeps the group's value
    with Stream("/healthz", baseline_s=2) as s:
        t = s.mark("lb-01 quiesced, held, keepalived stopped")
        _on("lb-01", keepalived.quiesce(VIP, haproxy.SOCKET, drain))
        _on("lb-01", f"{keepalived.HOLD} && systemctl stop keepalived")
        _on("lb-01", keepalived.unquiesce(VIP))
        away = _since(t, lambda: vip_holders() == ["lb-02"], 20)
        answered = wait_until(lambda: s.served_by_after(t + (away or 0)), 10) is not None
        _on("lb-01", "systemctl start keepalived")  # held: it stays out of the election
        t_back = s.mark("lb-02 quiesced, lb-01 released, lb-02 hands over")
        _on("lb-02", keepalived.quiesce(VIP, haproxy.SOCKET, drain))
        _on("lb-01", keepalived.release_into_election(10))
        _on("lb-02", keepalived.HAND_OVER)
        back = _since(t_back, lambda: vip_holders() == ["lb-01"], 20)
        _on("lb-02", keepalived.unquiesce(VIP))
        s.wait_for(3)
    return {**s.summary(), "vip_on_lb02_after_s": away, "answered_via_lb02": answered,
            "whole_again_s": back, "whole_again_from": "lb-01 released"}


def _handed_over_losslessly(result: dict) -> list[str]:
    problems = _vip_moved_and_back(result)
    if result["failed"]:
        problems.append(f"{result['failed']} of {result['sent']} requests failed: "
                        f"{result['failures_by_kind']}")
    return problems


# --- the databases ------------------------------------------------------------------------

def _writes(fault: str, do_fault, whole, p: str = "", r: str = "", writer: str = "") -> dict:
    """A write stream, a fault on a database; afterwards: where every acknowledged note is on
    p and r (default: the inventory's primary and replica). The stream's notes are deleted on
    `writer`, the primary afterwards (default p): never as root on a replica."""
    p, r = p or primary(), r or replica()
    with Stream("/api/notes", method="POST", baseline_s=2) as s:
        s.wait_for(10)
        t = s.mark(fault)
        do_fault()
        took = _since(t, whole, 120)
        resumed = s.wait_for(10)
        s.mark(f"{r} caught up")
    on = {h: note_ids(h, s.tag) for h in (p, r)}
    sql(writer or p, f"DELETE FROM webstack.notes WHERE text LIKE '{s.tag}-%'")  # no trace
    acked = set(s.acked)
    return {**s.summary(), "whole_again_s": took, "whole_again_from": fault,
            "writes_resumed": resumed, "writes_acknowledged": len(acked),
            "acknowledged_missing": {h: sorted(acked - ids) for h, ids in on.items()},
            "unacknowledged_but_stored": len(on[p] - acked)}


def _no_acknowledged_write_lost(result: dict) -> list[str]:
    problems = _whole_again(result)
    if not result["writes_resumed"]:
        problems.append("writes did not resume")
    problems += [f"{len(ids)} acknowledged writes missing on {h}: {ids[:10]}"
                 for h, ids in result["acknowledged_missing"].items() if ids]
    return problems


def replica_kill9() -> dict:
    r, p = replica(), primary()
    # systemd restarts mariadbd (Restart=on-abnormal); replication resumes from its GTID position.
    return _writes(f"kill -9 mariadbd ({r})",
                   lambda: run(r, "kill", "-9", str(systemd_pid(r, "mariadb")), check=True),
                   lambda: replicating(r) and caught_up(r, p, 30))


def _nothing_failed_either(result: dict) -> list[str]:
    problems = _no_acknowledged_write_lost(result)
    if result["failed"]:
        problems.append(f"{result['failed']} writes failed although only the replica died")
    return problems


def primary_restart() -> dict:
    p, r = primary(), replica()
    return _writes(f"systemctl restart mariadb ({p})",
                   lambda: run(p, "systemctl", "restart", "mariadb", timeout=180, check=True),
                   lambda: mariadb_answers(p) and replicating(r) and caught_up(r, p, 30))


def _agent_failover(fault: str, do_fault, repair=None, hold_s: float = 0.0) -> dict:
    """Automatic failover (mysql_failover = "automatic") under writes: `do_fault(p)` breaks the
    primary p; the standby r's agent promotes it and the app's writes follow through each web
    server's local routes. Then `repair(p)` (after the promotion, and no sooner than hold_s
    after the fault), and p comes back as r's replica. None: p mends itself (systemd)."""
    p = agent_primary()
    r = next(h for h in DATABASES if h != p)
    at: dict[str, float] = {}
    promoted: dict[str, float | None] = {}

    def fault_now():
        at["t"] = time.time()
        do_fault(p)

    def whole() -> bool:  # polled from the fault on: the promotion, the repair, the rejoin
        if "s" not in promoted:
            promoted["s"] = _since(at["t"], lambda: agent_role(r) == "primary", 60)
            if repair:
                time.sleep(max(0.0, hold_s - (time.time() - at["t"])))
                repair(p)
        return agent_role(p) == "replica" and caught_up(p, r, 30)

    with WritableSampler() as sampler:
        result = _writes(f"{fault} ({p}), the agents fail over", fault_now, whole,
                         p=p, r=r, writer=r)
    return {**result, "old_primary": p, "promoted": r, "promoted_after_s": promoted.get("s"),
            "read_only_samples": len(sampler.samples),
            "two_writable_samples": len(sampler.both)}


def primary_kill9_agents() -> dict:
    """kill -9 of the primary's mariadbd: its agent steps down, systemd restarts it read-only."""
    return _agent_failover("kill -9 mariadbd",
                           lambda p: run(p, "pkill", "-KILL", "-x", "mariadbd", check=True))


def primary_stop_agents() -> dict:
    """systemctl stop mariadb on the primary (a clean shutdown), started again afterwards."""
    return _agent_failover("systemctl stop mariadb",
                           lambda p: run(p, "systemctl", "stop", "mariadb", timeout=120,
                                         check=True),
                           lambda p: run(p, "systemctl", "start", "mariadb", timeout=120,
                                         check=True))


def primary_host_kill_agents() -> dict:
    """The primary's host lost at once (docker kill): nobody releases the key, its lease runs
    out. Started again afterwards: it boots read-only and rejoins."""
    return _agent_failover("docker kill", lambda p: docker("kill", p),
                           lambda p: docker("start", p))


def primary_host_stop_agents() -> dict:
    """The primary's host shut down (docker stop: systemd stops mariadb and the agent)."""
    return _agent_failover("docker stop", lambda p: docker("stop", p),
                           lambda p: docker("start", p))


def primary_pause_agents(seconds: float = 30) -> dict:
    """The primary's host frozen (docker pause) for 30 s, then resumed: its lease ran out while
    it slept, so on waking its lease guard kills mariadbd before anything else."""
    return _agent_failover(f"docker pause {seconds:.0f} s", lambda p: docker("pause", p),
                           lambda p: docker("unpause", p), hold_s=seconds)


def primary_switchover_agents() -> dict:
    """A planned switchover through the agents (what ops/promote_replica.py runs where failover
    is automatic): the primary hands over to its standby, and rejoins it."""
    def ask(p: str) -> None:
        to = next(h for h in DATABASES if h != p)
        run(to, "bash", "-c", db_agent.switchover_command(to), timeout=60, check=True)
    return _agent_failover("planned switchover", ask)


# Inserted ahead of ufw's chains, so the firewall's own rules never see the packets.
_CUT_ALL = " && ".join(f"iptables -w -I {chain} 1 {side} lo -j DROP -m comment --comment "
                      f"{DRILL_COMMENT}" for chain, side in (("INPUT", "! -i"), ("OUTPUT", "! -o")))


def _uncut(p: str) -> None:
    """Remove every rule a drill inserted (restore() does the same for a drill cut short)."""
    run(p, "bash", "-c", DRILL_RULES_REMOVE, check=True)


def primary_partition_agents(seconds: float = 15) -> dict:
    """The primary cut off the network (every packet dropped inside its host) for 15 s: it
    fences itself when it cannot renew its lease; the standby promotes when the lease is gone."""
    return _agent_failover("every packet dropped", lambda p: run(p, "bash", "-c", _CUT_ALL,
                                                                  check=True),
                           _uncut, hold_s=seconds)


def primary_etcd_cut_agents(seconds: float = 15) -> dict:
    """Only etcd cut off from the primary (its packets to every etcd member's client port
    dropped) for 15 s: the databases still see each other, the lease decides all the same."""
    rules = " && ".join(
        f"iptables -w -I OUTPUT 1 -d {addr(e)} -p tcp --dport {ETCD_CLIENT_PORT} -j DROP "
        f"-m comment --comment {DRILL_COMMENT}" for e in group("etcd"))
    return _agent_failover("etcd cut off", lambda p: run(p, "bash", "-c", rules, check=True),
                           _uncut, hold_s=seconds)


def _failed_over_and_nothing_lost(result: dict) -> list[str]:
    problems = _no_acknowledged_write_lost(result)
    if result["promoted_after_s"] is None:
        problems.append(f"{result['promoted']} was not promoted within 60 s")
    if result["two_writable_samples"]:
        problems.append(f"two writable databases in {result['two_writable_samples']} samples")
    return problems


DRILLS = {d.name: d for d in (
    Drill("nginx_graceful_stop", "systemctl stop nginx on a web server", nginx_graceful_stop,
          _no_failed_request_and_back),
    Drill("web_kill9", "kill -9 of nginx and the app on a web server", web_kill9,
          _no_failed_request_and_back),
    Drill("app_kill9", "kill -9 of the app alone on a web server", app_kill9,
          _no_failed_request_and_back),
    Drill("web_pause", "a web server frozen for 8 s (docker pause)", web_pause, _slowest_bounded),
    Drill("haproxy_kill9", "kill -9 of HAProxy on the active balancer", haproxy_kill9,
          _whole_again),
    Drill("lb_stop", "the active balancer's host stopped", lb_stop, _vip_moved_and_back),
    Drill("lb_handover", "a planned move of the floating IP and back", lb_handover,
          _handed_over_losslessly),
    Drill("replica_kill9", "kill -9 of mariadbd on the replica", replica_kill9,
          _nothing_failed_either),
    Drill("primary_restart", "systemctl restart mariadb on the primary", primary_restart,
          _no_acknowledged_write_lost),
    Drill("primary_kill9_agents", "kill -9 of mariadbd on the primary, automatic failover",
          primary_kill9_agents, _failed_over_and_nothing_lost),
    Drill("primary_switchover_agents", "a planned switchover through the agents",
          primary_switchover_agents, _failed_over_and_nothing_lost),
    Drill("primary_stop_agents", "systemctl stop mariadb on the primary, automatic failover",
          primary_stop_agents, _failed_over_and_nothing_lost),
    Drill("primary_host_kill_agents", "the primary's host killed (docker kill), automatic "
          "failover", primary_host_kill_agents, _failed_over_and_nothing_lost),
    Drill("primary_host_stop_agents", "the primary's host stopped (docker stop), automatic "
          "failover", primary_host_stop_agents, _failed_over_and_nothing_lost),
    Drill("primary_pause_agents", "the primary's host frozen for 30 s (docker pause), "
          "automatic failover", primary_pause_agents, _failed_over_and_nothing_lost),
    Drill("primary_partition_agents", "the primary cut off the network for 15 s, automatic "
          "failover", primary_partition_agents, _failed_over_and_nothing_lost),
    Drill("primary_etcd_cut_agents", "etcd cut off from the primary for 15 s, automatic "
          "failover", primary_etcd_cut_agents, _failed_over_and_nothing_lost),
)}
# Drills that need the database agents (a lab deployed with LAB_DB_FAILOVER=automatic).
AGENT_DRILLS = tuple(name for name in DRILLS if name.endswith("_agents"))


def run_drill(name: str, lock: bool = True) -> dict:
    """One drill on a lab as built, under the lab lock; the lab is left whole (repaired if
    need be) and the result carries its verdict ('problems': [] when every promise held)."""
    drill = DRILLS[name]
    with lab_lock(lock):
        if name in ("replica_kill9", "primary_restart") and (wrong := db_roles_as_built()):
            return {"skipped": f"the databases are not as built: {wrong}", "problems": [wrong]}
        if name in AGENT_DRILLS and agent_primary() is None:
            wrong = "no database agent says primary (deploy with LAB_DB_FAILOVER=automatic)"
            return {"skipped": wrong, "problems": [wrong]}
        try:
            result = drill.action()
        finally:
            repaired = restore()
    return {**result, "repaired_afterwards": repaired, "problems": drill.verdict(result)}


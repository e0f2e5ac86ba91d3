"""mysql_failover = "automatic" on the lab (tasks/db_agent.py, tasks/db_proxy.py, agent/): a
running stack switched to the database agents under writes, then its primary's mariadbd killed
(lab/toolkit/drills.py's primary_kill9_agents, the drill `make bench` repeats): the standby is
promoted by itself and the app follows through its web server's local routes, with no deploy.

It changes the lab for good (the agents decide who is primary from then on), so `make test`
runs it last, on its own, with LAB_DB_FAILOVER=automatic (`-m "failover or readonly"`: the
spec at the end then checks the agents). The spec runs against any inventory, in either mode.
"""

import json
import runpy
import time

import pytest

from agent import gtid
from lab.toolkit.deploy import ROOT, changed_operations, run_deploy
from lab.toolkit.drills import AGENT_DRILLS, DRILLS, run_drill
from lab.toolkit.hosts import (
    AGENT_PORT,
    DATABASES,
    WritableSampler,
    addr,
    agent_primary,
    agent_role,
    db_routes,
    group,
    note_ids,
    run,
    sql,
    wait_until,
    writable_databases,
)
from lab.toolkit.http import http_get
from lab.toolkit.streams import Stream
from tests.test_monitoring import _has, _received_since
from webstack import db_agent, etcd

lab = pytest.mark.lab
failover = pytest.mark.failover
# No anti-flap window: each drill below is a failover of its own (the window: the unit tests).
AUTOMATIC = {"LAB_DB_FAILOVER": "automatic", "LAB_DB_ANTI_FLAP_S": "0"}


def deploy(*extra: str):
    result = run_deploy(*extra, env=AUTOMATIC)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def metrics(host: str) -> str:
    url = f"http://{addr(host)}:{AGENT_PORT}/metrics"
    return run(host, "python3", "-c", "import sys, urllib.request as u; "
               f"sys.stdout.write(u.urlopen('{url}', timeout=2).read().decode())").stdout


def routes_are(primary: str, replica: str) -> bool:
    want = {"db-primary": [primary], "db-replicas": [replica]}
    return all(db_routes(web) == want for web in group("webservers"))


@pytest.fixture(scope="module")
def switched():
    """The running lab switched to automatic failover, under writes through the app."""
    with WritableSampler() as sampler, Stream("/api/notes", method="POST",
                                              seconds=600) as stream:
        assert stream.wait_for(10)
        first = deploy()
        assert stream.wait_for(20), f"writes did not resume: {stream.failures[-5:]}"
    return first, stream, sampler


@lab
@failover
def test_switching_to_the_agents_keeps_the_primary_and_every_write(switched):
    _, stream, sampler = switched
    print(f"\nswitch to automatic failover: {len(stream.failures)} of {len(stream.records)} "
          f"writes failed within {stream.failure_window():.1f} s")
    # The primary's agent finds it writable without the key and fences it once (agent/README.md):
    # writes pause while mariadbd restarts read-only, then it is elected; none acknowledged lost.
    assert wait_until(lambda: agent_role("db-01") == "primary"
                      and agent_role("db-02") == "replica", 30)
    assert writable_databases() == ["db-01"]
    acked = stream.acked
    found = sql("db-01", "SELECT id FROM webstack.notes WHERE id IN "
                         f"({','.join(map(str, acked))})").split()
    assert {int(i) for i in found} == set(acked)
    assert sampler.both == []


@lab
@failover
def test_each_web_servers_routes_follow_the_agents(switched):
    assert wait_until(lambda: routes_are("db-01", "db-02"), 10), {
        web: db_routes(web) for web in group("webservers")}
    _, stream, _ = switched
    assert list(stream.acked.values())[-1] == addr("db-01")  # through 127.0.0.1:3306


@lab
@failover
def test_the_primary_runs_semi_sync_with_the_replica_as_its_standby(switched):
    assert wait_until(lambda: "ha_agent_semisync_primary_on 1.0" in metrics("db-01"), 30)
    status = dict(line.split("\t") for line in sql(
        "db-01", "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'").splitlines())
    assert status["Rpl_semi_sync_master_status"] == "ON"
    assert status["Rpl_semi_sync_master_clients"] == "1"
    assert sql("db-01", "SELECT @@global.rpl_semi_sync_master_wait_point") == "AFTER_SYNC"


@lab
@failover
def test_killed_primary_fails_over_by_itself_and_nothing_acknowledged_is_lost(switched):
    result = run_drill("primary_kill9_agents")
    print(f"\n{DRILLS['primary_kill9_agents'].what}: {result.get('promoted')} promoted after "
          f"{result.get('promoted_after_s')} s; {result.get('failed')} of {result.get('sent')} "
          f"writes failed, longest gap {result.get('longest_gap_s')} s; whole again after "
          f"{result.get('whole_again_s')} s; {result.get('read_only_samples')} read_only "
          f"samples; repaired afterwards: {result['repaired_afterwards']}")
    assert result["problems"] == []
    assert result["repaired_afterwards"] == []
    assert (result["old_primary"], result["promoted"]) == ("db-01", "db-02")
    assert errant_gtids("db-01", "db-02") == {}
    # No deploy, no file rewritten: the web servers' routes followed the agents.
    assert wait_until(lambda: routes_are("db-02", "db-01"), 10), {
        web: db_routes(web) for web in group("webservers")}


@lab
@failover
def test_a_second_deploy_after_a_failover_finds_the_new_primary_and_changes_nothing(switched):
    """Idempotence of the switch, and the deploy following the agents, in one run."""
    changed = changed_operations(deploy("--json"))
    assert writable_databases() == ["db-02"] and agent_role("db-01") == "replica"
    assert changed == []  # users and schema found on db-02, the routes unchanged


# The rest of the drills, once each, in turn on whichever host is the primary then (the
# lab's anti-flap window is 0 here: each drill is a failover of its own).
MORE_DRILLS = [name for name in AGENT_DRILLS if name != "primary_kill9_agents"]


@lab
@failover
@pytest.mark.parametrize("name", MORE_DRILLS)
def test_each_fault_of_the_primary_fails_over_by_itself(switched, name):
    result = run_drill(name)
    print(f"\n{DRILLS[name].what}: {result.get('promoted')} promoted after "
          f"{result.get('promoted_after_s')} s; {result.get('failed')} of {result.get('sent')} "
          f"writes failed, longest gap {result.get('longest_gap_s')} s; whole again after "
          f"{result.get('whole_again_s')} s; repaired afterwards: {result['repaired_afterwards']}")
    assert result["problems"] == []
    assert result["repaired_afterwards"] == []
    p, r = result["old_primary"], result["promoted"]
    assert wait_until(lambda: routes_are(r, p), 10), {
        web: db_routes(web) for web in group("webservers")}
    assert errant_gtids(p, r) == {}


@lab
@failover
def test_promote_replica_is_a_planned_switchover_through_the_agents(switched):
    old = agent_primary()
    new = next(h for h in DATABASES if h != old)
    with Stream("/api/notes", method="POST", seconds=120) as stream:
        assert stream.wait_for(10)
        result = promote(new)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert wait_until(lambda: agent_role(old) == "replica", 30)
        assert stream.wait_for(10)
    assert f"{new} is the primary" in result.stdout and "Nothing to change in the inventory" \
        in result.stdout
    assert writable_databases() == [new]
    assert set(stream.acked) <= note_ids(new, stream.tag)
    sql(new, f"DELETE FROM webstack.notes WHERE text LIKE '{stream.tag}-%'")
    # What the agents would refuse changes nothing, and says why.
    again = promote(new)
    assert again.returncode != 0 and "is the primary already" in again.stdout + again.stderr
    unplanned = promote(old, "--data", "mysql_failover_mode=unplanned")
    assert unplanned.returncode != 0
    assert "only a planned switchover" in unplanned.stdout + unplanned.stderr
    assert writable_databases() == [new] and agent_role(old) == "replica"


def promote(target: str, *extra: str):
    return run_deploy("--data", f"mysql_promote_target={target}", *extra,
                      deploy="ops/promote_replica.py", env=AUTOMATIC, timeout=300)


def errant_gtids(old: str, new: str) -> dict:
    """What the rejoined old primary binlogged that the new primary never did: each (domain,
    server id) whose last sequence number on `old` is beyond the one on `new`."""
    mine, theirs = (gtid.binlog_state(sql(h, "SELECT @@global.gtid_binlog_state"))
                    for h in (old, new))
    return {key: seq for key, seq in mine.items() if theirs.get(key, -1) < seq}


@lab
@failover
def test_monitoring_scrapes_the_agents_and_a_lost_replica_alerts_until_it_is_back(switched,
                                                                                   stack):
    monitor = stack.group("monitoring")[0]
    targets = json.loads(http_get(f"http://{monitor.address}:{monitor.prometheus_port}"
                                  "/api/v1/targets")[2])
    agents = {t["labels"]["instance"]: t["health"] for t in targets["data"]["activeTargets"]
              if t["labels"]["job"] == "db-agent"}
    assert agents == dict.fromkeys(DATABASES, "up")
    replica = next(h for h in DATABASES if agent_role(h) == "replica")
    mark = time.time()
    run(replica, "systemctl", "stop", "mariadb")
    try:
        fired = wait_until(lambda: _has(_received_since(mark), "DatabaseFailoverDegraded",
                                        "severity", "warning", "firing"), timeout=90, interval=2)
    finally:
        run(replica, "systemctl", "start", "mariadb")
    assert fired is not None, "DatabaseFailoverDegraded did not reach the receiver within 90 s"
    resolved = wait_until(lambda: _has(_received_since(mark), "DatabaseFailoverDegraded",
                                       "severity", "warning", "resolved"), timeout=90, interval=2)
    assert resolved is not None, "DatabaseFailoverDegraded did not resolve with the replica back"
    assert wait_until(lambda: agent_role(replica) == "replica", 30)


@lab
@failover
def test_the_primary_lost_while_degraded_waits_for_a_human(switched, stack):
    """The replica stopped: writes stall a few seconds, then the primary runs alone
    (`degraded`). Then the primary's mariadbd killed: it alone had the latest writes, so
    nobody is promoted and DatabaseNeedsHuman fires. The runbook's two etcd writes (the node
    with every write made the standby, `degraded` cleared) bring it back as the primary."""
    p = agent_primary()
    r = next(h for h in DATABASES if h != p)
    monitor = stack.group("monitoring")[0]
    prefix = f"/ha-webstack/{stack.group('databases')[0].stack_env}/"
    with Stream("/api/notes", method="POST", seconds=300) as stream:
        assert stream.wait_for(10)
        run(r, "systemctl", "stop", "mariadb", check=True, timeout=120)
        assert wait_until(lambda: "ha_agent_degraded 1.0" in metrics(p), 30)
        assert stream.wait_for(10), "writes did not resume, degraded"
        acked_by_p = set(stream.acked)
        run(p, "pkill", "-KILL", "-x", "mariadbd", check=True)
        assert wait_until(lambda: alert_active(monitor, "DatabaseNeedsHuman"), 60), \
            "DatabaseNeedsHuman is not even pending in Prometheus"
        assert agent_role(r) != "primary" and mariadb_down_or_read_only(p)
        # The runbook: p was the primary last, with every acknowledged write.
        etcdctl(p, "put", prefix + "sync_standby", p)
        etcdctl(p, "del", prefix + "degraded")
        assert wait_until(lambda: agent_role(p) == "primary", 30)
        run(r, "systemctl", "start", "mariadb", check=True, timeout=120)
        assert wait_until(lambda: agent_role(r) == "replica", 60)
        assert stream.wait_for(10)
    acked = set(stream.acked)
    assert acked_by_p <= acked <= note_ids(p, stream.tag)
    sql(p, f"DELETE FROM webstack.notes WHERE text LIKE '{stream.tag}-%'")


@lab
@failover
def test_one_etcd_member_lost_changes_nothing_two_make_the_primary_fence_itself(switched):
    p = agent_primary()
    r = next(h for h in DATABASES if h != p)
    first, second = group("etcd")[:2]
    ttl = runpy_setting("db_agent_lease_ttl_s")
    with WritableSampler() as sampler, Stream("/api/notes", method="POST",
                                              seconds=300) as stream:
        assert stream.wait_for(10)
        try:
            one_lost = time.time()
            run(first, "systemctl", "stop", "etcd", check=True)
            # Longer than the lease: were it not renewed, the standby would take over meanwhile.
            watch_until = time.time() + ttl + 2
            while time.time() < watch_until:
                assert agent_role(p) == "primary" and agent_role(r) == "replica"
            assert [f for f in stream.failures if f["start"] > one_lost] == []
            run(second, "systemctl", "stop", "etcd", check=True)
            assert wait_until(lambda: all(map(mariadb_down_or_read_only, DATABASES)), ttl + 5), \
                "the primary kept writing without an etcd quorum"
            assert agent_role(r) != "primary"
            # A deploy now: a clear refusal naming etcd, before it changes anything.
            refused = run_deploy(env=AUTOMATIC)
            out = refused.stdout + refused.stderr
            assert refused.returncode != 0 and "no database agent says it is the primary" in out
            assert "cannot reach etcd" in out, out[-2000:]
        finally:
            for member in (first, second):
                run(member, "systemctl", "start", "etcd", check=True, timeout=120)
        assert wait_until(lambda: sorted(map(agent_role, DATABASES)) == ["primary", "replica"],
                          60)
        assert stream.wait_for(10)
    new = agent_primary()
    old = next(h for h in DATABASES if h != new)
    assert set(stream.acked) <= note_ids(new, stream.tag)
    assert sampler.both == [] and errant_gtids(old, new) == {}
    sql(new, f"DELETE FROM webstack.notes WHERE text LIKE '{stream.tag}-%'")


def runpy_setting(name: str):
    return runpy.run_path(str(ROOT / "group_data/databases.py"))[name]


def etcdctl(host: str, *args: str) -> str:
    """etcdctl with a database host's client certificate (the runbook's way)."""
    command = f"set -a; . {etcd.CLIENT_PKI}/etcdctl.env; etcdctl {' '.join(args)}"
    return run(host, "sh", "-c", command, check=True).stdout


def alert_active(monitor, name: str) -> bool:
    """Prometheus has the alert pending or firing: its rule's expression holds."""
    alerts = json.loads(http_get(f"http://{monitor.address}:{monitor.prometheus_port}"
                                 "/api/v1/alerts")[2])["data"]["alerts"]
    return any(a["labels"]["alertname"] == name for a in alerts)


def mariadb_down_or_read_only(host: str) -> bool:
    try:
        return sql(host, "SELECT @@global.read_only", timeout=5) == "1"
    except RuntimeError:
        return True


# --- spec: safe against any inventory (runs last here, after the drills) ---------------------

@pytest.mark.readonly
@pytest.mark.hosts("databases")
def test_the_agent_runs_where_failover_is_automatic_and_nowhere_else(hosts, stack, name):
    h, me = hosts[name], stack.host(name)
    agent = h.service(db_agent.UNIT)
    if me.mysql_failover != "automatic":
        assert not agent.is_running
        return
    assert agent.is_running and agent.is_enabled
    for path in (db_agent.CONFIG, db_agent.PASSWORD_FILE):
        f = h.file(path)
        assert f.user == "root" and f.mode == 0o600, path
    assert h.socket(f"tcp://{me.address}:{me.db_agent_port}").is_listening
    assert h.run(f"{db_agent.CHECK} {db_agent.CONFIG}").rc == 0  # the agent accepts its config

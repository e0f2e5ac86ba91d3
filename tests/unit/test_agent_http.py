"""The agent's HTTP endpoints (agent/http.py), served for real on 127.0.0.1 (an ephemeral port)
and asked as HAProxy and Prometheus ask them: the status of /primary and /replica for each kind of
snapshot, and /metrics as valid Prometheus exposition text (a strict parser here, and promtool's
own `check metrics`) with the values the snapshot implies.

The lab's names: db-01 holds the leader key, db-02 replicates from it. Times are offsets from
the moment of the request, so a case means the same whenever it runs.
"""

import http.client
import math
import re
import shutil
import subprocess
import time

import pytest

from agent.decision import Action, Decision
from agent.http import ROLES, Board, Limits, Snapshot, serve

LIMITS = Limits(fence_margin=2.0, replica_max_lag=5.0, snapshot_max_age=3.0)
A, B = "db-01", "db-02"


def snapshot(*, age: float = 0.0, lease_left: float | None = None, **facts) -> Snapshot:
    """A snapshot taken `age` seconds ago, my lease `lease_left` seconds from expiry."""
    now = time.monotonic()
    return Snapshot(taken_at=now - age,
                    lease_deadline=None if lease_left is None else now + lease_left, **facts)


def primary(**changes) -> Snapshot:
    """db-01: the writable holder of the key, lease fresh, semi-sync on."""
    facts = dict(me=A, etcd_ok=True, leader=A, lease_left=4.5, running=True, read_only=False,
                 replicating_from=None, io_connected=False, replica_lag=None,
                 semisync_primary=True, semisync_replica=False, degraded=False,
                 last_failover_at=1_800_000_000.0,
                 decision=Decision(Action.RENEW, "primary with the leader key"))
    return snapshot(**{**facts, **changes})


def replica(**changes) -> Snapshot:
    """db-02: streaming from db-01, half a second behind."""
    facts = dict(me=B, etcd_ok=True, leader=A, lease_left=None, running=True, read_only=True,
                 replicating_from=A, io_connected=True, replica_lag=0.5,
                 semisync_primary=False, semisync_replica=True, degraded=False,
                 last_failover_at=None, decision=Decision(Action.FOLLOW, "healthy replica"))
    return snapshot(**{**facts, **changes})


# (snapshot, /primary, /replica, what the body says)
CASES = [
    pytest.param(primary, 200, 503, "primary, lease", id="the writable holder takes writes"),
    pytest.param(lambda: primary(lease_left=1.5), 503, 503, "fence margin",
                 id="lease within the fence margin: no writes"),
    pytest.param(lambda: primary(lease_left=None), 503, 503, "fence margin",
                 id="no lease: no writes"),
    pytest.param(lambda: primary(decision=Decision(Action.FENCE, "etcd says no")), 503, 503,
                 "decided to fence", id="writable, but the tick decided to fence"),
    pytest.param(lambda: primary(read_only=True), 503, 503, "holding the leader key but fenced",
                 id="a read-only holder until it has taken the role"),
    pytest.param(lambda: primary(leader=B), 503, 503, "db-02 is",
                 id="writable without the key"),
    pytest.param(lambda: primary(running=False), 503, 503, "down", id="mariadbd down"),
    pytest.param(lambda: primary(age=10), 503, 503, "stuck",
                 id="a stuck agent vouches for nothing"),
    pytest.param(lambda: primary(etcd_ok=False, lease_left=3.0,
                                 decision=Decision(Action.RENEW, "etcd unreachable")), 200, 503,
                 "primary", id="etcd unreachable, lease still safe: the primary keeps writing"),
    pytest.param(replica, 503, 200, "replica of db-01", id="a healthy replica serves reads"),
    pytest.param(lambda: replica(replica_lag=7.0), 503, 503, "lag 7.0s",
                 id="lag above the threshold"),
    pytest.param(lambda: replica(replica_lag=None), 503, 503, "lag unknown", id="lag unknown"),
    pytest.param(lambda: replica(io_connected=False), 503, 503, "not connected",
                 id="IO thread disconnected"),
    pytest.param(lambda: replica(replicating_from="db-03"), 503, 503, "the leader is db-01",
                 id="replicating from a node that is not the leader"),
    pytest.param(lambda: replica(leader=None), 503, 503, "the leader is nobody",
                 id="no leader"),
    pytest.param(lambda: replica(replicating_from=None), 503, 503, "not a replica: fenced",
                 id="read-only, replicating from nobody"),
    pytest.param(lambda: replica(age=10), 503, 503, "stuck", id="a stuck agent on a replica"),
    pytest.param(lambda: replica(etcd_ok=False), 503, 200, "replica of db-01",
                 id="etcd unreachable: the lag still proves the data fresh"),
]


@pytest.fixture(scope="module")
def server():
    board = Board()
    srv = serve(board, LIMITS, ("127.0.0.1", 0))
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def board(server) -> Board:
    server.board.publish(None)  # each test starts before the first tick
    return server.board


def get(server, path: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, Content-Type, body) of one request, as a health check makes it."""
    conn = http.client.HTTPConnection(*server.server_address, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize(("make", "primary_status", "replica_status", "says"), CASES)
def test_health_checks(server, board, make, primary_status, replica_status, says):
    board.publish(make())
    got_primary, _, primary_body = get(server, "/primary")
    got_replica, _, replica_body = get(server, "/replica")
    assert (got_primary, got_replica) == (primary_status, replica_status), (
        primary_body, replica_body)
    assert says in primary_body + replica_body


def test_before_the_first_tick_nothing_is_vouched_for(server, board):
    for path in ("/primary", "/replica"):
        assert get(server, path)[0] == 503
        assert get(server, path)[2] == "no tick has finished yet\n"
    assert parse_exposition(get(server, "/metrics")[2])["ha_agent_role"] == {
        (("role", r),): float(r == "unknown") for r in ROLES}


def test_the_lease_is_counted_down_while_the_loop_is_silent(server, board):
    """No new snapshot: /primary turns 503 by itself when the lease reaches the fence margin."""
    board.publish(primary(lease_left=LIMITS.fence_margin + 0.3))
    assert get(server, "/primary")[0] == 200
    deadline = time.monotonic() + 2
    while get(server, "/primary")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    status, _, body = get(server, "/primary")
    assert status == 503 and "fence margin" in body


def test_head_unknown_paths(server, board):
    board.publish(primary())
    assert get(server, "/primary", method="HEAD") == (200, "text/plain; charset=utf-8", "")
    assert get(server, "/nope")[0] == 404
    assert get(server, "/primary?from=haproxy")[0] == 200


# /metrics

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\\n]*)"'
HELP = re.compile(rf"# HELP ({NAME}) \S.*")
TYPE = re.compile(rf"# TYPE ({NAME}) gauge")
SAMPLE = re.compile(rf"({NAME})(?:\{{({LABEL}(?:,{LABEL})*)\}})? (?P<value>\S+)")


def parse_exposition(text: str) -> dict[str, dict[tuple, float]]:
    """{family: {((label, value), ...): sample value}}, refusing what the text format (0.0.4)
    does not allow for gauges: a family without HELP then TYPE, a sample outside its family, a
    family split or repeated, a series twice, a value that is not a float, no final newline."""
    assert text.endswith("\n"), "the last line must end with a newline"
    families: dict[str, dict[tuple, float]] = {}
    family = expect_type = None
    for line in text[:-1].split("\n"):
        if expect_type:
            assert (m := TYPE.fullmatch(line)) and m[1] == expect_type, f"TYPE? {line!r}"
            family, expect_type = expect_type, None
        elif m := HELP.fullmatch(line):
            assert m[1] not in families, f"family {m[1]} twice"
            families[m[1]], expect_type = {}, m[1]
        else:
            assert (m := SAMPLE.fullmatch(line)), f"not a sample: {line!r}"
            assert m[1] == family, f"{m[1]} outside its family"
            labels = tuple(re.findall(LABEL, m[2] or ""))
            assert labels not in families[family], f"{line!r} twice"
            families[family][labels] = float(m["value"])
    assert expect_type is None, "HELP without TYPE at the end"
    return families


def test_metrics_of_a_primary(server, board):
    board.publish(primary())
    status, ctype, text = get(server, "/metrics")
    assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
    m = parse_exposition(text)
    assert m["ha_agent_role"] == {(("role", r),): float(r == "primary") for r in ROLES}
    assert m["ha_agent_decision"] == {(("action", str(a)),): float(a == Action.RENEW)
                                      for a in Action}
    assert 4.0 < m["ha_agent_lease_seconds_left"][()] <= 4.5
    assert m["ha_agent_primary_check"][()] == 1.0 and m["ha_agent_replica_check"][()] == 0.0
    assert m["ha_agent_etcd_reachable"][()] == 1.0
    assert m["ha_agent_semisync_primary_on"][()] == 1.0
    assert m["ha_agent_semisync_replica_on"][()] == 0.0
    assert m["ha_agent_degraded"][()] == 0.0
    assert m["ha_agent_last_failover_timestamp_seconds"][()] == 1_800_000_000.0
    assert 0 <= m["ha_agent_snapshot_age_seconds"][()] < 1


def test_metrics_of_a_degraded_replica_without_etcd(server, board):
    board.publish(replica(etcd_ok=False, degraded=True, semisync_replica=False,
                          decision=Decision(Action.WAIT, "etcd unreachable")))
    m = parse_exposition(get(server, "/metrics")[2])
    assert m["ha_agent_role"][(("role", "replica"),)] == 1.0
    assert m["ha_agent_decision"][(("action", "wait"),)] == 1.0
    assert sum(m["ha_agent_decision"].values()) == 1.0
    assert m["ha_agent_lease_seconds_left"][()] == 0.0
    assert m["ha_agent_etcd_reachable"][()] == 0.0
    assert m["ha_agent_degraded"][()] == 1.0
    assert m["ha_agent_last_failover_timestamp_seconds"][()] == 0.0
    assert all(not math.isnan(v) for family in m.values() for v in family.values())


@pytest.mark.parametrize("make", [None, primary, replica], ids=["no tick", "primary", "replica"])
def test_promtool_accepts_the_metrics(server, board, make):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (make check does)"
    if make:
        board.publish(make())
    text = get(server, "/metrics")[2]
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr

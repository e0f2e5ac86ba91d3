"""Failure drills whose outcome must always hold (bench/ measures their timings; none are asserted
here): a web server killed outright fails no request, and no write the app acknowledged is lost
when the primary restarts or the replica is killed. The graceful stop of nginx and the floating
IP's move are in test_haproxy.py and test_keepalived.py.
"""

import time
import uuid

import pytest

from tests.conftest import (
    RequestStream,
    WriteStream,
    caught_up,
    docker_exec,
    sql,
    wait_until,
)

pytestmark = pytest.mark.lab


def in_rotation(server: str, lb: str = "lb-01") -> bool:
    """HAProxy on lb lists server as running (srv_op_state 2) in the web backend."""
    out = docker_exec(lb, "bash", "-c",
                      "echo 'show servers state web' | socat stdio /run/haproxy/admin.sock").stdout
    for line in out.splitlines():
        fields = line.split()  # be_id be_name srv_id srv_name srv_addr srv_op_state ...
        if len(fields) > 5 and fields[1] == "web" and fields[3] == server:
            return fields[5] == "2"
    return False


@pytest.fixture
def databases(lab):
    """(primary, replica) as the inventory has them, after checking the lab agrees."""
    primary = next(h.name for h in lab.hosts if "db_primary" in h.groups)
    replica = next(h.name for h in lab.hosts if "db_replicas" in h.groups)
    assert sql(primary, "SELECT @@read_only") == "0", f"{primary} is not writable"
    assert sql(replica, "SELECT @@read_only") == "1", f"{replica} is not a read-only replica"
    return primary, replica


def stored_on(host: str, tag: str) -> set[int]:
    """Ids of the stream's notes that the host holds."""
    rows = sql(host, f"SELECT id FROM webstack.notes WHERE text LIKE '{tag}-%'")
    return {int(x) for x in rows.split()}


@pytest.fixture
def writes(lab, databases):
    """Notes POSTed through the floating IP in a background thread, bounded; removed after."""
    w = WriteStream(lab.floating_ip, f"drill-{uuid.uuid4().hex[:10]}", max_seconds=120)
    yield w
    sql(databases[0], f"DELETE FROM webstack.notes WHERE text LIKE '{w.tag}-%'")


def test_kill_9_of_nginx_and_the_app_fails_no_request(lab):
    with RequestStream(f"https://{lab.floating_ip}/healthz", max_seconds=90) as stream:
        assert wait_until(lambda: len(stream.results) >= 20, timeout=15) is not None
        killed_at = time.monotonic()
        docker_exec("web-01", "systemctl", "kill", "--signal=KILL", "nginx", "ha-webstack-app")
        try:
            assert wait_until(lambda: not in_rotation("web-01"), timeout=15) is not None
            assert wait_until(lambda: sum(r[0] > killed_at for r in stream.results) >= 50,
                              timeout=30) is not None
        finally:
            docker_exec("web-01", "systemctl", "start", "nginx")  # nginx has no Restart=
        # systemd restarts the app by itself (Restart=always); HAProxy's checks bring web-01 back.
        assert wait_until(lambda: in_rotation("web-01"), timeout=30) is not None
        back = wait_until(lambda: any(r[2] == "web-01" for r in stream.results
                                      if r[0] > killed_at), timeout=15)
    assert stream.failures == [], f"{len(stream.failures)} failed: {stream.failures[:5]}"
    assert back is not None, "web-01 answered no request after it came back"
    assert docker_exec("web-01", "systemctl", "is-active", "ha-webstack-app").returncode == 0


def test_restart_of_the_primary_loses_no_acknowledged_write(databases, writes):
    primary, replica = databases
    with writes:
        assert writes.wait_for(10)
        restart = docker_exec(primary, "systemctl", "restart", "mariadb", timeout=180)
        assert restart.returncode == 0, restart.stderr
        assert writes.wait_for(10), f"writes did not resume: {writes.failed[-5:]}"
    assert wait_until(lambda: caught_up(replica, primary), timeout=90) is not None
    lost = {h: sorted(set(writes.acked) - stored_on(h, writes.tag)) for h in (primary, replica)}
    summary = (f"{len(writes.acked)} writes acknowledged, {len(writes.failed)} failed during the "
               f"restart ({sorted({str(f[1]) for f in writes.failed})}); lost: {lost}")
    print(summary)
    assert lost == {primary: [], replica: []}, summary


def test_kill_9_of_the_replica_it_catches_up_with_nothing_missing(databases, writes):
    primary, replica = databases
    with writes:
        assert writes.wait_for(10)
        pid = docker_exec(replica, "systemctl", "show", "-p", "MainPID", "--value",
                          "mariadb").stdout.strip()
        assert docker_exec(replica, "kill", "-9", pid).returncode == 0
        assert writes.wait_for(40)  # writes go on while the replica is down and restarts
    # systemd restarts mariadbd (Restart=on-abnormal); replication resumes from its GTID position.
    assert wait_until(lambda: caught_up(replica, primary), timeout=120) is not None
    assert writes.failed == [], f"writes failed although only the replica died: {writes.failed}"
    missing = sorted(set(writes.acked) - stored_on(replica, writes.tag))
    assert missing == [], f"{len(missing)} acknowledged notes missing on {replica}: {missing[:10]}"

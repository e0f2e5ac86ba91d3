"""ops/promote_replica.py: planned switchover and unplanned failover, under writes through the app.

Each test leaves db-01 the primary again (a planned switchover back and a deploy with the
default inventory), so the tests after it see the lab as `make lab` built it.
"""

import subprocess

import pytest

from lab.toolkit.deploy import run_deploy
from lab.toolkit.hosts import caught_up, docker, mariadb_answers, run, sql, wait_until
from lab.toolkit.hosts import replicating as replicates_from
from lab.toolkit.streams import Stream

pytestmark = pytest.mark.lab
OP = "ops/promote_replica.py"
NEW_PRIMARY = {"LAB_DB_PRIMARY": "db-02"}  # the lab's "update the inventory" step


def promote(target: str, *extra: str, env: dict | None = None,
            unreachable: str = "") -> subprocess.CompletedProcess:
    """Run the failover; pyinfra's exit status is 1 when a host (the dead primary) is
    unreachable, so then success is: that host alone failed, and only to connect."""
    result = run_deploy("--data", f"mysql_promote_target={target}", *extra, deploy=OP, env=env)
    output = result.stdout[-4000:] + result.stderr[-3000:]
    if unreachable:
        assert f"[{unreachable}]      Could not connect" in result.stderr, output
        assert "Error:" not in result.stderr and "is the primary" in result.stdout, output
    else:
        assert result.returncode == 0, output
    return result


def present(host: str, ids) -> set[int]:
    found = sql(host, "SELECT id FROM webstack.notes WHERE id IN "
                      f"({','.join(str(i) for i in ids)})").split()
    return {int(i) for i in found}


def switch_back_to_db01(lab):
    """Planned switchover back to db-01, then the deploy with the default inventory."""
    promote("db-01", env=NEW_PRIMARY)
    result = run_deploy()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert replicates_from("db-02", lab.host("db-01").address)


def test_planned_switchover_under_writes_loses_nothing(lab):
    db1, db2 = lab.host("db-01").address, lab.host("db-02").address
    with Stream("/api/notes", method="POST") as stream:
        assert stream.wait_for(20)
        result = promote("db-02")
        assert stream.wait_for(40), f"writes did not resume: {stream.failures[-5:]}"
    print(f"\nplanned switchover: {len(stream.failures)} of {len(stream.records)} writes "
          f"failed, within {stream.failure_window():.1f} s")
    assert "Now update the inventory: put db-02 in the group db_primary" in result.stdout
    assert stream.failure_window() < 10, f"writes failed for too long: {stream.failures}"
    assert list(stream.acked.values())[-1] == db2  # the app writes to the new primary
    assert sql("db-02", "SELECT @@global.read_only") == "0"
    assert sql("db-01", "SELECT @@global.read_only") == "1"
    assert replicates_from("db-01", db2)
    assert wait_until(lambda: caught_up("db-01", "db-02"), 30) is not None
    for host in ("db-01", "db-02"):  # no acknowledged write is lost, on either host
        assert present(host, stream.acked) == set(stream.acked)

    # The old inventory is refused before any host is touched; the updated one deploys.
    stale = run_deploy()
    assert stale.returncode != 0
    assert "the inventory makes db-01 the primary, but it replicates from" in stale.stderr
    updated = run_deploy(env=NEW_PRIMARY)
    assert updated.returncode == 0, updated.stdout[-3000:] + updated.stderr[-2000:]
    assert "Re-seed" not in updated.stderr and replicates_from("db-01", db2)
    assert sql("db-02", "SELECT COUNT(*) FROM information_schema.EVENTS WHERE "
                        "EVENT_NAME = 'beat' AND STATUS = 'ENABLED'") == "1"

    switch_back_to_db01(lab)
    assert sql("db-01", "SELECT @@global.read_only") == "0" and replicates_from("db-02", db1)


def test_unplanned_failover_then_the_old_primary_rejoins(lab):
    db2 = lab.host("db-02").address
    with Stream("/api/notes", method="POST") as before:
        assert before.wait_for(10)
    assert wait_until(lambda: caught_up("db-02", "db-01"), 30) is not None
    docker("stop", "db-01")
    try:
        result = promote("db-02", "--data", "mysql_failover_mode=unplanned",
                         "--data", "ssh_connect_retries=0", unreachable="db-01")
        assert "db-01 is fenced" in result.stdout
        with Stream("/api/notes", method="POST") as after:
            assert after.wait_for(20), f"writes fail after the failover: {after.failures[-5:]}"
        assert set(after.acked.values()) == {db2}
    finally:
        docker("start", "db-01")

    # db-01 is back, still believing it is the primary. The updated inventory re-seeds it.
    assert wait_until(lambda: mariadb_answers("db-01"), 60) is not None
    result = run_deploy(env=NEW_PRIMARY)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Re-seed from db-02 (an unplanned failover fenced it)" in result.stderr
    assert replicates_from("db-01", db2)
    assert wait_until(lambda: caught_up("db-01", "db-02"), 30) is not None
    for host in ("db-01", "db-02"):
        assert present(host, after.acked) == set(after.acked)
    assert present("db-01", before.acked) == set(before.acked)
    backups = run("db-01", "ls", "/var/backups/ha-webstack").stdout
    assert ".sql.gz" in backups, "the old primary's data was not kept before the re-seed"

    switch_back_to_db01(lab)

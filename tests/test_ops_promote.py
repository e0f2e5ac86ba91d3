"""ops/promote_replica.py: planned switchover and unplanned failover, under writes through the app.

Each test leaves db-01 the primary again (a planned switchover back and a deploy with the
default inventory), so the tests after it see the lab as `make lab` built it.
"""

import subprocess

import pytest

from tests.conftest import (
    WriteStream,
    caught_up,
    docker_exec,
    replica_status,
    run_deploy,
    sql,
    wait_until,
)

pytestmark = pytest.mark.lab
OP = "ops/promote_replica.py"
NEW_PRIMARY = {"LAB_DB_PRIMARY": "db-02"}  # the lab's "update the inventory" step


def replicates_from(host: str, primary_address: str) -> bool:
    status = replica_status(host)
    return (status.get("Master_Host") == primary_address
            and status.get("Slave_IO_Running") == status.get("Slave_SQL_Running") == "Yes")


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
    with WriteStream(lab.floating_ip, "switchover") as stream:
        assert stream.wait_for(20)
        result = promote("db-02")
        assert stream.wait_for(40), f"writes did not resume: {stream.failed[-5:]}"
    print(f"\nplanned switchover: {len(stream.failed)} of "
          f"{len(stream.failed) + len(stream.acked)} writes failed, within "
          f"{stream.failure_window():.1f} s")
    assert "Now update the inventory: put db-02 in the group db_primary" in result.stdout
    assert stream.failure_window() < 10, f"writes failed for too long: {stream.failed}"
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
    with WriteStream(lab.floating_ip, "before-crash") as before:
        assert before.wait_for(10)
    assert wait_until(lambda: caught_up("db-02", "db-01"), 30) is not None
    subprocess.run(["docker", "stop", "db-01"], check=True, capture_output=True)
    try:
        result = promote("db-02", "--data", "mysql_failover_mode=unplanned",
                         "--data", "ssh_connect_retries=0", unreachable="db-01")
        assert "db-01 is fenced" in result.stdout
        with WriteStream(lab.floating_ip, "after-failover") as after:
            assert after.wait_for(20), f"writes fail after the failover: {after.failed[-5:]}"
        assert set(after.acked.values()) == {db2}
    finally:
        subprocess.run(["docker", "start", "db-01"], check=True, capture_output=True)

    # db-01 is back, still believing it is the primary. The updated inventory re-seeds it.
    assert wait_until(lambda: docker_exec("db-01", "mariadb", "-e", "SELECT 1").returncode == 0,
                      60) is not None
    result = run_deploy(env=NEW_PRIMARY)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Re-seed from db-02 (an unplanned failover fenced it)" in result.stderr
    assert replicates_from("db-01", db2)
    assert wait_until(lambda: caught_up("db-01", "db-02"), 30) is not None
    for host in ("db-01", "db-02"):
        assert present(host, after.acked) == set(after.acked)
    assert present("db-01", before.acked) == set(before.acked)
    backups = docker_exec("db-01", "ls", "/var/backups/ha-webstack").stdout
    assert ".sql.gz" in backups, "the old primary's data was not kept before the re-seed"

    switch_back_to_db01(lab)

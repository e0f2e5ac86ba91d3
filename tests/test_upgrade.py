"""The rolling upgrade from Debian 12 to Debian 13 (docs/upgrades.md), on a running Debian 12
lab, under a request stream and a write stream through the floating IP: no failed request, no
lost acknowledged write, MariaDB never replicating from 11.8 to 10.11, and a deploy afterwards
that changes nothing.

Each host takes a full-upgrade and a reboot, so this runs on its own: `make test-upgrade`
builds a fresh Debian 12 lab and runs it (about 20 minutes). `make test` deselects it.
"""

import pytest

from lab.toolkit.deploy import changed_operations, run_deploy
from lab.toolkit.hosts import caught_up, replicating, run, sql, wait_until
from lab.toolkit.streams import Stream

pytestmark = [pytest.mark.lab, pytest.mark.upgrade]
OP = "ops/upgrade_debian.py"
NEW_PRIMARY = {"LAB_DB_PRIMARY": "db-02"}  # the lab's "update the inventory" step
# docs/upgrades.md's order: the standby balancer, then the active one; the web servers one at
# a time; monitoring; the replica. Then a switchover to it, and the old primary.
BEFORE_SWITCHOVER = ["lb-02", "lb-01", "web-01", "web-02", "monitor-01", "db-02"]


def debian(name: str) -> str:
    return run(name, "cat", "/etc/debian_version").stdout.strip()


def errors(result) -> str:
    """pyinfra's error lines (ours start with 'ha-webstack:'), then the end of its output."""
    lines = [line for line in result.stderr.splitlines()
             if "Error" in line or "ha-webstack:" in line]
    return "\n".join(lines[:30]) + "\n...\n" + result.stdout[-1500:] + result.stderr[-1500:]


def upgrade(name: str, env: dict | None = None) -> None:
    result = run_deploy("--data", f"debian_upgrade_host={name}", deploy=OP, env=env,
                        timeout=1200)
    assert result.returncode == 0, f"{name}: {errors(result)}"
    assert debian(name).startswith("13."), f"{name} still runs Debian {debian(name)}"
    print(f"  {name}: Debian {debian(name)}", flush=True)


def must(result, what: str):
    assert result.returncode == 0, f"{what}: {errors(result)}"
    return result


def test_the_running_stack_upgrades_to_debian_13_host_by_host(lab):
    hosts = [h.name for h in lab.managed_hosts]
    assert all(debian(h).startswith("12.") for h in hosts), (
        "the upgrade drill needs a Debian 12 lab: LAB_DEBIAN=bookworm make test-upgrade")
    db1, db2 = lab.host("db-01").address, lab.host("db-02").address

    with (Stream("/api/notes", rate=10, seconds=2400) as reads,
          Stream("/api/notes", method="POST", rate=5, seconds=2400) as writes):
        assert reads.wait_for(20) and writes.wait_for(10)
        for name in BEFORE_SWITCHOVER:
            upgrade(name)

        # The replica (11.8) becomes the primary; the old primary (10.11) cannot replicate
        # from it, so it stays read-only, and the deploy refuses until it is upgraded.
        switched = must(run_deploy("--data", "mysql_promote_target=db-02",
                                   deploy="ops/promote_replica.py"), "switchover")
        assert "db-01 does not replicate from db-02: it runs MariaDB 10.11" in switched.stdout
        refused = run_deploy(env=NEW_PRIMARY)
        assert refused.returncode != 0
        assert ("db-01 runs MariaDB 10.11" in refused.stderr
                and "older than its primary db-02" in refused.stderr), refused.stderr[-2000:]
        upgrade("db-01", env=NEW_PRIMARY)

        must(run_deploy(env=NEW_PRIMARY), "the deploy after the upgrade")
        assert writes.wait_for(20), f"writes did not go on: {writes.failures[-5:]}"
        assert reads.wait_for(20)

    print(f"\nrolling upgrade: {len(reads.records)} reads, {len(reads.failures)} failed; "
          f"{len(writes.records)} writes, {len(writes.failures)} failed")
    assert reads.failures == [] and writes.failures == []
    assert all(debian(h).startswith("13.") for h in hosts)
    assert replicating("db-01", db2) and sql("db-01", "SELECT @@global.read_only") == "1"
    assert wait_until(lambda: caught_up("db-01", "db-02"), 30) is not None
    for name in ("db-01", "db-02"):  # every acknowledged write, on both databases
        ids = ",".join(str(i) for i in writes.acked)
        found = {int(i) for i in sql(name, f"SELECT id FROM webstack.notes WHERE id IN ({ids})")
                 .split()}
        assert found == set(writes.acked), f"{name} lacks {set(writes.acked) - found}"
    assert set(writes.acked.values()) <= {db1, db2}

    again = run_deploy("--json", env=NEW_PRIMARY)
    assert again.returncode == 0 and changed_operations(again) == []

    # Leave the lab as built: db-01 the primary again (both on 11.8 now, so it replicates).
    must(run_deploy("--data", "mysql_promote_target=db-01", deploy="ops/promote_replica.py",
                    env=NEW_PRIMARY), "switching back")
    must(run_deploy(), "the deploy with the lab's own inventory")
    assert replicating("db-02", db1)

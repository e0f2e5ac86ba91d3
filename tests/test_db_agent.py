"""mysql_failover = "automatic" on the lab (tasks/db_agent.py, agent/): a running stack switched
to the database agents, then its primary's mariadbd killed under writes through the app.

It changes the lab for good (the agents decide who is primary from then on), so `make test`
runs it last, on its own (`-m failover`). Every deploy here sets LAB_DB_FAILOVER=automatic.
"""

import threading

import pytest

from lab.toolkit.deploy import changed_operations, run_deploy
from lab.toolkit.hosts import addr, run, sql, wait_until
from lab.toolkit.streams import Stream
from webstack import db_agent

pytestmark = [pytest.mark.lab, pytest.mark.failover]
AUTOMATIC = {"LAB_DB_FAILOVER": "automatic"}
DATABASES = ("db-01", "db-02")


def deploy(*extra: str):
    result = run_deploy(*extra, env=AUTOMATIC)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def role(host: str) -> str:
    """What the host's agent answers on its health endpoints (the fact the deploy reads)."""
    script = db_agent.DbAgentRole._SCRIPT
    return run(host, "python3", "-c", script, f"{addr(host)}:8008").stdout.strip()


def metrics(host: str) -> str:
    return run(host, "python3", "-c", "import sys, urllib.request as u; sys.stdout.write(u."
               f"urlopen('http://{addr(host)}:8008/metrics', timeout=2).read().decode())").stdout


def writable() -> list[str]:
    return [h for h in DATABASES if sql(h, "SELECT @@global.read_only", timeout=5) == "0"]


class Sampler:
    """Both servers' read_only, sampled until stopped: never two writable at once."""

    def __init__(self):
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.2):
            try:
                self.samples.append(writable())
            except Exception:  # noqa: BLE001 - a server down right now is sampled next time
                continue

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def switched():
    """The running lab switched to automatic failover, under writes through the app."""
    with Sampler() as sampler, Stream("/api/notes", method="POST") as stream:
        assert stream.wait_for(10)
        first = deploy()
        assert stream.wait_for(20), f"writes did not resume: {stream.failures[-5:]}"
    return first, stream, sampler


def test_switching_to_the_agents_keeps_the_primary_and_every_write(switched):
    _, stream, sampler = switched
    print(f"\nswitch to automatic failover: {len(stream.failures)} of {len(stream.records)} "
          f"writes failed within {stream.failure_window():.1f} s")
    # The primary's agent finds it writable without the key and fences it once (agent/README.md):
    # writes pause while mariadbd restarts read-only, then it is elected; none acknowledged lost.
    assert wait_until(lambda: role("db-01") == "primary" and role("db-02") == "replica", 30)
    assert writable() == ["db-01"]
    acked = stream.acked
    found = sql("db-01", "SELECT id FROM webstack.notes WHERE id IN "
                         f"({','.join(map(str, acked))})").split()
    assert {int(i) for i in found} == set(acked)
    assert [s for s in sampler.samples if len(s) > 1] == []


def test_the_primary_runs_semi_sync_with_the_replica_as_its_standby(switched):
    assert wait_until(lambda: "ha_agent_semisync_primary_on 1.0" in metrics("db-01"), 30)
    status = dict(line.split("\t") for line in sql(
        "db-01", "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'").splitlines())
    assert status["Rpl_semi_sync_master_status"] == "ON"
    assert status["Rpl_semi_sync_master_clients"] == "1"
    assert sql("db-01", "SELECT @@global.rpl_semi_sync_master_wait_point") == "AFTER_SYNC"


def test_a_second_deploy_changes_nothing_and_leaves_the_roles_alone(switched):
    assert changed_operations(deploy("--json")) == []
    assert writable() == ["db-01"] and role("db-01") == "primary"


def test_killed_primary_fails_over_by_itself_and_nothing_acknowledged_is_lost(switched):
    with Sampler() as sampler, Stream("/api/notes", method="POST") as stream:
        assert stream.wait_for(20)
        killed = stream.mark("kill -9 mariadbd on db-01")
        run("db-01", "pkill", "-KILL", "-x", "mariadbd", check=True)
        took = wait_until(lambda: role("db-02") == "primary", 30)
        assert took is not None, f"db-02 was not promoted: {role('db-01')}, {role('db-02')}"
        print(f"\nkill -9 of the primary's mariadbd: db-02 promoted {took:.1f} s later")
        # The old primary comes back read-only and its agent rejoins it as a replica.
        assert wait_until(lambda: role("db-01") == "replica", 60), role("db-01")
        # The app still names db-01 (no routing yet): the next deploy follows the agents.
        deploy()
        assert stream.wait_for(20), f"writes did not resume: {stream.failures[-5:]}"
    acked = stream.acked
    assert set(acked.values()) == {addr("db-01"), addr("db-02")}
    found = sql("db-02", "SELECT id FROM webstack.notes WHERE id IN "
                         f"({','.join(map(str, acked))})").split()
    assert {int(i) for i in found} == set(acked), "an acknowledged write is missing on db-02"
    assert [s for s in sampler.samples if len(s) > 1] == []
    assert writable() == ["db-02"]
    assert f"{killed}"  # the stream's events carry the kill for the report

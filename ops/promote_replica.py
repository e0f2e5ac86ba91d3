"""Database failover: make a replica the primary, and point the app at it.

When to use it
  planned   (default) maintenance of the primary: it is healthy and you want it to stop being
            the primary. No acknowledged write is lost; the app's writes fail for a few seconds.
  unplanned the primary is dead or unusable. Writes the replica never received are lost (async
            replication); the old primary is fenced and rejoins later, re-seeded.

    pyinfra -y inventories/<env>.py ops/promote_replica.py --data mysql_promote_target=db-02
    pyinfra -y inventories/<env>.py ops/promote_replica.py --data mysql_promote_target=db-02 \\
        --data mysql_failover_mode=unplanned --data ssh_connect_retries=0

What it does
  planned:   old primary read-only (and its heartbeat off) -> wait until the replica has applied
             every transaction of the old primary (MASTER_GTID_WAIT; gives up after
             mysql_failover_wait_s and makes the old primary writable again) -> promote the replica
             -> repoint the app (every web server's app databases file; no restart) -> the old
             primary replicates from the new one (unless it runs an older MariaDB release than
             the new one, mid-way through a Debian upgrade: then it stays read-only until it
             is upgraded; docs/upgrades.md) -> other replicas follow the new primary.
  unplanned: fence the old primary if it can still be reached (read-only, heartbeat off, and a
             replica's config so a restart keeps it that way); record the fence on the new primary
             -> let the replica apply what it received -> promote it -> repoint the app -> other
             replicas follow. When the old primary is back, the deploy re-seeds it as a replica
             (tasks/mysql.py keeps a dump of its data in /var/backups/ha-webstack).
  Both end by printing the inventory change to make before the next deploy: the new primary in
  the group db_primary, the old one in db_replicas. Until then the deploy refuses to run.

How to undo
  Update the inventory as printed, deploy, then run this again (planned) with the old primary
  as mysql_promote_target. Runbook: docs/runbooks.md, "Database failover".

Where mysql_failover = "automatic"
  Only planned, and through the database agents (agent/switchover.py, run on the target): the
  primary turns read-only, hands the leader key over once the target has applied everything,
  the target promotes itself and the old primary rejoins it. The target must be the recorded
  synchronous standby of a cluster that is not degraded, or nothing changes. No inventory
  change follows: the agents know who is primary, the app follows through its local routes.
  Undo: run it again with the old primary as the target.
"""

import gevent
from pyinfra import host, inventory, state
from pyinfra.operations import python, server

from webstack import db_agent
from webstack.app_databases import write_app_databases
from webstack.context import stack
from webstack.facts import MariaDBState
from webstack.mariadb import (
    FENCED_DDL,
    FENCED_TABLE,
    change_master,
    dynamic_config,
    dynamic_settings,
    replicates_backwards,
    replication_secret_marker,
    set_global,
    sql,
)
from webstack.run_state import shared

st = stack()
params = st.group("databases")[0]
if not params.mysql_promote_target:
    raise SystemExit("ha-webstack: say which replica to promote: --data mysql_promote_target="
                     + "|".join(h.name for h in st.group("databases")))
new = st.host(params.mysql_promote_target)


def hand_over_through_the_agents() -> None:
    """Run agent/switchover.py on the target; its report, or its refusal, printed."""
    ok, output = host.run_shell_command(db_agent.switchover_command(new.name), _sudo=True)
    print("\n".join(output.stdout_lines + output.stderr_lines))
    if not ok:
        raise RuntimeError(f"the switchover to {new.name} did not happen (above: why)")
    print(f"ha-webstack: {new.name} is the primary. Nothing to change in the inventory: the "
          "agents know, the app follows through its local routes.")


if db_agent.automatic(st):
    # The agents hold the leader key: a role moved behind their back would be fenced at once, so
    # they do the move (agent/switchover.py). A dead primary is theirs to replace, not ours.
    if params.mysql_failover_mode != "planned":
        raise SystemExit("ha-webstack: mysql_failover is 'automatic': the database agents replace "
                         "a failed primary by themselves; only a planned switchover is asked "
                         "for here (drop --data mysql_failover_mode). No host was touched.")
    if host.name == new.name:
        python.call(name=f"Switch over to {new.name} through the database agents",
                    function=hand_over_through_the_agents)
else:
    old = st.group("db_primary")[0]
    mode, wait_s = params.mysql_failover_mode, params.mysql_failover_wait_s
    followers = [h for h in st.group("db_replicas") if h.name != new.name]
    replication_password = st.secrets["mysql_replication_password"]
    old_host, new_host = inventory.get_host(old.name), inventory.get_host(new.name)
    old_reachable = old_host.connected
    # What the new primary had applied when it was promoted; set by the promotion at execution time.
    progress = shared.setdefault("promote_replica", {"gtid": ""})
    unreachable = set(state.failed_hosts)  # e.g. a dead old primary: expected, not a failure
    # Mid-way through a Debian upgrade the new primary may run a newer MariaDB than the old one,
    # which then cannot replicate from it: it stays read-only until it is upgraded too.
    old_version = old_host.get_fact(MariaDBState).get("version") if old_reachable else ""
    new_version = new_host.get_fact(MariaDBState).get("version") if new_host.connected else ""
    old_rejoins = mode == "planned" and not replicates_backwards(new_version, old_version)


    def run(on, command: str) -> str:
        """Run a command on a host now (inside the failover's critical section); its stdout."""
        ok, output = on.run_shell_command(command, _sudo=True)
        if not ok:
            raise RuntimeError(f"{on.name}: `{command}` failed: {output.stderr}")
        return output.stdout.strip()


    def query(on, statement: str) -> str:
        return run(on, f"mariadb -N -B -e \"{statement}\"")


    def preflight() -> None:
        """Refuse before touching anything when the failover cannot work."""
        target = new_host.get_fact(MariaDBState) if new_host.connected else {}
        if not target.get("running"):
            raise SystemExit(f"ha-webstack: {new.name} cannot be promoted: MariaDB is not running "
                             "there (or the host is unreachable)")
        if mode == "unplanned":
            return
        status = target.get("replica", {})
        if not old_reachable or not old_host.get_fact(MariaDBState).get("running"):
            raise SystemExit(f"ha-webstack: {old.name} is unreachable or its MariaDB is down: a "
                             "planned switchover needs it; use --data "
                             "mysql_failover_mode=unplanned")
        if (status.get("Master_Host") != old.address or status.get("Slave_SQL_Running") != "Yes"
                or status.get("Slave_IO_Running") != "Yes"):
            raise SystemExit(f"ha-webstack: {new.name} does not replicate cleanly from {old.name} "
                             f"(IO {status.get('Slave_IO_Running')}, SQL "
                             f"{status.get('Slave_SQL_Running')}): fix replication first")


    # The critical section runs as one python.call: its steps depend on values only known while it
    # runs (the old primary's last GTID) and on each other's outcome (undo the read-only if the
    # replica does not catch up), which pyinfra's planned operations cannot express.
    def switch_over() -> None:
        """Planned: stop writes on the old primary, wait until the replica has them all, promote."""
        run(old_host, sql(set_global({"read_only": "ON", "event_scheduler": "OFF"})))
        position = query(old_host, "SELECT @@global.gtid_binlog_pos")
        reached = query(new_host, f"SELECT MASTER_GTID_WAIT('{position}', {wait_s})")
        if reached != "0":
            run(old_host, sql(set_global({"read_only": "OFF", "event_scheduler": "ON"})))
            raise RuntimeError(f"{new.name} did not reach {old.name}'s position {position} within "
                               f"{wait_s} s: nothing was switched, {old.name} is writable again")
        promote()


    def take_over() -> None:
        """Unplanned: apply whatever the replica received from the dead primary, then promote."""
        run(new_host, sql("STOP SLAVE IO_THREAD"))
        for _ in range(wait_s * 5):
            status = run(new_host, "mariadb -e 'SHOW SLAVE STATUS\\G'")
            fields = {k.strip(): v.strip() for k, _, v in
                      (line.partition(":") for line in status.splitlines() if ":" in line)}
            if (fields.get("Relay_Master_Log_File") == fields.get("Master_Log_File")
                    and fields.get("Exec_Master_Log_Pos") == fields.get("Read_Master_Log_Pos")):
                break
            gevent.sleep(0.2)  # pyinfra runs operations in gevent greenlets
        promote(fenced=old)


    def promote(fenced=None) -> None:
        fence = (f"; REPLACE INTO {FENCED_TABLE} VALUES ('{fenced.name}', '{fenced.address}', "
                 f"UTC_TIMESTAMP(), '{new.name}')" if fenced else "")
        run(new_host, sql("STOP SLAVE; RESET SLAVE ALL; "
                          f"{set_global(dynamic_settings(new, primary=True))}; "
                          "ALTER EVENT ha_heartbeat.beat ENABLE; "
                          f"{FENCED_DDL}; DELETE FROM {FENCED_TABLE} "
                          f"WHERE host = '{new.name}'{fence}"))
        progress["gtid"] = query(new_host, "SELECT @@global.gtid_current_pos")


    def follow_new_primary() -> None:
        """Another replica: catch up on the old primary's last writes, then follow the new one."""
        if mode == "planned":
            query(host, f"SELECT MASTER_GTID_WAIT('{progress['gtid']}', {wait_s})")
        repoint = change_master(new.address, new.mysql_port, replication_password)
        run(host, sql(f"STOP SLAVE; {repoint}"
                      "; START SLAVE"))


    def promoted() -> bool:
        """Evaluated when each later step runs: the promotion happened and nothing failed since."""
        return bool(progress["gtid"]) and not (state.failed_hosts - unreachable)


    def print_next_steps() -> None:
        lab = f" (in the lab: export LAB_DB_PRIMARY={new.name})" if new.stack_env == "lab" else ""
        if old_rejoins:
            rejoin = f"{old.name} now replicates from {new.name}."
        elif mode == "planned":
            rejoin = (f"{old.name} does not replicate from {new.name}: it runs MariaDB "
                      f"{old_version}, "
                      f"older than {new.name}'s {new_version}, and MariaDB does not replicate from "
                      f"a newer release to an older one. It stays read-only: upgrade it "
                      f"(ops/upgrade_debian.py, docs/upgrades.md); the deploy below then makes "
                      "it a "
                      "replica.")
        else:
            rejoin = (f"{old.name} is fenced. When it is back, the deploy below re-seeds it from "
                      f"{new.name}, keeping a dump of its old data in /var/backups/ha-webstack/.")
        if not old_reachable:
            rejoin += (f" ({old.name} was unreachable, so pyinfra exits with status 1 for it; the "
                       "failover itself succeeded.)")
        print(f"\nha-webstack: {new.name} is the primary ({mode} failover, at GTID "
              f"{progress['gtid']}). {rejoin}\nNow update the inventory: put {new.name} in the "
              "group "
              f"db_primary and {old.name} in db_replicas{lab}; then deploy: pyinfra -y "
              f"inventories/{new.stack_env}.py deploy.py. Until then the deploy refuses to run.\n")


    preflight()

    # 1. Unplanned: fence the old primary if it can be reached, and give it a replica's config so a
    #    restart can never make it a second writable primary.
    if host.name == old.name and mode == "unplanned":
        server.shell(name=f"Fence {old.name}: read-only, heartbeat off (if MariaDB still runs)",
                     commands=[f"{sql(set_global(dynamic_settings(old, primary=False)))} || true"])
        dynamic_config(old, primary=False)

    # 2. The critical section, run from the new primary's turn: promote it.
    if host.name == new.name:
        python.call(name=f"Promote {new.name} ({mode})",
                    function=switch_over if mode == "planned" else take_over)
        dynamic_config(new, primary=True, _if=promoted)

    # 3. Point the app at the new primary (the app re-reads the file: no restart).
    if "webservers" in host.groups:
        readers = [h.address for h in followers] + ([old.address] if old_rejoins else [])
        write_app_databases(new.address, readers, why=f" (promoted {new.name})", _if=promoted)

    # 4. The old primary (planned) and the other replicas replicate from the new primary.
    if host.name == old.name and mode == "planned":
        dynamic_config(old, primary=False, _if=promoted)
    if host.name == old.name and old_rejoins:
        replication_secret_marker(replication_password, _if=promoted)
        server.shell(name=f"{old.name} replicates from {new.name}", _if=promoted, commands=[sql(
            "SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos; "
            f"{change_master(new.address, new.mysql_port, replication_password)}; START SLAVE")])
    if host.name in [h.name for h in followers]:
        python.call(name=f"Follow {new.name}", function=follow_new_primary, _if=promoted)

    if host.name == new.name:
        python.call(name="The inventory change to make now", function=print_next_steps,
                    _if=promoted)

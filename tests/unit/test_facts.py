"""The fact parsers of webstack/facts.py, fed real command output the way pyinfra feeds them.

Fixtures (tests/unit/fixtures/) hold the stdout of each fact's command as the deploy leaves a
host (Debian 12; lb-01's ufw files on Debian 13, with the etcd rules; ufw 0.36.2 on both):
/etc/ufw/user.rules + user6.rules and `ufw status verbose`, MariaDB
10.11's `mariadb -N -B` rows and `SHOW SLAVE STATUS\\G`. pyinfra hands process() the stdout lines
without their newlines (and does not call it at all for empty output: the fact's default).
"""

from pathlib import Path

import pytest

from tests.unit import stacks
from webstack.facts import MariaDBState, UfwRules, UfwStatus
from webstack.mariadb import transactions_missing_on
from webstack.policy import Rule, rules_for, stale_rule_removals

FIXTURES = Path(__file__).parent / "fixtures"
A, B = 181731359, 181731360  # server ids of db-01 and db-02 (from 10.213.0.31 and .32)
# What tasks/firewall.py sets, and compares the fact with to decide whether to set it again.
WANTED_DEFAULTS = "deny (incoming), allow (outgoing), deny (routed)"


def output(name: str) -> list[str]:
    """A fixture's lines exactly as pyinfra passes a command's stdout to process()."""
    with open(FIXTURES / name, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


# --- UfwRules: cat /etc/ufw/user.rules /etc/ufw/user6.rules -------------------------------------

@pytest.mark.parametrize("name", ["db-01", "lb-01"])
def test_a_host_holding_the_policy_reads_back_as_exactly_the_policy(all_secrets, name):
    # The firewall task adds what is missing (or has another comment) and deletes what is not
    # wanted: a host the deploy configured must read back as exactly its computed rules, or
    # every deploy would re-add or delete rules.
    stack = stacks.build(stacks.namespace("10.213.0.0/24"))
    held = UfwRules().process(output(f"ufw/user-rules.{name}.txt"))
    assert sorted(held) == sorted(rules_for(stack, stack.host(name)))


def test_a_public_rule_in_user_rules_and_user6_rules_is_one_rule():
    held = UfwRules().process(output("ufw/user-rules.lb-01.txt"))
    https = [r for r in held if r.comment == "loadbalancers/https from public"]
    assert sorted(https) == [Rule("allow", "tcp", "443", "any", "loadbalancers/https from public"),
                             Rule("allow", "tcp", "80", "any", "loadbalancers/https from public")]


def test_rate_limited_ssh_and_portless_vrrp_are_read_as_such():
    held = {r.comment: r for r in UfwRules().process(output("ufw/user-rules.lb-01.txt"))}
    assert held["all/ssh from admin_networks"] == Rule(
        "limit", "tcp", "22", "10.213.0.1", "all/ssh from admin_networks")
    assert held["loadbalancers/vrrp from loadbalancers"] == Rule(
        "allow", "vrrp", "any", "10.213.0.12", "loadbalancers/vrrp from loadbalancers")


def test_hand_made_rules_are_all_seen_so_the_deploy_can_remove_them():
    held = UfwRules().process(output("ufw/user-rules.hand-made.txt"))
    assert sorted(held) == sorted([
        Rule("allow", "tcp", "22", "any", ""),                       # ufw allow 22/tcp (v4+v6)
        Rule("allow", "tcp", "22", "any", "", app="OpenSSH"),        # ufw allow OpenSSH (v4+v6)
        Rule("allow", "tcp", "3306", "10.213.0.0/24", "ops: Jörg's debugging"),  # UTF-8 comment
        Rule("allow", "udp", "161", "10.213.0.41", ""),
        Rule("allow", "tcp", "3306", "fd00:213::/64", ""),
    ])


def test_an_application_profile_rule_is_not_mistaken_for_a_port_rule():
    # Read as the plain rule allow tcp/22 from any, `ufw allow OpenSSH` would never be deleted
    # (`ufw delete allow from any to any port 22 proto tcp` does not match it): SSH would stay
    # open to everyone and every deploy would try the delete again.
    held = UfwRules().process(output("ufw/user-rules.hand-made.txt"))
    assert len([r for r in held if r.port == "22"]) == 2


def test_the_stale_hand_made_rules_are_deleted_with_commands_that_match_them(all_secrets):
    # tasks/firewall.py runs these; each must name its rule the way ufw's grammar takes it, an
    # application rule by its profile (ufw refuses `proto` with `app`).
    stack = stacks.build(stacks.namespace("10.213.0.0/24"))
    held = UfwRules().process(output("ufw/user-rules.hand-made.txt"))
    removals = stale_rule_removals(held, rules_for(stack, stack.host("db-01")))
    assert [command for _, command in removals] == [
        "ufw delete allow from any to any port 22 proto tcp",
        "ufw delete allow from any to any app OpenSSH",
        "ufw delete allow from 10.213.0.0/24 to any port 3306 proto tcp",
        "ufw delete allow from fd00:213::/64 to any port 3306 proto tcp",
        "ufw delete allow from 10.213.0.41 to any port 161 proto udp",
    ]
    assert "ufw: remove stale rule  (app OpenSSH from any)" in [name for name, _ in removals]


def test_an_application_rule_is_deleted_once_whatever_its_profile_expands_to():
    # A profile with a space in its name, and one with tcp and udp ports: ufw writes one tuple
    # per protocol and address family; one `ufw delete` removes them all.
    lines = [
        "### tuple ### allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 Nginx%20Full - in",
        "### tuple ### allow tcp 80,443 ::/0 any ::/0 Nginx%20Full - in",
        "### tuple ### allow udp 137,138 0.0.0.0/0 any 10.213.0.0/24 Samba - in",
        "### tuple ### allow tcp 139,445 0.0.0.0/0 any 10.213.0.0/24 Samba - in",
        "### tuple ### allow tcp 22 0.0.0.0/0 any 10.213.0.0/24 - OpenSSH in comment=6f7073",
    ]
    held = UfwRules().process(lines)
    assert sorted(held) == sorted([
        Rule("allow", "tcp", "80,443", "any", "", app="Nginx Full"),
        Rule("allow", "udp", "137,138", "10.213.0.0/24", "", app="Samba"),
        Rule("allow", "tcp", "139,445", "10.213.0.0/24", "", app="Samba"),
        Rule("allow", "tcp", "22", "10.213.0.0/24", "ops", source_app="OpenSSH"),
    ])
    assert sorted(command for _, command in stale_rule_removals(held, [])) == [
        "ufw delete allow from 10.213.0.0/24 app OpenSSH to any port 22",
        "ufw delete allow from 10.213.0.0/24 to any app Samba",
        "ufw delete allow from any to any app 'Nginx Full'",
    ]


def test_the_deploys_own_rules_are_plain_port_rules(all_secrets):
    # Equal to what the host reads back (app-less), and added with the port/proto syntax.
    stack = stacks.build(stacks.namespace("10.213.0.0/24"))
    for h in stack.hosts:
        for rule in rules_for(stack, h):
            assert (rule.app, rule.source_app) == ("", "")
            assert " app " not in rule.ufw_spec() and " proto " in rule.ufw_spec()


@pytest.mark.parametrize("lines", [
    pytest.param(output("ufw/user-rules.fresh-install.txt"), id="fresh install (package files)"),
    pytest.param([], id="ufw absent (the command prints nothing)"),
])
def test_no_user_rules(lines):
    assert UfwRules().process(lines) == []
    assert UfwRules().default() == []


# --- UfwStatus: ufw status verbose ---------------------------------------------------------------

@pytest.mark.parametrize(("fixture", "expected"), [
    pytest.param("status-verbose.db-01.txt",
                 {"active": True, "defaults": WANTED_DEFAULTS, "logging": "on (low)"},
                 id="deployed host"),
    pytest.param("status-verbose.lb-01.txt",
                 {"active": True, "defaults": WANTED_DEFAULTS, "logging": "on (low)"},
                 id="deployed load balancer, with IPv6 rules"),
    pytest.param("status-verbose.hand-made.txt",
                 {"active": True, "logging": "off",
                  "defaults": "deny (incoming), allow (outgoing), disabled (routed)"},
                 id="enabled by hand: routing disabled, logging off, colons in rules"),
    pytest.param("status-verbose.inactive.txt",
                 {"active": False, "defaults": "", "logging": ""}, id="installed, not enabled"),
    pytest.param("status-verbose.absent.txt",
                 {"active": False, "defaults": "", "logging": ""}, id="ufw not installed"),
])
def test_ufw_status(fixture, expected):
    assert UfwStatus().process(output(f"ufw/{fixture}")) == expected


# --- MariaDBState: the -N -B state rows, fenced hosts, SHOW SLAVE STATUS\G ------------------------

APP_TABLES = ["ha_heartbeat.heartbeat", "webstack.notes", "webstack.visits"]


def test_primary():
    assert MariaDBState().process(output("mariadb/primary.txt")) == {
        "running": True, "version": "10.11.18-MariaDB-0+deb12u1-log",
        "gtid_binlog_pos": f"0-{A}-1234", "gtid_slave_pos": "", "read_only": "0",
        "tables": APP_TABLES, "events": ["ha_heartbeat.beat"],
        "disabled_events": [], "fenced": [], "replica": {}}


def test_healthy_replica():
    state = MariaDBState().process(output("mariadb/replica.txt"))
    assert {k: v for k, v in state.items() if k != "replica"} == {
        "running": True, "version": "10.11.18-MariaDB-0+deb12u1-log",
        "gtid_binlog_pos": f"0-{A}-1234", "gtid_slave_pos": f"0-{A}-1234",
        "read_only": "1", "tables": APP_TABLES, "events": ["ha_heartbeat.beat"],
        # replicated events are SLAVESIDE_DISABLED: the primary alone writes the heartbeat
        "disabled_events": ["ha_heartbeat.beat"], "fenced": []}
    replica = state["replica"]
    assert len(replica) == 54  # every field MariaDB 10.11 prints, none lost or invented
    assert {k: replica[k] for k in ("Master_Host", "Master_Port", "Slave_IO_Running",
                                    "Slave_SQL_Running", "Last_IO_Errno", "Last_SQL_Errno",
                                    "Seconds_Behind_Master", "Using_Gtid", "Gtid_IO_Pos",
                                    "Replicate_Do_DB", "Slave_SQL_Running_State")} == {
        "Master_Host": "10.213.0.31", "Master_Port": "3306", "Slave_IO_Running": "Yes",
        "Slave_SQL_Running": "Yes", "Last_IO_Errno": "0", "Last_SQL_Errno": "0",
        "Seconds_Behind_Master": "0", "Using_Gtid": "Slave_Pos", "Gtid_IO_Pos": f"0-{A}-1234",
        "Replicate_Do_DB": "",
        "Slave_SQL_Running_State": "Slave has read all relay log; waiting for more updates"}


def test_replica_stopped_by_an_sql_error_keeps_the_whole_message():
    # The deploy quotes MariaDB's message when it refuses to go on (tasks/mysql.py).
    replica = MariaDBState().process(output("mariadb/replica-sql-error.txt"))["replica"]
    assert (replica["Slave_IO_Running"], replica["Slave_SQL_Running"]) == ("Yes", "No")
    assert replica["Last_SQL_Errno"] == "1062"
    assert replica["Last_SQL_Error"] == (
        "Could not execute Write_rows_v1 event on table webstack.notes; Duplicate entry '1231' "
        "for key 'PRIMARY', Error_code: 1062; handler error HA_ERR_FOUND_DUPP_KEY; the event's "
        "master log db-01-bin.000002, end_log_pos 412101")
    assert replica["Seconds_Behind_Master"] == "NULL"


def test_replica_that_cannot_reach_its_primary():
    replica = MariaDBState().process(output("mariadb/replica-io-error.txt"))["replica"]
    assert (replica["Slave_IO_Running"], replica["Slave_SQL_Running"]) == ("Connecting", "Yes")
    assert replica["Last_IO_Errno"] == "2003"
    assert replica["Last_IO_Error"] == (
        "error reconnecting to master 'replicator@10.213.0.31:3306' - retry-time: 5  "
        "maximum-retries: 100000  message: Can't connect to server on '10.213.0.31' "
        "(111 \"Connection refused\")")


def test_new_server_without_replication_or_data():
    assert MariaDBState().process(output("mariadb/new-server.txt")) == {
        "running": True, "version": "11.8.9-MariaDB-0+deb13u1 from Debian-log",
        "gtid_binlog_pos": "", "gtid_slave_pos": "", "read_only": "0",
        "tables": [], "events": [], "disabled_events": [], "fenced": [], "replica": {}}


def test_mariadb_absent_or_down():
    state = MariaDBState().process(output("mariadb/not-running.txt"))
    assert state["running"] is False
    assert (state["gtid_binlog_pos"], state["tables"], state["replica"]) == ("", [], {})


def test_promoted_primary_names_the_hosts_it_fenced():
    state = MariaDBState().process(output("mariadb/promoted-after-unplanned-failover.txt"))
    assert state["fenced"] == ["db-01"]
    assert state["tables"] == ["ha_heartbeat.fenced", *APP_TABLES]
    assert (state["gtid_binlog_pos"], state["gtid_slave_pos"]) == (f"0-{B}-1300", f"0-{A}-1234")


@pytest.mark.parametrize(("primary", "other", "missing"), [
    pytest.param("primary.txt", "replica.txt", [], id="a replica that caught up"),
    pytest.param("primary.txt", "replica-sql-error.txt", [], id="a replica that is behind"),
    pytest.param("promoted-after-unplanned-failover.txt", "old-primary-back.txt",
                 [f"0-{A}-1235..0-{A}-1240"], id="the old primary after an unplanned failover"),
])
def test_the_facts_feed_the_rejoin_decision(primary, other, missing):
    mine = MariaDBState().process(output(f"mariadb/{primary}"))
    theirs = MariaDBState().process(output(f"mariadb/{other}"))
    assert transactions_missing_on(mine, theirs) == missing

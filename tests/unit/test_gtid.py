"""GTID arithmetic of webstack/mariadb.py: the answer decides whether a database host that holds
data but replicates from nobody (a former primary, most likely) may simply rejoin the primary,
or holds transactions the primary never received (tasks/mysql.py then refuses, or re-seeds it:
its copy is replaced). A wrong "nothing missing" silently discards writes; a wrong "missing"
stops a routine rejoin.

Server ids are the lab's: mysql_server_id None derives them from the hosts' IPv4 addresses.
"""

import ipaddress

import pytest

from webstack.mariadb import parse_gtids, replicates_backwards, transactions_missing_on

A = int(ipaddress.IPv4Address("10.213.0.31"))  # db-01: 181731359
B = int(ipaddress.IPv4Address("10.213.0.32"))  # db-02: 181731360


def state(binlog: str = "", slave: str = "") -> dict:
    """The GTID part of webstack.facts.MariaDBState."""
    return {"gtid_binlog_pos": binlog, "gtid_slave_pos": slave}


@pytest.mark.parametrize(("position", "expected"), [
    pytest.param("", {}, id="empty: a server that never logged a transaction"),
    pytest.param(f"0-{A}-1234", {0: (A, 1234)}, id="one domain"),
    pytest.param(f"0-{A}-1234,1-{B}-7", {0: (A, 1234), 1: (B, 7)}, id="two domains"),
    pytest.param(f"0-{A}-1234,\n1-{B}-7", {0: (A, 1234), 1: (B, 7)},
                 id="newline after the comma"),
    pytest.param(f" 0-{A}-1234 , 1-{B}-7\n", {0: (A, 1234), 1: (B, 7)},
                 id="surrounding whitespace and trailing newline"),
    pytest.param("4294967295-4294967295-18446744073709551615",
                 {4294967295: (4294967295, 18446744073709551615)},
                 id="largest domain, server id and sequence number"),
])
def test_parse_gtids(position, expected):
    assert parse_gtids(position) == expected


@pytest.mark.parametrize("garbage", [f"0-{A}", f"0-{A}-x", "db-01-bin.000002:1234"])
def test_a_position_that_is_not_a_gtid_list_is_an_error_not_an_empty_history(garbage):
    # Read as "no transactions", it would make any host look safe to rejoin.
    with pytest.raises(ValueError):
        parse_gtids(garbage)


# (primary's state, the other host's state, GTID ranges the primary lacks)
CASES = [
    pytest.param(state(f"0-{A}-1234"), state(), [],
                 id="host never wrote anything"),
    pytest.param(state(), state(), [],
                 id="both empty: a new stack"),
    pytest.param(state(f"0-{A}-1234"), state(f"0-{A}-1234"), [],
                 id="equal: a replica that caught up (log_slave_updates keeps the server id)"),
    pytest.param(state(f"0-{A}-1234"), state(f"0-{A}-1200"), [],
                 id="prefix: a replica that is behind"),
    pytest.param(state(f"0-{B}-1300", f"0-{A}-1234"), state(f"0-{A}-1234"), [],
                 id="switchover: the old primary had nothing the new one lacks"),
    pytest.param(state(f"0-{B}-1300", f"0-{A}-1234"), state(f"0-{B}-1290"), [],
                 id="a replica of the new primary that is behind"),
    pytest.param(state(f"0-{B}-1300", f"0-{A}-1234"), state(f"0-{A}-1240"),
                 [f"0-{A}-1235..0-{A}-1240"],
                 id="unplanned failover: the old primary's last writes never replicated"),
    pytest.param(state(f"0-{B}-1300", f"0-{A}-1000"), state(f"0-{A}-1300"),
                 [f"0-{A}-1001..0-{A}-1300"],
                 id="split brain: same sequence number from another server is a divergence"),
    pytest.param(state(f"0-{B}-1300", f"0-{A}-1234"), state(f"0-{A}-1234,1-{A}-50"),
                 [f"1-{A}-1..1-{A}-50"],
                 id="a domain the primary never saw: all of it is missing"),
    pytest.param(state(f"0-{B}-1300,1-{A}-50", f"0-{A}-1234,1-{A}-50"),
                 state(f"0-{A}-1234,1-{A}-50"), [],
                 id="two domains, both received"),
    pytest.param(state(f"0-{B}-1300,1-{A}-50", f"0-{A}-1234,1-{A}-50"),
                 state(f"0-{A}-1240,1-{A}-60"),
                 [f"0-{A}-1235..0-{A}-1240", f"1-{A}-51..1-{A}-60"],
                 id="two domains, both missing, in the host's order"),
    pytest.param(state(f"0-{B}-1300,\n1-{A}-50", f"0-{A}-1234,\n1-{A}-50\n"),
                 state(f" 0-{A}-1240,\n1-{A}-60\n"),
                 [f"0-{A}-1235..0-{A}-1240", f"1-{A}-51..1-{A}-60"],
                 id="the same with newlines and spaces"),
    pytest.param({}, state(f"0-{A}-1234"), [f"0-{A}-1..0-{A}-1234"],
                 id="primary holds nothing (or its fact is empty): everything is missing"),
]


@pytest.mark.parametrize(("primary", "host", "missing"), CASES)
def test_transactions_missing_on_the_primary(primary, host, missing):
    assert transactions_missing_on(primary, host) == missing


@pytest.mark.parametrize(("primary", "host", "last"), [
    pytest.param(state(f"0-{A}-1234"), state(f"0-{B}-1235"), f"0-{B}-1235",
                 id="errant write on a replica (someone turned read_only off)"),
    pytest.param(state(f"0-{A}-1234"), state(f"0-{A}-1240"), f"0-{A}-1240",
                 id="host ahead of a primary that never replicated (restored from a backup)"),
    pytest.param(state(f"0-{A}-1234"), state(f"0-{B}-1234"), f"0-{B}-1234",
                 id="same sequence number written by another server"),
])
def test_errant_transactions_stop_a_rejoin(primary, host, last):
    # The decision is what matters here (a non-empty answer: no silent rejoin); the primary
    # keeps no record of where the histories forked, so the range reported starts from what
    # it applied as a replica (nothing here) and only its end is exact.
    missing = transactions_missing_on(primary, host)
    assert len(missing) == 1 and missing[0].endswith(f"..{last}")



# --- which way replication may run across MariaDB releases (an upgrade: replicas first) -----

@pytest.mark.parametrize(("primary", "replica", "refused"), [
    pytest.param("10.11.18-MariaDB-0+deb12u1-log", "11.8.9-MariaDB-0+deb13u1 from Debian-log",
                 False, id="Debian 12 primary, Debian 13 replica: the upgrade's order"),
    pytest.param("11.8.9-MariaDB-0+deb13u1 from Debian-log", "10.11.18-MariaDB-0+deb12u1-log",
                 True, id="Debian 13 primary, Debian 12 replica: refused"),
    pytest.param("10.11.18-MariaDB-0+deb12u1-log", "10.11.6-MariaDB-0+deb12u1-log", False,
                 id="point releases of one release either way"),
    pytest.param("11.8.9-MariaDB-0+deb13u1", "11.4.5-MariaDB", True, id="minor release counts"),
    pytest.param("", "10.11.18-MariaDB-0+deb12u1-log", False, id="primary down: no verdict"),
    pytest.param("11.8.9-MariaDB-0+deb13u1", "", False, id="replica not installed yet"),
])
def test_replication_only_runs_from_an_older_release_to_a_newer(primary, replica, refused):
    assert replicates_backwards(primary, replica) is refused

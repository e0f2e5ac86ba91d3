"""GTID arithmetic of the agent (agent/gtid.py): positions, binlog states, and the prefix check
that decides whether a former primary may rejoin. The histories are the failover's: db-01
(server 1) was the primary, db-02 (server 2) took over after 0-1-98."""

import pytest

from agent.gtid import binlog_state, covers, is_prefix, position


@pytest.mark.parametrize(("text", "parsed"), [
    ("", {}),
    ("0-1-100", {0: (1, 100)}),
    ("0-1-100, 1-5-7", {0: (1, 100), 1: (5, 7)}),
    ("0-1", None),
    ("0-1-x", None),
    ("0-1-100-2", None),
])
def test_a_position_is_the_last_gtid_of_each_domain(text, parsed):
    assert position(text) == parsed


def test_a_binlog_state_has_one_gtid_per_domain_and_server():
    assert binlog_state("0-1-98,0-2-101,1-5-7") == {(0, 1): 98, (0, 2): 101, (1, 5): 7}
    assert binlog_state("") == {}
    assert binlog_state("0-1") is None


@pytest.mark.parametrize(("mine", "other", "covered"), [
    ("0-1-100", "0-1-98", True),
    ("0-1-100", "0-1-100", True),
    ("0-1-98", "0-1-100", False),
    ("0-2-100", "0-1-100", False),  # the same number from another server: another transaction
    ("0-1-100", "", True),
    ("0-1-100", "1-1-1", False),  # a domain I never saw
    ("0-1-x", "", False),  # unknown covers nothing
    ("", "0-1-x", False),
])
def test_covers(mine, other, covered):
    assert covers(position(mine), position(other)) is covered


@pytest.mark.parametrize(("mine", "leader_state", "prefix"), [
    pytest.param("", "", True, id="two empty histories"),
    pytest.param("", "0-2-101", True, id="a new node: nothing yet"),
    pytest.param("0-1-98", "0-1-98,0-2-101", True,
                 id="the old primary stopped where the new one took over"),
    pytest.param("0-1-97", "0-1-98,0-2-101", True, id="the old primary behind the takeover"),
    pytest.param("0-1-100", "0-1-98,0-2-101", False,
                 id="the old primary wrote 99 and 100, which nobody acknowledged"),
    pytest.param("0-2-101", "0-1-98,0-2-101", True, id="a replica of the new primary"),
    pytest.param("0-2-102", "0-1-98,0-2-101", False, id="ahead of the leader"),
    pytest.param("0-3-50", "0-1-98,0-2-101", False, id="a server the leader never heard of"),
    pytest.param("0-1-98,1-1-5", "0-1-98,0-2-101", False, id="a domain the leader lacks"),
    pytest.param("0-1-x", "0-1-98", None, id="my position unreadable: no verdict"),
    pytest.param("0-1-98", "garbage", None, id="the leader's state unreadable: no verdict"),
])
def test_is_prefix(mine, leader_state, prefix):
    assert is_prefix(mine, leader_state) is prefix

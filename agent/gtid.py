"""MariaDB GTID positions and states as the agent compares them. Pure functions, no I/O.

A position (gtid_current_pos, gtid_binlog_pos, gtid_slave_pos, Gtid_IO_Pos) is the last GTID of
each replication domain: 'domain-server-seq,...'. A binlog state (gtid_binlog_state) is the last
GTID of each (domain, server) pair found in a server's binlog. With gtid_strict_mode on every
server, sequence numbers only grow within a domain, and a server never binlogs the same
(domain, server, seq) twice, which is what makes these comparisons mean something.
"""

Position = dict[int, tuple[int, int]]  # domain -> (server_id, seq_no)


def _triples(text: str) -> list[tuple[int, int, int]] | None:
    """'0-1-100,1-5-7' as [(domain, server_id, seq_no), ...]; None if any item is malformed."""
    triples = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        parts = item.split("-")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return None
        triples.append(tuple(int(p) for p in parts))
    return triples


def position(text: str) -> Position | None:
    """'0-1-100,1-5-7' as {0: (1, 100), 1: (5, 7)}; '' is the empty history; None if malformed,
    which covers nothing and is covered by nothing (unknown is never a verdict)."""
    triples = _triples(text)
    return None if triples is None else {d: (server, seq) for d, server, seq in triples}


def covers(mine: Position | None, other: Position | None) -> bool:
    """Whether position `mine` includes `other`, domain by domain. The same sequence number from
    another server is another transaction: not covered. A lower one from another server may
    still have diverged; `is_prefix` is the check that sees it."""
    if mine is None or other is None:
        return False
    for domain, (server, seq) in other.items():
        my_server, my_seq = mine.get(domain, (None, -1))
        if my_seq < seq or (my_seq == seq and my_server != server):
            return False
    return True


def binlog_state(text: str) -> dict[tuple[int, int], int] | None:
    """gtid_binlog_state '0-1-98,0-2-101' as {(0, 1): 98, (0, 2): 101}; None if malformed."""
    triples = _triples(text)
    return None if triples is None else {(d, server): seq for d, server, seq in triples}


def is_prefix(mine: str, leader_state: str) -> bool | None:
    """Whether my history (my gtid_current_pos) is a prefix of the leader's (its
    gtid_binlog_state): each domain's last GTID of mine is in the leader's binlog. None when
    either is malformed.

    Why the last GTID per domain is enough: under strict mode each server's GTIDs in a domain
    are binlogged in growing order, and a replica receives them in that order, so a leader that
    binlogged (domain, server, m) with m >= my seq also binlogged my (domain, server, seq) and
    everything before it. A former primary holding a transaction the new one never received
    (acknowledged by nobody) has a higher seq from its own server id than the new primary has
    from that id: not a prefix, and it stays fenced. MariaDB checks the same when the replica
    connects (error 1236, "not in the master's binlog"): the agent treats that as diverged too.
    """
    my_position, state = position(mine), binlog_state(leader_state)
    if my_position is None or state is None:
        return None
    return all(state.get((domain, server), -1) >= seq
               for domain, (server, seq) in my_position.items())

"""Values shared by the per-host runs of one deploy file.

pyinfra executes a deploy file once per host, each run with its own globals, so a value that one
host's operation learns at execution time (e.g. the GTID a failover promoted at) must live in an
imported module to be seen by the operations of the other hosts.
"""

import gevent.lock

shared: dict[str, object] = {}
# Held while one host's run of a deploy file reads another host's facts. pyinfra loads the deploy
# file for every host at once (gevent greenlets); two of them connecting to the same host
# outside --limit at the same moment hang paramiko ("unhandled type 3"; seen with --limit
# loadbalancers reading the databases' versions).
OTHER_HOSTS = gevent.lock.RLock()


def once(key: str, compute):
    """compute() in the first host's run of the deploy file; the other hosts' runs get its value."""
    with OTHER_HOSTS:
        if key not in shared:
            shared[key] = compute()
        return shared[key]


def step_done() -> None:
    """A barrier for ops/ that go one step at a time: called through python.call on every host
    at the end of each step. pyinfra orders the operations of different hosts only through
    operations they share, so this keeps one step's work on every host before the next's."""

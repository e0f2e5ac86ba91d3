"""Values shared by the per-host runs of one deploy file.

pyinfra executes a deploy file once per host, each run with its own globals, so a value that one
host's operation learns at execution time (e.g. the GTID a failover promoted at) must live in an
imported module to be seen by the operations of the other hosts.
"""

shared: dict[str, object] = {}


def step_done() -> None:
    """A barrier for ops/ that go one step at a time: called through python.call on every host
    at the end of each step. pyinfra orders the operations of different hosts only through
    operations they share, so this keeps one step's work on every host before the next's."""

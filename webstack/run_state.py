"""Values shared by the per-host runs of one deploy file.

pyinfra executes a deploy file once per host, each run with its own globals, so a value that one
host's operation learns at execution time (e.g. the GTID a failover promoted at) must live in an
imported module to be seen by the operations of the other hosts.
"""

shared: dict[str, object] = {}

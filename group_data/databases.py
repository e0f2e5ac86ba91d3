"""Settings for the database hosts (validated by webstack/settings.py: MySQLSettings).

Which host is the primary is chosen in the inventory (groups db_primary, db_replicas). With
mysql_failover = "automatic", db_primary is only the first primary: after that the database
agents (agent/) decide, and the deploy asks them.
"""

mysql_port = 3306
mysql_server_id = None              # None: derived from the host's IPv4 address (unique per host)
mysql_binlog_retention_days = 7     # long enough to rebuild a replica that was down for a while
mysql_max_connections = 200
mysql_innodb_buffer_pool_size = "256M"
mysql_replica_parallel_threads = 4  # replicas apply in parallel (optimistic mode) to keep up
mysql_semi_sync = False             # True: a commit waits (AFTER_SYNC) until a replica has it
mysql_semi_sync_timeout_ms = 1000   # then falls back to asynchronous replication
mysql_reseed_replicas = False       # never on by default: re-seeding destroys the replica's copy
mysql_app_databases = ["webstack", "ha_heartbeat"]  # what a new replica is seeded with
# Used only by ops/promote_replica.py, given on its command line (docs/runbooks.md):
mysql_promote_target = ""           # the replica to promote, e.g. --data mysql_promote_target=db-02
mysql_failover_mode = "planned"     # "planned" switchover, or "unplanned" (the primary is dead)
mysql_failover_wait_s = 30          # seconds a switchover waits for the replica to catch up
mysql_failover = "manual"           # "automatic": the agents fail over by themselves (etcd group)
# The database agent (agent/README.md), only where mysql_failover is "automatic":
db_agent_port = 8008                # /primary, /replica (HAProxy checks) and /metrics
db_agent_lease_ttl_s = 5            # the leader lease: about how long a failover takes to begin
db_agent_fence_margin_s = 2         # a primary that cannot renew fences with this much left
db_agent_anti_flap_window_s = 3600  # a second automatic failover within it waits for a human

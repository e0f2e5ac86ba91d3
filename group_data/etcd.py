"""Settings for the etcd members (validated by webstack/settings.py: EtcdSettings).

The etcd cluster the database agents will use to agree on the primary (issue #15,
docs/etcd.md). Its members are the inventory's `etcd` group: an odd number, at least 3, none of
them a database host.
"""

etcd_client_port = 2379                    # the agents (and monitoring) connect here, over TLS
etcd_peer_port = 2380                      # members only, over TLS
etcd_metrics_port = 2381                   # /metrics and /health over plain HTTP, for monitoring
etcd_cluster_token = "ha-webstack"         # read when the cluster is created; same on every member
etcd_data_dir = "/var/lib/etcd/ha-webstack"  # not Debian's /var/lib/etcd/default (see settings)
# Raft timing, etcd's defaults: a dead leader is replaced about 1 s after its last heartbeat.
# Raise both (keep the ratio) on slow or distant networks; etcd wants the timeout >= 5 beats.
etcd_heartbeat_interval_ms = 100
etcd_election_timeout_ms = 1000

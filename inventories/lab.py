"""The lab: eight containers on this machine, built by `make lab` (see lab/).

Host names, addresses and groups come from lab/topology.py, the same definition the lab script
builds the containers from. LAB_WEB_SERVERS=3 make lab adds web-03, and so on.
"""

import os

from lab import topology
from webstack.settings import check_inventory

_lab = topology.current()
_state = topology.STATE_DIR

# What differs from prod: this environment's network, who may administer it, how to connect.
_environment = {
    "stack_env": "lab",
    "stack_network": _lab.subnet,
    # The control machine reaches the lab through the bridge gateway; nothing else gets SSH.
    "admin_networks": [f"{_lab.gateway}/32"],
    "ssh_user": "deploy",
    "ssh_key": str(_state / "id_ed25519"),
    "ssh_known_hosts_file": str(_state / "known_hosts"),
    "ssh_strict_host_key_checking": "yes",
    "_sudo": True,
    # ufw rate-limits SSH (6 new connections in 30 s per source): wait that out, don't fail.
    "ssh_connect_retries": 4,
    "ssh_connect_retry_min_delay": 10,
    "ssh_connect_retry_max_delay": 15,
}


def _group(name, **group_settings):
    """The lab hosts of one group, each with its address, the environment and the group's
    settings for this environment (host data: it overrides group_data/, as it must)."""
    return [(h.name, {"ssh_hostname": h.address, **_environment, **group_settings})
            for h in _lab.managed_hosts if name in h.groups]


loadbalancers = _group("loadbalancers", keepalived_floating_ip=_lab.floating_ip)
webservers = _group("webservers")
# LAB_DB_FAILOVER=automatic: the database agents fail over by themselves (tests/test_db_agent.py);
# LAB_DB_ANTI_FLAP_S: their anti-flap window (make bench fails over again and again: 0).
_failover = {key: cast(os.environ[var]) for key, var, cast in (
    ("mysql_failover", "LAB_DB_FAILOVER", str),
    ("db_agent_anti_flap_window_s", "LAB_DB_ANTI_FLAP_S", int)) if os.environ.get(var)}
databases = _group("databases", **_failover)
db_primary = _group("db_primary")
db_replicas = _group("db_replicas")
# The lab records alerts on monitor-01 (tests read them) and alerts fast.
monitoring = _group(
    "monitoring",
    alert_receiver_lab=True,
    alertmanager_webhook_url="http://127.0.0.1:9099/alerts",
    prometheus_scrape_interval="5s",
    alert_for_instance_down="15s",
    alert_for_web_server_down="10s",
    alert_for_replication="10s",
    alert_for_default="30s",
    alert_replication_lag_seconds=5.0,
)
# The etcd cluster the database agents will use: lb-01, lb-02, monitor-01 (docs/etcd.md).
etcd = _group("etcd")

check_inventory(globals())

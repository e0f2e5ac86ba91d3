"""Production inventory: the file an operations team edits.

Put each server's name and address in its group below, set the environment values, provide the
secrets (secrets/prod.env or exported variables, see README.md), then run:

    pyinfra inventories/prod.py deploy.py

Every value is validated (webstack/settings.py) before pyinfra connects to any server.
The addresses below are documentation examples (RFC 5737); replace them with yours.
"""

from webstack.settings import check_inventory

# Values for every host of this environment.
_environment = {
    "stack_env": "prod",                   # secrets come from secrets/prod.env or the environment
    "stack_network": "192.0.2.0/24",       # the network all stack hosts share
    "admin_networks": ["198.51.100.0/28"],  # who may SSH in and open management UIs
    "ssh_user": "deploy",                  # a non-root user with passwordless sudo
    "_sudo": True,
    # ufw rate-limits SSH (6 new connections in 30 s per source): wait that out, don't fail.
    "ssh_connect_retries": 4,
    "ssh_connect_retry_min_delay": 10,
    "ssh_connect_retry_max_delay": 15,
}


def _hosts(*pairs, **settings):
    """Hosts as (name, address) pairs; settings given here apply to these hosts only and
    override group_data/."""
    return [(name, {"ssh_hostname": address, **_environment, **settings})
            for name, address in pairs]


loadbalancers = _hosts(("lb-01", "192.0.2.11"), ("lb-02", "192.0.2.12"),
                       keepalived_floating_ip="192.0.2.10")  # the stack's public address
webservers = _hosts(("web-01", "192.0.2.21"), ("web-02", "192.0.2.22"))
databases = _hosts(("db-01", "192.0.2.31"), ("db-02", "192.0.2.32"))
db_primary = _hosts(("db-01", "192.0.2.31"))    # exactly one
db_replicas = _hosts(("db-02", "192.0.2.32"))   # zero or more
monitoring = _hosts(("monitor-01", "192.0.2.41"),
                    alertmanager_email_to="oncall@example.org")  # or alertmanager_webhook_url
# The etcd cluster the database agents will use (docs/etcd.md): 3 or 5 hosts, none of them a
# database host. Here it shares the load balancers and the monitoring host.
etcd = _hosts(("lb-01", "192.0.2.11"), ("lb-02", "192.0.2.12"), ("monitor-01", "192.0.2.41"))

check_inventory(globals())

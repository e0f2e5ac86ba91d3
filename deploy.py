"""The whole stack: `pyinfra inventories/<env>.py deploy.py`.

Every host gets the baseline and the firewall; each role's tasks follow by inventory group.
Settings were validated when the inventory loaded; they are validated again here on the data
pyinfra merged, so a --data override cannot slip past.
"""

from pyinfra import host, local

from webstack import db_agent
from webstack.context import stack
from webstack.mariadb import inventory_role_problem, replication_release_problem
from webstack.run_state import once

stack()  # validate every host's settings before any operation is planned
# Checks about the pair, not this host: once per run, not once per host's run of this file.
if db_agent.automatic(stack()):
    # The agents decide who is primary; the inventory's db_primary was only the first one.
    try:
        db_agent.primary_now(stack())
    except ValueError as e:
        raise SystemExit(f"ha-webstack: {e}. No host was touched.") from None
elif problem := once("role_problem", lambda: inventory_role_problem(stack())):
    raise SystemExit(f"ha-webstack: {problem}. After a failover (ops/promote_replica.py) put the "
                     "new primary in the group db_primary and the old one in db_replicas "
                     "(lab: LAB_DB_PRIMARY), then deploy. See docs/runbooks.md. No host was "
                     "touched.")
if problem := once("release_problem", lambda: replication_release_problem(stack())):
    raise SystemExit(f"ha-webstack: {problem}. No host was touched.")

local.include("tasks/common.py")
local.include("tasks/firewall.py")

if "loadbalancers" in host.groups:
    local.include("tasks/keepalived.py")  # first: it allows binding the floating IP
    local.include("tasks/haproxy.py")

if "etcd" in host.groups:
    local.include("tasks/etcd.py")  # before the databases: their agents will use it

if "databases" in host.groups:
    local.include("tasks/mysql.py")
    if stack().group("etcd"):
        local.include("tasks/etcd_client.py")
    if db_agent.automatic(stack()):
        local.include("tasks/db_agent.py")  # after MariaDB and the etcd client it needs

if "webservers" in host.groups:
    if db_agent.automatic(stack()):
        local.include("tasks/db_proxy.py")  # before the app is pointed at its routes
    local.include("tasks/app.py")
    local.include("tasks/nginx.py")

if "monitoring" in host.groups:
    local.include("tasks/monitoring.py")

local.include("tasks/exporters.py")  # last: after the services they watch

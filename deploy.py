"""The whole stack: `pyinfra inventories/<env>.py deploy.py`.

Every host gets the baseline and the firewall; each role's tasks follow by inventory group.
Settings were validated when the inventory loaded; they are validated again here on the data
pyinfra merged, so a --data override cannot slip past.
"""

from pyinfra import host, local

from webstack.context import stack

stack()  # validate every host's settings before any operation is planned

local.include("tasks/common.py")
local.include("tasks/firewall.py")

if "loadbalancers" in host.groups:
    local.include("tasks/keepalived.py")  # first: it allows binding the floating IP
    local.include("tasks/haproxy.py")

if "databases" in host.groups:
    local.include("tasks/mysql.py")

if "webservers" in host.groups:
    local.include("tasks/app.py")
    local.include("tasks/nginx.py")

if "monitoring" in host.groups:
    local.include("tasks/monitoring.py")

local.include("tasks/exporters.py")  # last: after the services they watch

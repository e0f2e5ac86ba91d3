"""The app's routes to the databases on every web server, where mysql_failover is "automatic":
a local HAProxy (Debian's) on 127.0.0.1, writes to the host whose database agent answers
/primary, reads to a replica whose agent answers /replica, else the primary.

Why a HAProxy per web server and not a listener on the load-balancer pair: no extra hop, no
dependence on the floating IP or the public edge for database traffic, and each web server
decides from its own checks. The agents are the source of truth; this config only lists the
database hosts, so a failover rewrites nothing. `haproxy -c` checks it before a hitless reload.
Reads DbProxySettings (group_data/webservers.py); proven by tests/test_db_agent.py.
"""

from pyinfra.operations import apt, systemd

from webstack.context import me, stack
from webstack.haproxy import CHECK, RELOAD
from webstack.ops import validated_template

databases = stack().group("databases")

apt.packages(name="HAProxy (the database routes)", packages=["haproxy", "socat"],
             no_recommends=True)
validated_template("templates/db_proxy/haproxy.cfg.j2", "/etc/haproxy/haproxy.cfg",
                   validate=CHECK, activate=RELOAD, mode="640", s=me(), databases=databases)
systemd.service(name="HAProxy (the database routes) running and enabled", service="haproxy",
                running=True, enabled=True)

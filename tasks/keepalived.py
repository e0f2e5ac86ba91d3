"""keepalived on the load balancers: the floating IP lives on the one with a working HAProxy.

The first load balancer in the inventory has the highest priority and holds the IP when healthy.
Config checked with `keepalived -t` before a reload. Reads KeepalivedSettings
(group_data/loadbalancers.py); proven by tests/test_keepalived.py.
"""

from pyinfra import host
from pyinfra.operations import apt, server, systemd

from webstack.context import me, stack
from webstack.keepalived import HOLD_FILE
from webstack.ops import validated_template

s = me()
pair = stack().group("loadbalancers")
rank = [h.name for h in pair].index(host.name)

# HAProxy binds the floating IP even while the other balancer holds it.
server.sysctl(name="Allow binding the floating IP (net.ipv4.ip_nonlocal_bind)",
              key="net.ipv4.ip_nonlocal_bind", value=1, persist=True,
              persist_file="/etc/sysctl.d/60-ha-webstack.conf")
apt.packages(name="keepalived", packages=["keepalived"], no_recommends=True)
config = validated_template(
    "templates/keepalived/keepalived.conf.j2", "/etc/keepalived/keepalived.conf",
    validate="keepalived -t -f /etc/keepalived/keepalived.conf", mode="600", s=s,
    router_name=host.name, priority=150 - 10 * rank, own_address=me().address,
    peers=[h.address for h in pair if h.name != host.name],
    prefix=s.stack_network.prefixlen, hold_file=HOLD_FILE,
    # VRRP PASS authentication uses at most 8 characters.
    auth_pass=stack().secrets["keepalived_auth_pass"][:8])
systemd.service(name="Reload keepalived", service="keepalived", running=True, enabled=True,
                reloaded=True, _if=config.did_change)
systemd.service(name="keepalived running and enabled", service="keepalived", running=True,
                enabled=True)

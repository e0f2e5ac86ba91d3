"""HAProxy on the load balancers: TLS termination, round-robin over healthy web servers.

The server list comes from the inventory's webservers group. The config is checked with
`haproxy -c` before it replaces the running one, and HAProxy is reloaded (master-worker, hitless),
never restarted. Reads HAProxySettings (group_data/loadbalancers.py); proven by
tests/test_haproxy.py.
"""

from pyinfra.operations import apt, files, systemd

from webstack import tls
from webstack.context import me, stack
from webstack.haproxy import CHECK, PEM_PATH, RELOAD
from webstack.ops import validated_file, validated_template

s = me()
web = stack().group("webservers")

supplied = stack().secrets.get("haproxy_tls_pem_file")
pem_src = supplied or str(tls.issue(s.stack_env, s.haproxy_tls_names,
                                    [str(s.keepalived_floating_ip)]))

# socat talks to the runtime API, e.g. to drain a server before maintenance.
apt.packages(name="HAProxy", packages=["haproxy", "socat"], no_recommends=True)
files.directory(name="Certificate directory", path="/etc/haproxy/certs", mode="700")
# A new certificate is checked by `haproxy -c` and reloaded hitlessly, or the old one stays.
validated_file(pem_src, PEM_PATH, validate=CHECK, activate=RELOAD)

validated_template(
    "templates/haproxy/haproxy.cfg.j2", "/etc/haproxy/haproxy.cfg",
    validate=CHECK, activate=RELOAD, mode="640", s=s, web=web,
    vip=s.keepalived_floating_ip, own_address=me().address, pem_path=PEM_PATH,
    health_path=web[0].app_health_path if web else "/healthz",
    stats_password=stack().secrets["haproxy_stats_password"])
systemd.service(name="HAProxy running and enabled", service="haproxy", running=True,
                enabled=True)

"""HAProxy on the load balancers: TLS termination, round-robin over healthy web servers.

The server list comes from the inventory's webservers group. The config is checked with
`haproxy -c` before it replaces the running one, and HAProxy is reloaded (master-worker, hitless),
never restarted. Reads HAProxySettings (group_data/loadbalancers.py); proven by
tests/test_haproxy.py.
"""

from pyinfra.operations import apt, files, systemd

from webstack import tls
from webstack.context import me, stack
from webstack.ops import validated_template

PEM_PATH = "/etc/haproxy/certs/site.pem"

s = me()
web = stack().group("webservers")

supplied = stack().secrets.get("haproxy_tls_pem_file")
pem_src = supplied or str(tls.issue(s.stack_env, s.haproxy_tls_names,
                                    [str(s.keepalived_floating_ip)]))

# socat talks to the runtime API, e.g. to drain a server before maintenance.
apt.packages(name="HAProxy", packages=["haproxy", "socat"], no_recommends=True)
files.directory(name="Certificate directory", path="/etc/haproxy/certs", mode="700")
cert = files.put(name="TLS certificate and key", src=pem_src, dest=PEM_PATH, mode="600")
# `haproxy -c` cannot see every failure (file-descriptor limits, for one): a reload counts only
# when a new worker answers on the runtime API; otherwise the old workers keep serving.
WORKER_PID = ("echo 'show info' | socat stdio /run/haproxy/admin.sock 2>/dev/null "
              "| sed -n 's/^Pid: //p'")
RELOAD = (f"old=$({WORKER_PID}); systemctl reload-or-restart haproxy; for i in $(seq 50); do "
          f"new=$({WORKER_PID}); [ -n \"$new\" ] && [ \"$new\" != \"$old\" ] && exit 0; "
          "sleep 0.2; done; journalctl -u haproxy -n 5 --no-pager; exit 1")

config = validated_template(
    "templates/haproxy/haproxy.cfg.j2", "/etc/haproxy/haproxy.cfg",
    validate="haproxy -c -f /etc/haproxy/haproxy.cfg", activate=RELOAD, mode="640", s=s, web=web,
    vip=s.keepalived_floating_ip, own_address=me().address, pem_path=PEM_PATH,
    health_path=web[0].app_health_path if web else "/healthz",
    stats_password=stack().secrets["haproxy_stats_password"])
systemd.service(name="Reload HAProxy (hitless) for a new certificate", service="haproxy",
                running=True, enabled=True, reloaded=True, _if=cert.did_change)
systemd.service(name="HAProxy running and enabled", service="haproxy", running=True,
                enabled=True)

"""Roll out a new app version one web server at a time, without dropping a request.

When to use it
  Every change of the app in production: new code (app_source, app_git_ref), its environment
  or its unit. deploy.py restarts the app on every web server at once; this does not.

    pyinfra -y inventories/<env>.py ops/rolling_app_deploy.py
    pyinfra -y inventories/<env>.py ops/rolling_app_deploy.py --data app_git_ref=v2.1

What it does, for each web server in inventory order
  1. drains it in HAProxy on both load balancers (runtime API) and waits until its sessions
     have ended (at most haproxy_drain_timeout_s);
  2. deploys the app there (tasks/app.py: code, environment, unit; the app restarts if changed);
  3. checks the health path (app_health_path) on the app and through nginx, until it answers
     200 (at most app_health_timeout_s);
  4. puts it back in rotation and waits until HAProxy's own health check sees it UP.
  If a server does not come back healthy, the rollout stops there: that server stays drained
  (out of rotation), the servers before it run the new version, the ones after it the old one,
  and all of those keep serving.

How to undo
  Run it again with the previous version (e.g. --data app_git_ref=v2.0). A server left drained
  by a failed rollout is put back by the next successful run, or by hand on each load balancer:
  echo "set server web/web-01 state ready" | socat stdio /run/haproxy/admin.sock
Runbook: docs/runbooks.md, "Rolling app deploy".
"""

from pyinfra import host, local, state
from pyinfra.operations import python, server

from webstack.context import stack
from webstack.haproxy import drain, ready
from webstack.run_state import step_done
from webstack.webserver import health_check

st = stack()
lbs = {h.name: h for h in st.group("loadbalancers")}
unreachable = set(state.failed_hosts)  # failed to connect: reported by pyinfra already


def healthy_so_far() -> bool:
    """Evaluated as each step runs: no server (or balancer) has failed since the start."""
    return not (state.failed_hosts - unreachable)


for web in host.loop(st.group("webservers")):
    lb = lbs.get(host.name)
    if lb:
        server.shell(name=f"Drain {web.name} in HAProxy", _if=healthy_so_far,
                     commands=[drain(web.name, lb.haproxy_drain_timeout_s)])
    python.call(name=f"{web.name}: drained", function=step_done, _if=healthy_so_far)
    if host.name == web.name:
        # Included operations take no _if: a server after a failed one stops here instead.
        server.shell(name="Stop: an earlier server did not come back healthy",
                     commands=["exit 1"], _if=lambda: not healthy_so_far())
        local.include("tasks/app.py")
        server.shell(name=f"{web.name} answers its health path", commands=[health_check(web)])
    python.call(name=f"{web.name}: deployed", function=step_done, _if=healthy_so_far)
    if lb:
        server.shell(name=f"Put {web.name} back in rotation", _if=healthy_so_far,
                     commands=[ready(web.name, web.app_health_timeout_s)])
    python.call(name=f"{web.name}: back in rotation", function=step_done, _if=healthy_so_far)

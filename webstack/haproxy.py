"""HAProxy pieces shared by the deploy (tasks/haproxy.py) and the ops/ that drain servers or
rotate the certificate: paths, the config check, and shell snippets for the runtime API (the
admin socket in templates/haproxy/haproxy.cfg.j2).

pyinfra has no HAProxy operations; the runtime API is a line protocol over a Unix socket, which
socat (installed by tasks/haproxy.py) speaks.
"""

import shlex

PEM_PATH = "/etc/haproxy/certs/site.pem"
CHECK = "haproxy -c -f /etc/haproxy/haproxy.cfg"
SOCKET = "/run/haproxy/admin.sock"
BACKEND = "web"
WORKER_PID = f"echo 'show info' | socat stdio {SOCKET} 2>/dev/null | sed -n 's/^Pid: //p'"
# A reload counts only when a new worker answers on the runtime API: `haproxy -c` cannot see
# every failure (file-descriptor limits, for one), and on failure the old workers keep serving.
RELOAD = (f"old=$({WORKER_PID}); systemctl reload-or-restart haproxy; for i in $(seq 50); do "
          f"new=$({WORKER_PID}); [ -n \"$new\" ] && [ \"$new\" != \"$old\" ] && exit 0; "
          "sleep 0.2; done; journalctl -u haproxy -n 5 --no-pager; exit 1")


def _stat_field(server: str, field: int) -> str:
    """One column of `show stat` (CSV: 5 = current sessions, 18 = status) for a web server."""
    return (f"echo 'show stat' | socat stdio {SOCKET} | "
            f"awk -F, '$1 == \"{BACKEND}\" && $2 == \"{server}\" {{print ${field}}}'")


def _poll_until(server: str, field: int, value: str, seconds: int) -> str:
    """Succeed (exit 0) as soon as the field reads `value`; fall through after `seconds`."""
    check = f'[ "$({_stat_field(server, field)})" = {value} ]'
    return f"for i in $(seq {max(1, seconds * 5)}); do {check} && exit 0; sleep 0.2; done"


def drain(server: str, timeout_s: int) -> str:
    """No new requests to `server`; wait until its sessions are done (at most timeout_s)."""
    warn = shlex.quote(f"ha-webstack: {server} still has sessions after {timeout_s} s; "
                       "going on (haproxy_drain_timeout_s)")
    return (f"echo 'set server {BACKEND}/{server} state drain' | socat stdio {SOCKET}; "
            f"{_poll_until(server, 5, '0', timeout_s)}; "
            f"echo {warn} >&2")


def ready(server: str, timeout_s: int) -> str:
    """Back in rotation; succeed once HAProxy's own health check sees it UP."""
    fail = shlex.quote(f"ha-webstack: HAProxy does not see {server} UP after {timeout_s} s")
    return (f"echo 'set server {BACKEND}/{server} state ready' | socat stdio {SOCKET}; "
            f"{_poll_until(server, 18, 'UP', timeout_s)}; "
            f"echo {fail} >&2; exit 1")

"""The web server's health as the ops that take one out of rotation check it before putting it
back (ops/rolling_app_deploy.py, ops/upgrade_debian.py)."""


def health_check(web, after: str = "the deploy") -> str:
    """The app, then nginx in front of it, answer the health path (both must, to serve)."""
    path, timeout = web.app_health_path, web.app_health_timeout_s
    app = f"curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:{web.app_port}{path}"
    site = f"curl -fsS --max-time 2 -o /dev/null http://{web.address}:{web.nginx_port}{path}"
    return (f"for i in $(seq {timeout * 5}); do {app} 2>/dev/null && {site} && exit 0; "
            f"sleep 0.2; done; echo 'ha-webstack: {web.name} does not answer {path} {timeout} s "
            f"after {after}: it stays drained and this stops here' >&2; exit 1")

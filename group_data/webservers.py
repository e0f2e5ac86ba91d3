"""Settings for the web/app servers (validated by webstack/settings.py: NginxSettings, AppSettings).

nginx serves static files and proxies everything else to the app on localhost.
"""

# --- nginx (tasks/nginx.py) ---------------------------------------------------------------
nginx_port = 80                   # the site; open to the load balancers (and admins) only
nginx_status_port = 8080          # stub_status on 127.0.0.1, for the nginx exporter
nginx_client_max_body_size = "1m"
nginx_proxy_connect_timeout = 2   # seconds; fail fast so HAProxy retries another server
nginx_proxy_read_timeout = 30     # seconds
nginx_keepalive_timeout = 65      # seconds; longer than HAProxy's idle timeout to the server
nginx_extra_config = ""           # raw directives for the server block, validated by nginx -t
nginx_exporter_port = 9113        # prometheus-nginx-exporter, reads stub_status; monitoring only

# --- the app (tasks/app.py) ---------------------------------------------------------------
# To run your own app instead, point these at it: a directory or a git URL, the command that
# serves it on 127.0.0.1:{port}, the Debian packages it needs, and its liveness path.
app_source = "app"                # directory in this repository, or e.g. https://git.example/app.git
app_git_ref = "main"              # used when app_source is a git URL
app_packages = ["gunicorn", "python3-flask", "python3-pymysql"]
# Threads (gunicorn's gthread worker): a request waiting on the database (a write retried
# through a failover) holds one thread, not a whole worker, so /healthz still answers in time.
app_command = ("/usr/bin/gunicorn --workers 3 --threads 8 --bind 127.0.0.1:{port} "
               "--access-logfile - webstack_app:app")
app_port = 8000
app_environment = {}              # extra variables, e.g. {"FEATURE_X": "on"}
app_health_path = "/healthz"      # must not depend on the database
app_static_dir = "static"         # served by nginx at /static/
app_db_name = "webstack"
app_schema_file = "schema.sql"    # CREATE TABLE IF NOT EXISTS ...; applied on the primary
app_db_user = "webstack"
app_replica_max_lag = 5.0         # seconds; a staler replica is skipped for reads
app_write_retry_s = 3.0           # seconds a write refused unapplied is retried (switchover)
app_health_timeout_s = 30         # rolling app deploy: a server must be healthy again by then

# --- the database routes (tasks/db_proxy.py), only where mysql_failover is "automatic" --------
# A local HAProxy on each web server sends the app's writes to whichever database host's agent
# answers /primary, and its reads to a healthy replica (/replica), the primary if none is.
db_proxy_write_port = 3306        # on 127.0.0.1: the app's writes
db_proxy_read_port = 3307         # on 127.0.0.1: the app's reads
db_proxy_check_interval_ms = 500  # health checks against the agents; 2 failed: out of rotation

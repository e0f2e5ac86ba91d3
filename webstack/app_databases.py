"""Where the app finds its databases: one small file on each web server, shared by the deploy
(tasks/app.py) and the failover (ops/promote_replica.py).

The app re-reads the file when it changes (app/webstack_app.py: refresh_topology), so a failover
repoints every web server by rewriting it: no restart, no dropped request. It holds no secret.
"""

from pyinfra.operations import files

APP_DATABASES_FILE = "/etc/ha-webstack-app.databases"


def write_app_databases(primary: str, replicas: list[str], why: str = "", **op_args):
    """The operation that points the app at `primary` for writes and `replicas` for reads;
    op_args are pyinfra's global arguments (e.g. _if)."""
    return files.template(name=f"App databases: primary {primary or '-'}{why}",
                          src="templates/app/app.databases.j2", dest=APP_DATABASES_FILE,
                          mode="644", user="root", group="root", db_primary=primary,
                          db_replicas=replicas, **op_args)

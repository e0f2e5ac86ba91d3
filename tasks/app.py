"""The app on every web server: code, root-only environment file, systemd unit.

Our stack-status app (app/) is the default; a user's own app plugs in through the app_* settings
in group_data/webservers.py. The app restarts only when its code, environment or unit changed.
Served by gunicorn from Debian's packages: security updates arrive with unattended-upgrades and
the servers need no PyPI access. Reads AppSettings; proven by tests/test_app.py.
"""


from pyinfra.operations import apt, files, git, server, systemd
from pyinfra.operations.util import any_changed

from webstack import ROOT
from webstack.app_databases import APP_DATABASES_FILE, write_app_databases
from webstack.context import me, stack
from webstack.db_agent import app_routes

APP_DIR = "/opt/ha-webstack-app"
ENV_FILE = "/etc/ha-webstack-app.env"
UNIT = "ha-webstack-app"

s = me()
is_git = "://" in s.app_source or s.app_source.startswith("git@")

apt.packages(name="App runtime packages", packages=[*s.app_packages, *(["git"] if is_git else [])],
             no_recommends=True)
server.user(name="App user (no shell, no home)", user="webapp", system=True, home=APP_DIR,
            shell="/usr/sbin/nologin", create_home=False)

if is_git:
    code = git.repo(name="App code from git", src=s.app_source, dest=APP_DIR,
                    branch=s.app_git_ref, pull=True)
else:
    code = files.sync(name="App code", src=str(ROOT / s.app_source), dest=APP_DIR, delete=True,
                      exclude=["*.pyc"], exclude_dir=["__pycache__"])

write_app_databases(*app_routes(stack(), s))
env = files.template(name="App environment (root-only)", src="templates/app/app.env.j2",
                     dest=ENV_FILE, mode="600", user="root", group="root", s=s,
                     topology_file=APP_DATABASES_FILE,
                     db_password=stack().secrets.get("mysql_app_password", ""))
unit = files.template(name="App systemd unit", src="templates/app/ha-webstack-app.service.j2",
                      dest=f"/etc/systemd/system/{UNIT}.service", s=s, app_dir=APP_DIR,
                      env_file=ENV_FILE, command=s.app_command.format(port=s.app_port))
systemd.service(name="App running, restarted when it changed", service=UNIT, running=True,
                enabled=True, restarted=True, daemon_reload=True,
                _if=any_changed(code, env, unit))
systemd.service(name="App running and enabled", service=UNIT, running=True, enabled=True)

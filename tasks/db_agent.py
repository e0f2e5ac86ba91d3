"""The database agent on every database host, where mysql_failover is "automatic" (agent/).

- The code: agent/ from this checkout, copied to /opt/ha-webstack/agent; Debian's PyMySQL.
- Its configuration, /etc/ha-webstack/agent.json (webstack/db_agent.py writes it from the
  inventory), checked by the agent itself (`--check`) before it is installed; and the
  replication password in a root-only file the agent reads when it needs it (never argv).
- A systemd unit: restarted when any of them changed. A restart is no failover: the agent
  resumes the lease it held (agent/README.md, "Stopping the agent").
Reads MySQLSettings and DbAgentSettings (group_data/databases.py); the client certificate for
etcd comes from tasks/etcd_client.py. Proven by tests/test_db_agent.py.
"""

import io

from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from webstack import ROOT
from webstack import db_agent as agent
from webstack.context import me, stack
from webstack.ops import validated_file

apt.packages(name="Database agent runtime (PyMySQL)", packages=["python3-pymysql"],
             no_recommends=True)
code = files.sync(name="Database agent code", src=str(ROOT / "agent"),
                  dest=f"{agent.CODE_DIR}/agent", delete=True, exclude=["*.pyc", "*.md"],
                  exclude_dir=["__pycache__"], mode="644", dir_mode="755")
files.directory(name="Database agent secrets directory", path=agent.SECRETS_DIR, user="root",
                group="root", mode="700")
# The lease file's directory, there before the unit first starts: `--check` looks for it.
files.directory(name="Database agent state directory", path=agent.STATE_DIR,
                user="root", group="root", mode="700")
password = files.put(name="Database agent: replication password (root only)",
                     src=io.StringIO(stack().secrets["mysql_replication_password"] + "\n"),
                     dest=agent.PASSWORD_FILE, user="root", group="root", mode="600")
unit = files.template(name="Database agent systemd unit",
                      src="templates/db_agent/ha-webstack-agent.service.j2",
                      dest=f"/etc/systemd/system/{agent.UNIT}.service", code_dir=agent.CODE_DIR,
                      config=agent.CONFIG, state_dir=agent.STATE_DIR.rsplit("/", 1)[1])
config = validated_file(io.StringIO(agent.config_text(stack(), me())), agent.CONFIG,
                        validate=f"{agent.CHECK} {agent.CONFIG}", mode="600")
systemd.service(name="Database agent running, restarted when it changed", service=agent.UNIT,
                running=True, enabled=True, restarted=True, daemon_reload=True,
                _if=any_changed(code, password, unit, config))
systemd.service(name="Database agent running and enabled", service=agent.UNIT, running=True,
                enabled=True)

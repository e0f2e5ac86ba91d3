"""The monitoring host: Prometheus, Alertmanager, the blackbox exporter, mysqld exporters.

Scrape targets come from the inventory (adding web-03 adds its targets). Every config is
checked (`promtool check`, `amtool check-config`, the blackbox exporter's --config.check)
before a reload. Reads MonitoringSettings (group_data/monitoring.py); proven by
tests/test_monitoring.py, and the alert rules by tests/unit/monitoring/alerts_test.yml.
"""

import io

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from webstack import db_agent, tls
from webstack.context import me, stack
from webstack.ops import validated_template

m = me()
st = stack()
T = "templates/monitoring"
ENV_DIR = "/etc/ha-webstack/mysqld-exporter"
PACKAGE_EXPORTER_UNIT = "/etc/systemd/system/prometheus-mysqld-exporter.service"

# The package's own mysqld exporter (one local database) is not used: masked before the package
# is installed, so the install does not start it and leave it failed (the host degraded).
files.link(name="The package's local mysqld exporter is masked", path=PACKAGE_EXPORTER_UNIT,
           target="/dev/null")
apt.packages(name="Prometheus, Alertmanager, blackbox and mysqld exporters", packages=[
    "prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter",
    "prometheus-mysqld-exporter"], no_recommends=True)


def service_args(package: str):
    """/etc/default/<package> holds the listen address: a change needs a restart."""
    args = files.template(name=f"{package} arguments", src=f"{T}/{package}.default.j2",
                          dest=f"/etc/default/{package}", m=m)
    systemd.service(name=f"Restart {package} (its arguments changed)", service=package,
                    running=True, enabled=True, restarted=True, _if=args.did_change)


# --- blackbox exporter: probes the floating IP, verifying the stack CA's certificate ---------
supplied_cert = st.secrets.get("haproxy_tls_pem_file")
ca_file = "" if supplied_cert else "/etc/prometheus/stack-ca.crt"
ca = None
if ca_file:
    tls.ensure_ca(m.stack_env)
    ca = files.put(name="Stack CA certificate", src=str(tls.ca_dir(m.stack_env) / "ca.crt"),
                   dest=ca_file)
blackbox = validated_template(
    f"{T}/blackbox.yml.j2", "/etc/prometheus/blackbox.yml",
    validate="prometheus-blackbox-exporter --config.check "
             "--config.file=/etc/prometheus/blackbox.yml", ca_file=ca_file)
service_args("prometheus-blackbox-exporter")
systemd.service(name="Reload the blackbox exporter", service="prometheus-blackbox-exporter",
                running=True, enabled=True, reloaded=True,
                _if=any_changed(*[op for op in (blackbox, ca) if op]))

# --- mysqld exporters: one per database host, here, as the monitoring user ---------------
if host.get_fact(Command, "systemctl is-failed prometheus-mysqld-exporter || true") == "failed":
    # Left failed by an install before the mask (an older deploy): clear it once.
    server.shell(name="The package's mysqld exporter: clear its failed state",
                 commands=["systemctl reset-failed prometheus-mysqld-exporter"])
unit = files.template(name="mysqld exporter unit", src=f"{T}/ha-mysqld-exporter@.service.j2",
                      dest="/etc/systemd/system/ha-mysqld-exporter@.service")
files.directory(name="mysqld exporter settings", path=ENV_DIR, mode="750", group="prometheus")
dbs = []
for i, db in enumerate(st.group("databases")):
    port = m.mysqld_exporter_base_port + i
    dbs.append({"name": db.name, "port": port,
                "role": "primary" if "db_primary" in db.groups else "replica"})
    cnf = files.template(name=f"mysqld exporter login for {db.name}",
                         src=f"{T}/mysqld-exporter.cnf.j2", dest=f"{ENV_DIR}/{db.name}.cnf",
                         mode="640", group="prometheus", db=db,
                         password=st.secrets["mysql_monitor_password"])
    env = files.put(name=f"mysqld exporter port for {db.name}",
                    src=io.StringIO(f"PORT={port}\n"),
                    dest=f"{ENV_DIR}/{db.name}.env")
    systemd.service(name=f"mysqld exporter for {db.name}", service=f"ha-mysqld-exporter@{db.name}",
                    running=True, enabled=True, restarted=True, daemon_reload=True,
                    _if=any_changed(unit, cnf, env))
    systemd.service(name=f"mysqld exporter for {db.name} running", running=True, enabled=True,
                    service=f"ha-mysqld-exporter@{db.name}")

# --- the lab's recording alert receiver ---------------------------------------------------
if m.alert_receiver_lab:
    code = files.put(name="Lab alert receiver", src=f"{T}/ha-alert-receiver.py",
                     dest="/usr/local/lib/ha-alert-receiver.py")
    receiver_unit = files.put(name="Lab alert receiver unit", src=f"{T}/ha-alert-receiver.service",
                              dest="/etc/systemd/system/ha-alert-receiver.service")
    systemd.service(name="Lab alert receiver running", service="ha-alert-receiver",
                    running=True, enabled=True, restarted=True, daemon_reload=True,
                    _if=any_changed(code, receiver_unit))

# --- Alertmanager ------------------------------------------------------------------------
alertmanager = validated_template(
    f"{T}/alertmanager.yml.j2", "/etc/prometheus/alertmanager.yml",
    validate="amtool check-config /etc/prometheus/alertmanager.yml", m=m)
service_args("prometheus-alertmanager")
systemd.service(name="Reload Alertmanager", service="prometheus-alertmanager", running=True,
                enabled=True, reloaded=True, _if=alertmanager.did_change)

# --- Prometheus ----------------------------------------------------------------------------
web = st.group("webservers")
context = dict(m=m, hosts=st.hosts, lbs=st.group("loadbalancers"), webs=web, dbs=dbs,
               etcds=st.group("etcd"),
               agents=st.group("databases") if db_agent.automatic(st) else [],
               floating_ip=st.group("loadbalancers")[0].keepalived_floating_ip,
               health_path=web[0].app_health_path if web else "/healthz")
rules = validated_template(
    f"{T}/ha-webstack-alerts.yml.j2", "/etc/prometheus/ha-webstack-alerts.yml",
    validate="promtool check rules /etc/prometheus/ha-webstack-alerts.yml", **context)
config = validated_template(
    f"{T}/prometheus.yml.j2", "/etc/prometheus/prometheus.yml",
    validate="promtool check config /etc/prometheus/prometheus.yml", **context)
service_args("prometheus")
systemd.service(name="Reload Prometheus", service="prometheus", running=True, enabled=True,
                reloaded=True, _if=any_changed(rules, config))
server.shell(name="Prometheus is ready", commands=[
    f"for i in $(seq 30); do curl -sf http://{m.address}:{m.prometheus_port}/-/ready "
    ">/dev/null && exit 0; sleep 1; done; exit 1"], _if=any_changed(rules, config))

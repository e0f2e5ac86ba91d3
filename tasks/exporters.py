"""Exporters on the managed hosts: node exporter everywhere, nginx exporter on web servers.

Each listens on its host's own address; the firewall opens it to the monitoring host only.
(HAProxy serves its own /metrics; the mysqld exporters run on the monitoring host, see
tasks/monitoring.py.) Reads ExporterSettings, NginxExporterSettings; proven by
tests/test_exporters.py.
"""

from pyinfra import host
from pyinfra.operations import apt, files, systemd
from pyinfra.operations.util import any_changed

from webstack.context import me

s = me()


def exporter(package: str, template: str, **context) -> None:
    apt.packages(name=package, packages=[package], no_recommends=True)
    conf = files.template(name=f"{package} listen address", src=template,
                          dest=f"/etc/default/{package}", **context)
    # An exporter that starts before what it watches may exit; Debian's unit then gives up
    # after five quick restarts. Keep retrying instead.
    dropin = files.put(name=f"{package} keeps restarting", src="templates/exporters/restart.conf",
                       dest=f"/etc/systemd/system/{package}.service.d/ha-webstack.conf")
    systemd.service(name=f"Restart {package} (its arguments changed)", service=package,
                    running=True, enabled=True, restarted=True, daemon_reload=True,
                    _if=any_changed(conf, dropin))
    systemd.service(name=f"{package} running and enabled", service=package, running=True,
                    enabled=True)


exporter("prometheus-node-exporter", "templates/exporters/prometheus-node-exporter.default.j2",
         address=s.address, port=s.node_exporter_port)
if "webservers" in host.groups:
    exporter("prometheus-nginx-exporter",
             "templates/exporters/prometheus-nginx-exporter.default.j2", address=s.address,
             port=s.nginx_exporter_port, status_port=s.nginx_status_port)

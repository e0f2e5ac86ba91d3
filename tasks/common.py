"""Baseline for every managed host: packages, name resolution, security updates, SSH hardening.

Reads group_data/all.py (CommonSettings); proven by tests/test_common.py.
"""

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd

from webstack.context import me, stack
from webstack.ops import validated_template

settings = me()

apt.update(name="Refresh the apt cache", cache_time=settings.apt_cache_valid_seconds)
apt.packages(name="Base packages", packages=settings.common_packages, no_recommends=True)

server.hostname(name="Hostname", hostname=host.name)
files.template(name="/etc/hosts lists every inventory host", src="templates/common/hosts.j2",
               dest="/etc/hosts", hosts=stack().hosts)

files.template(name="Unattended security upgrades", src="templates/common/20auto-upgrades.j2",
               dest="/etc/apt/apt.conf.d/20auto-upgrades", enabled=settings.unattended_upgrades)

sshd = validated_template(
    "templates/common/sshd_hardening.conf.j2", "/etc/ssh/sshd_config.d/10-ha-webstack.conf",
    validate="sshd -t", port=settings.sshd_port)
systemd.service(name="Reload sshd", service="ssh", running=True, enabled=True, reloaded=True,
                _if=sshd.did_change)

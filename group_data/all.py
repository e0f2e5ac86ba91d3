"""Settings for every managed host (validated by webstack/settings.py: CommonSettings).

Values that differ per environment (stack_env, stack_network, admin_networks) are set in the
inventory file, not here.
"""

# Debian packages every host gets. ufw is the firewall (tasks/firewall.py); unattended-upgrades
# applies security updates; the rest keeps a host debuggable by an ops engineer on call.
common_packages = [
    "ca-certificates", "curl", "less", "netbase", "procps", "python3", "sudo", "ufw",
    "unattended-upgrades", "apt-listchanges", "iproute2", "bind9-dnsutils", "vim-tiny",
]

# How old the apt cache may be before a deploy refreshes it (seconds).
apt_cache_valid_seconds = 3600

# Install security updates daily via unattended-upgrades.
unattended_upgrades = True

# Port sshd listens on; the firewall opens it to admin_networks only.
sshd_port = 22

# Rate-limit new SSH connections (ufw "limit": 6 in 30 s per source).
sshd_rate_limit = True

# ufw's log level (off, low, medium, high, full).
ufw_logging = "low"

# ops/upgrade_debian.py (docs/upgrades.md): the one host it upgrades (set on the command line:
# --data debian_upgrade_host=web-01), the release it upgrades to, and how long the host may take
# to come back from the reboot that ends the upgrade.
debian_upgrade_host = ""
debian_upgrade_to = "trixie"
debian_reboot_timeout_s = 300

# Port of the node exporter (tasks/exporters.py), on the host's own address, for monitoring only.
node_exporter_port = 9100
